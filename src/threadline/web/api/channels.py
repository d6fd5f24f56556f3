"""Channel instances. Everyone may list them (the desk shows channel names); only admins see the
configuration (secrets masked) and the inbound URL, and only admins change them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from threadline.actions import channels as channel_actions
from threadline.channels.registry import adapters, get_adapter_class
from threadline.db.models import ChannelInstanceRow
from threadline.db.repos import channels as repo
from threadline.domain.errors import NotFound
from threadline.queries.channels import (
    ChannelTestOut,
    changed_fields,
    check_channel_settings,
    check_destinations,
)
from threadline.security import SecretBox
from threadline.web.api.schemas import ChannelIn, ChannelOut, ChannelUpdate, Id
from threadline.web.deps import AdminActor, CurrentActor, ServicesDep

router = APIRouter(tags=["channels"])


def channel_out(row: ChannelInstanceRow, *, admin: bool, box: SecretBox, base_url: str) -> ChannelOut:
    out = ChannelOut(id=row.id, kind=row.kind, name=row.name, enabled=row.enabled,
                     default_queue_id=row.default_queue_id)
    if admin:
        cls = get_adapter_class(row.kind)
        hint = cls.connect_hint(base_url, row.key) if cls is not None else None
        # the URL the provider calls (a phone line's is under the hook URL: /voice, /cti)
        out.inbound_url = hint.value if hint is not None and not hint.snippet else f"{base_url}/hooks/{row.key}"
        out.config = channel_actions.public_config(channel_actions.load_config(box, row))
        snippet = getattr(get_adapter_class(row.kind), "embed_snippet", None)  # channels embedded in a site
        if snippet is not None:
            out.embed_snippet = snippet(base_url, row.key)
    return out


@router.get("/channel-kinds", summary="Installed channel adapters and the fields their config takes")
async def channel_kinds(actor: AdminActor) -> list[dict[str, object]]:
    return [{"kind": k, "title": cls.title, "config_schema": cls.Config.model_json_schema()}
            for k, cls in sorted(adapters().items())]


class ChannelTestIn(BaseModel):
    kind: str = Field(max_length=40)
    config: dict[str, Any] = Field(default_factory=dict)
    channel_id: Id | None = Field(default=None, description="Test changes to this channel: unset or "
                                   "'********' fields keep their saved values")


@router.post("/channels/test", response_model=ChannelTestOut,
             summary="Test a channel's settings (e.g. SMTP and IMAP logins) before saving them")
async def test_channel(body: ChannelTestIn, actor: AdminActor, services: ServicesDep) -> ChannelTestOut:
    return await check_channel_settings(services, body.kind, dict(body.config), body.channel_id)


@router.get("/channels", response_model=list[ChannelOut])
async def list_channels(actor: CurrentActor, services: ServicesDep) -> list[ChannelOut]:
    async with services.db.transaction(write=False) as session:
        rows = await repo.list_channels(session)
    admin = actor.role.value == "admin"
    return [channel_out(r, admin=admin, box=services.box, base_url=services.settings.public_base_url) for r in rows]


@router.post("/channels", response_model=ChannelOut, status_code=201)
async def create_channel(body: ChannelIn, actor: AdminActor, services: ServicesDep) -> ChannelOut:
    cls = get_adapter_class(body.kind)
    if cls is not None:  # an unknown kind is refused by the action, naming the installed ones
        await check_destinations(services, cls, channel_actions.validate_config(cls, body.config))
    async with services.db.transaction(write=True) as session:
        row = await channel_actions.create_channel(session, services.box, **body.model_dump())
    return channel_out(row, admin=True, box=services.box, base_url=services.settings.public_base_url)


@router.get("/channels/{channel_id}", response_model=ChannelOut)
async def get_channel(channel_id: Id, actor: CurrentActor, services: ServicesDep) -> ChannelOut:
    async with services.db.transaction(write=False) as session:
        row = await repo.get_channel(session, channel_id)
    if row is None:
        raise NotFound(f"channel {channel_id} does not exist")
    return channel_out(row, admin=actor.role.value == "admin", box=services.box,
                       base_url=services.settings.public_base_url)


@router.patch("/channels/{channel_id}", response_model=ChannelOut)
async def update_channel(channel_id: Id, body: ChannelUpdate, actor: AdminActor, services: ServicesDep
                         ) -> ChannelOut:
    if body.config is not None:  # new or changed destinations must be public addresses (outside the transaction)
        async with services.db.transaction(write=False) as session:
            row = await repo.get_channel(session, channel_id)
        cls = get_adapter_class(row.kind) if row is not None else None
        if row is not None and cls is not None:
            saved = channel_actions.dump_config(channel_actions.load_config(services.box, row))
            model = channel_actions.with_saved_secrets(cls, saved, body.config)
            await check_destinations(services, cls, model, changed_fields(saved, model))
    async with services.db.transaction(write=True) as session:
        row = await channel_actions.update_channel(session, services.box, channel_id,
                                                   **body.model_dump(exclude_unset=True))
    return channel_out(row, admin=True, box=services.box, base_url=services.settings.public_base_url)
