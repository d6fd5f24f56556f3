"""A webhook receiver on loopback for tests: records every POST, answers from a plan, verifies nothing
itself (tests check signatures with the secret the API showed)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from threadline.db.types import utcnow


@dataclass
class Call:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def event(self) -> str:
        return self.json["event"]


class Receiver:
    """``plan``: per path, the answers to give in turn, (status, headers); then 200."""

    def __init__(self, plan: dict[str, list[tuple[int, dict[str, str]]]] | None = None) -> None:
        self.plan = {k: list(v) for k, v in (plan or {}).items()}
        self.calls: list[Call] = []
        self._queues: dict[str, asyncio.Queue[Call]] = {}
        self.app = Starlette(routes=[Route("/{path}", self.hook, methods=["POST"])])

    def _queue(self, path: str) -> asyncio.Queue[Call]:
        return self._queues.setdefault(path, asyncio.Queue())

    async def hook(self, request: Request) -> Response:
        path = "/" + request.path_params["path"]
        call = Call(path, dict(request.headers), await request.body())
        self.calls.append(call)
        self._queue(path).put_nowait(call)
        answers = self.plan.get(path) or []
        status, headers = answers.pop(0) if answers else (200, {})
        return Response(b'{"ok": true}' if status < 300 else b"nope", status_code=status, headers=headers)

    async def next(self, path: str, timeout: float = 5.0) -> Call:
        return await asyncio.wait_for(self._queue(path).get(), timeout)

    async def until(self, path: str, event: str, timeout: float = 5.0) -> Call:
        async with asyncio.timeout(timeout):
            while True:
                call = await self._queue(path).get()
                if call.event == event:
                    return call

    def to(self, path: str) -> list[Call]:
        return [c for c in self.calls if c.path == path]


class FakeClock:
    """The workers' clock, moved by the test."""

    def __init__(self) -> None:
        self.value = utcnow()

    def __call__(self) -> datetime:
        return self.value

    def advance(self, seconds: float) -> None:
        self.value += timedelta(seconds=seconds)
