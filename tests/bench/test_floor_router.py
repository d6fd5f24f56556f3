"""The benchmark's reference heap router makes the engine's choices on the engine's scenario, so the
ratio the routing-core benchmark prints compares the same work."""

from __future__ import annotations

import random

import pytest

from bench import floor_router, routing_core


@pytest.mark.parametrize(("n_agents", "n_tasks", "levels"), [(200, 2_000, 3), (300, 500, 3), (150, 3_000, 1)])
def test_reference_router_decides_like_the_engine(n_agents: int, n_tasks: int, levels: int) -> None:
    rng = random.Random(7)
    agents = routing_core._agents(n_agents, rng)
    tasks = routing_core._tasks(n_tasks, rng, levels=levels)
    engine, _, _ = routing_core._build(agents, tasks)
    got = []
    while offers := engine.decide(1.0, limit=1):
        got += [(o.task_id, o.agent_id) for o in offers]

    ref = floor_router.SameSetup(*routing_core.plain(agents, tasks))
    want = []
    while (d := ref.decide()) is not None:
        want.append((tasks[d[0]].id, agents[d[1]].id))

    assert got == want
    assert got  # something was decided
