"""Channel instances at run time: adapter objects (config decrypted, shared HTTP client injected) and
the directory of channels by hook key, which every inbound request reads."""

from __future__ import annotations

import time

import httpx

from threadline.actions.channels import load_config
from threadline.channels.base import ChannelAdapter
from threadline.channels.registry import get_adapter_class
from threadline.db.models import ChannelInstanceRow
from threadline.db.repos import channels as channels_repo
from threadline.db.session import Database
from threadline.security import SecretBox


class AdapterFactory:
    def __init__(self, box: SecretBox, http: httpx.AsyncClient) -> None:
        self.box = box
        self.http = http
        self._cache: dict[tuple[int, str], ChannelAdapter] = {}

    def for_row(self, row: ChannelInstanceRow) -> ChannelAdapter:
        key = (row.id, row.config_encrypted)
        adapter = self._cache.get(key)
        if adapter is None:
            cls = get_adapter_class(row.kind)
            if cls is None:
                raise LookupError(f"channel kind {row.kind!r} is not installed")
            adapter = cls(load_config(self.box, row), self.http, scope=str(row.id))
            self._cache = {k: v for k, v in self._cache.items() if k[0] != row.id}
            self._cache[key] = adapter
        return adapter


class ChannelDirectory:
    """Channel instances by hook key, cached: an inbound request needs its channel before anything
    else, and reading it from the database each time would cost more than storing the request.
    A ``channel.changed`` event (from any process, through the bus) empties the cache; entries also
    expire after ``ttl`` seconds, a safety net for changes made with the database alone."""

    def __init__(self, db: Database, *, ttl: float = 30.0) -> None:
        self.db = db
        self.ttl = ttl
        self._by_key: dict[str, tuple[float, ChannelInstanceRow | None]] = {}

    async def by_key(self, key: str) -> ChannelInstanceRow | None:
        now = time.monotonic()
        hit = self._by_key.get(key)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        async with self.db.transaction(write=False) as session:
            row = await channels_repo.get_channel_by_key(session, key)
        if len(self._by_key) > 10_000:  # unknown keys probed at random must not grow it without bound
            self._by_key.clear()
        self._by_key[key] = (now, row)
        return row

    def invalidate(self) -> None:
        self._by_key.clear()
