"""Pure ASGI middlewares: body size limit (413 problem document), request metrics and safe headers."""

from __future__ import annotations

import json
import re
import time

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from threadline.metrics import HTTP_LATENCY, HTTP_REQUESTS

# Files agents attach in the desk composer: each at most DESK_FILE_BYTES, at most DESK_FILES of them and
# DESK_REPLY_FILES_BYTES in all, so the reply route takes a body that large (plus the form's own bytes);
# every other route keeps THREADLINE_MAX_BODY_BYTES. The composer says the same limits.
DESK_FILE_BYTES = 10_000_000
DESK_FILES = 10
DESK_REPLY_FILES_BYTES = 25_000_000
DESK_REPLY_BODY_BYTES = DESK_REPLY_FILES_BYTES + 1_000_000
UPLOAD_ROUTES = {r"/desk/conversations/\d{1,10}/reply": DESK_REPLY_BODY_BYTES}  # integrations add theirs


class BodyTooLarge(HTTPException):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body is larger than {max_bytes} bytes")


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int, larger: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # paths allowed a bigger body (file uploads), as regular expressions matching the whole path: the
        # core's (UPLOAD_ROUTES) and, added at start, those integrations contribute (``Host.add_routes``)
        self.larger = larger if larger is not None else {}
        self._compiled: dict[str, re.Pattern[str]] = {}

    def limit_for(self, path: str) -> int:
        for pattern, size in list(self.larger.items()):
            compiled = self._compiled.get(pattern)
            if compiled is None:
                compiled = self._compiled[pattern] = re.compile(pattern)
            if compiled.fullmatch(path):
                return size
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        seen = 0
        limit = self.limit_for(scope.get("path", ""))

        async def limited_receive() -> Message:
            nonlocal seen
            if declared is not None and declared.isdigit() and int(declared) > limit:
                raise BodyTooLarge(limit)
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited_receive, send)


class HeaderLimit:
    """431 (a problem document) for a request whose headers are too many or too big altogether, before
    anything else reads them; a websocket handshake is closed (1008). The server's own parser has a
    hard cap too (uvicorn's ``h11_max_incomplete_event_size``, llhttp's); this is the policy."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_count: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_count = max_count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            headers = scope.get("headers", [])
            size = sum(len(k) + len(v) + 4 for k, v in headers)
            if len(headers) > self.max_count or size > self.max_bytes:
                detail = (f"too many request headers ({len(headers)}; at most {self.max_count})"
                          if len(headers) > self.max_count else
                          f"the request headers are {size} bytes; at most {self.max_bytes}")
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})
                    return
                body = json.dumps({"type": "/problems/headers_too_large", "title": "Request headers too large",
                                   "status": 431, "detail": detail}).encode()
                await send({"type": "http.response.start", "status": 431, "headers": [
                    (b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close")]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


class RequestMetrics:
    """Count and time requests per route template; add security headers to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers += [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin")]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            HTTP_REQUESTS.labels(scope["method"], path, str(status)).inc()
            HTTP_LATENCY.labels(scope["method"], path).observe(time.perf_counter() - start)
