"""The floor for the routing core: the simplest in-process router, measured in the same run.

The reference's toy router (../shared/reference/routing-and-wfm.md §4.2 d): 50 queues, each with a task
heap on (-priority, seq) and an agent heap on (load, last idle) with lazy deletion; 5 queues per agent,
chat capacity 3; no levels, no escalation, no stickiness, no persistence; it decides until every slot
is full, one decision per call. Threadline's engine does far more per decision; this run says what pure
matching costs on this machine right now, so the engine's figure can be read against it.
"""

from __future__ import annotations

import heapq
import random
import time

N_QUEUES = 50
QUEUES_PER_AGENT = 5
CAPACITY = 3


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
    lat.sort()
    total = sum(lat) / 1e9
    return {
        "decisions": len(lat),
        "decisions_per_s": len(lat) / total if total else float("nan"),
        "p50_us": lat[len(lat) // 2] / 1000 if lat else float("nan"),
        "p99_us": lat[min(len(lat) - 1, int(len(lat) * 0.99))] / 1000 if lat else float("nan"),
    }


if __name__ == "__main__":
    for n_agents, n_tasks in ((1_000, 100_000), (10_000, 100_000)):
        r = measure(n_agents, n_tasks)
        print(f"toy router {n_agents:,} / {n_tasks:,}: {r['decisions_per_s']:,.0f} decisions/s, "
              f"p50 {r['p50_us']:.1f} µs, p99 {r['p99_us']:.1f} µs")
