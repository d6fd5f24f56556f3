"""Queries of the routing state (tasks, offers, agent profiles, queue routing settings).

The router's hot path uses Core statements with executemany (one statement per kind of change per
transaction), never ORM objects: it writes thousands of rows a second.

The routing tables store times as UTC datetimes (``UTCDateTime``), the one time type at the storage
boundary, like every other table; every function takes and returns timezone-aware UTC datetimes and the
typed records of :mod:`threadline.domain.routing.records`, like every other repository; SQL parameter names
never leave this module. (The engine's clock, Unix seconds, is converted in those records.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, case, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from threadline.db.models import (
    ChannelInstanceRow,
    ContactRow,
    ConversationRow,
    QueueMemberRow,
    QueueRow,
    RoutingAgentRow,
    RoutingOfferRow,
    RoutingOutcomeRow,
    RoutingQueueRow,
    RoutingSettingRow,
    RoutingTaskRow,
    TeamMemberRow,
    UserRow,
)
from threadline.domain.routing.records import (
    AgentRecord,
    ConversationKeys,
    ConversationState,
    EndedOffer,
    NewOffer,
    NewTask,
    OfferAnswer,
    OfferStatus,
    Outcome,
    OutcomeKind,
    PositionUpdate,
    SlaStateUpdate,
    StoredOffer,
    StoredTask,
    TaskUpdate,
)

TASKS = RoutingTaskRow.__table__
OFFERS = RoutingOfferRow.__table__
OUTCOMES = RoutingOutcomeRow.__table__
CONV = ConversationRow.__table__
IN_CHUNK = 900  # below SQLite's bound-parameter limit


def _chunks(ids: Sequence[int]) -> Iterable[Sequence[int]]:
    for i in range(0, len(ids), IN_CHUNK):
        yield ids[i:i + IN_CHUNK]


# --------------------------------------------------------------------------- settings and roster


@dataclass(slots=True)
class QueueRecord:
    id: int
    name: str
    team_id: int | None
    settings: dict[str, Any]
    routing: dict[str, Any] | None


async def queues(session: AsyncSession) -> list[QueueRecord]:
    stmt = (select(QueueRow.id, QueueRow.name, QueueRow.team_id, QueueRow.settings, RoutingQueueRow.config)
            .outerjoin(RoutingQueueRow, RoutingQueueRow.queue_id == QueueRow.id).order_by(QueueRow.id))
    return [QueueRecord(*r) for r in (await session.execute(stmt)).all()]


async def set_queue_routing(session: AsyncSession, queue_id: int, config: dict[str, Any]) -> None:
    await _upsert(session, RoutingQueueRow.__table__, {"queue_id": queue_id, "config": config}, ["queue_id"])


async def set_agent_profile(session: AsyncSession, user_id: int, capacity: dict[str, int],
                            blocked_by: dict[str, list[str]] | None) -> None:
    await _upsert(session, RoutingAgentRow.__table__,
                  {"user_id": user_id, "capacity": capacity, "blocked_by": blocked_by}, ["user_id"])


async def get_setting(session: AsyncSession, key: str) -> dict[str, Any] | None:
    row = await session.get(RoutingSettingRow, key)
    return dict(row.value) if row is not None else None


async def set_setting(session: AsyncSession, key: str, value: dict[str, Any]) -> None:
    await _upsert(session, RoutingSettingRow.__table__, {"key": key, "value": value}, ["key"])


async def _upsert(session: AsyncSession, table: Any, values: dict[str, Any], keys: list[str]) -> None:
    dialect = session.get_bind().dialect.name
    ins = (postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)).values(**values)
    await session.execute(ins.on_conflict_do_update(
        index_elements=keys, set_={k: v for k, v in values.items() if k not in keys}))


async def roster(session: AsyncSession, user_ids: Sequence[int] | None = None) -> list[AgentRecord]:
    """Active users who serve a queue or belong to a team (the people routing may offer work to)."""
    stmt = (select(UserRow.id, UserRow.name, UserRow.role, UserRow.skills, UserRow.languages, UserRow.presence,
                   UserRow.presence_since, RoutingAgentRow.capacity, RoutingAgentRow.blocked_by)
            .outerjoin(RoutingAgentRow, RoutingAgentRow.user_id == UserRow.id)
            .where(UserRow.active.is_(True)))
    qstmt = select(QueueMemberRow.user_id, QueueMemberRow.queue_id)
    tstmt = select(TeamMemberRow.user_id, TeamMemberRow.team_id)
    if user_ids is not None:
        stmt = stmt.where(UserRow.id.in_(list(user_ids)))
        qstmt = qstmt.where(QueueMemberRow.user_id.in_(list(user_ids)))
        tstmt = tstmt.where(TeamMemberRow.user_id.in_(list(user_ids)))
    qs: dict[int, list[int]] = {}
    ts: dict[int, list[int]] = {}
    for uid, qid in (await session.execute(qstmt)).all():
        qs.setdefault(uid, []).append(qid)
    for uid, tid in (await session.execute(tstmt)).all():
        ts.setdefault(uid, []).append(tid)
    out = []
    for r in (await session.execute(stmt)).all():
        if r.id not in qs and r.id not in ts:
            continue
        out.append(AgentRecord(r.id, r.name, r.role, dict(r.skills or {}), list(r.languages or []), r.presence,
                               r.presence_since, sorted(qs.get(r.id, [])), sorted(ts.get(r.id, [])),
                               dict(r.capacity) if r.capacity else None, r.blocked_by))
    return out


# --------------------------------------------------------------------------- conversations


def _conv_select() -> Any:
    return (select(CONV.c.id, CONV.c.status, CONV.c.queue_id, CONV.c.assignee_id, CONV.c.contact_id,
                   ContactRow.name, CONV.c.priority, CONV.c.attributes, ContactRow.attributes,
                   ChannelInstanceRow.kind, CONV.c.last_activity_at)
            .join(ContactRow, ContactRow.id == CONV.c.contact_id)
            .outerjoin(ChannelInstanceRow, ChannelInstanceRow.id == CONV.c.last_channel_instance_id))


def _state(r: Any) -> ConversationState:
    attributes = dict(r[7] or {})
    # a caller who hung up while waiting: the voice package resolves the conversation with abandoned_at
    return ConversationState(r[0], r[1], r[2], r[3], r[4], r[5] or "", r[6], attributes, dict(r[8] or {}),
                             r[9], r[10], abandoned="abandoned_at" in attributes)


async def conversations(session: AsyncSession, ids: Sequence[int]) -> dict[int, ConversationState]:
    out: dict[int, ConversationState] = {}
    for chunk in _chunks(sorted(set(ids))):
        for r in (await session.execute(_conv_select().where(CONV.c.id.in_(chunk)))).all():
            out[r[0]] = _state(r)
    return out


async def needing_human_keys(session: AsyncSession) -> dict[int, int]:
    """Id -> queue of every conversation that needs a human (narrow: no join, no JSON)."""
    stmt = select(CONV.c.id, CONV.c.queue_id).where(CONV.c.status == "open", CONV.c.assignee_id.is_(None),
                                                     CONV.c.queue_id.is_not(None))
    return {i: q for i, q in (await session.execute(stmt)).all()}


async def conversation_keys(session: AsyncSession, ids: Sequence[int]) -> dict[int, ConversationKeys]:
    """Status, queue and assignee of these conversations (those that exist)."""
    out: dict[int, ConversationKeys] = {}
    for chunk in _chunks(sorted(set(ids))):
        stmt = select(CONV.c.id, CONV.c.status, CONV.c.queue_id, CONV.c.assignee_id).where(CONV.c.id.in_(chunk))
        out.update({r[0]: ConversationKeys(r[1], r[2], r[3]) for r in (await session.execute(stmt)).all()})
    return out


async def waiting_of_contacts(session: AsyncSession, contact_ids: Sequence[int]) -> list[int]:
    """Conversations of these contacts that need a human (their tasks re-rank when the contact changes)."""
    out: list[int] = []
    for chunk in _chunks(sorted(set(contact_ids))):
        stmt = select(CONV.c.id).where(CONV.c.contact_id.in_(chunk), CONV.c.status == "open",
                                       CONV.c.assignee_id.is_(None), CONV.c.queue_id.is_not(None))
        out.extend((await session.execute(stmt)).scalars())
    return out


async def contact_names(session: AsyncSession, ids: Sequence[int]) -> dict[int, str]:
    out: dict[int, str] = {}
    for chunk in _chunks(sorted(set(ids))):
        stmt = (select(CONV.c.id, ContactRow.name).join(ContactRow, ContactRow.id == CONV.c.contact_id)
                .where(CONV.c.id.in_(chunk)))
        out.update({i: n or "" for i, n in (await session.execute(stmt)).all()})
    return out


async def last_agents(session: AsyncSession, contact_ids: Sequence[int], exclude: Sequence[int]
                      ) -> dict[int, int]:
    """For each contact, the assignee of its most recently active other conversation that had one."""
    out: dict[int, tuple[Any, int]] = {}
    skip = set(exclude)
    for chunk in _chunks(sorted(set(contact_ids))):
        stmt = (select(CONV.c.contact_id, CONV.c.assignee_id, CONV.c.last_activity_at, CONV.c.id)
                .where(CONV.c.contact_id.in_(chunk), CONV.c.assignee_id.is_not(None)))
        for cid, aid, at, conv_id in (await session.execute(stmt)).all():
            if conv_id in skip:
                continue
            best = out.get(cid)
            if best is None or at > best[0]:
                out[cid] = (at, aid)
    return {cid: v[1] for cid, v in out.items()}


# --------------------------------------------------------------------------- tasks and offers


def _stored_task(r: Any) -> StoredTask:
    return StoredTask(r.conversation_id, r.queue_id, r.channel, r.status, r.agent_id, r.enqueued_at, dict(r.task),
                      r.position, r.ewt_seconds, r.note, r.updated_at, r.sla_state, r.wrap_ended_at)


def _stored_offer(r: Any) -> StoredOffer:
    return StoredOffer(r.id, r.conversation_id, r.agent_id, r.queue_id, r.channel, r.offered_at,
                       r.expires_at, OfferStatus(r.status), r.ended_at)


async def all_tasks(session: AsyncSession) -> list[StoredTask]:
    stmt = select(TASKS).order_by(TASKS.c.conversation_id)
    return [_stored_task(r) for r in (await session.execute(stmt)).all()]


async def open_offers(session: AsyncSession) -> list[StoredOffer]:
    stmt = select(OFFERS).where(OFFERS.c.status == "open").order_by(OFFERS.c.id)
    return [_stored_offer(r) for r in (await session.execute(stmt)).all()]


async def max_offer_id(session: AsyncSession) -> int:
    return (await session.execute(select(func.max(OFFERS.c.id)))).scalar() or 0


async def insert_tasks(session: AsyncSession, rows: Sequence[NewTask]) -> None:
    """Write new tasks; a row already there (a round that raced a rebuild) takes the new values."""
    if rows:
        dialect = session.get_bind().dialect.name
        ins = postgresql.insert(TASKS) if dialect == "postgresql" else sqlite.insert(TASKS)
        values = [{"conversation_id": t.conversation_id, "queue_id": t.queue_id, "channel": t.channel,
                   "status": t.status, "agent_id": t.agent_id, "task": t.task.model_dump(mode="json"),
                   "updated_at": t.updated_at, "enqueued_at": t.enqueued_at,
                   "position": None, "ewt_seconds": None, "sla_state": "", "wrap_ended_at": None, "note": t.note}
                  for t in rows]
        cols = [c for c in values[0] if c != "conversation_id"]
        await session.execute(ins.on_conflict_do_update(index_elements=[TASKS.c.conversation_id],
                                                        set_={c: ins.excluded[c] for c in cols}), values)


async def update_tasks(session: AsyncSession, rows: Sequence[TaskUpdate]) -> None:
    if rows:
        stmt = (update(TASKS).where(TASKS.c.conversation_id == bindparam("b_id"))
                .values(queue_id=bindparam("queue_id"), channel=bindparam("channel"), status=bindparam("status"),
                        agent_id=bindparam("agent_id"), task=bindparam("task"),
                        updated_at=bindparam("updated_at")))
        await session.execute(stmt, [{"b_id": u.conversation_id, "queue_id": u.queue_id, "channel": u.channel,
                                      "status": u.status, "agent_id": u.agent_id,
                                      "task": u.task.model_dump(mode="json"), "updated_at": u.updated_at}
                                     for u in rows])


async def update_positions(session: AsyncSession, rows: Sequence[PositionUpdate]) -> None:
    if rows:
        stmt = (update(TASKS).where(TASKS.c.conversation_id == bindparam("b_id"))
                .values(position=bindparam("position"), ewt_seconds=bindparam("ewt_seconds"),
                        note=bindparam("note")))
        await session.execute(stmt, [{"b_id": p.conversation_id, "position": p.position, "ewt_seconds": p.ewt_seconds,
                                      "note": p.note} for p in rows])


async def wrap_end_requests(session: AsyncSession) -> list[int]:
    """Tasks in wrap-up whose agent said "Ready" (the router ends them; this catches a missed event)."""
    stmt = select(TASKS.c.conversation_id).where(TASKS.c.status == "wrapping", TASKS.c.wrap_ended_at.is_not(None))
    return list((await session.execute(stmt)).scalars())


async def request_wrap_end(session: AsyncSession, conversation_id: int, at: datetime) -> None:
    await session.execute(update(TASKS).where(TASKS.c.conversation_id == conversation_id)
                          .values(wrap_ended_at=at))


async def update_sla_states(session: AsyncSession, rows: Sequence[SlaStateUpdate]) -> None:
    """The last SLA alert announced for each task."""
    if rows:
        stmt = update(TASKS).where(TASKS.c.conversation_id == bindparam("b_id")).values(
            sla_state=bindparam("sla_state"))
        await session.execute(stmt, [{"b_id": u.conversation_id, "sla_state": u.sla_state} for u in rows])


async def insert_outcomes(session: AsyncSession, rows: Sequence[Outcome]) -> None:
    if rows:
        await session.execute(insert(OUTCOMES), [
            {"conversation_id": o.conversation_id, "queue_id": o.queue_id, "channel": o.channel,
             "agent_id": o.agent_id, "kind": o.kind, "enqueued_at": o.enqueued_at,
             "at": o.at, "wait_seconds": o.wait_seconds, "handle_seconds": o.handle_seconds,
             "within_target": o.within_target} for o in rows])


@dataclass(frozen=True)
class QueueFigures:
    """A queue's contacts since a moment (e.g. midnight): the wallboard's and reports' figures.
    Service level = answered within the target / (answered + abandoned), as the engine counts it."""

    queue_id: int
    answered: int = 0
    answered_within: int = 0
    abandoned: int = 0
    cancelled: int = 0
    transferred: int = 0
    wait_sum: float = 0.0
    handled: int = 0
    handle_sum: float = 0.0
    longest_answered_wait: float = 0.0

    @property
    def service_level(self) -> float | None:
        done = self.answered + self.abandoned
        return self.answered_within / done if done else None

    @property
    def asa_seconds(self) -> float | None:
        return self.wait_sum / self.answered if self.answered else None

    @property
    def aht_seconds(self) -> float | None:
        return self.handle_sum / self.handled if self.handled else None

    @property
    def abandonment(self) -> float | None:
        queued = self.answered + self.abandoned
        return self.abandoned / queued if queued else None


async def queue_figures(session: AsyncSession, since: datetime, until: datetime | None = None,
                        queue_ids: Sequence[int] | None = None) -> dict[int, QueueFigures]:
    """Per queue, the outcomes between ``since`` and ``until`` in one grouped query."""
    within = func.sum(case((OUTCOMES.c.within_target.is_(True), 1), else_=0))
    stmt = (select(OUTCOMES.c.queue_id, OUTCOMES.c.kind, func.count(), within, func.sum(OUTCOMES.c.wait_seconds),
                   func.sum(OUTCOMES.c.handle_seconds), func.max(OUTCOMES.c.wait_seconds))
            .where(OUTCOMES.c.at >= since).group_by(OUTCOMES.c.queue_id, OUTCOMES.c.kind))
    if until is not None:
        stmt = stmt.where(OUTCOMES.c.at < until)
    if queue_ids is not None:
        stmt = stmt.where(OUTCOMES.c.queue_id.in_(list(queue_ids)))
    acc: dict[int, dict[str, Any]] = {}
    for qid, kind, n, n_within, wait_sum, handle_sum, longest in (await session.execute(stmt)).all():
        f = acc.setdefault(qid, {"queue_id": qid})
        if kind == OutcomeKind.ANSWERED:
            f.update(answered=n, answered_within=int(n_within or 0), wait_sum=float(wait_sum or 0),
                     longest_answered_wait=float(longest or 0))
        elif kind == OutcomeKind.ABANDONED:
            f["abandoned"] = n
        elif kind == OutcomeKind.HANDLED:
            f.update(handled=n, handle_sum=float(handle_sum or 0))
        elif kind == OutcomeKind.TRANSFERRED:
            f["transferred"] = n
        else:
            f["cancelled"] = f.get("cancelled", 0) + n
    return {qid: QueueFigures(**f) for qid, f in acc.items()}


async def delete_tasks(session: AsyncSession, ids: Sequence[int]) -> None:
    for chunk in _chunks(list(ids)):
        await session.execute(delete(TASKS).where(TASKS.c.conversation_id.in_(chunk)))


async def insert_offers(session: AsyncSession, rows: Sequence[NewOffer]) -> None:
    if rows:
        await session.execute(insert(OFFERS), [
            {"id": o.offer_id, "conversation_id": o.conversation_id, "agent_id": o.agent_id, "queue_id": o.queue_id,
             "channel": o.channel, "offered_at": o.offered_at, "expires_at": o.expires_at,
             "status": "open", "ended_at": None} for o in rows])


async def end_offers(session: AsyncSession, rows: Sequence[EndedOffer]) -> None:
    """Only offers still open change (an accept may have won)."""
    if rows:
        stmt = (update(OFFERS).where(and_(OFFERS.c.id == bindparam("b_id"), OFFERS.c.status == "open"))
                .values(status=bindparam("status"), ended_at=bindparam("ended_at")))
        await session.execute(stmt, [{"b_id": e.offer_id, "status": e.outcome, "ended_at": e.at}
                                     for e in rows])


async def lock_offers(session: AsyncSession, ids: Sequence[int]) -> dict[int, OfferAnswer]:
    """Status and end time of these offers, locking their rows (PostgreSQL) so an accept cannot race
    a timeout."""
    out: dict[int, OfferAnswer] = {}
    for chunk in _chunks(sorted(set(ids))):
        stmt = select(OFFERS.c.id, OFFERS.c.status, OFFERS.c.ended_at).where(OFFERS.c.id.in_(chunk)).with_for_update()
        out.update({i: OfferAnswer(OfferStatus(s), e) for i, s, e in (await session.execute(stmt)).all()})
    return out


async def get_offer(session: AsyncSession, offer_id: int, *, for_update: bool = False) -> StoredOffer | None:
    stmt = select(OFFERS).where(OFFERS.c.id == offer_id)
    if for_update:
        stmt = stmt.with_for_update()
    row = (await session.execute(stmt)).one_or_none()
    return _stored_offer(row) if row is not None else None


async def open_offer_for(session: AsyncSession, conversation_id: int) -> StoredOffer | None:
    stmt = select(OFFERS).where(OFFERS.c.conversation_id == conversation_id, OFFERS.c.status == "open").with_for_update()
    row = (await session.execute(stmt)).one_or_none()
    return _stored_offer(row) if row is not None else None


async def get_task(session: AsyncSession, conversation_id: int, *, for_update: bool = False) -> StoredTask | None:
    stmt = select(TASKS).where(TASKS.c.conversation_id == conversation_id)
    if for_update:
        stmt = stmt.with_for_update()
    row = (await session.execute(stmt)).one_or_none()
    return _stored_task(row) if row is not None else None


async def tasks(session: AsyncSession, queue_id: int | None = None, status: str | None = None,
                limit: int = 500) -> list[StoredTask]:
    stmt = select(TASKS)
    if queue_id is not None:
        stmt = stmt.where(TASKS.c.queue_id == queue_id)
    if status is not None:
        stmt = stmt.where(TASKS.c.status == status)
    stmt = stmt.order_by(TASKS.c.position.is_(None), TASKS.c.position, TASKS.c.enqueued_at).limit(limit)
    return [_stored_task(r) for r in (await session.execute(stmt)).all()]


async def loads(session: AsyncSession, agent_id: int | None = None) -> dict[int, dict[str, int]]:
    """Busy slots per agent and channel class: offered, assigned and wrapping tasks."""
    stmt = (select(TASKS.c.agent_id, TASKS.c.channel, func.count()).where(TASKS.c.agent_id.is_not(None))
            .group_by(TASKS.c.agent_id, TASKS.c.channel))
    if agent_id is not None:
        stmt = stmt.where(TASKS.c.agent_id == agent_id)
    out: dict[int, dict[str, int]] = {}
    for aid, channel, n in (await session.execute(stmt)).all():
        out.setdefault(aid, {})[channel] = n
    return out


async def queue_counts(session: AsyncSession) -> dict[int, dict[str, Any]]:
    """Per queue: tasks by status, the oldest waiting task's enqueue time (``oldest``), unroutable ones."""
    out: dict[int, dict[str, Any]] = {}
    stmt = select(TASKS.c.queue_id, TASKS.c.status, func.count(), func.min(TASKS.c.enqueued_at)).group_by(
        TASKS.c.queue_id, TASKS.c.status)
    for qid, status, n, oldest in (await session.execute(stmt)).all():
        q = out.setdefault(qid, {"waiting": 0, "offered": 0, "assigned": 0, "wrapping": 0, "oldest": None,
                                 "unroutable": 0})
        q[status] = n
        if status == "waiting":
            q["oldest"] = oldest
    stmt2 = (select(TASKS.c.queue_id, func.count()).where(TASKS.c.status == "waiting", TASKS.c.note != "")
             .group_by(TASKS.c.queue_id))
    for qid, n in (await session.execute(stmt2)).all():
        if qid in out:
            out[qid]["unroutable"] = n
    return out


async def agent_open_offers(session: AsyncSession, agent_id: int) -> list[StoredOffer]:
    stmt = select(OFFERS).where(OFFERS.c.agent_id == agent_id, OFFERS.c.status == "open").order_by(OFFERS.c.id)
    return [_stored_offer(r) for r in (await session.execute(stmt)).all()]


async def offer_counts(session: AsyncSession) -> dict[int, int]:
    stmt = select(OFFERS.c.agent_id, func.count()).where(OFFERS.c.status == "open").group_by(OFFERS.c.agent_id)
    return {aid: n for aid, n in (await session.execute(stmt)).all()}


async def agent_tasks(session: AsyncSession, agent_id: int, status: str | None = None) -> list[StoredTask]:
    stmt = select(TASKS).where(TASKS.c.agent_id == agent_id)
    if status is not None:
        stmt = stmt.where(TASKS.c.status == status)
    return [_stored_task(r) for r in (await session.execute(stmt.order_by(TASKS.c.updated_at))).all()]
