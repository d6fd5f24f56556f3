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
from threadline.files.links import signed_link
from threadline.security import SecretBox


class AdapterFactory:
    def __init__(self, box: SecretBox, http: httpx.AsyncClient, public_base_url: str = "",
                 link_key: bytes | None = None) -> None:
        self.box = box
        self.http = http
        self.public_base_url = public_base_url.rstrip("/")
        self.link_key = link_key  # signs public links to stored files (files/links.py)
        self._cache: dict[tuple[int, str], ChannelAdapter] = {}

    def for_row(self, row: ChannelInstanceRow) -> ChannelAdapter:
        key = (row.id, row.config_encrypted)
        adapter = self._cache.get(key)
        if adapter is None:
            cls = get_adapter_class(row.kind)
            if cls is None:
                raise LookupError(f"channel kind {row.kind!r} is not installed")
            adapter = cls(load_config(self.box, row), self.http, scope=str(row.id))
            if self.public_base_url:
                adapter.hook_url = hook_url = f"{self.public_base_url}/hooks/{row.key}"
                if self.link_key is not None:
                    lk = self.link_key  # (not ``key``: that is the cache key, stored below)
                    adapter.file_url = lambda url: signed_link(lk, hook_url, url, time.time())
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
        self._generation = 0

    async def by_key(self, key: str) -> ChannelInstanceRow | None:
        now = time.monotonic()
        hit = self._by_key.get(key)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        generation = self._generation
        async with self.db.transaction(write=False) as session:
            row = await channels_repo.get_channel_by_key(session, key)
        if generation != self._generation:  # changed while we read: do not cache what may be stale
            return row
        if len(self._by_key) > 10_000:  # unknown keys probed at random must not grow it without bound
            self._by_key.clear()
        self._by_key[key] = (now, row)
        return row

    def invalidate(self) -> None:
        self._generation += 1
        self._by_key.clear()
