"""Benchmark of the pure routing core (threadline.domain.routing), no persistence.

Scenario (the issue's target): 10,000 agents, 100,000 waiting chat tasks, 50 queues (one skill
each), 5 random skills per agent at levels 1-5 (an agent serves the queues of its skills), chat
capacity 3, task priorities 0-2, required levels 1-3 (so 150 requirement groups), an escalation
step per queue. Target: at least 20,000 decisions/s with p99 under 1 ms per decision, and at least
0.6 of the rate of the reference heap router (``bench/floor_router.py``, :func:`~bench.floor_router.
measure_same`) filling the same slots with the same agents and tasks, measured in the same run. The
"levels" column is the number of distinct required levels per queue; the row with 1 is the set-up of
the reference's older toy router (one agent heap per queue), whose figure is printed too.

Phases, each timed with ``perf_counter_ns``:

* enqueue: ``engine.enqueue`` of pre-built ``Task`` models (model construction timed apart);
* fill: ``decide(now, limit=1)`` until every free chat slot holds an offer; one call = one
  decision, so its latency is the per-decision latency (p50/p99 below);
* batch: the same fill on a fresh engine with one ``decide(now)`` call (throughput only);
* steady: accept all offers, then repeat "complete a random task, enqueue a new one,
  ``decide(now)``, accept" — the live regime where each freed slot is refilled from the backlog
  (or, with more slots than tasks, the new task goes straight to a free agent).

Run: ``python bench/routing_core.py`` (``--quick`` for small sizes). ``run()`` returns the figures.
"""

from __future__ import annotations

import gc
import random
import sys
import time
from typing import Any

from bench import floor_router
from bench.context import header as context_header
from bench.context import verdict
from threadline.domain.routing import Agent, EscalationStep, QueueConfig, RoutingEngine, Task

N_QUEUES = 50
SKILLS_PER_AGENT = 5


def _queues() -> dict[str, QueueConfig]:
    return {
        f"q{i}": QueueConfig(
            skills={f"s{i}": 1},
            steps=[EscalationStep(after_seconds=120, max_level=1)],
            offer_timeout_seconds=30,
        )
        for i in range(N_QUEUES)
    }


def _agents(n: int, rng: random.Random) -> list[Agent]:
    out = []
    for i in range(n):
        picked = rng.sample(range(N_QUEUES), SKILLS_PER_AGENT)
        out.append(
            Agent(
                id=i,
                skills={f"s{k}": rng.randint(1, 5) for k in picked},
                queues=[f"q{k}" for k in picked],
                capacity={"voice": 1, "chat": 3, "messaging": 3, "email": 5},
                last_idle=-rng.random() * 600,
            )
        )
    return out


def _tasks(
    n: int, rng: random.Random, *, first_id: int = 0, at: float | None = None, levels: int = 3
) -> list[Task]:
    out = []
    for i in range(first_id, first_id + n):
        q = rng.randrange(N_QUEUES)
        out.append(
            Task(
                id=i,
                channel="chat",
                queue_id=f"q{q}",
                enqueued_at=-rng.random() * 100 if at is None else at,
                skills={f"s{q}": rng.randint(1, levels)},
                priority=rng.choice((0, 0, 0, 1, 2)),
            )
        )
    return out


def plain(
    agents: list[Agent], tasks: list[Task]
) -> tuple[list[tuple[dict[int, int], float]], list[tuple[int, int, int, float]]]:
    """The scenario as plain data for the reference router: agents as ({queue index: level}, last idle),
    tasks as (queue index, required level, priority, enqueued_at)."""
    plain_agents = [({int(q[1:]): a.skills[f"s{q[1:]}"] for q in a.queues}, a.last_idle) for a in agents]
    plain_tasks = []
    for t in tasks:
        q = int(str(t.queue_id)[1:])
        plain_tasks.append((q, t.skills[f"s{q}"], t.priority, t.enqueued_at))
    return plain_agents, plain_tasks


def reference(n_agents: int, n_tasks: int, *, seed: int = 1, levels: int = 3) -> dict[str, Any]:
    """The reference heap router on the scenario :func:`measure` builds with the same arguments."""
    rng = random.Random(seed)
    agents = _agents(n_agents, rng)
    tasks = _tasks(n_tasks, rng, levels=levels)
    plain_agents, plain_tasks = plain(agents, tasks)
    del agents, tasks
    gc.collect()
    return floor_router.measure_same(plain_agents, plain_tasks)


def _pct(sorted_ns: list[int], p: float) -> float:
    if not sorted_ns:
        return float("nan")
    i = min(len(sorted_ns) - 1, int(p * len(sorted_ns)))
    return sorted_ns[i] / 1000.0  # µs


def _build(agents: list[Agent], tasks: list[Task]) -> tuple[RoutingEngine, float, float]:
    engine = RoutingEngine(_queues())
    t0 = time.perf_counter()
    for a in agents:
        engine.upsert_agent(a)
    t1 = time.perf_counter()
    for t in tasks:
        engine.enqueue(t, 0.0)
    t2 = time.perf_counter()
    return engine, t1 - t0, t2 - t1


def measure(
    n_agents: int,
    n_tasks: int,
    *,
    steady: int = 10_000,
    seed: int = 1,
    freeze: bool = False,
    levels: int = 3,
) -> dict[str, Any]:
    """One row. ``freeze`` moves everything built so far out of the garbage collector's reach
    (``gc.freeze()``), as a server would after loading its state."""
    rng = random.Random(seed)
    agents = _agents(n_agents, rng)
    t0 = time.perf_counter()
    tasks = _tasks(n_tasks, rng, levels=levels)
    model_s = time.perf_counter() - t0

    gc.collect()
    engine, agents_s, enqueue_s = _build(agents, tasks)
    gc.collect()
    if freeze:
        gc.freeze()

    # Fill, one decision per call.
    lat: list[int] = []
    offers = []
    pc = time.perf_counter_ns
    while True:
        s = pc()
        got = engine.decide(1.0, limit=1)
        e = pc()
        if not got:
            break
        lat.append(e - s)
        offers.extend(got)
    fill_total = sum(lat) / 1e9
    lat.sort()

    # Steady state: complete one task, decide, accept.
    now = 2.0
    assigned = []
    for o in offers:
        engine.accept(o.offer_id, now)
        assigned.append(o.task_id)
    steady_lat: list[int] = []
    steady_decisions = 0
    arrivals = iter(_tasks(steady, rng, first_id=n_tasks, at=now, levels=levels))
    for _ in range(steady if assigned else 0):
        now += 0.001
        i = rng.randrange(len(assigned))
        assigned[i], assigned[-1] = assigned[-1], assigned[i]
        engine.complete(assigned.pop(), now, wrap_up_seconds=0)
        engine.enqueue(next(arrivals), now)
        s = pc()
        got = engine.decide(now)
        e = pc()
        steady_lat.append(e - s)
        steady_decisions += len(got)
        for o in got:
            engine.accept(o.offer_id, now)
            assigned.append(o.task_id)
    steady_lat.sort()
    steady_total = sum(steady_lat) / 1e9

    # Batch: a fresh engine, one decide() call for the whole fill.
    if freeze:
        gc.unfreeze()
    del engine
    gc.collect()
    engine, _, _ = _build(agents, tasks)
    gc.collect()
    if freeze:
        gc.freeze()
    s = time.perf_counter()
    batch = len(engine.decide(1.0))
    batch_s = time.perf_counter() - s
    if freeze:
        gc.unfreeze()

    return {
        "agents": n_agents,
        "tasks": n_tasks,
        "levels": levels,
        "task_models_per_s": n_tasks / model_s if model_s else float("nan"),
        "agent_build_s": agents_s,
        "enqueue_per_s": n_tasks / enqueue_s if enqueue_s else float("nan"),
        "decisions": len(lat),
        "decisions_per_s": len(lat) / fill_total if fill_total else float("nan"),
        "p50_us": _pct(lat, 0.50),
        "p99_us": _pct(lat, 0.99),
        "max_us": lat[-1] / 1000.0 if lat else float("nan"),
        "batch_decisions": batch,
        "batch_decisions_per_s": batch / batch_s if batch_s else float("nan"),
        "steady_decisions": steady_decisions,
        "steady_decisions_per_s": steady_decisions / steady_total if steady_total else float("nan"),
        "steady_p50_us": _pct(steady_lat, 0.50),
        "steady_p99_us": _pct(steady_lat, 0.99),
    }


def _table(rows: list[dict[str, Any]]) -> str:
    cols = [
        ("agents", "agents", "{:,}"),
        ("tasks", "tasks", "{:,}"),
        ("levels", "levels", "{}"),
        ("enqueue/s", "enqueue_per_s", "{:,.0f}"),
        ("decisions", "decisions", "{:,}"),
        ("dec/s", "decisions_per_s", "{:,.0f}"),
        ("p50 µs", "p50_us", "{:.1f}"),
        ("p99 µs", "p99_us", "{:.1f}"),
        ("max µs", "max_us", "{:.0f}"),
        ("batch dec/s", "batch_decisions_per_s", "{:,.0f}"),
        ("steady dec/s", "steady_decisions_per_s", "{:,.0f}"),
        ("steady p50", "steady_p50_us", "{:.1f}"),
        ("steady p99", "steady_p99_us", "{:.1f}"),
    ]
    cells = [[fmt.format(r[key]) for _, key, fmt in cols] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, (h, _, _) in enumerate(cols)]
    lines = ["  ".join(h.rjust(w) for (h, _, _), w in zip(cols, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def run(quick: bool = False) -> dict[str, Any]:
    """Measure the target scenario, the reference router on it and a small scaling table; print them;
    return the figures."""
    if quick:
        main = (2_000, 20_000)
        grid = [(1_000, 1_000), (1_000, 10_000), (2_000, 20_000)]
        steady = 2_000
    else:
        main = (10_000, 100_000)
        grid = [(1_000, 100_000), (10_000, 1_000), (10_000, 10_000), (100_000, 100_000)]
        steady = 10_000
    context_header("routing core")
    ref = reference(*main)
    head = measure(*main, steady=steady)
    toy_floor = floor_router.measure(*main)
    rows = [measure(a, t, steady=steady) for a, t in grid if (a, t) != main]
    rows.append(head)
    rows.sort(key=lambda r: (r["agents"], r["tasks"]))
    toy = measure(*main, steady=steady, levels=1)  # one requirement per queue, like the toy router
    rows.insert(rows.index(head) + 1, toy)
    frozen = measure(*main, steady=steady, freeze=True)
    print(
        f"routing core, Python {sys.version.split()[0]}: {N_QUEUES} queues, "
        f"{SKILLS_PER_AGENT} skills/agent, chat cap 3"
    )
    print(_table(rows))
    ok = head["decisions_per_s"] >= 20_000 and head["p99_us"] < 1_000
    ratio = head["decisions_per_s"] / ref["decisions_per_s"]
    print(
        f"\ntarget {main[0]:,} agents / {main[1]:,} tasks: {head['decisions_per_s']:,.0f} decisions/s, "
        f"p50 {head['p50_us']:.1f} µs, p99 {head['p99_us']:.1f} µs "
        f"({verdict(ok)} >= 20,000/s and p99 < 1 ms); task models built at "
        f"{head['task_models_per_s']:,.0f}/s, agents loaded in {head['agent_build_s']:.2f} s"
    )
    print(
        f"reference heap router, same agents, tasks and {ref['groups']} requirement groups, same run: "
        f"{ref['decisions_per_s']:,.0f} decisions/s, p50 {ref['p50_us']:.1f} µs, p99 {ref['p99_us']:.1f} µs; "
        f"engine/reference = {ratio:.2f} ({verdict(ratio >= 0.6)} >= 0.6)"
    )
    print(
        f"same with gc.freeze() after loading: {frozen['decisions_per_s']:,.0f} decisions/s, "
        f"p50 {frozen['p50_us']:.1f} µs, p99 {frozen['p99_us']:.1f} µs, max {frozen['max_us']:,.0f} µs "
        f"(default GC: max {head['max_us']:,.0f} µs)"
    )
    print(
        f"with one required level per queue (50 requirement groups, as in the reference's toy router): "
        f"{toy['decisions_per_s']:,.0f} decisions/s, p99 {toy['p99_us']:.1f} µs"
    )
    print(
        f"the older toy router (one heap per queue, its own random agents) at {main[0]:,} / {main[1]:,}: "
        f"{toy_floor['decisions_per_s']:,.0f} decisions/s, p99 {toy_floor['p99_us']:.1f} µs; the engine "
        f"reaches {head['decisions_per_s'] / toy_floor['decisions_per_s']:.2f} of it"
    )
    return {
        "main": head,
        "main_gc_frozen": frozen,
        "one_level": toy,
        "table": rows,
        "meets_target": ok,
        "reference": ref,
        "ratio": ratio,
        "meets_ratio": ratio >= 0.6,
        "floor": toy_floor,
    }


if __name__ == "__main__":
    run(quick="--quick" in sys.argv[1:])
