"""Store files that arrive with messages (email attachments, chat uploads) and describe them for messages.

The bytes go to the FileStore first (content-addressed, idempotent); the metadata row is written in the
caller's transaction. A message's ``attachments`` entries point at ``/api/v1/attachments/{id}``, which
only people who may see the conversation can download.
"""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from threadline.db.models import AttachmentRow
from threadline.db.repos import files as repo
from threadline.domain.errors import ValidationFailed
from threadline.files.store import FileStore

MAX_NAME = 255


def describe(row: AttachmentRow) -> dict[str, Any]:
    """The entry a message keeps in its ``attachments`` list."""
    return {"url": f"/api/v1/attachments/{row.id}", "content_type": row.content_type, "name": row.name,
            "size": row.size}


async def store_attachment(session: AsyncSession, store: FileStore, data: bytes, *, name: str, content_type: str,
                           conversation_id: int | None = None, max_bytes: int | None = None) -> AttachmentRow:
    if max_bytes is not None and len(data) > max_bytes:
        raise ValidationFailed(f"{name or 'the file'} is {len(data)} bytes; the limit is {max_bytes}",
                               field="attachments")
    sha = store.put(data)
    clean = "".join(c for c in (name or "file") if c.isprintable() and c not in '/\\"')[:MAX_NAME] or "file"
    row = AttachmentRow(id=secrets.token_urlsafe(18), sha256=sha, name=clean,
                        content_type=(content_type or "application/octet-stream")[:255].lower(), size=len(data),
                        conversation_id=conversation_id)
    session.add(row)
    await session.flush()
    return row


async def attach(session: AsyncSession, ids: list[str], conversation_id: int) -> None:
    """Tie uploaded files (stored before their message existed) to the conversation that now holds them."""
    await repo.attach_to_conversation(session, ids, conversation_id)
