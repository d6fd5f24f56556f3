"""The adapter factory builds a channel's adapter (config decrypted and validated) once per config,
also when a public base URL and a file-link key are set (every inbound webhook asks for it)."""

from __future__ import annotations

import httpx

from threadline.adapters import AdapterFactory
from threadline.db.models import ChannelInstanceRow
from threadline.files.links import link_key
from threadline.security import SecretBox


async def test_an_adapter_is_built_once_per_config_with_a_public_url_and_a_link_key() -> None:
    box = SecretBox("a-test-secret-key-that-is-long-enough-0123456789")
    async with httpx.AsyncClient() as http:
        factory = AdapterFactory(box, http, "https://desk.example.com/", link_key("k" * 32))
        row = ChannelInstanceRow(id=7, kind="api", key="hookkey", name="API", enabled=True,
                                 config_encrypted=box.encrypt({"secret": "s" * 24}))
        first = factory.for_row(row)
        assert first.hook_url == "https://desk.example.com/hooks/hookkey"
        assert factory.for_row(row) is first
        row.config_encrypted = box.encrypt({"secret": "t" * 24})  # a changed config: a new adapter
        second = factory.for_row(row)
        assert second is not first and factory.for_row(row) is second
