"""Expiring, signed links to a stored file, for providers that fetch outbound media by URL (Twilio MMS and
WhatsApp): ``{hook_url}/media/{attachment_id}?expires=<unix>&signature=<hex>``. The signature is an
HMAC-SHA256, with a key derived from the instance secret, over the channel's hook key, the attachment id
and the expiry, so a link works for one file, through one channel, for a limited time."""

from __future__ import annotations

import hashlib
import hmac

ATTACHMENT_URL = "/api/v1/attachments/"
TTL_SECONDS = 3600


def link_key(secret_key: str) -> bytes:
    return hmac.new(secret_key.encode(), b"threadline:file-links:v1", hashlib.sha256).digest()


def signature(key: bytes, hook_key: str, attachment_id: str, expires: int) -> str:
    return hmac.new(key, f"{hook_key}/{attachment_id}/{expires}".encode(), hashlib.sha256).hexdigest()


def signed_link(key: bytes, hook_url: str, attachment_url: str, now: float, ttl: int = TTL_SECONDS) -> str | None:
    """The public link for one of our ``/api/v1/attachments/{id}`` URLs, or None for anything else."""
    if not hook_url or not attachment_url.startswith(ATTACHMENT_URL):
        return None
    attachment_id = attachment_url[len(ATTACHMENT_URL):]
    hook_key = hook_url.rsplit("/hooks/", 1)[-1]
    expires = int(now) + ttl
    return f"{hook_url}/media/{attachment_id}?expires={expires}&signature={signature(key, hook_key, attachment_id, expires)}"


def link_valid(key: bytes, hook_key: str, attachment_id: str, expires: str, sig: str, now: float) -> bool:
    if not expires.isdigit() or int(expires) < now:
        return False
    return hmac.compare_digest(signature(key, hook_key, attachment_id, int(expires)), sig)
