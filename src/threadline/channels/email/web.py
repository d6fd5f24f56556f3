"""The original of an email message: the raw RFC 5322 mail as received (``message/rfc822``), for
people who may see its conversation. The timeline shows the stripped text; this is the whole thing.
A route the email package contributes through its host (``GET /api/v1/messages/{id}/original``)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from sqlalchemy.ext.asyncio import AsyncSession

from threadline.channels.base import RawRequest
from threadline.channels.email import repo
from threadline.channels.email.adapter import EmailChannel
from threadline.db.models import ChannelInstanceRow, InboxItemRow
from threadline.db.repos import channels as channels_repo
from threadline.db.repos import conversations as conv_repo
from threadline.domain.access import Actor
from threadline.domain.errors import NotFound
from threadline.domain.ids import Id
from threadline.plugins.host import Host


async def stored_original(session: AsyncSession, actor: Actor, message_id: int
                          ) -> tuple[ChannelInstanceRow | None, InboxItemRow | None]:
    """The email channel and the stored request a message came from, once the actor may see it."""
    msg = await conv_repo.get_message(session, message_id)
    if msg is None:
        raise NotFound(f"message {message_id} does not exist")
    actor.check_can_see(await conv_repo.get_conversation(session, msg.conversation_id), msg.conversation_id)
    channel = await channels_repo.get_channel(session, msg.channel_instance_id) \
        if msg.channel_instance_id else None
    item = await repo.inbox_item_by_key(session, channel.id, EmailChannel.inbox_key(msg.provider_id, msg.meta or {})) \
        if channel is not None and channel.kind == EmailChannel.kind and msg.provider_id and \
        msg.direction == "in" else None
    return channel, item


def router(host: Host) -> APIRouter:
    api = APIRouter(prefix="/api/v1", tags=["email"])

    @api.get("/messages/{message_id}/original", response_class=Response,
             summary="The raw email behind a message (message/rfc822 download)")
    async def original(message_id: Id, actor: Actor = Depends(host.current_actor)) -> Response:
        channel, item = await host.read(stored_original, actor, message_id)
        if item is None or channel is None:
            raise NotFound(f"message {message_id} has no stored original email")
        adapter = host.adapter(channel)
        assert isinstance(adapter, EmailChannel)
        raw = adapter.raw_mail(RawRequest(item.method, item.url, item.headers, item.body))
        return Response(raw, media_type="message/rfc822",
                        headers={"Content-Disposition": f'attachment; filename="message-{message_id}.eml"',
                                 "Cache-Control": "private, no-store"})

    return api
