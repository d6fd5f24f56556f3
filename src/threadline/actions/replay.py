"""Provider one-time tokens (replay protection of signed hooks that carry a nonce, such as Mailgun's)."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from threadline.db.repos import plumbing as repo
from threadline.db.types import utcnow


async def accept_nonce(session: AsyncSession, channel_id: int, nonce: str, request_key: str, ttl_seconds: int
                       ) -> bool:
    """True when the token is new, or was seen with the same request (``request_key``, its dedupe key: a
    provider retry, which the inbox then deduplicates); False when it already carried another request."""
    now = utcnow()
    fingerprint = hashlib.sha256(request_key.encode()).hexdigest()
    stored = await repo.remember_nonce(session, channel_id, nonce, fingerprint, now + timedelta(seconds=ttl_seconds),
                                       now)
    return stored == fingerprint
