"""A small in-process sliding-window rate limiter, keyed per caller: the web chat's visitors (or IPs for new
sessions), the browser calls of the widget, the help center's searches and votes.

Per process: with ``serve --workers N`` a visitor may get up to N times the limit, which is still a
bound on a flood; a shared limiter (Redis) can replace it without changing the endpoints.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Hashable


class RateLimiter:
    def __init__(self, max_keys: int = 100_000) -> None:
        self._hits: dict[Hashable, deque[float]] = {}
        self.max_keys = max_keys

    def allow(self, key: Hashable, limit: int, per_seconds: float = 60.0, now: float | None = None) -> bool:
        """Record one hit for ``key``; False when it already had ``limit`` hits in the window."""
        now = time.monotonic() if now is None else now
        hits = self._hits.get(key)
        if hits is None:
            if len(self._hits) >= self.max_keys:
                self._prune(now, per_seconds)
            hits = self._hits[key] = deque()
        while hits and now - hits[0] >= per_seconds:
            hits.popleft()
        if len(hits) >= limit:
            return False
        hits.append(now)
        return True

    def _prune(self, now: float, per_seconds: float) -> None:
        stale = [k for k, h in self._hits.items() if not h or now - h[-1] >= per_seconds]
        for k in stale:
            del self._hits[k]
        if len(self._hits) >= self.max_keys:  # still full: forget everything rather than grow
            self._hits.clear()
