"""Message templates of a channel (WhatsApp's approved templates): kept per channel, filled in and sent as
a reply that may go out when the channel's reply window is closed."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions.outbound.replies import send_reply
from threadline.channels.base import ChannelAdapter
from threadline.channels.registry import get_adapter_class
from threadline.db.models import ChannelInstanceRow, MessageTemplateRow
from threadline.db.repos import channels as channels_repo
from threadline.db.repos import conversations as conv_repo
from threadline.db.repos import messaging as repo
from threadline.domain.access import Actor
from threadline.domain.errors import Conflict, NotFound, ValidationFailed
from threadline.domain.events import MessageView
from threadline.domain.messages import TemplateSend
from threadline.domain.messaging import render_template, template_variables


def template_view(row: MessageTemplateRow) -> dict[str, Any]:
    return {"id": row.id, "channel_id": row.channel_instance_id, "name": row.name, "language": row.language,
            "category": row.category, "body": row.body, "provider_ref": row.provider_ref, "status": row.status,
            "variables": template_variables(row.body)}


async def _templated_channel(session: AsyncSession, channel_id: int) -> tuple[ChannelInstanceRow, type[ChannelAdapter]]:
    channel = await channels_repo.get_channel(session, channel_id)
    if channel is None:
        raise NotFound(f"channel {channel_id} does not exist")
    cls = get_adapter_class(channel.kind)
    if cls is None or not cls.capabilities.templates:
        raise ValidationFailed(f"{cls.title if cls else channel.kind} channels have no message templates",
                               field="channel_id")
    return channel, cls


async def create_template(session: AsyncSession, channel_id: int, *, name: str, language: str, body: str,
                          provider_ref: str | None = None, category: str = "utility") -> dict[str, Any]:
    channel, _ = await _templated_channel(session, channel_id)
    name, language, body = name.strip(), language.strip() or "en_US", body.strip()
    if not name or not body:
        raise ValidationFailed("a template needs a name and a body", field="name" if not name else "body")
    if await repo.find_template(session, channel.id, name, language) is not None:
        raise Conflict(f"template {name!r} ({language}) already exists on this channel", field="name")
    row = MessageTemplateRow(channel_instance_id=channel.id, name=name[:200], language=language[:20],
                             category=category[:40], body=body, provider_ref=(provider_ref or name).strip()[:200],
                             status="approved")
    session.add(row)
    await session.flush()
    return template_view(row)


async def delete_template(session: AsyncSession, channel_id: int, template_id: int) -> None:
    row = await repo.get_template(session, template_id)
    if row is None or row.channel_instance_id != channel_id:
        raise NotFound(f"template {template_id} does not exist on channel {channel_id}")
    await session.delete(row)


async def send_template(session: AsyncSession, actor: Actor, conversation_id: int, template_id: int,
                        variables: dict[str, str], *, identity_id: int | None = None) -> MessageView:
    """Queue an approved template, its variables filled in: allowed outside the reply window."""
    row = await repo.get_template(session, template_id)
    if row is None:
        raise NotFound(f"template {template_id} does not exist")
    try:
        text = render_template(row.body, {k: str(v) for k, v in variables.items()})
    except KeyError as exc:
        raise ValidationFailed(f"template {row.name!r} needs a value for {{{{{exc.args[0]}}}}}",
                               field="variables") from None
    order = template_variables(row.body)
    template = TemplateSend(provider_ref=row.provider_ref, name=row.name, language=row.language, id=row.id,
                            order=tuple(order), variables={k: str(variables[k]) for k in order})
    if identity_id is None:  # the customer's address on the template's channel, if they wrote there last
        conv = await conv_repo.get_conversation(session, conversation_id)
        if conv is not None and conv.last_channel_instance_id == row.channel_instance_id:
            identity_id = conv.last_identity_id
    return await send_reply(session, actor, conversation_id, text, channel_instance_id=row.channel_instance_id,
                            identity_id=identity_id, template=template)
