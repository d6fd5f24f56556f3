"""The router's writes: what one round of the routing driver decided, in the caller's transaction."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions import users as user_actions
from threadline.actions.events import emit
from threadline.db.repos import routing as repo
from threadline.domain.events import Audience
from threadline.domain.routing.records import Decisions

MISSED_OFFERS = "missed offers"  # the presence reason of an agent the router puts away


async def record_decisions(session: AsyncSession, d: Decisions) -> None:
    """Persist a router round: tasks, offers and their outcomes, agents put away; emit the events
    (offers to their agent only; alerts to supervisors and the queue)."""
    await repo.delete_tasks(session, d.gone_tasks)
    await repo.insert_tasks(session, d.new_tasks)
    await repo.update_tasks(session, d.task_updates)
    await repo.end_offers(session, d.ended)
    await repo.insert_offers(session, d.offers)
    for e in d.ended:
        emit(session, e.event(), Audience(users=[e.agent_id], supervisors=False))
    for o in d.offers:
        emit(session, o.event(), Audience(users=[o.agent_id], supervisors=False))
    for u in d.unroutable:
        emit(session, u, Audience(queues=[u.queue_id]))
    for s in d.sla:
        emit(session, s, Audience(queues=[s.queue_id]))
    await repo.update_positions(session, d.positions)
    await repo.update_sla_states(session, d.sla_states)
    await repo.insert_outcomes(session, d.outcomes)
    for w in d.wrap_ups:
        emit(session, w, Audience(users=[w.agent_id], supervisors=False))
    if d.state is not None:
        emit(session, d.state, Audience())
    for agent_id in d.away:
        await user_actions.set_presence(session, agent_id, "away", MISSED_OFFERS)
