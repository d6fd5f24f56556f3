"""Messaging channels: what the composer must know before sending (length, media, SMS segments, the
WhatsApp window, opt-outs), approved message templates, and sending one with its variables."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from threadline.actions import outbound as outbound_actions
from threadline.channels.base import ChannelError
from threadline.db.repos import channels as channels_repo
from threadline.db.repos import messaging as repo
from threadline.domain.errors import NotFound
from threadline.domain.events import MessageView
from threadline.domain.messaging import sms_segments
from threadline.web.api.schemas import Id
from threadline.web.deps import AdminActor, CurrentActor, ServicesDep

router = APIRouter(tags=["messaging"])


class TemplateIn(BaseModel):
    name: str = Field(min_length=1, max_length=200, description="The template's name at the provider")
    language: str = Field(default="en_US", max_length=20)
    body: str = Field(min_length=1, max_length=4096, description="Text with {{1}} or {{name}} variables")
    provider_ref: str | None = Field(default=None, max_length=200,
                                     description="WhatsApp: the template name (default: name); Twilio: Content SID HX…")
    category: str = Field(default="utility", max_length=40)


class TemplateSendIn(BaseModel):
    template_id: Id
    variables: dict[str, str] = Field(default_factory=dict)
    identity_id: Id | None = None


class SegmentsIn(BaseModel):
    text: str = Field(max_length=65_536)


@router.get("/channels/{channel_id}/limits", summary="What the composer must know before sending on a channel: "
            "text length, media, SMS segments of `text`, and for a conversation the reply window and opt-out")
async def limits(channel_id: Id, actor: CurrentActor, services: ServicesDep, text: str = Query("", max_length=65_536),
                 conversation_id: Id | None = None,
                 identity_id: Id | None = Query(None, description="The customer's address the reply goes to "
                                                "(default: the one they last wrote from on this channel)")
                 ) -> dict[str, Any]:
    async with services.db.transaction(write=False) as session:
        return await outbound_actions.composer_limits(session, actor, channel_id, text=text,
                                                      conversation_id=conversation_id, identity_id=identity_id)


@router.post("/messaging/segments", summary="SMS segments of a text (GSM-7 160/153 or UCS-2 70/67 per part)")
async def segments(body: SegmentsIn, actor: CurrentActor) -> dict[str, Any]:
    seg = sms_segments(body.text)
    return {"encoding": seg.encoding, "units": seg.units, "segments": seg.segments, "per_segment": seg.per_segment,
            "remaining": seg.remaining, "non_gsm_characters": list(seg.non_gsm_characters)}


class ConnectOut(BaseModel):
    ok: bool
    checks: list[str] = Field(default_factory=list)
    error: str | None = None


@router.post("/channels/{channel_id}/connect", response_model=ConnectOut,
             summary="Register the channel's hook URL at the provider where its API allows it (Telegram setWebhook)")
async def connect(channel_id: Id, actor: AdminActor, services: ServicesDep) -> ConnectOut:
    async with services.db.transaction(write=False) as session:
        row = await channels_repo.get_channel(session, channel_id)
    if row is None:
        raise NotFound(f"channel {channel_id} does not exist")
    try:
        checks = await asyncio.wait_for(services.factory.for_row(row).connect(), 60)
    except ChannelError as exc:
        return ConnectOut(ok=False, error=str(exc))
    except TimeoutError:
        return ConnectOut(ok=False, error="the provider did not answer within 60 seconds")
    return ConnectOut(ok=True, checks=checks)


@router.get("/channels/{channel_id}/templates", summary="Approved message templates of a channel")
async def list_templates(channel_id: Id, actor: CurrentActor, services: ServicesDep) -> list[dict[str, Any]]:
    async with services.db.transaction(write=False) as session:
        if await channels_repo.get_channel(session, channel_id) is None:
            raise NotFound(f"channel {channel_id} does not exist")
        return [outbound_actions.template_view(r) for r in await repo.list_templates(session, channel_id)]


@router.post("/channels/{channel_id}/templates", status_code=201, summary="Add an approved template (admin)")
async def create_template(channel_id: Id, body: TemplateIn, actor: AdminActor, services: ServicesDep
                          ) -> dict[str, Any]:
    async with services.db.transaction(write=True) as session:
        return await outbound_actions.create_template(session, channel_id, **body.model_dump())


@router.delete("/channels/{channel_id}/templates/{template_id}", status_code=204, summary="Remove a template (admin)")
async def delete_template(channel_id: Id, template_id: Id, actor: AdminActor, services: ServicesDep) -> Response:
    async with services.db.transaction(write=True) as session:
        await outbound_actions.delete_template(session, channel_id, template_id)
    return Response(status_code=204)


@router.post("/conversations/{conversation_id}/template-messages", response_model=MessageView, status_code=201,
             summary="Send an approved template with its variables (allowed outside the reply window)")
async def send_template(conversation_id: Id, body: TemplateSendIn, actor: CurrentActor, services: ServicesDep
                        ) -> MessageView:
    async with services.db.transaction(write=True) as session:
        return await outbound_actions.send_template(session, actor, conversation_id, body.template_id,
                                                    body.variables, identity_id=body.identity_id)
