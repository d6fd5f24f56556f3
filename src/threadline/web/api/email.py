"""The original of an email message: the raw RFC 5322 mail as received (``message/rfc822``), for
people who may see its conversation. The timeline shows the stripped text; this is the whole thing."""

from __future__ import annotations

from fastapi import APIRouter, Response

from threadline.channels.base import RawRequest
from threadline.channels.email import EmailChannel
from threadline.db.repos import channels as channels_repo
from threadline.db.repos import conversations as conv_repo
from threadline.db.repos import mail as repo
from threadline.domain.errors import NotFound
from threadline.web.api.schemas import Id
from threadline.web.deps import CurrentActor, ServicesDep

router = APIRouter(tags=["email"])


@router.get("/messages/{message_id}/original", response_class=Response,
            summary="The raw email behind a message (message/rfc822 download)")
async def original(message_id: Id, actor: CurrentActor, services: ServicesDep) -> Response:
    async with services.db.transaction(write=False) as session:
        msg = await conv_repo.get_message(session, message_id)
        if msg is None:
            raise NotFound(f"message {message_id} does not exist")
        actor.check_can_see(await conv_repo.get_conversation(session, msg.conversation_id), msg.conversation_id)
        channel = await channels_repo.get_channel(session, msg.channel_instance_id) \
            if msg.channel_instance_id else None
        item = await repo.inbox_item_by_key(session, channel.id, msg.provider_id) \
            if channel is not None and channel.kind == EmailChannel.kind and msg.provider_id and \
            msg.direction == "in" else None
    if item is None or channel is None:
        raise NotFound(f"message {message_id} has no stored original email")
    adapter = services.factory.for_row(channel)
    assert isinstance(adapter, EmailChannel)
    raw = adapter.raw_mail(RawRequest(item.method, item.url, item.headers, item.body))
    return Response(raw, media_type="message/rfc822",
                    headers={"Content-Disposition": f'attachment; filename="message-{message_id}.eml"',
                             "Cache-Control": "private, no-store"})
