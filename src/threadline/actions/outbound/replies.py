"""Replies to the customer: pick the channel and address, check the channel's rules, queue the
message for the sender worker."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions.conversations import audience_for
from threadline.actions.events import emit
from threadline.actions.outbound.rules import check_send_rules
from threadline.actions.views import message_view
from threadline.channels.registry import get_adapter_class
from threadline.db.models import ChannelInstanceRow, ConversationRow, MessageRow, OutboundJobRow
from threadline.db.repos import channels as channels_repo
from threadline.db.repos import contacts as contacts_repo
from threadline.db.repos import conversations as repo
from threadline.db.session import mark_written
from threadline.db.types import utcnow
from threadline.domain.access import Actor
from threadline.domain.errors import ValidationFailed
from threadline.domain.events import MessageCreated, MessageView
from threadline.domain.messages import DeliveryStatus, Direction, TemplateSend


async def _pick_target(session: AsyncSession, conv: ConversationRow, channel_instance_id: int | None,
                       identity_id: int | None) -> tuple[ChannelInstanceRow, int]:
    """Reply on the channel the customer last used, unless the agent picked another identity/channel."""
    if identity_id is not None:
        ident = await contacts_repo.get_identity(session, identity_id)
        if ident is None or ident.contact_id != conv.contact_id:
            raise ValidationFailed(f"identity {identity_id} is not one of this customer's", field="identity_id")
    if channel_instance_id is None:
        # the conversation remembers where the customer last wrote; older rows may not: their last message
        last = None if conv.last_channel_instance_id and (identity_id or conv.last_identity_id) \
            else await repo.last_inbound(session, conv.id)
        channel_instance_id = conv.last_channel_instance_id or (last.channel_instance_id if last else None)
        if identity_id is None:
            identity_id = conv.last_identity_id or (last.identity_id if last else None)
    if channel_instance_id is None or identity_id is None:
        raise ValidationFailed("this customer has not written on any channel yet: pick a channel and identity",
                               field="channel_instance_id")
    channel = await channels_repo.get_channel(session, channel_instance_id)
    if channel is None:
        raise ValidationFailed(f"channel {channel_instance_id} does not exist", field="channel_instance_id")
    if not channel.enabled:
        raise ValidationFailed(f"channel {channel.name} is disabled", field="channel_instance_id")
    return channel, identity_id


async def send_reply(session: AsyncSession, actor: Actor, conversation_id: int, text: str, *,
                     attachments: list[dict[str, object]] | None = None,
                     channel_instance_id: int | None = None, identity_id: int | None = None,
                     template: TemplateSend | None = None) -> MessageView:
    """Queue a reply. A ``template`` (from actions/outbound/templates.send_template) travels to the adapter
    in the message's meta; it may go out when the channel's reply window is closed."""
    conv = actor.check_can_see(await repo.get_conversation(session, conversation_id), conversation_id)
    text = text.strip()
    if not text and not attachments:
        raise ValidationFailed("a reply needs text or an attachment", field="text")
    channel, identity_id = await _pick_target(session, conv, channel_instance_id, identity_id)
    adapter_cls = get_adapter_class(channel.kind)
    if adapter_cls is None:
        raise ValidationFailed(f"channel kind {channel.kind!r} is not installed", field="channel_instance_id")
    limit = adapter_cls.capabilities.max_text_length
    if len(text) > limit:
        raise ValidationFailed(f"{adapter_cls.title} messages are at most {limit} characters; this one has "
                               f"{len(text)}", field="text")
    await check_send_rules(session, conv, channel, identity_id, adapter_cls,  # opt-outs, windows, media
                           template=template is not None, attachments=attachments)
    now = utcnow()
    row = MessageRow(conversation_id=conv.id, direction=Direction.OUT.value, text=text, attachments=attachments or [],
                     channel_instance_id=channel.id, identity_id=identity_id, author_id=actor.user_id,
                     delivery_status=DeliveryStatus.QUEUED.value,
                     meta={"template": template.as_meta()} if template else {}, created_at=now)
    session.add(row)
    conv.last_activity_at = conv.updated_at = now
    await session.flush()
    session.add(OutboundJobRow(message_id=row.id, channel_instance_id=channel.id, status="pending",
                               next_attempt_at=now))
    mark_written(session, "jobs")
    view = message_view(row)
    emit(session, MessageCreated(message=view), audience_for(conv, customer=True))
    return view
