"""The routing worker against a real database (SQLite and PostgreSQL), driven round by round with a
controlled clock: offers, answers, timeouts, wrap-up, escalation, restarts and leadership."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from tests.conftest import seed_basics
from tests.routing.helpers import (
    STARTED,
    Clock,
    agent,
    arrive,
    available,
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
from threadline.db.repos import conversations as conv_repo
from threadline.db.repos import users as users_repo
from threadline.domain.errors import Conflict
from threadline.domain.users import Role
from threadline.workers.router import RoutingWorker


async def test_offer_then_accept_assigns_through_the_conversation_action(services) -> None:
    ids = await seed_basics(services)
    await available(services, ids["alice"])
    conv = await arrive(services, ids["channel"])
    clock = Clock()
    router = await leading_router(services, clock)
    await full_round(router)

    [offer] = await offers(services)
    assert (offer.conversation_id, offer.agent_id, offer.status) == (conv, ids["alice"], "open")
    assert offer.expires_at.timestamp() == pytest.approx(clock.now + 30, abs=1e-6)  # stored to the microsecond
    [sent] = await events(services, "routing.offer")
    assert sent["payload"]["offer_id"] == offer.id and sent["audience"]["users"] == [ids["alice"]]
    assert sent["audience"]["supervisors"] is False
    assert (await tasks(services))[conv].status == "offered"

    async with services.db.transaction() as s:
        assert await routing_actions.accept_offer(s, agent(ids["alice"], [ids["general"]]), offer.id) == conv
    async with services.db.transaction(write=False) as s:
        assert (await conv_repo.get_conversation(s, conv)).assignee_id == ids["alice"]
    updated = await events(services, "conversation.updated")
    assert updated and updated[-1]["payload"]["changes"] == ["assignee_id"]

    router._dirty.add(conv)  # what the bus event does
    await router.round()
    assert router.engine.task_status(conv) == "assigned"
    assert (await tasks(services))[conv].status == "assigned"
    assert [o.status for o in await offers(services)] == ["accepted"]


async def test_rejected_task_waits_again_with_its_original_age_and_goes_to_someone_else(services) -> None:
    ids = await seed_basics(services)
    async with services.db.transaction() as s:
        carmen = await user_actions.create_user(s, email="carmen@example.com", name="Carmen",
                                                queue_ids=[ids["general"]], skills={"general": 2})
    await available(services, ids["alice"], carmen.id)
    conv = await arrive(services, ids["channel"])
    clock = Clock()
    router = await leading_router(services, clock)
    await full_round(router)
    [first] = await offers(services)
    enqueued = (await tasks(services))[conv].enqueued_at

    async with services.db.transaction() as s:
        await routing_actions.reject_offer(s, agent(first.agent_id, [ids["general"]]), first.id)
    clock.now += 1
    router._dirty.add(conv)
    await router.round()
    rows = await offers(services)
    assert [o.status for o in rows] == ["rejected", "open"]
    assert rows[1].agent_id != first.agent_id  # the cool-down keeps it from the agent who declined
    assert (await tasks(services))[conv].enqueued_at == enqueued


async def test_timeouts_put_the_agent_away_after_the_configured_number(services) -> None:
    ids = await seed_basics(services)
    admin = Actor(user_id=ids["admin"], role=Role.ADMIN)
    async with services.db.transaction() as s:
        await routing_actions.set_engine_settings(s, admin, {"max_consecutive_no_answer": 1})
    await available(services, ids["alice"])
    conv = await arrive(services, ids["channel"])
    clock = Clock()
    router = await leading_router(services, clock)
    await full_round(router)
    clock.now += 31
    await router.round()

    assert [o.status for o in await offers(services)] == ["timed_out"]
    assert (await tasks(services))[conv].status == "waiting"
    async with services.db.transaction(write=False) as s:
        assert (await users_repo.get_user(s, ids["alice"])).presence == "away"
    assert [e["payload"]["outcome"] for e in await events(services, "routing.offer_ended")] == ["timed_out"]


async def test_an_accept_after_the_timeout_won_is_refused_and_vice_versa(services) -> None:
    ids = await seed_basics(services)
    await available(services, ids["alice"])
    await arrive(services, ids["channel"])
    clock = Clock()
    router = await leading_router(services, clock)
    await full_round(router)
    [offer] = await offers(services)
    # the agent answers just after the deadline, before the router noticed: the accept wins
    clock.now += 31
    async with services.db.transaction() as s:
        await routing_actions.accept_offer(s, agent(ids["alice"], [ids["general"]]), offer.id, now=clock.now)
    await router.round()  # the expiry check reads the row back and applies the accept
    assert [o.status for o in await offers(services)] == ["accepted"]
    assert router.engine.task_status(offer.conversation_id) == "assigned"
    # and a second answer to the same offer is refused
    try:
        async with services.db.transaction() as s:
            await routing_actions.reject_offer(s, agent(ids["alice"], [ids["general"]]), offer.id)
    except Conflict as exc:
        assert "accepted" in exc.message
    else:
        raise AssertionError("a closed offer was answered twice")


async def test_resolving_starts_wrap_up_which_holds_the_slot_until_it_ends(services) -> None:
    ids = await seed_basics(services)
    admin = Actor(user_id=ids["admin"], role=Role.ADMIN)
    async with services.db.transaction() as s:
        await routing_actions.set_queue_routing(s, admin, ids["general"], {"wrap_up_seconds": 60})
        await routing_actions.set_agent_profile(s, admin, ids["alice"], capacity={"messaging": 1})
    await available(services, ids["alice"])
    first = await arrive(services, ids["channel"])
    clock = Clock()
    router = await leading_router(services, clock)
    await full_round(router)
    [offer] = await offers(services)
    async with services.db.transaction() as s:
        await routing_actions.accept_offer(s, agent(ids["alice"], [ids["general"]]), offer.id)
        await conv_actions.update_conversation(s, None, first, status="resolved")
    second = await arrive(services, ids["channel"])
    clock.now += 10
    await full_round(router)
    assert (await tasks(services))[first].status == "wrapping"
    assert (await tasks(services))[second].status == "waiting"  # alice's only slot is in wrap-up
    clock.now += 61  # the wrap-up started at the resolve, 60 s ago
    await router.round()
    assert first not in await tasks(services)
    assert [(o.conversation_id, o.status) for o in await offers(services)] == [(first, "accepted"), (second, "open")]


async def test_escalation_relaxes_the_skill_level_after_its_time(services) -> None:
    ids = await seed_basics(services)
    admin = Actor(user_id=ids["admin"], role=Role.ADMIN)
    async with services.db.transaction() as s:
        await routing_actions.set_queue_routing(
            s, admin, ids["general"], {"steps": [{"after_seconds": 30, "max_level": 4}]},
            settings={"skills": {"general": 5}})
    await available(services, ids["alice"])  # general level 4
    conv = await arrive(services, ids["channel"])
    clock = Clock()
    router = await leading_router(services, clock)
    await full_round(router)
    assert await offers(services) == []
    assert (await tasks(services))[conv].status == "waiting"
    clock.now += 31
    await router.round()
    [offer] = await offers(services)
    assert offer.agent_id == ids["alice"]
    assert (await tasks(services))[conv].task["escalation_step"] == 1


async def test_a_task_nobody_can_take_waits_visibly_and_alerts_supervisors(services) -> None:
    ids = await seed_basics(services)
    admin = Actor(user_id=ids["admin"], role=Role.ADMIN)
    async with services.db.transaction() as s:
        await routing_actions.set_queue_routing(s, admin, ids["general"], {}, settings={"skills": {"klingon": 5}},
                                                force=True)
    await available(services, ids["alice"])
    conv = await arrive(services, ids["channel"])
    router = await leading_router(services, Clock())
    await full_round(router)
    assert await offers(services) == []
    row = (await tasks(services))[conv]
    assert row.status == "waiting" and "klingon" in row.note
    [alert] = await events(services, "routing.task_unroutable")
    assert alert["payload"]["conversation_id"] == conv and "klingon" in alert["payload"]["reason"]
    assert alert["audience"]["supervisors"] is True


async def test_restart_rebuilds_the_same_state_without_duplicates(services) -> None:
    ids = await seed_basics(services)
    await available(services, ids["alice"])
    convs = [await arrive(services, ids["channel"]) for _ in range(5)]  # alice: 3 messaging slots
    clock = Clock()
    first = await leading_router(services, clock)
    await full_round(first)
    before = first.engine.snapshot()
    await first.stop()

    second = await leading_router(services, clock)
    after = second.engine.snapshot()
    def by_id(snap):  # type: ignore[no-untyped-def]
        return sorted((t.model_dump() for t in snap.tasks), key=lambda t: t["id"])

    assert by_id(after) == by_id(before)
    assert [(o.offer_id, o.task_id, o.agent_id) for o in after.offers] == [
        (o.offer_id, o.task_id, o.agent_id) for o in before.offers]
    for a, b in zip(after.offers, before.offers, strict=True):  # times are stored to the microsecond
        assert (a.offered_at, a.expires_at) == pytest.approx((b.offered_at, b.expires_at), abs=1e-6)
    await full_round(second)
    rows = await offers(services)
    assert len(rows) == 3 and len({o.conversation_id for o in rows}) == 3
    assert sorted((await tasks(services)).keys()) == sorted(convs)
    # new offer ids continue after the old ones
    async with services.db.transaction() as s:
        await routing_actions.accept_offer(s, agent(ids["alice"], [ids["general"]]), rows[0].id)
    second._dirty.add(rows[0].conversation_id)
    clock.now += 1
    await second.round()
    assert [o.status for o in await offers(services)].count("open") == 2
    await second.stop()


async def test_only_the_leader_routes_and_another_takes_over(services) -> None:
    ids = await seed_basics(services)
    await available(services, ids["alice"])
    conv = await arrive(services, ids["channel"])
    clock = Clock()
    one, two = RoutingWorker(services.db, services.events, clock=clock), RoutingWorker(services.db, services.events, clock=clock)
    STARTED.extend([one, two])
    await one.tick()
    await two.tick()
    assert one.leader.held and one.engine is not None
    assert not two.leader.held and two.engine is None
    assert [(o.conversation_id, o.status) for o in await offers(services)] == [(conv, "open")]

    await one.stop()  # the leader goes away
    await two.tick()
    assert two.leader.held and two.rebuilds == 1
    assert two.engine.task_status(conv) == "offered"
    assert len(await offers(services)) == 1  # nothing offered twice
    await two.stop()


async def test_manual_pick_withdraws_the_offer_and_only_one_agent_gets_it(services) -> None:
    ids = await seed_basics(services)
    async with services.db.transaction() as s:
        carmen = await user_actions.create_user(s, email="carmen@example.com", name="Carmen",
                                                queue_ids=[ids["general"]])
    await available(services, ids["alice"])
    conv = await arrive(services, ids["channel"])
    router = await leading_router(services, Clock())
    await full_round(router)
    [offer] = await offers(services)
    async with services.db.transaction() as s:
        await routing_actions.pick_task(s, agent(carmen.id, [ids["general"]]), conv)
    try:
        async with services.db.transaction() as s:
            await routing_actions.accept_offer(s, agent(ids["alice"], [ids["general"]]), offer.id)
    except Conflict:
        pass
    else:
        raise AssertionError("two agents got the same conversation")
    async with services.db.transaction(write=False) as s:
        assert (await conv_repo.get_conversation(s, conv)).assignee_id == carmen.id
    router._dirty.add(conv)
    await router.round()
    assert router.engine.task_status(conv) == "assigned"
    assert router.engine.get_task(conv).agent_id == carmen.id
    assert router.engine.agent_load(ids["alice"])["messaging"] == 0


async def test_a_vip_jumps_the_queue(services) -> None:
    ids = await seed_basics(services)
    first = await arrive(services, ids["channel"])
    vip = await arrive(services, ids["channel"])
    async with services.db.transaction() as s:
        conv = await conv_repo.get_conversation(s, vip)
        conv.attributes = {"vip": True}
    async with services.db.transaction() as s:
        await routing_actions.set_agent_profile(s, Actor(user_id=ids["admin"], role=Role.ADMIN), ids["alice"],
                                                capacity={"messaging": 1})
    router = await leading_router(services, Clock())
    await full_round(router)  # alice is offline: both wait
    await available(services, ids["alice"])
    router._dirty_users.add(ids["alice"])
    await router.round()
    [offer] = await offers(services)
    assert offer.conversation_id == vip and first != vip


async def test_overflow_moves_the_task_to_another_queue_after_its_time(services) -> None:
    ids = await seed_basics(services)
    admin = Actor(user_id=ids["admin"], role=Role.ADMIN)
    async with services.db.transaction() as s:
        await routing_actions.set_queue_routing(s, admin, ids["general"],
                                                {"steps": [{"after_seconds": 60, "overflow_to": ids["billing"]}]})
        await routing_actions.set_queue_routing(s, admin, ids["billing"], {}, settings={"skills": {}})
    await available(services, ids["bob"])  # serves billing only; alice (general) stays offline
    conv = await arrive(services, ids["channel"])
    clock = Clock()
    router = await leading_router(services, clock)
    await full_round(router)
    assert await offers(services) == []
    clock.now += 61
    await router.round()
    [offer] = await offers(services)
    assert (offer.agent_id, offer.queue_id) == (ids["bob"], ids["billing"])
    row = (await tasks(services))[conv]
    assert row.queue_id == ids["billing"] and row.task["origin_queue_id"] == ids["general"]


async def test_the_contacts_last_agent_gets_the_next_conversation_first(services) -> None:
    ids = await seed_basics(services)
    admin = Actor(user_id=ids["admin"], role=Role.ADMIN)
    async with services.db.transaction() as s:
        carmen = await user_actions.create_user(s, email="carmen@example.com", name="Carmen",
                                                queue_ids=[ids["general"]])
        await routing_actions.set_queue_routing(s, admin, ids["general"], {"sticky_seconds": 600})
    await available(services, carmen.id)
    first = await arrive(services, ids["channel"], who="returning")
    clock = Clock()
    router = await leading_router(services, clock)
    await full_round(router)
    [offer] = await offers(services)
    assert offer.agent_id == carmen.id
    async with services.db.transaction() as s:
        await routing_actions.accept_offer(s, agent(carmen.id, [ids["general"]]), offer.id)
        await conv_actions.update_conversation(s, None, first, status="resolved")
    other = await arrive(services, ids["channel"])  # carmen takes another customer: she is busier than alice
    clock.now += 1
    await full_round(router)
    [busy] = await offers(services, "open")
    assert busy.conversation_id == other
    async with services.db.transaction() as s:
        await routing_actions.accept_offer(s, agent(carmen.id, [ids["general"]]), busy.id)
    await available(services, ids["alice"])
    router._dirty_users.add(ids["alice"])  # what the presence event does
    second = await arrive(services, ids["channel"], who="returning")
    assert second != first
    clock.now += 5
    await full_round(router)  # without the sticky window alice (no load) would get it
    sticky = [o for o in await offers(services) if o.conversation_id == second]
    assert [o.agent_id for o in sticky] == [carmen.id]


async def test_a_conversation_moved_to_another_queue_keeps_its_age_and_follows(services) -> None:
    ids = await seed_basics(services)
    await available(services, ids["bob"])  # billing; alice (general) is offline
    conv = await arrive(services, ids["channel"])
    clock = Clock()
    router = await leading_router(services, clock)
    await full_round(router)
    before = (await tasks(services))[conv]
    assert before.status == "waiting" and before.queue_id == ids["general"]
    async with services.db.transaction() as s:
        await conv_actions.update_conversation(s, None, conv, queue_id=ids["billing"])
    clock.now += 5
    router._dirty.add(conv)
    await router.round()
    after = (await tasks(services))[conv]
    assert after.queue_id == ids["billing"] and after.enqueued_at == before.enqueued_at
    [offer] = await offers(services)
    assert offer.agent_id == ids["bob"]


async def test_an_agent_giving_a_conversation_back_puts_it_in_the_queue_again(services) -> None:
    ids = await seed_basics(services)
    await available(services, ids["alice"])
    conv = await arrive(services, ids["channel"])
    clock = Clock()
    router = await leading_router(services, clock)
    await full_round(router)
    [offer] = await offers(services)
    alice = agent(ids["alice"], [ids["general"]])
    async with services.db.transaction() as s:
        await routing_actions.accept_offer(s, alice, offer.id)
    router._dirty.add(conv)
    await router.round()
    async with services.db.transaction() as s:
        await conv_actions.update_conversation(s, alice, conv, assignee_id=None)
    clock.now += 1
    router._dirty.add(conv)
    await router.round()
    # waiting again (alice is still the only agent; the engine re-offers it to her)
    assert (await tasks(services))[conv].status in ("waiting", "offered")
    assert router.engine.task_status(conv) in ("waiting", "offered")


async def test_when_the_leader_dies_on_postgresql_another_takes_over_and_the_old_one_stops(services) -> None:
    if services.db.dialect != "postgresql":
        pytest.skip("the advisory lock dies with its connection on PostgreSQL; SQLite's file lock is one host")
    ids = await seed_basics(services)
    await available(services, ids["alice"])
    conv = await arrive(services, ids["channel"])
    clock = Clock()
    one, two = RoutingWorker(services.db, services.events, clock=clock), RoutingWorker(services.db, services.events, clock=clock)
    STARTED.extend([one, two])
    await one.tick()
    assert one.leader.held
    # the leader's server connection dies (crash, network): PostgreSQL drops its advisory lock
    async with services.db.transaction() as s:
        killed = (await s.execute(text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory' AND objid = :k"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"),
            {"k": one.leader.key})).scalar()
    assert killed == 1
    for _ in range(500):  # the backend exits (and frees the lock) shortly after the signal; nothing to await
        async with services.db.transaction(write=False) as s:
            if not (await s.execute(text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = :k"
                    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"),
                    {"k": one.leader.key})).scalar():
                break
        await asyncio.sleep(0.01)
    await two.tick()
    assert two.leader.held and two.engine.task_status(conv) == "offered"
    await one.tick()  # notices it lost the lock and drops its state
    assert not one.leader.held and one.engine is None
    assert len(await offers(services)) == 1


async def test_a_queue_outside_its_business_hours_offers_nothing_until_it_opens(services) -> None:
    from datetime import UTC, datetime, timedelta

    ids = await seed_basics(services)
    clock = Clock()
    today = datetime.fromtimestamp(clock.now, UTC).date()
    closed = {"hours": {"timezone": "UTC", "closed_dates": [str(today), str(today + timedelta(days=1))]}}
    async with services.db.transaction() as s:
        await user_actions.update_queue(s, ids["general"], settings=closed)
    await available(services, ids["alice"])
    conv = await arrive(services, ids["channel"])
    router = await leading_router(services, clock)
    await full_round(router)
    assert await offers(services) == []  # closed: the customer waits, nobody is offered the task
    assert router.engine.task_status(conv) == "waiting"

    async with services.db.transaction() as s:
        await user_actions.update_queue(s, ids["general"], settings={"hours": {"timezone": "UTC"}})
    router._reload = True  # what routing.settings_changed does
    clock.now += 60
    await full_round(router)
    [offer] = await offers(services)
    assert (offer.conversation_id, offer.agent_id) == (conv, ids["alice"])
