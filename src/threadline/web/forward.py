"""Relayed browser calls live in one process of the host; the others forward their few requests to it.

A call the server relays (voice/browser/media.py) keeps its media (peer connections, recorder, prompts) in
the process that took its offers. Several web processes share one port and the kernel hands each request
to any of them, so the visitor's offer, the agent's answer and the hold or hang-up of one call would land
in different processes. So, when a host runs several processes (``Settings.processes``), one of them, the
media process (a file lock in the run folder, siblings.py), also listens on a Unix socket there,
``media.sock``; the other processes send it the requests that act on a browser call's media (POST and
DELETE under ``/widget/calls`` and ``/api/v1/calls/{id}/…``: a handful per call) and pass its answer back.
The media process handles them like any request (authentication, rate limits: those are then one set for
the host). The audio itself goes between the browsers and that process (WebRTC over UDP), never through
the others. If it dies, another process takes the lock within a second; the calls it relayed are cut, as
they would be with one process.

The forwarded request carries the original client address and scheme in a header that only the Unix
socket's listener reads (the folder is 0700: only this installation's user can reach it).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import re
import socket
from pathlib import Path
from typing import Any

import httpx
import structlog
import uvicorn

from threadline.siblings import run_dir

log = structlog.get_logger(__name__)

ASGIApp = Any
FORWARDED = "x-threadline-forwarded"
MEDIA_ROUTES = re.compile(r"^(?:/widget/calls(?:/\d+/(?:media|hangup))?"
                          r"|/api/v1/calls/\d+/(?:media|decline|hold|recording|transfer|monitor|hangup))$")
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "upgrade", "te", "trailer", "proxy-connection",
              "host", "content-length", FORWARDED}
MAX_BODY = 1_000_000
RETRY_SECONDS = 1.0


def forwarded(scope: dict[str, Any]) -> bool:
    """Whether this request is a browser call's media request that the media process must handle."""
    return (scope["type"] == "http" and scope["method"] in ("POST", "DELETE", "PUT")
            and MEDIA_ROUTES.match(scope["path"]) is not None)


class _Quiet(uvicorn.Server):
    """The media listener runs inside a process that already has a server: it leaves the signals to it."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def, override]
        yield


class MediaProcess:
    """Whether this process relays the host's browser calls, and the listener that makes it so."""

    def __init__(self, data_dir: Path, processes: int) -> None:
        self.enabled = processes > 1
        self.data_dir = data_dir
        self.folder: Path | None = None
        self._fd: int | None = None
        self._server: _Quiet | None = None
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self.leading = asyncio.Event()  # set once this process is the media process and its socket listens

    @property
    def here(self) -> bool:
        return not self.enabled or self._fd is not None

    @property
    def socket_path(self) -> Path:
        assert self.folder is not None
        return self.folder / "media.sock"

    async def start(self, app: ASGIApp) -> None:
        if not self.enabled:
            return
        self.folder = run_dir(self.data_dir)
        self._client = httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=str(self.socket_path)),
                                         base_url="http://media", timeout=httpx.Timeout(30.0))
        self._task = asyncio.create_task(self._lead(app), name="media-process")

    async def _lead(self, app: ASGIApp) -> None:
        """Take the media lock when it is free (at start, or when its holder died), then listen."""
        assert self.folder is not None
        while self._fd is None:
            fd = os.open(self.folder / "media.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            self._fd = fd
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()  # the dead holder's
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(self.socket_path))
        sock.listen(128)  # connections wait in the backlog until the server accepts them
        self.leading.set()
        config = uvicorn.Config(_Listener(app), lifespan="off", log_level="warning", access_log=False,
                                proxy_headers=False, timeout_graceful_shutdown=2)
        self._server = _Quiet(config)
        log.info("media_process", pid=os.getpid())
        await self._server.serve(sockets=[sock])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            if self._server is None:
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, 5)
        if self._fd is not None:
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def forward(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Send this request to the media process and its answer back."""
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > MAX_BODY:
                await _answer(send, 413, {"detail": "request body too large"})
                return
            if not message.get("more_body"):
                break
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]
                   if k.decode("latin-1").lower() not in HOP_BY_HOP]
        host = next((v for k, v in scope["headers"] if k == b"host"), b"localhost").decode("latin-1")
        headers.append(("host", host))
        headers.append((FORWARDED, json.dumps({"client": scope.get("client"), "scheme": scope.get("scheme", "http"),
                                                "server": scope.get("server")})))
        path = scope.get("raw_path") or scope["path"].encode()
        target = path.decode("latin-1") + (("?" + scope["query_string"].decode("latin-1"))
                                           if scope.get("query_string") else "")
        assert self._client is not None
        try:
            request = self._client.build_request(scope["method"], target, headers=headers, content=bytes(body))
            response = await self._client.send(request, stream=True)
        except httpx.TransportError as exc:
            log.warning("media_process_unreachable", error=str(exc))
            await _answer(send, 503, {"detail": "the process that relays browser calls is not reachable yet; "
                                                "try again in a moment"}, retry=True)
            return
        try:
            raw = [(k.lower(), v) for k, v in response.headers.raw
                   if k.lower().decode("latin-1") not in HOP_BY_HOP]
            content = b"".join([chunk async for chunk in response.aiter_raw()])
        finally:
            await response.aclose()
        raw.append((b"content-length", str(len(content)).encode()))
        await send({"type": "http.response.start", "status": response.status_code, "headers": raw})
        await send({"type": "http.response.body", "body": content})


class _Listener:
    """The media process's Unix socket listener: the app, with the original client restored."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope = dict(scope)
            headers = []
            for k, v in scope["headers"]:
                if k == FORWARDED.encode():
                    with contextlib.suppress(ValueError, TypeError):
                        original = json.loads(v)
                        scope["client"] = tuple(original["client"]) if original.get("client") else None
                        scope["scheme"] = original.get("scheme") or "http"
                        if original.get("server"):
                            scope["server"] = tuple(original["server"])
                    continue
                headers.append((k, v))
            scope["headers"] = headers
            scope["threadline.forwarded"] = True
        await self.app(scope, receive, send)


async def _answer(send: Any, status: int, body: dict[str, Any], *, retry: bool = False) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    if retry:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


class MediaForward:
    """Middleware: a browser call's media request reaching a process that is not the media process goes
    to the media process."""

    def __init__(self, app: ASGIApp, media: MediaProcess) -> None:
        self.app = app
        self.media = media

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if (self.media.here or scope["type"] != "http" or scope.get("threadline.forwarded")
                or not forwarded(scope)):
            await self.app(scope, receive, send)
            return
        await self.media.forward(scope, receive, send)
