"""Build adapter objects for channel instances (config decrypted, shared HTTP client injected)."""

from __future__ import annotations

import httpx

from threadline.actions.channels import load_config
from threadline.channels.base import ChannelAdapter
from threadline.channels.registry import get_adapter_class
from threadline.db.models import ChannelInstanceRow
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
