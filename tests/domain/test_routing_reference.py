"""The engine against a brute-force model of the matching rules, on random workloads.

The reference scans every task and every agent: tasks by (priority desc, enqueue time, arrival),
each to the eligible agent with room and the lowest (load ratio, last idle time, roster order),
skipping agents the task was rejected by within the cool-down. Any divergence in who gets what,
in what order, or in the agents' loads fails the test.
"""

from __future__ import annotations

import random

import pytest

from threadline.domain.routing import Agent, EngineConfig, PriorityBoost, QueueConfig, RoutingEngine, Task

CHANNELS = ("voice", "chat", "email")
SKILLS = ("a", "b", "c")
COOLDOWN = 7.0


class Reference:
    def __init__(self, queues: dict[str, QueueConfig], agents: list[Agent]) -> None:
        self.queues = queues
        self.agents = {a.id: a.model_copy(deep=True) for a in agents}
        self.order = [a.id for a in agents]
        self.load = {a.id: dict.fromkeys(CHANNELS, 0) for a in agents}
        self.tasks: dict[int, dict] = {}
        self.seq = 0

    def enqueue(self, t: Task) -> None:
        q = self.queues[t.queue_id]
        skills = dict(q.skills)
        for k, v in t.skills.items():
            skills[k] = max(v, skills.get(k, 0))
        prio = (
            t.priority
            + q.priority
            + sum(b.boost for b in q.boosts if t.attributes.get(b.attribute) == b.equals)
        )
        lang = t.effective_language if q.language_required else None
        self.tasks[t.id] = dict(
            t=t, skills=skills, prio=prio, lang=lang, seq=self.seq, state="waiting", agent=None, excluded={}
        )
        self.seq += 1

    def can_take(self, aid: str, ch: str) -> bool:
        a = self.agents[aid]
        cap = a.capacity.get(ch, 0)
        load = self.load[aid]
        return a.available and load[ch] < cap and not any(load[b] for b in a.blocked_by.get(ch, []))

    def eligible(self, aid: str, rec: dict) -> bool:
        a, t = self.agents[aid], rec["t"]
        return (
            t.queue_id in a.queues
            and a.capacity.get(t.channel, 0) > 0
            and all(a.skills.get(k, 0) >= v for k, v in rec["skills"].items())
            and (rec["lang"] is None or rec["lang"] in a.languages)
        )

    def decide(self, now: float) -> list[tuple[int, str]]:
        out = []
        waiting = [r for r in self.tasks.values() if r["state"] == "waiting"]
        waiting.sort(key=lambda r: (-r["prio"], r["t"].enqueued_at, r["seq"]))
        for rec in waiting:
            t = rec["t"]
            cands = [
                aid
                for aid in self.order
                if self.eligible(aid, rec)
                and self.can_take(aid, t.channel)
                and rec["excluded"].get(aid, -1.0) <= now
            ]
            if not cands:
                continue
            best = min(
                cands,
                key=lambda aid: (
                    self.load[aid][t.channel] / self.agents[aid].capacity[t.channel],
                    self.agents[aid].last_idle,
                    self.order.index(aid),
                ),
            )
            rec["state"], rec["agent"] = "offered", best
            self.load[best][t.channel] += 1
            out.append((t.id, best))
        return out

    def accept(self, tid: int) -> None:
        self.tasks[tid]["state"] = "assigned"

    def reject(self, tid: int, now: float) -> None:
        rec = self.tasks[tid]
        self.load[rec["agent"]][rec["t"].channel] -= 1
        rec["excluded"][rec["agent"]] = now + COOLDOWN
        rec["state"], rec["agent"] = "waiting", None

    def complete(self, tid: int, now: float) -> None:
        rec = self.tasks.pop(tid)
        self.load[rec["agent"]][rec["t"].channel] -= 1
        self.agents[rec["agent"]].last_idle = now

    def cancel(self, tid: int) -> None:
        rec = self.tasks.pop(tid)
        if rec["state"] == "offered":
            self.load[rec["agent"]][rec["t"].channel] -= 1

    def set_available(self, aid: str, available: bool, now: float) -> None:
        a = self.agents[aid]
        if a.available != available:
            a.available = available
            if available:
                a.last_idle = now


def random_world(rng: random.Random) -> tuple[dict[str, QueueConfig], list[Agent]]:
    queues = {}
    for i in range(rng.randint(1, 4)):
        skills = {s: rng.randint(1, 3) for s in rng.sample(SKILLS, rng.randint(0, 2))}
        boosts = [PriorityBoost(attribute="vip", boost=rng.randint(1, 3))] if rng.random() < 0.5 else []
        queues[f"q{i}"] = QueueConfig(
            skills=skills, priority=rng.randint(0, 2), boosts=boosts, language_required=rng.random() < 0.7
        )
    agents = []
    for i in range(rng.randint(1, 12)):
        capacity = {c: rng.randint(0, 3) for c in CHANNELS}
        blocked = {"chat": ["voice"], "email": ["voice"]} if rng.random() < 0.6 else {"voice": ["chat"]}
        agents.append(
            Agent(
                id=f"ag{i}",
                skills={s: rng.randint(1, 5) for s in rng.sample(SKILLS, rng.randint(0, 3))},
                languages=rng.sample(["en", "de", "fr"], rng.randint(1, 2)),
                queues=rng.sample(sorted(queues), rng.randint(1, len(queues))),
                capacity=capacity,
                blocked_by=blocked,
                available=rng.random() < 0.85,
                last_idle=float(rng.randint(-50, 0)),
            )
        )
    return queues, agents


@pytest.mark.parametrize("seed", range(40))
def test_engine_matches_the_brute_force_reference(seed: int) -> None:
    rng = random.Random(seed)
    queues, agents = random_world(rng)
    engine = RoutingEngine(
        queues, EngineConfig(reoffer_cooldown_seconds=COOLDOWN, max_consecutive_no_answer=None)
    )
    for a in agents:
        engine.upsert_agent(a)
    ref = Reference(queues, agents)
    now = 0.0
    next_id = 0
    open_offers: dict[int, int] = {}  # task id -> offer id
    assigned: list[int] = []
    for _ in range(150):
        now += rng.choice((0.0, 0.5, 1.0, 3.0))
        op = rng.random()
        if op < 0.35:
            t = Task(
                id=next_id,
                channel=rng.choice(CHANNELS),
                queue_id=rng.choice(sorted(queues)),
                enqueued_at=now - rng.choice((0.0, 0.0, 5.0, 20.0)),
                skills={s: rng.randint(1, 4) for s in rng.sample(SKILLS, rng.randint(0, 1))},
                priority=rng.randint(0, 2),
                attributes={"vip": rng.random() < 0.3, "language": rng.choice(["en", "de", "fr"])},
            )
            next_id += 1
            engine.enqueue(t, now)
            ref.enqueue(t)
        elif op < 0.6:
            got = engine.decide(now)
            assert [(o.task_id, o.agent_id) for o in got] == ref.decide(now), f"seed {seed} at {now}"
            open_offers.update({o.task_id: o.offer_id for o in got})
        elif op < 0.72 and open_offers:
            tid = rng.choice(sorted(open_offers))
            oid = open_offers.pop(tid)
            if rng.random() < 0.6:
                engine.accept(oid, now)
                ref.accept(tid)
                assigned.append(tid)
            else:
                engine.reject(oid, now)
                ref.reject(tid, now)
        elif op < 0.85 and assigned:
            tid = assigned.pop(rng.randrange(len(assigned)))
            engine.complete(tid, now, wrap_up_seconds=0)
            ref.complete(tid, now)
        elif op < 0.92:
            waiting = sorted(tid for tid, r in ref.tasks.items() if r["state"] in ("waiting", "offered"))
            if waiting:
                tid = rng.choice(waiting)
                engine.cancel(tid, now)
                ref.cancel(tid)
                open_offers.pop(tid, None)
        else:
            aid = rng.choice(agents).id
            available = rng.random() < 0.6
            engine.set_available(aid, available, now)
            ref.set_available(aid, available, now)
        for a in agents:
            load = engine.agent_load(a.id)
            assert {c: load[c] for c in CHANNELS} == ref.load[a.id]
            for ch in CHANNELS:
                assert ref.load[a.id][ch] <= max(a.capacity.get(ch, 0), 0)
    waiting = sum(1 for r in ref.tasks.values() if r["state"] == "waiting")
    assert engine.waiting_count() == waiting
