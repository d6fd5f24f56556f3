"""Reference heap routers for the routing core, measured in the same run as the engine.

Two plain in-memory routers, no models, no events, no offers, no persistence; each decides until every
chat slot is full, one decision per call (the engine's "fill" phase):

* :func:`measure_same` — the **reference**: the engine's benchmark set-up exactly. It takes the same
  agents (queues, skill levels, last idle times, chat capacity 3) and the same waiting tasks (queue,
  required level 1-3, priority 0-2, enqueue time), groups the tasks by requirement (queue, level) like
  the engine's buckets (150 groups), and keeps per group a task heap on (-priority, enqueue time,
  arrival) and an agent heap on (load, last idle, roster order) holding every agent of the queue whose
  skill reaches the level, with lazy deletion (an entry is valid while the agent's version is
  unchanged; each decision bumps the agent's version and pushes a fresh entry into each of its groups
  where it still has room). A ready heap holds each group's head task; a group with no free agent drops
  out. It makes the same choices as the engine (checked by ``tests/bench/test_floor_router.py``); the
  escalation steps of the engine's queues are not modelled because none falls due during the fill.
* :func:`measure` — the reference's older **toy router** (``../shared/reference/routing-and-wfm.md``
  §4.2 d): one group per queue (no levels), tasks on (-priority, arrival), its own random agents. Kept
  for comparison with older figures.
"""

from __future__ import annotations

import heapq
import random
import time
from collections.abc import Sequence
from typing import Any

N_QUEUES = 50
QUEUES_PER_AGENT = 5
CAPACITY = 3


def _figures(lat: list[int]) -> dict[str, float]:
    lat.sort()
    total = sum(lat) / 1e9
    return {
        "decisions": len(lat),
        "decisions_per_s": len(lat) / total if total else float("nan"),
        "p50_us": lat[len(lat) // 2] / 1000 if lat else float("nan"),
        "p99_us": lat[min(len(lat) - 1, int(len(lat) * 0.99))] / 1000 if lat else float("nan"),
    }


class SameSetup:
    """The reference router over plain data.

    ``agents``: per agent ``(skills, last_idle)`` with ``skills`` = {queue index: level}, in roster order.
    ``tasks``: per task ``(queue index, required level, priority, enqueued_at)``, in arrival order.
    ``queue_level``: the level every task of a queue requires at least (the queue's own skill).
    """

    def __init__(
        self,
        agents: Sequence[tuple[dict[int, int], float]],
        tasks: Sequence[tuple[int, int, int, float]],
        capacity: int = CAPACITY,
        queue_level: int = 1,
    ) -> None:
        self.capacity = capacity
        self.last_idle = [idle for _, idle in agents]
        self.load = [0] * len(agents)
        self.version = [0] * len(agents)
        self.groups: dict[tuple[int, int], int] = {}
        self.g_tasks: list[list[tuple[int, float, int]]] = []
        self.g_agents: list[list[tuple[int, float, int, int]]] = []
        self.agent_groups: list[list[int]] = [[] for _ in agents]
        by_queue: dict[int, list[tuple[int, int]]] = {}
        for a, (skills, _) in enumerate(agents):
            for q, level in skills.items():
                by_queue.setdefault(q, []).append((a, level))
        for seq, (q, level, prio, enq) in enumerate(tasks):
            key = (q, max(level, queue_level))
            g = self.groups.get(key)
            if g is None:
                g = self.groups[key] = len(self.g_tasks)
                self.g_tasks.append([])
                heap = []
                for a, have in by_queue.get(q, ()):
                    if have >= key[1]:
                        heap.append((0, self.last_idle[a], a, 0))
                        self.agent_groups[a].append(g)
                heapq.heapify(heap)
                self.g_agents.append(heap)
            self.g_tasks[g].append((-prio, enq, seq))
        for h in self.g_tasks:
            heapq.heapify(h)
        self.ready = [(*h[0], g) for g, h in enumerate(self.g_tasks) if h]
        heapq.heapify(self.ready)

    def decide(self) -> tuple[int, int] | None:
        """One decision: (task arrival index, agent roster index), or None when nothing can be matched."""
        ready, version, load = self.ready, self.version, self.load
        while ready:
            _, _, _, g = heapq.heappop(ready)
            agents = self.g_agents[g]
            while agents and agents[0][3] != version[agents[0][2]]:
                heapq.heappop(agents)
            if not agents:
                continue  # nobody free in this group: it leaves the ready heap
            a = heapq.heappop(agents)[2]
            tasks = self.g_tasks[g]
            seq = heapq.heappop(tasks)[2]
            load[a] += 1
            v = version[a] = version[a] + 1
            if load[a] < self.capacity:
                entry = (load[a], self.last_idle[a], a, v)
                for ag in self.agent_groups[a]:
                    heapq.heappush(self.g_agents[ag], entry)
            if tasks:
                heapq.heappush(ready, (*tasks[0], g))
            return seq, a
        return None


def measure_same(
    agents: Sequence[tuple[dict[int, int], float]],
    tasks: Sequence[tuple[int, int, int, float]],
    capacity: int = CAPACITY,
) -> dict[str, Any]:
    """Decisions/s and per-decision p50/p99 (µs) of the reference router filling every slot."""
    t0 = time.perf_counter()
    router = SameSetup(agents, tasks, capacity)
    build_s = time.perf_counter() - t0
    lat: list[int] = []
    pc = time.perf_counter_ns
    decide = router.decide
    while True:
        s = pc()
        ok = decide()
        e = pc()
        if ok is None:
            break
        lat.append(e - s)
    return {**_figures(lat), "groups": len(router.g_tasks), "build_s": build_s}


def measure(n_agents: int, n_tasks: int, seed: int = 1) -> dict[str, float]:
    """Decisions/s and per-decision p50/p99 (µs) of the toy router filling every slot."""
    rng = random.Random(seed)
    agent_queues = [rng.sample(range(N_QUEUES), QUEUES_PER_AGENT) for _ in range(n_agents)]
    last_idle = [-rng.random() * 600 for _ in range(n_agents)]
    load = [0] * n_agents
    version = [0] * n_agents
    q_agents: list[list[tuple[int, float, int, int]]] = [[] for _ in range(N_QUEUES)]
    for a, qs in enumerate(agent_queues):
        for q in qs:
            q_agents[q].append((0, last_idle[a], 0, a))
    for h in q_agents:
        heapq.heapify(h)
    q_tasks: list[list[tuple[int, int]]] = [[] for _ in range(N_QUEUES)]
    for seq in range(n_tasks):
        heapq.heappush(q_tasks[rng.randrange(N_QUEUES)], (-rng.randint(0, 2), seq))
    ready = [(*h[0], q) for q, h in enumerate(q_tasks) if h]
    heapq.heapify(ready)

    def decide() -> bool:
        while ready:
            neg, seq, q = heapq.heappop(ready)
            agents = q_agents[q]
            while agents and agents[0][2] != version[agents[0][3]]:
                heapq.heappop(agents)
            if not agents:
                continue  # nobody free in this queue: it leaves the ready heap until an agent frees up
            _, _, _, a = heapq.heappop(agents)
            heapq.heappop(q_tasks[q])
            load[a] += 1
            version[a] += 1
            if load[a] < CAPACITY:
                for aq in agent_queues[a]:
                    heapq.heappush(q_agents[aq], (load[a], last_idle[a], version[a], a))
            if q_tasks[q]:
                heapq.heappush(ready, (*q_tasks[q][0], q))
            return True
        return False

    lat: list[int] = []
    pc = time.perf_counter_ns
    while True:
        s = pc()
        ok = decide()
        e = pc()
        if not ok:
            break
        lat.append(e - s)
    return _figures(lat)


if __name__ == "__main__":
    for n_agents, n_tasks in ((1_000, 100_000), (10_000, 100_000)):
        r = measure(n_agents, n_tasks)
        print(
            f"toy router {n_agents:,} / {n_tasks:,}: {r['decisions_per_s']:,.0f} decisions/s, "
            f"p50 {r['p50_us']:.1f} µs, p99 {r['p99_us']:.1f} µs"
        )
