"""Shared by the security tests: signed posts to a generic API channel, a partner that receives replies."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.conftest import run_server
from threadline.security import sign

API_SECRET = "s3cret-s3cret-s3cret"


async def post_api(client: httpx.AsyncClient, key: str, body: dict) -> httpx.Response:
    """A customer's message on a generic API channel, signed as its partner signs it."""
    raw = json.dumps(body).encode()
    ts = str(int(time.time()))
    return await client.post(f"/hooks/{key}", content=raw, headers={
        "content-type": "application/json", "x-threadline-timestamp": ts,
        "x-threadline-signature": sign(API_SECRET, raw, ts)})


class Partner:
    """The system behind an API channel: records each reply Threadline delivers to it."""

    def __init__(self) -> None:
        self.delivered: list[dict] = []
        self.arrived = asyncio.Condition()
        self.url = ""

    async def _inbox(self, request: Request) -> JSONResponse:
        async with self.arrived:
            self.delivered.append(json.loads(await request.body()))
            self.arrived.notify_all()
        return JSONResponse({"id": f"partner-{len(self.delivered)}"})

    async def reply_to(self, message_id: int, timeout: float = 10) -> dict:
        """The delivered body of Threadline's message ``message_id`` (waits for it)."""
        want = f"tl-{message_id}"
        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(
                lambda: any(d["id"] == want for d in self.delivered)), timeout)
        return next(d for d in self.delivered if d["id"] == want)


@contextlib.asynccontextmanager
async def partner() -> AsyncIterator[Partner]:
    p = Partner()
    async with run_server(Starlette(routes=[Route("/replies", p._inbox, methods=["POST"])])) as live:
        p.url = f"{live.url}/replies"
        yield p
