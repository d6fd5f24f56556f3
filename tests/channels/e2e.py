"""End-to-end helpers: a fake provider API on loopback that records outbound calls and answers from a
plan of real-shaped replies, an admin client, and waiting for stream events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

import httpx
import websockets
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.conftest import PASSWORD, seed_basics

from .harness import Reply, body_of


@dataclass
class Call:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    query: dict[str, str]

    @property
    def form(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for k, v in parse_qsl(self.body.decode(), keep_blank_values=True):
            out.setdefault(k, []).append(v)
        return out

    @property
    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class FakeProvider:
    """Answers every call with the next planned reply (then ``default``), and records it."""

    default: Reply
    plan: list[Reply] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    media: dict[str, bytes] = field(default_factory=dict)  # served at /media/{name} (GET), via /redirect/{name}

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/redirect/{name}", self.redirect), Route("/media/{name}", self.file),
                                 Route("/{path:path}", self.handle, methods=["GET", "POST"])])

    async def redirect(self, request: Request) -> Response:
        self.calls.append(Call("GET", request.url.path, {k.lower(): v for k, v in request.headers.items()}, b"", {}))
        return Response(status_code=307, headers={"location": f"/media/{request.path_params['name']}"})

    async def file(self, request: Request) -> Response:
        data = self.media.get(request.path_params["name"])
        if data is None:
            return Response(status_code=404)
        return Response(data, media_type="image/jpeg")

    async def handle(self, request: Request) -> Response:
        self.calls.append(Call(request.method, request.url.path, {k.lower(): v for k, v in request.headers.items()},
                               await request.body(), dict(request.query_params)))
        reply = self.plan.pop(0) if self.plan else self.default
        async with self.changed:
            self.changed.notify_all()
        ctype = "text/html" if isinstance(reply.body, str) else "application/json"
        return Response(body_of(reply), status_code=reply.status, headers=reply.headers, media_type=ctype)

    async def wait_calls(self, n: int, timeout: float = 10) -> list[Call]:
        async with asyncio.timeout(timeout), self.changed:
            await self.changed.wait_for(lambda: len(self.calls) >= n)
        return self.calls


async def admin_client(server) -> httpx.AsyncClient:  # type: ignore[no-untyped-def]
    c = httpx.AsyncClient(base_url=server.url)
    r = await c.post("/api/v1/auth/login", json={"email": "admin@example.com", "password": PASSWORD})
    assert r.status_code == 200, r.text
    c.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    return c


async def setup(server, kind: str, config: dict) -> tuple[dict[str, int], httpx.AsyncClient, dict]:  # type: ignore[no-untyped-def]
    """Seed users and queues, log in as admin, create the channel; returns ids, client, the channel."""
    ids = await seed_basics(server.services)
    c = await admin_client(server)
    r = await c.post("/api/v1/channels", json={"kind": kind, "name": kind, "config": config,
                                               "default_queue_id": ids["general"]})
    assert r.status_code == 201, r.text
    return ids, c, r.json()


@asynccontextmanager
async def stream(server, c: httpx.AsyncClient) -> AsyncIterator[websockets.ClientConnection]:  # type: ignore[no-untyped-def]
    token = (await c.post("/api/v1/tokens", json={"name": "ws"})).json()["token"]
    async with websockets.connect(f"{server.ws_url}/api/v1/stream?token={token}") as ws:
        assert json.loads(await ws.recv())["name"] == "stream.ready"
        yield ws


async def next_event(ws, name: str, timeout: float = 10.0, **match: object) -> dict:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while True:
            msg = json.loads(await ws.recv())
            if msg["name"] != name:
                continue
            data = msg["data"]
            if all(_get(data, k) == v for k, v in match.items()):
                return msg


def _get(data: dict, dotted: str) -> object:
    for part in dotted.split("__"):
        data = data.get(part) if isinstance(data, dict) else None  # type: ignore[assignment]
    return data


def hook_path(channel: dict) -> str:
    return "/hooks/" + channel["inbound_url"].rsplit("/hooks/", 1)[1]
