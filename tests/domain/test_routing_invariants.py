"""Random workloads with every feature on (escalation, overflow, sticky agents, wrap-up, offer
timeouts, agents leaving). After every operation: no task is lost or duplicated, loads add up and
respect capacity, every offer goes to an agent eligible at that moment, and a snapshot taken at a
random point rebuilds an engine whose future decisions are identical."""

from __future__ import annotations

import random

import pytest

from threadline.domain.routing import (
    Agent,
    EngineConfig,
    EscalationStep,
    QueueConfig,
    RoutingEngine,
    RoutingSnapshot,
    Task,
)
from threadline.domain.routing.validation import meets, relaxed_skills

CHANNELS = ("voice", "chat", "email")
CONFIG = EngineConfig(reoffer_cooldown_seconds=5, max_consecutive_no_answer=2, idle_bucket_limit=3)
QUEUES = {
    "sales": QueueConfig(
        skills={"sales": 4},
        steps=[
            EscalationStep(after_seconds=10, max_level=2),
            EscalationStep(after_seconds=20, ignore_language=True, add_teams=["floor"]),
            EscalationStep(after_seconds=40, overflow_to="general"),
        ],
        offer_timeout_seconds=4,
        wrap_up_seconds=3,
    ),
    "support": QueueConfig(
        skills={"tech": 3},
        steps=[EscalationStep(after_seconds=15, drop_skills=["tech"], priority_boost=2)],
        offer_timeout_seconds=6,
    ),
    "general": QueueConfig(language_required=False, offer_timeout_seconds=5),
}


def random_agent(rng: random.Random, i: int) -> Agent:
    return Agent(
        id=f"a{i}",
        skills={s: rng.randint(1, 5) for s in rng.sample(["sales", "tech", "vip"], rng.randint(0, 3))},
        languages=rng.sample(["en", "es"], rng.randint(1, 2)),
        teams=["floor"] if rng.random() < 0.3 else [],
        queues=rng.sample(sorted(QUEUES), rng.randint(1, 2)),
        capacity={c: rng.randint(0, 2) for c in CHANNELS},
        external_load={"email": 1} if rng.random() < 0.1 else {},
        last_idle=float(-i),
    )


def eligible(agent: Agent, task: Task, now: float) -> bool:
    cfg = QUEUES[task.queue_id]
    rung = sum(1 for s in cfg.steps if s.after_seconds <= now - task.queue_entered_at)
    base = dict(cfg.skills)
    for k, v in task.skills.items():
        base[k] = max(v, base.get(k, 0))
    skills, language_required, teams = relaxed_skills(base, cfg, rung)
    in_pool = task.queue_id in agent.queues or bool(teams & set(agent.teams))
    lang_ok = (
        not language_required or task.effective_language is None or task.effective_language in agent.languages
    )
    sticky_only = task.preferred_only and task.sticky_until is not None and now < task.sticky_until
    return (
        in_pool
        and lang_ok
        and meets(agent, skills)
        and agent.capacity.get(task.channel, 0) > 0
        and (not sticky_only or agent.id == task.preferred_agent_id)
    )


def check(
    engine: RoutingEngine, roster: dict[str, Agent], known: set, cancelled: set, completed: set
) -> None:
    snap = engine.snapshot()
    ids = [t.id for t in snap.tasks]
    present = set(ids)
    assert len(ids) == len(present)
    assert not present & cancelled
    assert known <= present | cancelled | completed  # nothing vanished
    tracked: dict[str, dict[str, int]] = {}
    for t in snap.tasks:
        if t.id in completed:
            assert t.status == "wrapping"
        if t.status != "waiting":
            per = tracked.setdefault(t.agent_id, dict.fromkeys(CHANNELS, 0))
            per[t.channel] += 1
    assert engine.waiting_count() == sum(1 for t in snap.tasks if t.status == "waiting")
    for aid, agent in roster.items():
        load = engine.agent_load(aid)
        for c in CHANNELS:
            mine = tracked.get(aid, {}).get(c, 0)
            assert load[c] == mine + agent.external_load.get(c, 0)
            if mine:  # the engine never over-commits (no forced picks here)
                assert load[c] <= agent.capacity.get(c, 0)


@pytest.mark.parametrize("seed", range(25))
def test_random_workload_invariants_and_rebuild(seed: int) -> None:
    rng = random.Random(seed)
    engines = [RoutingEngine(QUEUES, CONFIG)]
    roster = {a.id: a for a in (random_agent(rng, i) for i in range(rng.randint(2, 9)))}
    for a in roster.values():
        engines[0].upsert_agent(a)
    rebuild_at = rng.randint(30, 120)

    def each(method: str, *args, **kwargs):
        """Apply the call to the engine and to its rebuilt twin; they must agree."""
        results = [getattr(e, method)(*args, **kwargs) for e in engines]
        assert all(r == results[0] for r in results), (seed, method, args, results)
        return results[0]

    known: set[int] = set()
    cancelled: set[int] = set()
    completed: set[int] = set()
    offers: dict[int, int] = {}
    assigned: list[int] = []
    now = 0.0
    for step in range(220):
        now += rng.choice((0.0, 0.5, 1.0, 2.0, 4.0))
        op = rng.random()
        if op < 0.3:
            tid = len(known)
            sticky = rng.random() < 0.2
            task = Task(
                id=tid,
                channel=rng.choice(CHANNELS),
                queue_id=rng.choice(sorted(QUEUES)),
                enqueued_at=now - rng.choice((0.0, 0.0, 12.0)),
                skills={"vip": rng.randint(1, 3)} if rng.random() < 0.15 else {},
                priority=rng.randint(0, 1),
                attributes={"language": rng.choice(["en", "es"])},
                preferred_agent_id=rng.choice(sorted(roster)) if sticky else None,
                sticky_until=now + 8 if sticky else None,
                preferred_only=sticky and rng.random() < 0.5,
            )
            known.add(tid)
            each("enqueue", task, now)
        elif op < 0.55:
            result = each("step", now)
            for out in result.outcomes:
                offers.pop(out.task_id, None)
                if out.agent_away is not None:
                    assert not engines[0].is_available(out.agent_away.agent_id)
            for o in result.offers:
                model = engines[0].get_task(o.task_id)
                assert model.status == "offered" and model.agent_id == o.agent_id
                assert eligible(roster[o.agent_id], model, now), (seed, step, o)
                offers[o.task_id] = o.offer_id
        elif op < 0.68 and offers:
            tid = rng.choice(sorted(offers))
            oid = offers.pop(tid)
            if rng.random() < 0.7:
                each("accept", oid, now)
                assigned.append(tid)
            else:
                each("reject", oid, now)
        elif op < 0.8 and assigned:
            tid = assigned.pop(rng.randrange(len(assigned)))
            each("complete", tid, now)
            completed.add(tid)
        elif op < 0.88:
            open_ = sorted(known - cancelled - completed - set(assigned))
            if open_:
                tid = rng.choice(open_)
                each("cancel", tid, now, rng.choice(["abandoned", "cancelled", "self_service"]))
                offers.pop(tid, None)
                cancelled.add(tid)
        elif op < 0.95:
            each("set_available", rng.choice(sorted(roster)), rng.random() < 0.7, now)
        else:
            aid = rng.choice(sorted(roster))
            roster[aid] = roster[aid].model_copy(update={"skills": {"sales": rng.randint(1, 5)}})
            each("upsert_agent", roster[aid], now)
        each("advance", now)
        for e in engines:
            check(e, roster, known, cancelled, completed)
        if step == rebuild_at:
            engines[0].drain_events()  # the outbox is transient: a caller drains it before persisting
            wire = RoutingSnapshot.model_validate_json(engines[0].snapshot().model_dump_json())
            engines.append(RoutingEngine.from_snapshot(wire, QUEUES, CONFIG, now=now))
            assert engines[1].snapshot() == engines[0].snapshot()
    assert len(engines) == 2
    assert engines[1].snapshot() == engines[0].snapshot()
