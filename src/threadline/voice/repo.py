"""Voice queries: calls by provider reference, by conversation, and the live ones waiting for an agent."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from threadline.voice.domain.calls import LIVE, WAITING, CallState
from threadline.voice.models import CallEventRow, CallRow


async def by_ref(session: AsyncSession, channel_id: int, ref: str, *, for_update: bool = False) -> CallRow | None:
    stmt = select(CallRow).where(CallRow.channel_instance_id == channel_id, CallRow.provider_ref == ref)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def get(session: AsyncSession, call_id: int, *, for_update: bool = False) -> CallRow | None:
    stmt = select(CallRow).where(CallRow.id == call_id)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def for_conversation(session: AsyncSession, conversation_id: int, limit: int = 100) -> list[CallRow]:
    stmt = select(CallRow).where(CallRow.conversation_id == conversation_id).order_by(CallRow.id.desc()).limit(limit)
    return list((await session.execute(stmt)).scalars())


async def live_for_conversations(session: AsyncSession, ids: Sequence[int], *, waiting: bool = False) -> list[CallRow]:
    """The calls still in progress (or only those waiting for an agent) of these conversations."""
    if not ids:
        return []
    states = WAITING if waiting else LIVE
    stmt = (select(CallRow).where(CallRow.conversation_id.in_(list(ids)), CallRow.state.in_([s.value for s in states]))
            .order_by(CallRow.id))
    return list((await session.execute(stmt)).scalars())


async def record_event(session: AsyncSession, call_id: int, key: str, kind: str, seq: int | None,
                       data: dict[str, object]) -> bool:
    """Store a provider event once: False when this call already has an event with this key (a retry)."""
    values = {"call_id": call_id, "key": key[:200], "kind": kind[:40], "seq": seq, "data": data}
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(CallEventRow).values(**values).on_conflict_do_nothing(index_elements=["call_id", "key"])
    result = await session.execute(stmt)
    return bool(result.rowcount)


async def events(session: AsyncSession, call_id: int) -> list[CallEventRow]:
    stmt = select(CallEventRow).where(CallEventRow.call_id == call_id).order_by(CallEventRow.id)
    return list((await session.execute(stmt)).scalars())


async def live(session: AsyncSession, limit: int = 500) -> list[CallRow]:
    """Every call in progress, oldest first."""
    stmt = (select(CallRow).where(CallRow.state.in_([s.value for s in LIVE])).order_by(CallRow.started_at)
            .limit(limit))
    return list((await session.execute(stmt)).scalars())


async def recordings_older_than(session: AsyncSession, before: datetime, limit: int = 100) -> list[CallRow]:
    """Ended calls that still have a recording, ended before ``before``, oldest first."""
    stmt = (select(CallRow).where(CallRow.recording_url.is_not(None), CallRow.ended_at.is_not(None),
                                  CallRow.ended_at < before).order_by(CallRow.ended_at).limit(limit))
    return list((await session.execute(stmt)).scalars())


CONNECTED_KINDS = ("twilio_voice", "asterisk")  # lines whose calls Threadline connects to agents


async def has_connected_lines(session: AsyncSession) -> bool:
    """Whether an enabled phone line exists whose calls Threadline connects (not CTI-only PBXs)."""
    from threadline.db.models import ChannelInstanceRow  # noqa: PLC0415

    stmt = (select(ChannelInstanceRow.id).where(ChannelInstanceRow.kind.in_(CONNECTED_KINDS),
                                                ChannelInstanceRow.enabled.is_(True)).limit(1))
    return (await session.execute(stmt)).first() is not None


async def has_live_browser_calls(session: AsyncSession) -> bool:
    """Whether a call made in a browser (the web chat widget) is in progress."""
    stmt = (select(CallRow.id).where(CallRow.state.in_([s.value for s in LIVE]), CallRow.provider == "webrtc")
            .limit(1))
    return (await session.execute(stmt)).first() is not None


async def live_browser_call(session: AsyncSession, contact_id: int) -> CallRow | None:
    """The contact's browser call in progress, if any."""
    stmt = (select(CallRow).where(CallRow.contact_id == contact_id, CallRow.provider == "webrtc",
                                  CallRow.state.in_([s.value for s in LIVE])).limit(1))
    return (await session.execute(stmt)).scalars().first()


async def unverified_for_contacts(session: AsyncSession, contact_ids: Sequence[int]) -> list[CallRow]:
    """The calls not over yet, with a caller nobody verified, of these contacts (the caller's contact, or
    the contact of the call's conversation)."""
    from threadline.db.models import ConversationRow  # noqa: PLC0415

    if not contact_ids:
        return []
    ids = list(contact_ids)
    states = [s.value for s in CallState if s is not CallState.ENDED]
    stmt = (select(CallRow).join(ConversationRow, ConversationRow.id == CallRow.conversation_id)
            .where(CallRow.state.in_(states), CallRow.verified_by.is_(None),
                   or_(CallRow.contact_id.in_(ids), ConversationRow.contact_id.in_(ids)))
            .order_by(CallRow.id).limit(100))
    return list((await session.execute(stmt)).scalars())
