"""The routing worker's later duties, against a real database (SQLite and PostgreSQL): ending a
wrap-up early, the outcome facts that reports and wallboards read, SLA alerts that survive a
restart without being announced twice, and agent changes that reach the router at once."""

from __future__ import annotations

from sqlalchemy import select

from tests.conftest import seed_basics
from tests.routing.helpers import (
    Clock,
    arrive,
    available,
    deliver,
    events,
    full_round,
    leading_router,
    offers,
    tasks,
)
from threadline.actions import conversations as conv_actions
from threadline.actions import routing as routing_actions
from threadline.actions import users as user_actions
from threadline.actions.permissions import Actor
from threadline.db.models import RoutingOutcomeRow
from threadline.db.repos import routing as routing_repo
from threadline.domain.errors import Conflict, NotFound
from threadline.domain.users import Role


def agent(uid: int, queues: list[int]) -> Actor:
    return Actor(user_id=uid, role=Role.AGENT, name=f"agent {uid}", queue_ids=queues)


async def outcomes(services) -> list[RoutingOutcomeRow]:  # type: ignore[no-untyped-def]
    async with services.db.transaction(write=False) as s:
        return list((await s.execute(select(RoutingOutcomeRow).order_by(RoutingOutcomeRow.id))).scalars())


async def test_ready_ends_the_wrap_up_early_and_frees_the_slot(services) -> None:
    ids = await seed_basics(services)
    admin = Actor(user_id=ids["admin"], role=Role.ADMIN)
    alice = agent(ids["alice"], [ids["general"]])
    async with services.db.transaction() as s:
        await routing_actions.set_queue_routing(s, admin, ids["general"], {"wrap_up_seconds": 120})
        await routing_actions.set_agent_profile(s, admin, ids["alice"], capacity={"messaging": 1})
    await available(services, ids["alice"])
    first = await arrive(services, ids["channel"])
    clock = Clock()
    router = await leading_router(services, clock)
    await full_round(router)
    [offer] = await offers(services)
    async with services.db.transaction() as s:
        await routing_actions.accept_offer(s, alice, offer.id, now=clock.now + 4)
    clock.now += 5
    await full_round(router)
    async with services.db.transaction() as s:
        await conv_actions.update_conversation(s, None, first, status="resolved")
    second = await arrive(services, ids["channel"])
    clock.now += 60
    await full_round(router)
    assert (await tasks(services))[first].status == "wrapping"
    [started] = await events(services, "routing.wrap_up")
    assert started["payload"]["state"] == "started" and started["payload"]["until"] == clock.now + 120
    assert started["audience"]["users"] == [ids["alice"]]
    async with services.db.transaction(write=False) as s:
        assert [w.conversation_id for w in await routing_actions.my_wrap_ups(s, alice)] == [first]

    # only the agent (or a supervisor) may end it; a conversation not in wrap-up is refused with why
    async with services.db.transaction() as s:
        try:
            await routing_actions.end_wrap_up(s, agent(ids["bob"], [ids["billing"]]), first)
            raise AssertionError("bob ended alice's wrap-up")
        except NotFound as exc:
            assert "not in wrap-up" in exc.message
    async with services.db.transaction() as s:
        try:
            await routing_actions.end_wrap_up(s, alice, second)
            raise AssertionError("a waiting conversation was 'ended'")
        except NotFound:
            pass
    async with services.db.transaction() as s:
        await routing_actions.end_wrap_up(s, alice, first, now=clock.now + 10)
    clock.now += 10
    assert await deliver(router, services, "routing.wrap_up_end_requested") == 1
    await router.round()
    assert first not in await tasks(services)
    assert [(o.conversation_id, o.status) for o in await offers(services)] == [(first, "accepted"), (second, "open")]
    ended = (await events(services, "routing.wrap_up"))[-1]["payload"]
    assert (ended["state"], ended["ended_by"]) == ("ended", "agent")
    async with services.db.transaction() as s:
        try:
            await routing_actions.end_wrap_up(s, alice, first)
            raise AssertionError("ended twice")
        except (NotFound, Conflict):
            pass

    # the facts: answered after ~4 s (within the 20 s target); handled from the accept to 'ready'
    facts = [(o.conversation_id, o.kind) for o in await outcomes(services)]
    assert facts == [(first, "answered"), (first, "handled")]
    answered, handled = await outcomes(services)
    assert answered.agent_id == ids["alice"] and answered.within_target is True
    assert 4 <= answered.wait_seconds <= 5  # accepted 4 s after the offer (counted from the accept itself)
    assert abs(handled.handle_seconds - (clock.now - answered.at)) < 0.01  # accept -> resolve -> ready


async def test_a_wrap_up_ended_while_the_router_was_down_stays_ended_after_the_rebuild(services) -> None:
    ids = await seed_basics(services)
    admin = Actor(user_id=ids["admin"], role=Role.ADMIN)
    alice = agent(ids["alice"], [ids["general"]])
    async with services.db.transaction() as s:
        await routing_actions.set_queue_routing(s, admin, ids["general"], {"wrap_up_seconds": 600})
        await routing_actions.set_agent_profile(s, admin, ids["alice"], capacity={"messaging": 1})
    await available(services, ids["alice"])
    first = await arrive(services, ids["channel"])
    clock = Clock()
    router = await leading_router(services, clock)
    await full_round(router)
    [offer] = await offers(services)
    async with services.db.transaction() as s:
        await routing_actions.accept_offer(s, alice, offer.id)
        await conv_actions.update_conversation(s, None, first, status="resolved")
    clock.now += 1
    await full_round(router)
    assert (await tasks(services))[first].status == "wrapping"
    await router.stop()
    async with services.db.transaction() as s:  # the event is never seen by this router
        await routing_actions.end_wrap_up(s, alice, first, now=clock.now)
    second = await arrive(services, ids["channel"])
    clock.now += 1
    again = await leading_router(services, clock)
    await full_round(again)
    assert [(o.conversation_id, o.status) for o in await offers(services)][-1] == (second, "open")


async def test_outcomes_count_answered_within_target_and_cancelled_for_the_wallboard(services) -> None:
    ids = await seed_basics(services)
    admin = Actor(user_id=ids["admin"], role=Role.ADMIN)
    async with services.db.transaction() as s:
        await routing_actions.set_queue_routing(s, admin, ids["general"], {}, settings={"sla": {"answer_seconds": 30}})
    start = Clock().now - 1
    convs = [await arrive(services, ids["channel"]) for _ in range(3)]
    clock = Clock()
    router = await leading_router(services, clock)
    await full_round(router)  # nobody available: all three wait
    async with services.db.transaction() as s:
        await conv_actions.update_conversation(s, None, convs[2], status="resolved")  # closed unanswered
    clock.now += 10
    await full_round(router)
    await available(services, ids["alice"])
    router._dirty_users.add(ids["alice"])
    await router.round()
    first, second = sorted(await offers(services), key=lambda o: o.conversation_id)
    async with services.db.transaction() as s:
        await routing_actions.accept_offer(s, agent(ids["alice"], [ids["general"]]), first.id, now=clock.now)
    clock.now += 40  # the second one is answered after the 30 s target
    async with services.db.transaction() as s:
        await routing_actions.accept_offer(s, agent(ids["alice"], [ids["general"]]), second.id, now=clock.now)
    await full_round(router)
    async with services.db.transaction(write=False) as s:
        figures = (await routing_repo.queue_figures(s, since=start))[ids["general"]]
    assert (figures.answered, figures.answered_within, figures.cancelled, figures.abandoned) == (2, 1, 1, 0)
    assert figures.service_level == 0.5
    assert figures.asa_seconds is not None and 10 <= figures.asa_seconds <= 40
    async with services.db.transaction(write=False) as s:
        assert await routing_repo.queue_figures(s, since=clock.now + 3600) == {}


async def test_sla_alerts_are_not_announced_again_after_a_restart(services) -> None:
    ids = await seed_basics(services)
    admin = Actor(user_id=ids["admin"], role=Role.ADMIN)
    async with services.db.transaction() as s:
        await routing_actions.set_queue_routing(s, admin, ids["general"], {}, settings={"sla": {"answer_seconds": 20}})
    conv = await arrive(services, ids["channel"])  # nobody is available
    clock = Clock()
    router = await leading_router(services, clock, state_seconds=0)
    await full_round(router)
    clock.now += 17  # past 80 % of the target
    await router.round()
    assert [e["payload"]["state"] for e in await events(services, "routing.sla_alert")] == ["near_breach"]
    assert (await tasks(services))[conv].sla_state == "near_breach"
    await router.stop()
    again = await leading_router(services, clock, state_seconds=0)
    clock.now += 1
    await full_round(again)
    assert len(await events(services, "routing.sla_alert")) == 1  # not announced twice
    clock.now += 5  # past the target: this one is new
    await again.round()
    assert [e["payload"]["state"] for e in await events(services, "routing.sla_alert")] == ["near_breach", "breached"]


async def test_skill_and_membership_changes_reach_the_router_without_waiting_for_the_roster_sweep(services) -> None:
    ids = await seed_basics(services)
    await available(services, ids["alice"], ids["bob"])
    billing = await arrive(services, ids["channel"])
    async with services.db.transaction() as s:
        conv = await conv_actions.update_conversation(s, None, billing, queue_id=ids["billing"])
    clock = Clock()
    router = await leading_router(services, clock)
    await full_round(router)
    [offer] = await offers(services)
    assert offer.agent_id == ids["bob"]
    async with services.db.transaction() as s:  # bob leaves the billing queue: his offer is withdrawn
        await user_actions.update_user(s, ids["bob"], queue_ids=[])
    assert await deliver(router, services, "routing.settings_changed") >= 1
    clock.now += 1
    await router.round()
    assert router.engine is not None and not router.engine.has_agent(ids["bob"])
    assert [o.status for o in await offers(services)] == ["rescinded"]
    async with services.db.transaction() as s:  # alice learns billing and joins: offered at once
        await user_actions.update_user(s, ids["alice"], skills={"general": 4, "billing": 3},
                                       queue_ids=[ids["general"], ids["billing"]])
    await deliver(router, services, "routing.settings_changed")
    clock.now += 1
    await router.round()
    assert [(o.agent_id, o.status) for o in await offers(services)][-1] == (ids["alice"], "open")
    assert conv.id == billing


async def test_position_changes_alone_publish_a_routing_state(services) -> None:
    ids = await seed_basics(services)
    convs = [await arrive(services, ids["channel"]) for _ in range(2)]
    clock = Clock()
    router = await leading_router(services, clock, state_seconds=0)
    await full_round(router)
    before = len(await events(services, "routing.state"))
    assert [t.position for t in (await tasks(services)).values()] == [1, 2]
    async with services.db.transaction() as s:
        await conv_actions.update_conversation(s, None, convs[0], status="resolved")
    router._dirty.add(convs[0])
    clock.now += 1
    await router.round()
    assert (await tasks(services))[convs[1]].position == 1
    assert len(await events(services, "routing.state")) == before + 1
