"""Canned responses: saved replies agents insert with ``/shortcut``. Admins manage them."""

from __future__ import annotations

import re

from sqlalchemy.ext.asyncio import AsyncSession

from threadline.db.models import CannedResponseRow
from threadline.db.repos import desk as repo
from threadline.domain.access import Actor
from threadline.domain.errors import Conflict, NotFound, ValidationFailed
from threadline.domain.messages import MAX_TEXT
from threadline.domain.users import Role

SHORTCUT_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,39}$")


def _shortcut(value: str) -> str:
    key = value.strip().lstrip("/").lower()
    if not SHORTCUT_RE.match(key):
        raise ValidationFailed("a shortcut is 1-40 of a-z 0-9 _ - (typed as /shortcut)", field="shortcut")
    return key


def _text(value: str) -> str:
    text = value.strip()
    if not text:
        raise ValidationFailed("a canned response needs text", field="text")
    if len(text) > MAX_TEXT:
        raise ValidationFailed(f"a canned response is at most {MAX_TEXT} characters", field="text")
    return text


async def create_canned(session: AsyncSession, actor: Actor, *, shortcut: str, text: str, title: str = ""
                        ) -> CannedResponseRow:
    actor.require(Role.ADMIN, "manage canned responses")
    key = _shortcut(shortcut)
    if await repo.get_canned_by_shortcut(session, key) is not None:
        raise Conflict(f"the shortcut /{key} is taken", field="shortcut")
    row = CannedResponseRow(shortcut=key, title=title.strip()[:200], text=_text(text), created_by=actor.user_id)
    session.add(row)
    await session.flush()
    return row


async def update_canned(session: AsyncSession, actor: Actor, canned_id: int, *, shortcut: str | None = None,
                        text: str | None = None, title: str | None = None) -> CannedResponseRow:
    actor.require(Role.ADMIN, "manage canned responses")
    row = await repo.get_canned(session, canned_id)
    if row is None:
        raise NotFound(f"canned response {canned_id} does not exist")
    if shortcut is not None:
        key = _shortcut(shortcut)
        other = await repo.get_canned_by_shortcut(session, key)
        if other is not None and other.id != row.id:
            raise Conflict(f"the shortcut /{key} is taken", field="shortcut")
        row.shortcut = key
    if text is not None:
        row.text = _text(text)
    if title is not None:
        row.title = title.strip()[:200]
    await session.flush()
    return row


async def delete_canned(session: AsyncSession, actor: Actor, canned_id: int) -> None:
    actor.require(Role.ADMIN, "manage canned responses")
    row = await repo.get_canned(session, canned_id)
    if row is None:
        raise NotFound(f"canned response {canned_id} does not exist")
    await repo.delete_canned(session, row)
    await session.flush()
