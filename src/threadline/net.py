"""Guarded outgoing HTTP: a client that refuses private destinations at connection time, and one POST.
Used by outgoing webhooks (``threadline/webhooks``) and the channel settings check (``web/api/channels.py``).

SSRF protection: an admin types the URL, so without a check a webhook could reach the database, the cloud
metadata service (169.254.169.254) or anything on the intranet. Every connection resolves the host
itself, refuses it when *any* address is not public (``domain.network.address_is_public``) and connects
to a checked address, so a DNS answer that changes between the check and the connection (rebinding)
cannot slip through. TLS still verifies the certificate against the host name. Redirects are not
followed (a 3xx is a failed attempt). ``THREADLINE_WEBHOOKS_ALLOW_PRIVATE=true`` lifts the check for
self-hosted intranets (and tests on loopback).
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import httpcore
import httpx

from threadline.domain.network import address_is_public, host_literal, parse_retry_after, url_problem

RESPONSE_KEEP = 1000  # characters of the receiver's answer kept for the delivery log
RESOLVE_TIMEOUT = 5.0


class DestinationRefused(Exception):
    """The URL's host is, or resolves to, an address webhooks may not reach."""


async def resolve(host: str, port: int) -> list[str]:
    """The addresses of ``host`` (an IP literal is its own address)."""
    literal = host_literal(host)
    if literal is not None:
        return [str(literal)]
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        raise DestinationRefused(f"cannot resolve {host}: {exc or 'timed out'}") from None
    seen: list[str] = []
    for info in infos:
        addr = str(info[4][0]).split("%", 1)[0]  # drop an IPv6 zone
        if addr not in seen:
            seen.append(addr)
    if not seen:
        raise DestinationRefused(f"{host} has no address")
    return seen


WEBHOOKS = ("webhooks", "THREADLINE_WEBHOOKS_ALLOW_PRIVATE")
CHANNELS = ("channel settings", "THREADLINE_CHANNELS_ALLOW_PRIVATE")


def refuse_private(host: str, addresses: Iterable[str], who: tuple[str, str] = WEBHOOKS) -> None:
    bad = [a for a in addresses if not address_is_public(a)]
    if bad:
        where = host if host_literal(host) is not None else f"{host} ({', '.join(bad)})"
        raise DestinationRefused(f"{where} is a private, loopback or link-local address; {who[0]} may only "
                                 f"reach public addresses ({who[1]}=true allows others)")


async def check_destination(url: str, *, allow_private: bool, who: tuple[str, str] = WEBHOOKS) -> None:
    """Refuse a URL that is malformed or whose host is (or resolves to) a non-public address."""
    problem = url_problem(url)
    if problem:
        raise DestinationRefused(problem)
    if allow_private:
        return
    parts = httpx.URL(url)
    host = parts.host
    refuse_private(host, await resolve(host, parts.port or (443 if parts.scheme == "https" else 80)), who)


async def check_host(host: str, port: int, *, allow_private: bool, who: tuple[str, str] = CHANNELS) -> None:
    """Refuse a host name (an SMTP or IMAP server) that is, or resolves to, a non-public address."""
    if not allow_private:
        refuse_private(host, await resolve(host, port), who)


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves, checks and connects to a checked address; TLS is started by httpcore with the host name."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend, allow_private: bool,
                 who: tuple[str, str] = WEBHOOKS) -> None:
        self.inner = inner
        self.allow_private = allow_private
        self.who = who

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        if self.allow_private:
            return await self.inner.connect_tcp(host, port, timeout=timeout, local_address=local_address,
                                                socket_options=socket_options)
        try:
            addresses = await resolve(host, port)
            refuse_private(host, addresses, self.who)
        except DestinationRefused as exc:
            raise httpcore.ConnectError(str(exc)) from None
        last: Exception | None = None
        for addr in addresses:
            try:
                return await self.inner.connect_tcp(addr, port, timeout=timeout, local_address=local_address,
                                                    socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks do not connect to unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()  # certificates verified; built once (it costs ~20 ms)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with its connection pool built on the guarded network backend."""

    def __init__(self, *, allow_private: bool, limits: httpx.Limits, who: tuple[str, str] = WEBHOOKS) -> None:
        # Not super().__init__(): it would build a pool (and an SSL context) only to be replaced.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=_ssl_context(), max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections, keepalive_expiry=limits.keepalive_expiry,
            network_backend=_GuardedBackend(httpcore.AnyIOBackend(), allow_private, who))


def make_client(*, allow_private: bool, timeout: float, max_connections: int = 50,
                who: tuple[str, str] = WEBHOOKS) -> httpx.AsyncClient:
    """The webhooks' own client (also the channel settings test's): no environment proxies, no redirects,
    the guarded transport."""
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=20)
    return httpx.AsyncClient(transport=GuardedTransport(allow_private=allow_private, limits=limits, who=who),
                             timeout=httpx.Timeout(timeout), follow_redirects=False, trust_env=False)


class Answer:
    """What a POST gave: the status code (None: no answer) and why it failed, if it did."""

    __slots__ = ("status_code", "error", "response", "duration_ms", "retry_after")

    def __init__(self, status_code: int | None, error: str | None, response: str | None, duration_ms: int,
                 retry_after: float | None) -> None:
        self.status_code = status_code
        self.error = error
        self.response = response
        self.duration_ms = duration_ms
        self.retry_after = retry_after


async def post(client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str], *, timeout: float,
               now: datetime) -> Answer:
    """POST once. Reads at most ``RESPONSE_KEEP`` characters of the answer; never raises for the network."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):  # the whole exchange, not only each read
            request = client.build_request("POST", url, content=body, headers=headers)
            response = await client.send(request, stream=True)
            try:
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    chunks.append(chunk)
                    size += len(chunk)
                    if size >= RESPONSE_KEEP:
                        break
            finally:
                await response.aclose()
    except TimeoutError:
        return Answer(None, f"no answer within {timeout:g} s", None, _ms(started), None)
    except httpx.HTTPError as exc:
        reason = str(exc) or exc.__class__.__name__
        return Answer(None, f"{exc.__class__.__name__}: {reason}"[:500], None, _ms(started), None)
    text = b"".join(chunks)[:RESPONSE_KEEP].decode("utf-8", "replace")
    code = response.status_code
    error = None if 200 <= code < 300 else f"the receiver answered {code}"
    retry_after = parse_retry_after(response.headers.get("retry-after"), now) if code in (429, 503) else None
    return Answer(code, error, text or None, _ms(started), retry_after)


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
