"""Agents answer the router: accept or reject an offer, pick a waiting task by hand, end a wrap-up early.

``now`` is the routing clock (Unix seconds, like the engine's); the offer and task rows read and written
here are the repository's typed records."""

from __future__ import annotations

import time

from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions import conversations as conversation_actions
from threadline.actions.events import emit
from threadline.db.repos import conversations as conv_repo
from threadline.db.repos import routing as repo
from threadline.domain.access import Actor
from threadline.domain.conversations import ConversationStatus
from threadline.domain.errors import Conflict, NotFound, PermissionDenied
from threadline.domain.events import Audience
from threadline.domain.routing import DEFAULT_CAPACITY, Task
from threadline.domain.routing.events import OfferResult, TaskPicked, WrapUp, WrapUpEndRequested
from threadline.domain.routing.records import (
    EndedOffer,
    OfferStatus,
    StoredOffer,
    StoredTask,
    TaskUpdate,
    instant,
    seconds,
)


def _ended(offer: StoredOffer, outcome: OfferResult, now: float) -> EndedOffer:
    return EndedOffer(offer.id, offer.conversation_id, offer.agent_id, outcome, instant(now))


async def _end_offer(session: AsyncSession, offer: StoredOffer, outcome: OfferResult,
                     now: float) -> None:
    """Close an offer (its row is locked) and tell its agent, whose popup closes."""
    ended = _ended(offer, outcome, now)
    await repo.end_offers(session, [ended])
    emit(session, ended.event(), Audience(users=[offer.agent_id], supervisors=False))


async def _set_task(session: AsyncSession, task: StoredTask, now: float, status: str, agent_id: int | None,
                    **runtime: float | None) -> None:
    model = Task.model_validate({**task.task, "status": status, "agent_id": agent_id, **runtime})
    await repo.update_tasks(session, [TaskUpdate(task.conversation_id, task.queue_id, task.channel, status,
                                                 agent_id, model, instant(now))])


async def _assign(session: AsyncSession, conversation_id: int, agent_id: int, now: float) -> None:
    task = await repo.get_task(session, conversation_id, for_update=True)
    if task is not None:
        await _set_task(session, task, now, "assigned", agent_id, accepted_at=now)
    await conversation_actions.update_conversation(session, None, conversation_id, assignee_id=agent_id)


async def _open_offer_of(session: AsyncSession, actor: Actor, offer_id: int) -> StoredOffer:
    offer = await repo.get_offer(session, offer_id, for_update=True)
    if offer is None or offer.agent_id != actor.user_id:
        raise NotFound(f"offer {offer_id} does not exist")
    if offer.status != OfferStatus.OPEN:
        raise Conflict(f"offer {offer_id} is no longer open: it was {offer.status.replace('_', ' ')}")
    return offer


async def accept_offer(session: AsyncSession, actor: Actor, offer_id: int, now: float | None = None) -> int:
    """The agent takes the offered conversation: it is assigned to them (through the conversation
    action, with its events). Returns the conversation id."""
    now = time.time() if now is None else now
    offer = await _open_offer_of(session, actor, offer_id)
    conv = await conv_repo.get_conversation(session, offer.conversation_id, for_update=True)
    if conv is None or conv.status != ConversationStatus.OPEN or conv.assignee_id not in (None, actor.user_id):
        await _end_offer(session, offer, OfferResult.RESCINDED, now)
        raise Conflict(f"conversation {offer.conversation_id} no longer needs an agent")
    ended = _ended(offer, OfferResult.ACCEPTED, now)
    await repo.end_offers(session, [ended])
    await _assign(session, offer.conversation_id, actor.user_id, now)
    emit(session, ended.event(), Audience(users=[offer.agent_id], supervisors=False))  # after the assignment's
    return offer.conversation_id


async def reject_offer(session: AsyncSession, actor: Actor, offer_id: int, now: float | None = None) -> None:
    """The agent declines: the task waits again with its original age (the router re-offers it)."""
    now = time.time() if now is None else now
    offer = await _open_offer_of(session, actor, offer_id)
    task = await repo.get_task(session, offer.conversation_id, for_update=True)
    if task is not None and task.status == "offered":
        await _set_task(session, task, now, "waiting", None)
    await _end_offer(session, offer, OfferResult.REJECTED, now)


async def pick_task(session: AsyncSession, actor: Actor, conversation_id: int, now: float | None = None) -> None:
    """An agent takes a waiting task from a queue they serve (a supervisor: any), if they have a free
    slot on its channel class. An open offer of it to someone else is withdrawn."""
    now = time.time() if now is None else now
    offer = await repo.open_offer_for(session, conversation_id)  # offer, then task: the order everyone locks in
    task = await repo.get_task(session, conversation_id, for_update=True)
    if task is None or task.status not in ("waiting", "offered"):
        if task is None or not actor.visibility.serves(task.queue_id):
            raise NotFound(f"conversation {conversation_id} is not waiting in a queue")
        raise Conflict(f"conversation {conversation_id} is already {task.status}")
    origin = task.task.get("origin_queue_id")
    if not actor.visibility.may_pick(task.queue_id, origin if isinstance(origin, int) else None):
        raise PermissionDenied(f"you do not serve the queue of conversation {conversation_id}")
    rec = await repo.roster(session, [actor.user_id])
    capacity = rec[0].agent().capacity if rec else dict(DEFAULT_CAPACITY)
    used = (await repo.loads(session, actor.user_id)).get(actor.user_id, {}).get(task.channel, 0)
    if task.status == "offered" and task.agent_id == actor.user_id:
        used -= 1  # the offer to me already holds the slot it would take
    if not actor.sees_everything and used >= capacity.get(task.channel, 0):  # type: ignore[call-overload]
        raise Conflict(f"you have no free {task.channel} slot ({used} of {capacity.get(task.channel, 0)} in use)")  # type: ignore[call-overload]
    if offer is not None:  # to someone else: withdrawn; to me (taken from the queue view): the popup closes
        await _end_offer(session, offer, OfferResult.RESCINDED if offer.agent_id != actor.user_id else OfferResult.ACCEPTED,
                             now)
    await _assign(session, conversation_id, actor.user_id, now)
    emit(session, TaskPicked(conversation_id=conversation_id, agent_id=actor.user_id, queue_id=task.queue_id, at=now),
         Audience(users=[actor.user_id], queues=[task.queue_id]))


async def end_wrap_up(session: AsyncSession, actor: Actor, conversation_id: int, now: float | None = None) -> None:
    """The agent is ready before the wrap-up timer ends (a supervisor may end anyone's): the slot is
    freed. The request is stored on the task row in a column only this action writes, so a router that
    misses the event (a restart, a change of leader) still finds it."""
    now = time.time() if now is None else now
    task = await repo.get_task(session, conversation_id, for_update=True)
    if task is None or task.status != "wrapping" or task.agent_id is None:
        if task is None or not actor.visibility.sees_task(None, task.agent_id):
            raise NotFound(f"conversation {conversation_id} is not in wrap-up")
        raise Conflict(f"conversation {conversation_id} is not in wrap-up: it is {task.status}")
    if not actor.visibility.sees_task(None, task.agent_id):
        raise NotFound(f"conversation {conversation_id} is not in wrap-up")
    if task.wrap_end_requested_at is not None:
        raise Conflict(f"the wrap-up of conversation {conversation_id} is already ending")
    await repo.request_wrap_end(session, conversation_id, instant(now))
    emit(session, WrapUpEndRequested(conversation_id=conversation_id, agent_id=task.agent_id, at=now),
         Audience(users=[task.agent_id], supervisors=False))


async def my_wrap_ups(session: AsyncSession, actor: Actor) -> list[WrapUp]:
    """The agent's conversations in wrap-up now, with when each ends."""
    out = []
    for row in await repo.agent_tasks(session, actor.user_id, status="wrapping"):
        if row.wrap_end_requested_at is not None:  # "Ready" was said: the router is ending it
            continue
        out.append(WrapUp(conversation_id=row.conversation_id, agent_id=actor.user_id, queue_id=row.queue_id,
                          state="started", until=row.task.get("wrap_until"), at=seconds(row.updated_at)))
    return out
