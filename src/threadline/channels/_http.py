"""Small helpers the messaging adapters share: one provider call with transport errors mapped to
``RetryableSendError``, and the Retry-After header read as seconds."""

from __future__ import annotations

from typing import Any

import httpx

from threadline.channels.base import PermanentSendError, RetryableSendError


def retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("retry-after", "")
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


async def call(http: httpx.AsyncClient, method: str, url: str, *, provider: str, timeout: float = 15.0,
               **kwargs: Any) -> httpx.Response:
    """Send one request; a timeout or connection failure is retryable (the provider never saw it, or
    its answer was lost: provider ids make the retry safe where the provider supports them)."""
    try:
        return await http.request(method, url, timeout=timeout, **kwargs)
    except httpx.TimeoutException:
        raise RetryableSendError(f"{provider} did not answer in time") from None
    except httpx.HTTPError as exc:
        raise RetryableSendError(f"cannot reach {provider}: {exc.__class__.__name__}") from None


def json_or_empty(resp: httpx.Response) -> dict[str, Any]:
    try:
        data = resp.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


async def fetch(http: httpx.AsyncClient, url: str, *, provider: str, max_bytes: int, **kwargs: Any
                ) -> tuple[bytes, str]:
    """GET a media file (following the provider's redirects to its CDN), refusing more than ``max_bytes``."""
    try:
        async with http.stream("GET", url, follow_redirects=True, timeout=60.0, **kwargs) as resp:
            if resp.status_code == 429 or resp.status_code >= 500:
                raise RetryableSendError(f"{provider} answered {resp.status_code} for the media",
                                         retry_after=retry_after(resp))
            if resp.status_code >= 400:
                raise PermanentSendError(f"{provider} refused the media download: HTTP {resp.status_code}")
            declared = resp.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise PermanentSendError(f"the file is {declared} bytes; the limit is {max_bytes}")
            chunks, size = [], 0
            async for chunk in resp.aiter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise PermanentSendError(f"the file is larger than {max_bytes} bytes")
                chunks.append(chunk)
            ctype = resp.headers.get("content-type", "application/octet-stream").split(";")[0].strip()
            return b"".join(chunks), ctype
    except httpx.TimeoutException:
        raise RetryableSendError(f"{provider} did not send the media in time") from None
    except httpx.HTTPError as exc:
        raise RetryableSendError(f"cannot reach {provider} for the media: {exc.__class__.__name__}") from None
