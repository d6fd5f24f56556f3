"""Customer satisfaction (CSAT): a customer's 1-5 rating of a resolved conversation, and the ratings an
agent may see. The web chat widget asks for it today; any channel's survey can record it the same way."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions.conversations import audience_for
from threadline.actions.events import emit
from threadline.actions.permissions import visible_contact
from threadline.db.models import CsatResponseRow
from threadline.db.repos import conversations as conv_repo
from threadline.db.repos import csat as repo
from threadline.db.types import utcnow
from threadline.domain.access import Actor
from threadline.domain.conversations import ConversationStatus
from threadline.domain.errors import Conflict, NotFound, ValidationFailed
from threadline.domain.events import CsatSubmitted

MAX_COMMENT = 2000


async def submit_csat(session: AsyncSession, *, conversation_id: int, contact_id: int, rating: int, comment: str = "",
                      channel_instance_id: int | None = None, source: str = "webchat") -> CsatResponseRow:
    """Record the customer's 1-5 rating of a resolved conversation; a second rating replaces the first."""
    if not 1 <= rating <= 5:
        raise ValidationFailed("the rating is a whole number from 1 to 5", field="rating")
    comment = comment.strip()
    if len(comment) > MAX_COMMENT:
        raise ValidationFailed(f"the comment is at most {MAX_COMMENT} characters", field="comment")
    conv = await conv_repo.get_conversation(session, conversation_id)
    if conv is None or conv.contact_id != contact_id:
        raise NotFound(f"conversation {conversation_id} does not exist")
    if conv.status != ConversationStatus.RESOLVED:
        raise Conflict("a conversation is rated once it is resolved", field="conversation_id")
    row = await repo.csat_for_conversation(session, conversation_id)
    now = utcnow()
    if row is None:
        row = CsatResponseRow(conversation_id=conversation_id, contact_id=contact_id, rating=rating, comment=comment,
                              channel_instance_id=channel_instance_id, source=source, created_at=now)
        session.add(row)
    else:
        row.rating, row.comment, row.created_at = rating, comment, now
    await session.flush()
    emit(session, CsatSubmitted(conversation_id=conversation_id, contact_id=contact_id, rating=rating,
                                comment=comment, created_at=now), audience_for(conv))
    return row


async def contact_csat(session: AsyncSession, actor: Actor, contact_id: int) -> list[CsatResponseRow]:
    """A contact's ratings, newest first, limited to the conversations the actor may see."""
    await visible_contact(session, actor, contact_id)  # one that is not theirs answers like a missing one
    rows = list(await repo.csat_for_contact(session, contact_id))
    convs = await conv_repo.get_conversations(session, {r.conversation_id for r in rows})
    return [r for r in rows if (c := convs.get(r.conversation_id)) is not None and actor.can_see(c)]
