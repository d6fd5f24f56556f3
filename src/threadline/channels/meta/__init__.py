"""What Meta's three messaging products share (WhatsApp Cloud API, Messenger, Instagram): the
``X-Hub-Signature-256`` check over the raw body, the ``hub.challenge`` subscription handshake, and Graph
API errors mapped to retryable or permanent."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

from threadline.channels._http import json_or_empty, retry_after
from threadline.channels.base import Ack, InvalidSignature, PermanentSendError, RawRequest, RetryableSendError

# Graph error codes that pass with time: unknown/temporary, rate limits, WhatsApp throughput limits.
RETRYABLE_CODES = {1, 2, 4, 17, 32, 341, 613, 80007, 130429, 131000, 131016, 131056, 133004}


def verify_hub_signature(app_secret: str, req: RawRequest) -> None:
    """``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>`` (the raw bytes: re-serialised
    JSON would not match, Meta escapes non-ASCII as \\uXXXX)."""
    header = req.header("x-hub-signature-256")
    if not header.startswith("sha256="):
        raise InvalidSignature("missing X-Hub-Signature-256 header")
    expected = hmac.new(app_secret.encode(), req.body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, header[7:].strip().lower()):
        raise InvalidSignature("X-Hub-Signature-256 does not match the body (check the app secret)")


def hub_challenge(verify_token: str, req: RawRequest) -> Ack:
    """Answer Meta's ``GET ?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`` with the challenge."""
    query = dict(parse_qsl(urlsplit(req.url).query, keep_blank_values=True))
    if query.get("hub.mode") != "subscribe" or "hub.challenge" not in query:
        raise InvalidSignature("not a hub.mode=subscribe verification request")
    if not hmac.compare_digest(query.get("hub.verify_token", "").encode(), verify_token.encode()):
        raise InvalidSignature("hub.verify_token does not match the channel's verify token")
    return Ack(200, query["hub.challenge"].encode()[:200], "text/plain")


def graph_error(resp: httpx.Response, product: str) -> Exception:
    """The send error for a non-2xx Graph answer: retryable for 429, 5xx and rate-limit codes."""
    err: dict[str, Any] = json_or_empty(resp).get("error") or {}
    if not isinstance(err, dict):
        err = {}
    code = err.get("code")
    details = ""
    data = err.get("error_data")
    if isinstance(data, dict) and data.get("details"):
        details = f" – {data['details']}"
    text = f"{product} error {code}: {err.get('message') or err.get('title') or f'HTTP {resp.status_code}'}{details}"
    if code is None:
        text = f"{product} answered HTTP {resp.status_code}"
    if resp.status_code == 429 or resp.status_code >= 500 or code in RETRYABLE_CODES:
        return RetryableSendError(text, retry_after=retry_after(resp))
    return PermanentSendError(text)
