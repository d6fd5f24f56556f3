"""Routing engine: matching order, eligibility, offers, escalation, snapshots."""

from __future__ import annotations

import json

import pytest

from threadline.domain.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from threadline.domain.routing import (
    Agent,
    AgentAway,
    EngineConfig,
    EscalationStep,
    PriorityBoost,
    QueueConfig,
    RoutingEngine,
    RoutingSnapshot,
    SlaTarget,
    Task,
    TaskEscalated,
    TaskOverflowed,
    WrapUpEnded,
)


def engine(queues: dict | None = None, **cfg) -> RoutingEngine:
    return RoutingEngine(queues or {"q": QueueConfig()}, EngineConfig(**cfg))


def agent(aid, *, queues=("q",), skills=None, **kw) -> Agent:
    return Agent(id=aid, queues=list(queues), skills=skills or {}, **kw)


def task(tid, *, at=0.0, queue="q", channel="chat", **kw) -> Task:
    return Task(id=tid, channel=channel, queue_id=queue, enqueued_at=at, **kw)


def pairs(offers) -> list[tuple]:
    return [(o.task_id, o.agent_id) for o in offers]


# ------------------------------------------------------------------------------ ordering


def test_tasks_go_by_priority_then_age():
    e = engine()
    e.upsert_agent(agent("a", capacity={"voice": 1}))
    e.enqueue(task(1, at=0, channel="voice"), 10)
    e.enqueue(task(2, at=1, channel="voice", priority=5), 10)
    e.enqueue(task(3, at=-5, channel="voice"), 10)
    served = []
    now = 10.0
    for _ in range(3):
        (offer,) = e.decide(now)
        served.append(offer.task_id)
        e.accept(offer.offer_id, now)
        e.complete(offer.task_id, now + 1, wrap_up_seconds=0)
        now += 2
    assert served == [2, 3, 1]


def test_agents_by_load_ratio_then_longest_idle():
    e = engine()
    e.upsert_agent(agent("busy", last_idle=0.0))
    e.upsert_agent(agent("recent", last_idle=50.0))
    e.upsert_agent(agent("longest", last_idle=10.0))
    e.enqueue(task("warm"), 60)
    e.pick("busy", "warm", 60)  # busy now has 1/3 chat slots taken
    for i in range(3):
        e.enqueue(task(i, at=i), 60)
    assert pairs(e.decide(61)) == [(0, "longest"), (1, "recent"), (2, "busy")]


def test_load_ratio_uses_the_channel_capacity():
    e = engine()
    e.upsert_agent(agent("small", capacity={"chat": 2}, last_idle=0))
    e.upsert_agent(agent("big", capacity={"chat": 4}, last_idle=5))
    e.enqueue(task("x"), 0)
    e.pick("small", "x", 0)  # 1/2
    e.enqueue(task("y"), 0)
    e.pick("big", "y", 0)  # 1/4
    e.enqueue(task(1), 0)
    assert pairs(e.decide(1)) == [(1, "big")]


def test_capacity_per_channel_is_respected():
    e = engine()
    e.upsert_agent(agent("a", capacity={"chat": 3, "email": 1}))
    for i in range(5):
        e.enqueue(task(i, at=i), 10)
    e.enqueue(task("m", channel="email"), 10)
    offers = e.decide(10)
    assert sorted(o.task_id for o in offers if o.channel == "chat") == [0, 1, 2]
    assert [o.task_id for o in offers if o.channel == "email"] == ["m"]
    assert e.agent_load("a")["chat"] == 3
    assert e.waiting_count() == 2


def test_voice_blocks_written_channels_by_default_and_that_can_be_changed():
    e = engine()
    e.upsert_agent(agent("a"))
    e.upsert_agent(agent("b", blocked_by={}))
    e.enqueue(task("call", channel="voice"), 0)
    e.pick("a", "call", 0)
    e.enqueue(task("call2", channel="voice"), 0)
    e.pick("b", "call2", 0)
    e.enqueue(task("chat1"), 0)
    e.enqueue(task("chat2", at=1), 0)
    assert pairs(e.decide(1)) == [("chat1", "b"), ("chat2", "b")]
    e.complete("call", 2, wrap_up_seconds=0)
    e.enqueue(task("chat3", at=2), 2)
    assert pairs(e.decide(3)) == [("chat3", "a")]


# ------------------------------------------------------------------------------ eligibility


def test_skill_levels_and_language_decide_eligibility():
    e = engine({"q": QueueConfig(skills={"billing": 2})})
    e.upsert_agent(agent("novice", skills={"billing": 1}, languages=["en", "de"]))
    e.upsert_agent(agent("expert_en", skills={"billing": 5}, languages=["en"]))
    e.upsert_agent(agent("mid_de", skills={"billing": 3}, languages=["de"]))
    e.enqueue(task("de", attributes={"language": "de"}), 0)
    e.enqueue(task("hard", skills={"billing": 4}, at=1), 0)
    e.enqueue(task("any", at=2), 0)
    got = dict(pairs(e.decide(1)))
    assert got["de"] == "mid_de"
    assert got["hard"] == "expert_en"
    assert got["any"] in {"expert_en", "mid_de"}  # never the level-1 agent
    assert "novice" not in got.values()


def test_language_is_ignored_when_the_queue_does_not_require_it():
    e = engine({"q": QueueConfig(language_required=False)})
    e.upsert_agent(agent("a", languages=["en"]))
    e.enqueue(task(1, language="fi"), 0)
    assert pairs(e.decide(0)) == [(1, "a")]


def test_vip_boost_from_queue_config():
    cfg = QueueConfig(boosts=[PriorityBoost(attribute="vip", boost=10)])
    e = engine({"q": cfg})
    e.upsert_agent(agent("a", capacity={"voice": 1}))
    e.enqueue(task("old", channel="voice", at=0), 5)
    e.enqueue(task("vip", channel="voice", at=4, attributes={"vip": True}), 5)
    e.enqueue(task("notvip", channel="voice", at=3, attributes={"vip": False}), 5)
    assert pairs(e.decide(5)) == [("vip", "a")]


def test_unavailable_agents_get_nothing_until_they_come_back():
    e = engine()
    e.upsert_agent(agent("a", available=False))
    e.enqueue(task(1), 0)
    assert e.decide(1) == []
    e.set_available("a", True, 2)
    assert pairs(e.decide(2)) == [(1, "a")]


def test_unroutable_task_stays_waiting_and_is_reported_until_someone_qualifies():
    e = engine({"q": QueueConfig(skills={"tax": 2})})
    e.upsert_agent(agent("a", skills={"tax": 3}))
    res = e.enqueue(task("fr", skills={"french": 4}), 0)
    assert not res.routable and "french" in res.reason
    for t in range(5):
        assert e.decide(float(t)) == []
    (u,) = e.unroutable(10)
    assert u.task_id == "fr" and u.waited_seconds == 10
    assert "no agent serving queue 'q' has skill 'french'" in u.reason
    assert e.task_status("fr") == "waiting" and e.waiting_count("q") == 1
    e.upsert_agent(agent("b", skills={"tax": 2, "french": 5}))
    assert e.unroutable(11) == []
    assert pairs(e.decide(11)) == [("fr", "b")]


def test_unroutable_reason_names_a_level_or_combination_gap():
    e = engine({"q": QueueConfig()})
    e.upsert_agent(agent("a", skills={"x": 2}))
    e.upsert_agent(agent("b", skills={"y": 5}))
    e.enqueue(task(1, skills={"x": 4}), 0)
    e.enqueue(task(2, skills={"x": 1, "y": 1}), 0)
    reasons = {u.task_id: u.reason for u in e.unroutable(1)}
    assert "'x' at level 4 or more (the best is 2)" in reasons[1]
    assert "no single agent" in reasons[2]


# ------------------------------------------------------------------------------ sticky agent


def test_preferred_agent_first_while_sticky():
    e = engine()
    e.upsert_agent(agent("idle_longest", last_idle=0))
    e.upsert_agent(agent("pref", last_idle=100))
    e.enqueue(task(1, preferred_agent_id="pref", sticky_until=50), 10)
    assert pairs(e.decide(10)) == [(1, "pref")]
    e.enqueue(task(2, preferred_agent_id="pref", sticky_until=50), 60)
    assert pairs(e.decide(60)) == [(2, "idle_longest")]  # window over


def test_preferred_agent_without_room_does_not_hold_the_task():
    e = engine()
    e.upsert_agent(agent("other"))
    e.upsert_agent(agent("pref", capacity={"chat": 1}))
    e.enqueue(task("x"), 0)
    e.pick("pref", "x", 0)
    e.enqueue(task(1, preferred_agent_id="pref", sticky_until=50), 1)
    assert pairs(e.decide(1)) == [(1, "other")]


def test_preferred_only_waits_for_that_agent_until_the_window_ends():
    e = engine()
    e.upsert_agent(agent("other"))
    e.upsert_agent(agent("pref", capacity={"chat": 1}))
    e.enqueue(task("x"), 0)
    e.pick("pref", "x", 0)
    e.enqueue(task(1, preferred_agent_id="pref", sticky_until=30, preferred_only=True), 1)
    assert e.decide(10) == []
    assert e.decide(29.9) == []
    assert pairs(e.decide(30)) == [(1, "other")]


def test_preferred_only_goes_to_the_agent_when_they_free_up():
    e = engine()
    e.upsert_agent(agent("other"))
    e.upsert_agent(agent("pref", capacity={"chat": 1}))
    e.enqueue(task("x"), 0)
    e.pick("pref", "x", 0)
    e.enqueue(task(1, preferred_agent_id="pref", sticky_until=30, preferred_only=True), 1)
    assert e.decide(5) == []
    e.complete("x", 6, wrap_up_seconds=0)
    assert pairs(e.decide(7)) == [(1, "pref")]


# ------------------------------------------------------------------------------ escalation


def ladder() -> dict[str, QueueConfig]:
    return {
        "sales": QueueConfig(
            skills={"sales": 5},
            steps=[
                EscalationStep(after_seconds=30, max_level=3),
                EscalationStep(after_seconds=60, ignore_skills=True, add_teams=["backup"]),
                EscalationStep(after_seconds=120, overflow_to="general"),
            ],
        ),
        "general": QueueConfig(),
    }


def test_escalation_relaxes_level_after_30_seconds():
    e = engine(ladder())
    e.upsert_agent(agent("lvl3", queues=["sales"], skills={"sales": 3}))
    e.enqueue(task(1, queue="sales", at=100), 100)
    assert e.decide(129.9) == []
    assert pairs(e.decide(130)) == [(1, "lvl3")]
    assert TaskEscalated(1, "sales", 1, 130.0) in e.drain_events()


def test_escalation_adds_the_backup_team_after_60_seconds():
    e = engine(ladder())
    e.upsert_agent(agent("helper", queues=["general"], teams=["backup"]))
    e.enqueue(task(1, queue="sales", at=0), 0)
    assert e.decide(59) == []
    assert pairs(e.decide(60)) == [(1, "helper")]


def test_escalation_overflows_to_another_queue_keeping_the_age():
    e = engine(ladder())
    e.upsert_agent(agent("g", queues=["general"], capacity={"voice": 1}))
    e.enqueue(task("young", queue="general", at=100, channel="voice"), 100)
    e.enqueue(task("old", queue="sales", at=0, channel="voice"), 100)
    # the young general task is first while "old" is still in sales
    (first,) = e.decide(110)
    assert (first.task_id, first.agent_id) == ("young", "g")
    e.accept(first.offer_id, 110)
    e.complete("young", 111, wrap_up_seconds=0)
    e.enqueue(task("newer", queue="general", at=112, channel="voice"), 112)
    (offer,) = e.decide(120)
    assert (offer.task_id, offer.queue_id) == ("old", "general")
    events = e.drain_events()
    assert TaskOverflowed("old", "sales", "general", 120.0) in events
    model = e.get_task("old")
    assert model.origin_queue_id == "sales" and model.enqueued_at == 0


def test_jumping_over_several_steps_lands_on_the_right_rung():
    e = engine(ladder())
    e.upsert_agent(agent("lvl3", queues=["sales"], skills={"sales": 3}))
    e.enqueue(task(1, queue="sales", at=0), 45)  # enqueued late: already past the 30 s step
    assert pairs(e.decide(45)) == [(1, "lvl3")]


# ------------------------------------------------------------------------------ validation


def test_structural_errors_are_refused_with_a_reason():
    from threadline.domain.routing import validate_routing

    report = validate_routing(
        {
            "a": {"skills": {"x": 7}},
            "b": {"steps": [{"after_seconds": 60, "max_level": 3}, {"after_seconds": 30, "max_level": 2}]},
            "c": {
                "steps": [{"after_seconds": 10, "overflow_to": "d"}, {"after_seconds": 20, "max_level": 1}]
            },
            "d": {"steps": [{"after_seconds": 10, "overflow_to": "nowhere"}]},
        }
    )
    text = " | ".join(i.message for i in report.errors)
    assert "level 7 is impossible" in text
    assert "increasing times" in text
    assert "overflow step must be the last" in text
    assert "unknown queue 'nowhere'" in text
    assert not report.ok


def test_overflow_cycles_are_errors_and_the_engine_refuses_them():
    from threadline.domain.routing import validate_routing

    queues = {
        "A": QueueConfig(steps=[EscalationStep(after_seconds=60, overflow_to="B")]),
        "B": QueueConfig(steps=[EscalationStep(after_seconds=60, overflow_to="A")]),
    }
    report = validate_routing(queues)
    assert len(report.errors) == 1
    assert "overflow cycle 'A' -> 'B' -> 'A'" in report.errors[0].message
    with pytest.raises(ValidationFailed, match="overflow cycle"):
        RoutingEngine(queues)
    with pytest.raises(ValidationFailed, match="overflows to itself"):
        RoutingEngine({"A": QueueConfig(steps=[EscalationStep(after_seconds=1, overflow_to="A")])})


def test_roster_dependent_problems_are_warnings():
    from threadline.domain.routing import validate_routing

    queues = ladder() | {"legal": QueueConfig(skills={"law": 4}), "empty": QueueConfig()}
    roster = [
        agent("s", queues=["sales"], skills={"sales": 2}),
        agent("l", queues=["legal"], skills={"law": 3}),
    ]
    report = validate_routing(queues, roster)
    assert report.ok
    msgs = {i.queue_id: i.message for i in report.warnings}
    assert "can never be matched" in msgs["legal"] and "the best is 3" in msgs["legal"]
    assert "no agent serving queue 'empty'" in msgs["empty"]
    assert "escalation step 2" in msgs["sales"]  # level 2 < the level-3 cap; ignore_skills at 60 s works
    assert any("team 'backup' has no agents" in i.message for i in report.warnings)


def test_a_step_that_changes_nothing_is_refused():
    with pytest.raises(ValueError, match="changes nothing"):
        EscalationStep(after_seconds=10)
    with pytest.raises(ValueError, match="only moves the task"):
        EscalationStep(after_seconds=10, overflow_to="x", max_level=2)


# ------------------------------------------------------------------------------ offers


def test_rejected_task_keeps_its_age_and_skips_that_agent():
    e = engine(reoffer_cooldown_seconds=30)
    e.upsert_agent(agent("a", capacity={"voice": 1}, last_idle=0))
    e.upsert_agent(agent("b", capacity={"voice": 1}, last_idle=5))
    e.enqueue(task("old", channel="voice", at=0), 0)
    (offer,) = e.decide(1)
    assert offer.agent_id == "a"
    e.enqueue(task("new", channel="voice", at=2), 2)
    out = e.reject(offer.offer_id, 3)
    assert out.kind == "rejected" and out.agent_away is None
    # old is ahead of new (age kept) and goes to b, not back to a; new then goes to a
    assert pairs(e.decide(3)) == [("old", "b"), ("new", "a")]


def test_only_agent_rejected_gets_the_task_again_after_the_cooldown():
    e = engine(reoffer_cooldown_seconds=30)
    e.upsert_agent(agent("a"))
    e.enqueue(task(1), 0)
    (offer,) = e.decide(0)
    e.reject(offer.offer_id, 1)
    e.enqueue(task(2, at=2), 2)
    assert pairs(e.decide(2)) == [(2, "a")]  # the task behind is not held up
    assert e.decide(30) == []
    assert pairs(e.decide(31)) == [(1, "a")]


def test_offer_timeouts_and_agent_away_after_n_no_answers():
    e = engine(max_consecutive_no_answer=2, reoffer_cooldown_seconds=0)
    e.upsert_agent(agent("a", capacity={"voice": 1}))
    e.enqueue(task(1, channel="voice"), 0)
    (o1,) = e.decide(0)
    assert o1.expires_at == 30
    assert e.expire_offers(29.9) == []
    (out1,) = e.expire_offers(30)
    assert out1.kind == "timed_out" and out1.agent_away is None
    (o2,) = e.decide(30)
    assert (o2.task_id, o2.agent_id) == (1, "a")
    result = e.step(60)
    (out2,) = result.outcomes
    assert out2.agent_away == AgentAway("a", 60, "no_answer", 2)
    assert result.offers == []
    assert not e.is_available("a")
    assert e.get_task(1).enqueued_at == 0 and e.task_status(1) == "waiting"
    e.set_available("a", True, 70)
    assert pairs(e.decide(70)) == [(1, "a")]


def test_accept_resets_the_no_answer_streak():
    e = engine(max_consecutive_no_answer=2, reoffer_cooldown_seconds=0)
    e.upsert_agent(agent("a", capacity={"voice": 1}))
    e.enqueue(task(1, channel="voice"), 0)
    e.enqueue(task(2, channel="voice", at=1), 1)
    (o,) = e.decide(1)
    e.expire_offers(100)
    (o,) = e.decide(100)
    e.accept(o.offer_id, 101)
    e.complete(1, 102, wrap_up_seconds=0)
    (o,) = e.decide(102)
    (out,) = e.expire_offers(200)
    assert out.agent_away is None


def test_offers_reserve_capacity_and_unknown_offers_are_not_found():
    e = engine()
    e.upsert_agent(agent("a", capacity={"voice": 1}))
    e.enqueue(task(1, channel="voice"), 0)
    e.enqueue(task(2, channel="voice"), 0)
    (o,) = e.decide(0)
    assert e.agent_load("a")["voice"] == 1 and e.decide(0) == []
    e.accept(o.offer_id, 1)
    with pytest.raises(NotFound):
        e.accept(o.offer_id, 1)
    with pytest.raises(NotFound):
        e.reject(999, 1)


def test_manual_pick_rules():
    e = engine({"q": QueueConfig(), "other": QueueConfig()})
    e.upsert_agent(agent("a", capacity={"voice": 1}))
    e.upsert_agent(agent("b", capacity={"voice": 1}))
    e.upsert_agent(agent("stranger", queues=["other"], capacity={"voice": 1}))
    e.enqueue(task(1, channel="voice"), 0)
    e.enqueue(task(2, channel="voice"), 0)
    with pytest.raises(PermissionDenied):
        e.pick("stranger", 1, 1)
    (o,) = e.decide(1, limit=1)
    assert (o.task_id, o.agent_id) == (1, "a")
    got = e.pick("b", 1, 2)  # rescinds the offer to a
    assert got.picked and got.agent_id == "b" and got.wait_seconds == 2
    assert e.agent_load("a")["voice"] == 0
    with pytest.raises(Conflict, match="no free voice slot"):
        e.pick("b", 2, 3)
    with pytest.raises(NotFound):
        e.accept(o.offer_id, 3)
    forced = e.pick("stranger", 2, 4, force=True)
    assert forced.agent_id == "stranger"


def test_wrap_up_holds_the_slot_and_handle_time_is_talk_plus_wrap():
    e = engine({"q": QueueConfig(wrap_up_seconds=20)})
    e.upsert_agent(agent("a", capacity={"voice": 1}))
    e.enqueue(task(1, channel="voice"), 0)
    e.enqueue(task(2, channel="voice"), 0)
    (o,) = e.decide(0)
    e.accept(o.offer_id, 5)
    done = e.complete(1, 65)
    assert done.talk_seconds == 60 and done.wrap_until == 85
    assert e.decide(84) == [] and e.agent_load("a")["voice"] == 1
    (o2,) = e.decide(85)
    assert o2.task_id == 2
    assert WrapUpEnded(1, "a", "q", 85, 80, "voice") in e.drain_events()
    assert e.aht("q", "voice") == 80


def test_end_wrap_up_early_and_complete_needs_an_assigned_task():
    e = engine()
    e.upsert_agent(agent("a", capacity={"voice": 1}))
    e.enqueue(task(1, channel="voice"), 0)
    (o,) = e.decide(0)
    with pytest.raises(Conflict):
        e.complete(1, 1)
    e.accept(o.offer_id, 1)
    e.complete(1, 11, wrap_up_seconds=60)
    ended = e.end_wrap_up(1, 16)
    assert ended.handle_seconds == 15 and e.agent_load("a")["voice"] == 0
    with pytest.raises(NotFound):
        e.complete(1, 20)


def test_cancel_abandon_and_self_service():
    e = engine()
    e.upsert_agent(agent("a", capacity={"voice": 1}))
    e.enqueue(task(1, channel="voice"), 0)
    e.enqueue(task(2, channel="voice", at=1), 1)
    e.enqueue(task(3, channel="voice", at=2), 2)
    (o,) = e.decide(2)
    removed = e.cancel(1, 5)  # hung up while ringing
    assert removed.reason == "abandoned" and removed.rescinded.kind == "rescinded"
    assert removed.wait_seconds == 5 and e.agent_load("a")["voice"] == 0
    assert e.cancel(3, 6, "self_service").reason == "self_service"
    (o,) = e.decide(6)
    assert o.task_id == 2
    e.accept(o.offer_id, 7)
    with pytest.raises(Conflict, match="complete it instead"):
        e.cancel(2, 8)
    stats = e.queue_stats("q")
    assert (stats.answered, stats.abandoned) == (1, 1)


def test_remove_agent_rescinds_offers_and_keeps_their_assigned_work():
    e = engine()
    e.upsert_agent(agent("a"))
    e.upsert_agent(agent("b", last_idle=10))
    e.enqueue(task(1), 0)
    e.enqueue(task(2, at=1), 0)
    offers = {o.task_id: o for o in e.decide(0)}
    assert offers[1].agent_id == "a" and offers[2].agent_id == "b"
    e.accept(offers[1].offer_id, 1)
    (out,) = e.remove_agent("b", 2)
    assert out.task_id == 2 and out.kind == "rescinded"
    assert pairs(e.decide(3)) == [(2, "a")]
    (out,) = e.remove_agent("a", 4)
    assert out.task_id == 2
    e.complete(1, 5, wrap_up_seconds=0)  # still completes after the agent left
    assert e.waiting_count() == 1 and e.decide(6) == []


# ------------------------------------------------------------------------------ positions, EWT, SLA


def test_positions_and_ewt_formula():
    e = engine({"q": QueueConfig(aht_seconds={"voice": 120})})
    for i in range(2):
        e.upsert_agent(agent(f"a{i}", capacity={"voice": 1, "chat": 3}))
    for i in range(5):
        e.enqueue(task(i, channel="voice", at=i, priority=1 if i == 4 else 0), 10)
    e.enqueue(task("c", channel="chat"), 10)
    for o in e.decide(10):
        e.accept(o.offer_id, 10)
    # 4 (priority) and 0 were taken; 1, 2, 3 wait, both voice slots busy: EWT = k * 120 / 2
    got = {p.task_id: (p.position, p.ewt_seconds) for p in e.positions("q", 11)}
    assert got == {1: (1, 60.0), 2: (2, 120.0), 3: (3, 180.0), "c": (1, 100.0)}
    # "c": chat is blocked by the agents' calls, so 0 free of 2 x 3 slots, default chat AHT 600 s
    assert [p.task_id for p in e.positions("q", 11)] == ["c", 1, 2, 3]
    assert e.position(3, 11).position == 3
    e.complete(0, 70, wrap_up_seconds=0)  # handle 60 s: the recent AHT replaces the setting
    e.complete(4, 90, wrap_up_seconds=0)  # handle 80 s
    assert e.aht("q", "voice") == 70
    assert e.position(2, 90).ewt_seconds == 0.0  # two free slots, position 2


def test_ewt_is_none_when_nobody_can_take_the_task():
    e = engine()
    e.enqueue(task(1), 0)
    assert e.position(1, 0).ewt_seconds is None


def test_sla_states_and_alerts():
    from threadline.domain.routing import sla_state

    target = SlaTarget(threshold_seconds=20, near_breach_ratio=0.75)
    assert [sla_state(w, target) for w in (0, 14.9, 15, 19.9, 20, 100)] == [
        "ok",
        "ok",
        "near_breach",
        "near_breach",
        "breached",
        "breached",
    ]
    e = engine({"q": QueueConfig(sla=target)})
    e.enqueue(task("fresh", at=95), 95)
    e.enqueue(task("near", at=84), 95)
    e.enqueue(task("late", at=50), 95)
    alerts = e.sla_alerts(100)
    assert [(a.task_id, a.state) for a in alerts] == [("late", "breached"), ("near", "near_breach")]
    assert [a.task_id for a in e.sla_alerts(100, include_near=False)] == ["late"]
    assert e.sla_status("fresh", 100) == "ok"


# ------------------------------------------------------------------------------ snapshots


def _busy_engine() -> RoutingEngine:
    e = engine(ladder() | {"q": QueueConfig(wrap_up_seconds=30)}, reoffer_cooldown_seconds=50)
    e.upsert_agent(agent("a", queues=["q", "general"], capacity={"voice": 1, "chat": 2}, last_idle=1))
    e.upsert_agent(agent("b", queues=["q", "sales"], skills={"sales": 4}, last_idle=2))
    e.upsert_agent(agent("c", queues=["q"], capacity={"chat": 1}, last_idle=3, external_load={"chat": 1}))
    for i in range(8):
        e.enqueue(task(i, at=i, queue="sales" if i % 3 == 0 else "q", priority=i % 2), 10)
    offers = e.decide(10)
    e.accept(offers[0].offer_id, 11)
    e.accept(offers[1].offer_id, 11)
    e.complete(offers[1].task_id, 12)  # wrapping until 42 when its queue is "q"
    e.reject(offers[2].offer_id, 13)  # back with age kept, agent excluded until 63
    return e


def test_snapshot_round_trip_gives_the_same_future():
    live = _busy_engine()
    snap = live.snapshot()
    wire = json.loads(snap.model_dump_json())
    rebuilt = RoutingEngine.from_snapshot(
        RoutingSnapshot.model_validate(wire),
        ladder() | {"q": QueueConfig(wrap_up_seconds=30)},
        EngineConfig(reoffer_cooldown_seconds=50),
        now=14,
    )
    assert rebuilt.snapshot() == snap
    for name in ("a", "b", "c"):
        assert rebuilt.agent_load(name) == live.agent_load(name)
    for now in (14.0, 45.0, 70.0, 130.0, 200.0):
        for eng in (live, rebuilt):
            eng.expire_offers(now)
        got_live, got_rebuilt = live.decide(now), rebuilt.decide(now)
        assert got_live == got_rebuilt
        for o in got_live:
            live.accept(o.offer_id, now)
            rebuilt.accept(o.offer_id, now)
    assert rebuilt.snapshot() == live.snapshot()


def test_snapshot_with_an_agent_gone_keeps_their_task():
    snap = RoutingSnapshot(
        agents=[],
        tasks=[
            Task(
                id=1,
                channel="voice",
                queue_id="q",
                enqueued_at=0,
                status="assigned",
                agent_id="ghost",
                accepted_at=5,
            )
        ],
    )
    e = RoutingEngine.from_snapshot(snap, {"q": QueueConfig()}, now=10)
    assert e.task_status(1) == "assigned"
    done = e.complete(1, 20, wrap_up_seconds=0)
    assert done.talk_seconds == 15


def test_duplicate_and_unknown_ids_are_refused():
    e = engine()
    e.enqueue(task(1), 0)
    with pytest.raises(Conflict):
        e.enqueue(task(1), 0)
    with pytest.raises(NotFound):
        e.enqueue(task(2, queue="nope"), 0)
    with pytest.raises(NotFound):
        e.set_available("nobody", True, 0)


def test_set_queue_reevaluates_waiting_tasks():
    e = engine({"q": QueueConfig(skills={"x": 5})})
    e.upsert_agent(agent("a", skills={"x": 2}))
    e.enqueue(task(1), 0)
    assert e.decide(1) == []
    e.set_queue("q", QueueConfig(skills={"x": 2}), 2)
    assert pairs(e.decide(2)) == [(1, "a")]
    with pytest.raises(ValidationFailed):
        e.set_queue("q", QueueConfig(steps=[EscalationStep(after_seconds=5, overflow_to="zzz")]), 3)


def test_a_closed_queue_offers_nothing_but_keeps_its_tasks_in_order_and_other_queues_go_on():
    e = engine({"q": QueueConfig(), "r": QueueConfig()})
    e.upsert_agent(agent("a", queues=("q", "r")))
    e.enqueue(task(1, at=0), 1)
    e.enqueue(task(2, at=1, queue="r"), 1)
    e.enqueue(task(3, at=2), 2)
    e.set_closed(["q"])
    assert pairs(e.decide(5)) == [(2, "a")]  # only the open queue is served
    assert e.decide(6) == []  # and q's tasks are still waiting, not lost
    e.set_closed([])
    assert [o.task_id for o in e.decide(7)] == [1, 3]  # opened: oldest first
