"""Helpers for routing tests: a controllable clock, conversations arriving, a router driven by hand."""

from __future__ import annotations

import itertools
import time
from typing import Any

from sqlalchemy import select

from threadline.actions import inbound as inbound_actions
from threadline.actions import routing as routing_actions
from threadline.actions import users as user_actions
from threadline.actions.permissions import Actor
from threadline.db.models import OutboxEventRow, RoutingOfferRow, RoutingTaskRow
from threadline.db.repos import channels as channels_repo
from threadline.domain.contacts import IdentityKind, IdentityValue
from threadline.domain.messages import InboundMessage, Sender
from threadline.domain.users import Role
from threadline.services import Services
from threadline.workers.router import RoutingWorker

_ids = itertools.count(1)
STARTED: list[RoutingWorker] = []  # stopped by the autouse fixture in conftest.py (releases leader locks)


class Clock:
    def __init__(self) -> None:
        self.now = time.time() + 0.5  # after the conversations made so far, on the database's clock

    def __call__(self) -> float:
        return self.now


async def arrive(services: Services, channel_id: int, *, who: str | None = None) -> int:
    """A customer writes in through the API channel; returns the new conversation's id."""
    n = next(_ids)
    who = who or f"cust-{n}"
    async with services.db.transaction() as s:
        channel = await channels_repo.get_channel(s, channel_id)
        msg = await inbound_actions.receive_inbound(
            s, channel, InboundMessage(f"p-{n}", Sender(identities=(IdentityValue(IdentityKind.HANDLE, who,
                                                                                  str(channel_id)),),
                                                       name=f"Customer {n}"), "hello"))
    assert msg is not None
    return msg.conversation_id


def agent(uid: int, queues: list[int]) -> Actor:
    return Actor(user_id=uid, role=Role.AGENT, name=f"agent {uid}", queue_ids=queues)


async def with_wrap_up(services: Services, ids: dict[str, int], seconds: float, *, alice_slots: int | None = 1) -> None:
    """The general queue keeps agents in wrap-up for ``seconds``; Alice has ``alice_slots`` messaging slots."""
    admin = Actor(user_id=ids["admin"], role=Role.ADMIN)
    async with services.db.transaction() as s:
        await routing_actions.set_queue_routing(s, admin, ids["general"], {"wrap_up_seconds": seconds})
        if alice_slots is not None:
            await routing_actions.set_agent_profile(s, admin, ids["alice"], capacity={"messaging": alice_slots})


async def available(services: Services, *user_ids: int, status: str = "available") -> None:
    async with services.db.transaction() as s:
        for uid in user_ids:
            await user_actions.set_presence(s, uid, status)


async def leading_router(services: Services, clock: Clock, **kw: Any) -> RoutingWorker:
    """A router that is the leader, with its engine rebuilt, driven by calling ``round()``."""
    router = RoutingWorker(services.db, services.events, clock=clock, **kw)
    STARTED.append(router)
    assert await router.leader.try_acquire()
    await router.rebuild()
    return router


async def full_round(router: RoutingWorker) -> None:
    router._next_full = 0.0
    await router.round()


async def offers(services: Services, status: str | None = None) -> list[RoutingOfferRow]:
    async with services.db.transaction(write=False) as s:
        stmt = select(RoutingOfferRow).order_by(RoutingOfferRow.id)
        if status:
            stmt = stmt.where(RoutingOfferRow.status == status)
        return list((await s.execute(stmt)).scalars())


async def tasks(services: Services) -> dict[int, RoutingTaskRow]:
    async with services.db.transaction(write=False) as s:
        return {r.conversation_id: r for r in (await s.execute(select(RoutingTaskRow))).scalars()}


async def events(services: Services, name: str) -> list[dict[str, Any]]:
    async with services.db.transaction(write=False) as s:
        rows = (await s.execute(select(OutboxEventRow).where(OutboxEventRow.name == name)
                                .order_by(OutboxEventRow.id))).scalars()
        return [{"payload": r.payload, "audience": r.audience} for r in rows]


async def deliver(router: RoutingWorker, services: Services, *names: str) -> int:
    """Hand the routers (through the typed subscriptions) the events written so far with these names, as
    the bus would (the relay is not running in these tests). Returns how many were delivered."""
    from datetime import UTC, datetime

    from threadline.bus.base import Envelope

    n = 0
    for name in names:
        for i, ev in enumerate(await events(services, name)):
            services.events.deliver(Envelope(seq=i, name=name, payload=ev["payload"], audience=ev["audience"],
                                      created_at=datetime.now(UTC)))
            n += 1
    return n
