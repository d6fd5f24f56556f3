"""The router's input: the events it wants reach it decoded through typed subscriptions (bus/typed.py),
and one it wants that does not decode makes its next round a full reconciliation instead of being lost."""

from __future__ import annotations

from typing import Any

from tests.conftest import seed_basics
from tests.routing.helpers import Clock, full_round, leading_router
from threadline.bus.base import Envelope
from threadline.db.types import utcnow


def _env(payload: dict[str, Any]) -> Envelope:
    return Envelope(1, payload["name"], payload, {}, utcnow())


async def test_the_router_marks_what_its_typed_events_name_and_reconciles_after_one_it_cannot_read(
        services) -> None:
    await seed_basics(services)
    router = await leading_router(services, Clock())
    await full_round(router)
    assert router._next_full > 0 and not router._dirty
    services.events.deliver(_env({"name": "routing.task_picked", "conversation_id": 41, "agent_id": 1,
                                  "queue_id": 1, "at": 1.0}))
    services.events.deliver(_env({"name": "user.presence_changed", "user_id": 5, "status": "away"}))
    assert router._dirty == {41} and router._dirty_users == {5}
    services.events.deliver(_env({"name": "routing.offer_ended", "offer_id": "not a number"}))
    assert router._next_full == 0.0


async def test_a_router_that_does_not_lead_ignores_events(services) -> None:
    await seed_basics(services)
    router = await leading_router(services, Clock())
    await router.leader.release()
    services.events.deliver(_env({"name": "routing.task_picked", "conversation_id": 41, "agent_id": 1,
                                  "queue_id": 1, "at": 1.0}))
    assert not router._dirty
