"""Content-Security-Policy and framing protection for every HTML page (desk, admin, login, errors, the
API docs, the demo shop).

The desk needs nothing inline: scripts and styles come from files (``/static/desk/…``, vendored htmx with
its indicator styles and eval off), the templates carry no ``style=""`` or ``on…=""`` attributes, and
live updates use our own websocket. So the policy is strict: scripts, styles, images, fonts and
connections from this origin only, no plugins, no ``<base>``, forms posting here only, and no framing
by anyone (``frame-ancestors 'none'``, plus ``X-Frame-Options: DENY`` for old browsers). Two pages are
looser, each in one respect: Swagger UI (``/api/docs``) may use inline styles, and the demo shop page
(``/demo``), which plays a customer's site, has its own inline stylesheet and hosts the widget, whose
Shadow DOM brings its styles with it. The widget itself is a script customers load into *their* pages,
never a frame, so none of its endpoints has to be embeddable; ``/widget.js`` and the visitor endpoints
answer JSON or JavaScript and get no page policy. See docs/security.md.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_COMMON = ("default-src 'self'; script-src 'self'; img-src 'self' data: blob:; font-src 'self'; "
           "media-src 'self' blob:; object-src 'none'; base-uri 'none'; form-action 'self'; "
           "frame-ancestors 'none'")
STRICT = f"{_COMMON}; style-src 'self'"
LOOSE_STYLES = f"{_COMMON}; style-src 'self' 'unsafe-inline'"
_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")


def policy_for(path: str, host: str) -> str:
    """The policy of an HTML page at ``path``; ``host`` (the Host header, when well formed) names the
    page's own websocket origin for browsers whose ``'self'`` does not cover ws: and wss:."""
    base = LOOSE_STYLES if path == "/demo" or path.startswith("/api/docs") else STRICT
    sockets = f" ws://{host} wss://{host}" if _HOST.match(host) else ""
    return f"{base}; connect-src 'self'{sockets}"


class SecurityHeaders:
    """Adds the page policy and ``X-Frame-Options: DENY`` to HTML responses (pure ASGI)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                ctype = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                if ctype.startswith(b"text/html"):
                    host = dict(scope.get("headers", [])).get(b"host", b"").decode("latin-1")
                    headers += [(b"content-security-policy", policy_for(scope.get("path", ""), host).encode()),
                                (b"x-frame-options", b"DENY")]
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_wrapper)
