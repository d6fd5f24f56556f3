"""A small keep-alive HTTP/1.1 load generator over asyncio streams (cheaper per request than an HTTP
library, so the client is not what we measure)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class Conn:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def post(self, path: str, body: bytes, headers: dict[str, str], method: str = "POST") -> int:
        assert self.reader and self.writer
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value.strip())
        if length:
            await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        if self.writer:
            self.writer.close()


Path = str | Callable[[int], str]


def _path(path: Path, i: int) -> str:
    return path if isinstance(path, str) else path(i)


async def closed_loop(host: str, port: int, path: Path, make: Callable[[int], tuple[bytes, dict[str, str]]],
                      total: int, concurrency: int, latencies: dict[int, float] | None = None
                      ) -> tuple[float, dict[int, int]]:
    """Send ``total`` requests as fast as ``concurrency`` connections allow; return (seconds, statuses).
    ``path`` is one path or each request's (``path(i)``); ``latencies`` gets each request's round trip (ms)."""
    conns = [Conn(host, port) for _ in range(concurrency)]
    await asyncio.gather(*(c.open() for c in conns))
    counter = iter(range(total))
    statuses: dict[int, int] = {}

    async def worker(c: Conn) -> None:
        for i in counter:
            body, headers = make(i)
            t0 = time.perf_counter()
            st = await c.post(_path(path, i), body, headers)
            if latencies is not None:
                latencies[i] = (time.perf_counter() - t0) * 1000
            statuses[st] = statuses.get(st, 0) + 1

    start = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    elapsed = time.perf_counter() - start
    for c in conns:
        c.close()
    return elapsed, statuses


async def open_loop(host: str, port: int, path: Path, make: Callable[[int], tuple[bytes, dict[str, str]]],
                    rate: float, seconds: float, concurrency: int = 64, latencies: dict[int, float] | None = None,
                    method: str = "POST") -> dict[int, int]:
    """Send at a fixed rate (requests per second) for ``seconds``, whatever the server's speed.
    ``latencies`` gets each request's time (ms) from when it was due (so waiting for a free connection
    counts: no coordinated omission) to its answer."""
    conns = [Conn(host, port) for _ in range(concurrency)]
    await asyncio.gather(*(c.open() for c in conns))
    free: asyncio.Queue[Conn] = asyncio.Queue()
    for c in conns:
        free.put_nowait(c)
    statuses: dict[int, int] = {}
    tasks = []

    async def one(i: int, due: float) -> None:
        c = await free.get()
        try:
            body, headers = make(i)
            st = await c.post(_path(path, i), body, headers, method)
            if latencies is not None:
                latencies[i] = (time.perf_counter() - due) * 1000
            statuses[st] = statuses.get(st, 0) + 1
        finally:
            free.put_nowait(c)

    start = time.perf_counter()
    n = int(rate * seconds)
    for i in range(n):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    for c in conns:
        c.close()
    return statuses


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]
