"""Cells (agents of a queue and channel in exactly the same buckets share one heap) against a
brute-force matcher, on random workloads that create and drop buckets (levels, escalation rungs
capping levels and adding teams, tiny ``idle_bucket_limit``) and change agents' profiles; and the
cell structure itself after every step."""

from __future__ import annotations

import random
from bisect import bisect_right

import pytest

from threadline.domain.routing import Agent, EngineConfig, EscalationStep, QueueConfig, RoutingEngine, Task

SKILLS = ("a", "b")
TEAMS = ("t1", "t2")
COOLDOWN = 5.0


def check_cells(engine: RoutingEngine) -> None:
    """Every bucket's members are exactly the union of its cells' members, cells are disjoint, and
    each agent sits in the one cell named by its buckets of that queue and channel."""
    for b in engine._buckets.values():
        union: set = set()
        for c in b.cells:
            assert c.members, "an empty cell is kept"
            assert not union & c.members
            union |= c.members
            assert b in c.key[2] and c.key[0] == b.queue and c.key[1] == b.channel
        assert union == b.members
    for key, c in engine._cells.items():
        assert c.key == key
        for a in c.members:
            assert a.cells[c.channel][key[0]] is c
            assert frozenset(b for b in a.buckets[c.channel] if b.queue == key[0]) == key[2]
    for a in engine._agents.values():
        for ch, cs in a.cells.items():
            for qid, c in cs.items():
                assert a in c.members and c.key[:2] == (qid, ch)


class Brute:
    def __init__(self, queues: dict[str, QueueConfig]) -> None:
        self.queues = queues
        self.agents: dict[str, Agent] = {}
        self.order: list[str] = []
        self.load: dict[str, dict[str, int]] = {}
        self.tasks: dict[int, dict] = {}
        self.seq = 0

    def upsert(self, a: Agent) -> None:
        if a.id not in self.agents:
            self.order.append(a.id)
            self.load[a.id] = {"chat": 0, "email": 0}
            self.agents[a.id] = a.model_copy(deep=True)
        else:  # the engine keeps the runtime state (last idle) of a known agent
            self.agents[a.id] = a.model_copy(deep=True, update={"last_idle": self.agents[a.id].last_idle})

    def requirement(self, rec: dict, now: float) -> tuple[dict[str, int], frozenset[str]]:
        t = rec["t"]
        q = self.queues[t.queue_id]
        k = bisect_right([s.after_seconds for s in q.steps], now - t.enqueued_at)
        skills = dict(q.skills)
        for n, v in t.skills.items():
            skills[n] = max(v, skills.get(n, 0))
        teams: set[str] = set()
        for step in q.steps[:k]:
            if step.max_level is not None:
                skills = {n: min(v, step.max_level) for n, v in skills.items()}
            teams |= set(step.add_teams)
        return skills, frozenset(teams)

    def decide(self, now: float) -> list[tuple[int, str]]:
        out = []
        waiting = [r for r in self.tasks.values() if r["state"] == "waiting"]
        waiting.sort(key=lambda r: (-r["t"].priority, r["t"].enqueued_at, r["seq"]))
        for rec in waiting:
            t = rec["t"]
            skills, teams = self.requirement(rec, now)
            cands = []
            for aid in self.order:
                a = self.agents[aid]
                if not (t.queue_id in a.queues or teams & set(a.teams)):
                    continue
                if any(a.skills.get(n, 0) < v for n, v in skills.items()):
                    continue
                cap = a.capacity.get(t.channel, 0)
                if not a.available or self.load[aid][t.channel] >= cap or rec["excluded"].get(aid, -1) > now:
                    continue
                cands.append(aid)
            if cands:
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


def random_agent(rng: random.Random, i: int, queues: list[str]) -> Agent:
    return Agent(
        id=f"ag{i}",
        skills={s: rng.randint(1, 5) for s in rng.sample(SKILLS, rng.randint(0, 2))},
        teams=rng.sample(TEAMS, rng.randint(0, 1)),
        queues=rng.sample(queues, rng.randint(0, len(queues))),
        capacity={"chat": rng.randint(0, 3), "email": rng.randint(1, 2)},
        blocked_by={},
        available=rng.random() < 0.9,
        last_idle=float(rng.randint(-50, 0)),
    )


@pytest.mark.parametrize("seed", range(30))
def test_cells_decide_like_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    queues = {}
    for i in range(rng.randint(1, 3)):
        steps = []
        if rng.random() < 0.7:
            steps.append(EscalationStep(after_seconds=rng.choice((3.0, 8.0)), max_level=rng.randint(1, 2)))
        if rng.random() < 0.5:
            steps.append(EscalationStep(after_seconds=15.0, add_teams=[rng.choice(TEAMS)]))
        queues[f"q{i}"] = QueueConfig(
            skills={s: rng.randint(1, 2) for s in rng.sample(SKILLS, rng.randint(0, 1))},
            steps=steps,
            language_required=False,
        )
    names = sorted(queues)
    engine = RoutingEngine(
        queues,
        EngineConfig(
            reoffer_cooldown_seconds=COOLDOWN, max_consecutive_no_answer=None, idle_bucket_limit=rng.randint(0, 2)
        ),
    )
    brute = Brute(queues)
    n_agents = rng.randint(2, 10)
    for i in range(n_agents):
        a = random_agent(rng, i, names)
        engine.upsert_agent(a)
        brute.upsert(a)
    now, next_id = 0.0, 0
    offers: dict[int, int] = {}
    assigned: list[int] = []
    for _ in range(200):
        now += rng.choice((0.0, 1.0, 2.0, 4.0))
        op = rng.random()
        if op < 0.35:
            t = Task(
                id=next_id,
                channel=rng.choice(("chat", "email")),
                queue_id=rng.choice(names),
                enqueued_at=now - rng.choice((0.0, 0.0, 4.0, 10.0)),
                skills={s: rng.randint(1, 5) for s in rng.sample(SKILLS, rng.randint(0, 2))},
                priority=rng.randint(0, 2),
            )
            next_id += 1
            engine.enqueue(t, now)
            brute.tasks[t.id] = dict(t=t, seq=brute.seq, state="waiting", agent=None, excluded={})
            brute.seq += 1
        elif op < 0.6:
            got = engine.decide(now)
            assert [(o.task_id, o.agent_id) for o in got] == brute.decide(now), f"seed {seed} at {now}"
            offers.update({o.task_id: o.offer_id for o in got})
        elif op < 0.7 and offers:
            tid = rng.choice(sorted(offers))
            oid = offers.pop(tid)
            rec = brute.tasks[tid]
            if rng.random() < 0.6:
                engine.accept(oid, now)
                rec["state"] = "assigned"
                assigned.append(tid)
            else:
                engine.reject(oid, now)
                brute.load[rec["agent"]][rec["t"].channel] -= 1
                rec["excluded"][rec["agent"]] = now + COOLDOWN
                rec["state"], rec["agent"] = "waiting", None
        elif op < 0.8 and assigned:
            tid = assigned.pop(rng.randrange(len(assigned)))
            engine.complete(tid, now, wrap_up_seconds=0)
            rec = brute.tasks.pop(tid)
            brute.load[rec["agent"]][rec["t"].channel] -= 1
            brute.agents[rec["agent"]].last_idle = now
        elif op < 0.87:
            waiting = sorted(tid for tid, r in brute.tasks.items() if r["state"] == "waiting")
            if waiting:
                tid = rng.choice(waiting)
                engine.cancel(tid, now)
                brute.tasks.pop(tid)
        else:  # a new profile for a known agent (skills, queues, teams, capacity) or a newcomer
            i = rng.randrange(n_agents + 1)
            if i == n_agents:
                n_agents += 1
            a = random_agent(rng, i, names)
            old = brute.agents.get(a.id)
            if old is not None:  # keep the capacity above the load the agent already has
                cap = {c: max(a.capacity[c], brute.load[a.id][c]) for c in ("chat", "email")}
                a = a.model_copy(update={"capacity": cap, "available": old.available})
            engine.upsert_agent(a, now)
            brute.upsert(a)
        check_cells(engine)
        for aid in brute.order:
            load = engine.agent_load(aid)
            assert {c: load[c] for c in ("chat", "email")} == brute.load[aid]
