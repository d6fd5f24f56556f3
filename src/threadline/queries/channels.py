"""Checking a channel's settings before they are saved: destinations must be public addresses (SSRF),
and the adapter tries them against the provider (logins, tokens). The API (``/api/v1/channels``) and
the admin page's "Test connection" button and forms call these."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from pydantic import BaseModel, Field

from threadline import net
from threadline.actions import channels as channel_actions
from threadline.channels.base import ChannelAdapter, ChannelError
from threadline.channels.registry import get_adapter_class
from threadline.db.repos import channels as repo
from threadline.domain.errors import NotFound, ValidationFailed
from threadline.services import Services


class ChannelTestOut(BaseModel):
    ok: bool
    checks: list[str] = Field(default_factory=list, description="What succeeded, e.g. 'SMTP …: logged in'")
    error: str | None = Field(default=None, description="What the server refused, in its own words")


async def check_destinations(services: Services, cls: type[ChannelAdapter], model: BaseModel,
                             only: set[str] | None = None) -> None:
    """Refuse provider URLs and mail hosts that are, or resolve to, private, loopback or link-local
    addresses (the outgoing webhooks' rule), unless THREADLINE_CHANNELS_ALLOW_PRIVATE is set; ``only``
    limits the check to these fields (those a save changes)."""
    allow = services.settings.channels_allow_private
    for name in model.__class__.model_fields:
        value = getattr(model, name)
        if not value or not isinstance(value, str) or (only is not None and name not in only):
            continue
        try:
            if name.endswith("_url"):
                await net.check_destination(value, allow_private=allow, who=net.CHANNELS)
            elif name.endswith("_host"):
                port = getattr(model, name[:-len("host")] + "port", 0)
                await net.check_host(value, int(port or 0), allow_private=allow)
        except net.DestinationRefused as exc:
            raise ValidationFailed(f"config.{name}: {exc}", field=f"config.{name}") from None


def changed_fields(before: dict[str, Any], after: BaseModel) -> set[str]:
    now = channel_actions.dump_config(after)
    return {k for k, v in now.items() if before.get(k) != v}


async def check_channel_settings(services: Services, kind: str, config: dict[str, Any], channel_id: int | None = None
                                 ) -> ChannelTestOut:
    """Validate a channel's settings and let its adapter try them against the provider (logins, tokens).
    Used by the API and the admin page's "Test connection" button. Saved secrets left masked are used only
    with the hosts they were saved for, and no setting may point at a private address (SSRF): both are
    checked before anything is sent, and the adapter's HTTP client checks every connection again."""
    cls = get_adapter_class(kind)
    if cls is None:
        raise ValidationFailed(f"unknown channel kind {kind!r}", field="kind")
    if channel_id is not None:
        async with services.db.transaction(write=False) as session:
            row = await repo.get_channel(session, channel_id)
        if row is None or row.kind != kind:
            raise NotFound(f"{kind} channel {channel_id} does not exist")
        saved = channel_actions.dump_config(channel_actions.load_config(services.box, row))
        model = channel_actions.with_saved_secrets(cls, saved, config)
    else:
        model = channel_actions.validate_config(cls, config)
    await check_destinations(services, cls, model)
    async with net.make_client(allow_private=services.settings.channels_allow_private, timeout=60,
                               max_connections=10, who=net.CHANNELS) as http:
        adapter = cls(model, http, scope=str(channel_id or 0))
        try:
            checks = await asyncio.wait_for(adapter.check(), 60)
        except ChannelError as exc:
            return ChannelTestOut(ok=False, error=str(exc))
        except httpx.HTTPError as exc:  # a refused (private) address, a network failure
            return ChannelTestOut(ok=False, error=f"cannot reach the provider: {exc}")
        except TimeoutError:
            return ChannelTestOut(ok=False, error="the server did not answer within 60 seconds")
    return ChannelTestOut(ok=True, checks=list(checks) if isinstance(checks, list) else [])
