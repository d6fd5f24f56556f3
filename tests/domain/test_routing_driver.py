"""The routing driver (pure): typed conversation states, agents and offer rows in, typed decisions out.
The same rules the routing worker runs against the database and the simulator runs against its
customers, tested here without either."""

from __future__ import annotations

from datetime import UTC, datetime

from threadline.domain.queues import QueueSettings
from threadline.domain.routing import EngineConfig, RoutingEngine, Task
from threadline.domain.routing.driver import RoutingDriver
from threadline.domain.routing.records import (
    AgentRecord,
    ConversationKeys,
    ConversationState,
    OfferAnswer,
    Restore,
    RoundInput,
    RoutingQueue,
    instant,
)
from threadline.domain.routing.settings import QueueRouting

T0 = 1_800_000_000.0
GENERAL, BILLING = 1, 2


def queue(qid: int, **routing: object) -> RoutingQueue:
    return RoutingQueue.of(qid, QueueSettings(), QueueRouting.model_validate({"language_required": False, **routing}))


def agent(aid: int, queues: list[int], presence: str = "available") -> AgentRecord:
    return AgentRecord(aid, f"agent {aid}", "agent", {}, [], presence, None, queues, [], {"messaging": 1}, None)


def conversation(cid: int, at: float, *, queue_id: int = GENERAL, priority: str = "normal", status: str = "open",
                 assignee: int | None = None, contact: dict | None = None, abandoned: bool = False
                 ) -> ConversationState:
    return ConversationState(cid, status, queue_id, assignee, 100 + cid, f"Customer {cid}", priority, {},
                             contact or {}, "api", datetime.fromtimestamp(at, UTC), abandoned)


def driver(queues: list[RoutingQueue], roster: list[AgentRecord]) -> RoutingDriver:
    d = RoutingDriver()
    d.rebuild(Restore(queues, EngineConfig(), roster, [], [], 1, {}), T0)
    return d


def test_a_conversation_becomes_a_task_an_offer_and_an_answered_fact() -> None:
    drv = driver([queue(GENERAL)], [agent(7, [GENERAL])])
    d = drv.step(RoundInput(now=T0, conversations={1: conversation(1, T0 - 5)}))
    [row] = d.new_tasks
    assert (row.conversation_id, row.status, row.agent_id, row.channel) == (1, "offered", 7, "messaging")
    assert row.enqueued_at == instant(T0 - 5) and row.task.priority == 0
    [offer] = d.offers
    assert (offer.agent_id, offer.contact_name, offer.waited_seconds) == (7, "Customer 1", 5.0)
    assert offer.event().expires_at == T0 + 30  # the event keeps the desk's Unix seconds
    assert drv.offers_to_check(T0 + 1, [1], False) == [offer.offer_id]

    d = drv.step(RoundInput(now=T0 + 3, offers={offer.offer_id: OfferAnswer("accepted", instant(T0 + 2))}))
    [fact] = d.outcomes
    assert (fact.kind, fact.agent_id, fact.wait_seconds, fact.within_target) == ("answered", 7, 7.0, True)
    assert [u.status for u in d.task_updates] == ["assigned"] and not d.new_tasks

    d = drv.step(RoundInput(now=T0 + 60, conversations={1: conversation(1, T0, status="resolved", assignee=7)}))
    assert [(f.kind, f.handle_seconds) for f in d.outcomes] == [("handled", 58.0)]
    assert d.gone_tasks == [1]


def test_a_priority_change_or_a_vip_flag_re_ranks_a_waiting_task() -> None:
    drv = driver([queue(GENERAL)], [agent(7, [GENERAL], presence="away")])
    drv.step(RoundInput(now=T0, conversations={1: conversation(1, T0 - 20), 2: conversation(2, T0 - 10),
                                               3: conversation(3, T0 - 5)}))
    assert drv.engine is not None
    assert [p.task_id for p in drv.engine.positions(GENERAL, T0)] == [1, 2, 3]
    d = drv.step(RoundInput(now=T0 + 1, conversations={3: conversation(3, T0 - 5, priority="urgent"),
                                                       2: conversation(2, T0 - 10, contact={"vip": True})}))
    assert sorted(u.conversation_id for u in d.task_updates) == [2, 3]  # their rows carry the new task
    assert [p.task_id for p in drv.engine.positions(GENERAL, T0 + 1)] == [3, 2, 1]
    unchanged = drv.step(RoundInput(now=T0 + 2, conversations={1: conversation(1, T0 - 20)}))
    assert not unchanged.task_updates
    d = drv.step(RoundInput(now=T0 + 3, roster=[agent(7, [GENERAL])], roster_scope={7}))
    assert [o.conversation_id for o in d.offers] == [3]


def test_an_overflow_is_a_transferred_fact_for_the_queue_it_left() -> None:
    drv = driver([queue(BILLING, steps=[{"after_seconds": 60, "overflow_to": GENERAL}]), queue(GENERAL)], [])
    drv.step(RoundInput(now=T0, conversations={1: conversation(1, T0 - 10, queue_id=BILLING)}))
    assert drv.next_due() == T0 + 50
    d = drv.step(RoundInput(now=T0 + 50))
    [fact] = d.outcomes
    assert (fact.kind, fact.queue_id, fact.wait_seconds, fact.at) == ("transferred", BILLING, 60.0, instant(T0 + 50))
    assert [(u.conversation_id, u.queue_id) for u in d.task_updates] == [(1, GENERAL)]


def test_a_customer_who_hangs_up_while_waiting_is_abandoned_and_a_closed_conversation_cancelled() -> None:
    drv = driver([queue(GENERAL)], [])
    drv.step(RoundInput(now=T0, conversations={1: conversation(1, T0), 2: conversation(2, T0)}))
    d = drv.step(RoundInput(now=T0 + 9, conversations={1: conversation(1, T0, status="resolved", abandoned=True),
                                                       2: conversation(2, T0, status="resolved")}))
    assert [(f.conversation_id, f.kind, f.wait_seconds) for f in d.outcomes] == [(1, "abandoned", 9.0),
                                                                                (2, "cancelled", 9.0)]


def test_the_reconciliation_reads_only_conversations_that_disagree_with_the_engine() -> None:
    drv = driver([queue(GENERAL), queue(BILLING)], [])
    drv.step(RoundInput(now=T0, conversations={1: conversation(1, T0), 2: conversation(2, T0)}))
    assert drv.unmatched({1: GENERAL, 2: GENERAL}) == []
    assert drv.suspects({1: GENERAL, 2: GENERAL, 3: GENERAL}, {}) == {3}  # a conversation it never saw
    assert drv.suspects({1: BILLING}, {2: ConversationKeys("resolved", GENERAL, None)}) == {1, 2}


def test_without_rows_the_driver_decides_the_same_and_writes_no_task_rows() -> None:
    for rows in (True, False):
        drv = RoutingDriver(rows=rows)
        drv.rebuild(Restore([queue(GENERAL)], EngineConfig(), [agent(7, [GENERAL])], [], [], 1, {}), T0)
        d = drv.step(RoundInput(now=T0, conversations={1: conversation(1, T0)}))
        assert [o.conversation_id for o in d.offers] == [1]
        assert bool(d.new_tasks) is rows


def test_the_engine_updates_a_waiting_task_in_place_and_an_offered_one_when_its_offer_ends() -> None:
    eng = RoutingEngine({"q": RoutingQueue.of(1, QueueSettings(), QueueRouting()).config})
    eng.enqueue(Task(id=1, channel="chat", queue_id="q", enqueued_at=0.0), 0.0)
    eng.enqueue(Task(id=2, channel="chat", queue_id="q", enqueued_at=1.0), 1.0)
    assert not eng.update_task(Task(id=2, channel="chat", queue_id="q", enqueued_at=1.0), 2.0)
    assert eng.update_task(Task(id=2, channel="chat", queue_id="q", enqueued_at=1.0, priority=5), 2.0)
    assert [p.task_id for p in eng.positions("q", 2.0)] == [2, 1]
    assert eng.get_task(2).enqueued_at == 1.0  # its age stays
