"""What desk and admin pages share: templates and their filters, who is signed in, page guards."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from threadline.channels.registry import get_adapter_class
from threadline.domain.access import Actor
from threadline.domain.errors import DomainError
from threadline.services import Services
from threadline.web.deps import SESSION_COOKIE, authenticate
from threadline.web.limits import DESK_FILE_BYTES, DESK_FILES, DESK_REPLY_FILES_BYTES

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
OFFERS_JS = HERE / "static" / "offers.js"

AVATAR_COLOURS = ["#4f46e5", "#0891b2", "#059669", "#d97706", "#dc2626", "#7c3aed", "#db2777", "#2563eb",
                  "#0d9488", "#ea580c"]


def initials(name: str | None) -> str:
    parts = [p for p in (name or "").replace(".", " ").split() if p]
    if not parts:
        return "?"
    return (parts[0][0] + (parts[-1][0] if len(parts) > 1 else "")).upper()


def avatar_colour(key: object) -> str:
    digest = hashlib.sha1(str(key).encode()).digest()
    return AVATAR_COLOURS[digest[0] % len(AVATAR_COLOURS)]


def avatar_class(key: object) -> str:
    """The avatar's colour as a class (``av-0``…, desk.css): pages carry no inline styles (CSP)."""
    return f"av-{AVATAR_COLOURS.index(avatar_colour(key))}"


def ago(value: datetime | None, now: datetime | None = None) -> str:
    if value is None:
        return ""
    now = now or datetime.now(UTC)
    secs = max(0, int((now - value).total_seconds()))
    if secs < 60:
        return "now"
    if secs < 3600:
        return f"{secs // 60}m"
    if secs < 86400:
        return f"{secs // 3600}h"
    if secs < 86400 * 7:
        return f"{secs // 86400}d"
    return value.strftime("%d %b")


def safe_url(url: str | None) -> str:
    """Links from messages: only http(s) and our own download paths; anything else becomes '#'."""
    u = (url or "").strip()
    if u.startswith("/api/v1/attachments/") or u.lower().startswith(("https://", "http://")):
        return u
    return "#"


def filesize(n: int | None) -> str:
    if not n:
        return ""
    for unit in ("B", "KB", "MB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n = n / 1024  # type: ignore[assignment]
    return f"{n:.1f} GB"


def duration(seconds: float | None) -> str:
    """A wait as agents read it: 42s, 3m 07s, 1h 05m."""
    if seconds is None:
        return ""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {(s % 3600) // 60:02d}m"


def about(seconds: float | None) -> str:
    """An estimate, rounded as one: under a minute, ~7 min, ~1h 20m."""
    if seconds is None:
        return ""
    m = round(max(0.0, seconds) / 60)
    if m < 1:
        return "under a minute"
    return f"~{m} min" if m < 60 else f"~{m // 60}h {m % 60:02d}m"


def countdown(seconds: float | None) -> str:
    """Time left as a clock: 0:42, 12:05."""
    s = max(0, int(-(-(seconds or 0) // 1)))  # round up: "0:01" until it is really over
    return f"{s // 60}:{s % 60:02d}"


def icon(name: str, cls: str = "") -> Markup:
    """An inline SVG from the sprite in base.html (names are ours, never user input)."""
    return Markup(f'<svg class="ic {cls}" aria-hidden="true"><use href="#i-{name}"/></svg>')


WORK_CLASS_ICONS = {"voice": "phone", "email": "mail"}  # a routing task whose channel is gone: its class


def channel_icon_name(kind: str) -> str:
    """The icon a channel kind's adapter asks for (``ChannelAdapter.icon``); a routing class otherwise."""
    cls = get_adapter_class(kind)
    return cls.icon if cls is not None else WORK_CLASS_ICONS.get(kind, "chat")


templates.env.filters.update(initials=initials, avatar=avatar_class, ago=ago, safe_url=safe_url,
                             filesize=filesize, duration=duration, countdown=countdown,
                             about=about)
templates.env.globals.update(icon=icon, channel_icon_name=channel_icon_name, offers_js=lambda: OFFERS_JS.exists(),
                             upload={"file": DESK_FILE_BYTES, "total": DESK_REPLY_FILES_BYTES, "files": DESK_FILES})


async def actor_or_none(request: Request, services: Services) -> tuple[Actor | None, str | None]:
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None, None
    try:
        return await authenticate(services, cookie=cookie)
    except DomainError:
        return None, None


def is_htmx(request: Request, target: str | None = None) -> bool:
    if request.headers.get("hx-request") != "true" or request.headers.get("hx-history-restore-request") == "true":
        return False
    return target is None or request.headers.get("hx-target") == target


def render(request: Request, name: str, ctx: dict[str, Any], status_code: int = 200):  # type: ignore[no-untyped-def]
    return templates.TemplateResponse(request, name, ctx, status_code=status_code)
