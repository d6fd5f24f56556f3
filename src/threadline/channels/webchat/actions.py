"""Web chat actions: typing indicators (both ways) and read receipts (the visitor sees "Seen")."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions.conversations import audience_for
from threadline.actions.events import emit
from threadline.channels.webchat import repo
from threadline.db.repos import conversations as conv_repo
from threadline.domain.access import Actor
from threadline.domain.errors import NotFound
from threadline.domain.events import ConversationTyping, MessageStatusChanged


async def agent_typing(session: AsyncSession, actor: Actor, conversation_id: int, typing: bool) -> None:
    """An agent started or stopped typing a reply: the visitor's widget shows it."""
    conv = actor.check_can_see(await conv_repo.get_conversation(session, conversation_id), conversation_id)
    emit(session, ConversationTyping(conversation_id=conv.id, who="agent", user_id=actor.user_id, typing=typing),
         audience_for(conv, customer=True))


async def visitor_typing(session: AsyncSession, conversation_id: int, contact_id: int, typing: bool) -> None:
    """The customer started or stopped typing (the caller vouches that they are this contact)."""
    conv = await conv_repo.get_conversation(session, conversation_id)
    if conv is None or conv.contact_id != contact_id:
        raise NotFound(f"conversation {conversation_id} does not exist")
    emit(session, ConversationTyping(conversation_id=conv.id, who="visitor", typing=typing), audience_for(conv))


async def mark_read(session: AsyncSession, actor: Actor, conversation_id: int, up_to: int | None = None) -> list[int]:
    """An agent has seen the customer's messages (up to ``up_to``): each becomes ``read`` once, with a
    ``message.status_changed`` event, so the web chat visitor sees "Seen". Returns the ids marked."""
    conv = actor.check_can_see(await conv_repo.get_conversation(session, conversation_id), conversation_id)
    rows = await repo.unread_inbound(session, conv.id, up_to)
    audience = audience_for(conv, customer=True)
    for row in rows:
        row.delivery_status = "read"
        emit(session, MessageStatusChanged(message_id=row.id, conversation_id=conv.id, status="read"), audience)
    return [r.id for r in rows]
