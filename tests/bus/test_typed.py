"""Typed subscriptions (bus/typed.py): consumers name event classes, never match names or index payloads."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel

from threadline.bus.base import Envelope
from threadline.bus.memory import MemoryBus
from threadline.bus.typed import TypedSubscriptions
from threadline.domain.events import ContactCreated, event_name, event_names
from threadline.domain.routing.events import OfferEnded, TaskPicked
from threadline.domain.stream import Published

AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
ENDED = {"name": "routing.offer_ended", "offer_id": 4, "conversation_id": 9, "agent_id": 2, "outcome": "accepted",
         "at": 1.5}


def _env(seq: int, payload: dict[str, Any]) -> Envelope:
    return Envelope(seq, payload.get("name", "?"), payload, {}, AT)


async def test_a_handler_gets_the_parsed_event_of_its_class_with_its_place_in_the_stream() -> None:
    bus = MemoryBus()
    events = TypedSubscriptions(bus)
    seen: list[Published[OfferEnded]] = []
    events.subscribe(OfferEnded, seen.append)
    await bus.publish([_env(7, ENDED), _env(8, {"name": "routing.task_picked", "conversation_id": 9})])
    assert len(seen) == 1
    assert isinstance(seen[0].event, OfferEnded)
    assert (seen[0].event.conversation_id, seen[0].event.outcome, seen[0].seq, seen[0].created_at) == (9, "accepted",
                                                                                                      7, AT)


async def test_an_invalid_payload_goes_to_on_invalid_and_never_to_the_handler() -> None:
    bus = MemoryBus()
    events = TypedSubscriptions(bus)
    seen: list[object] = []
    invalid: list[int] = []
    events.subscribe(OfferEnded, seen.append, on_invalid=lambda env: invalid.append(env.seq))
    await bus.publish([_env(1, {**ENDED, "outcome": "maybe"}), _env(2, {"name": "routing.offer_ended"})])
    assert seen == [] and invalid == [1, 2]


async def test_events_nobody_subscribed_to_are_not_parsed() -> None:
    bus = MemoryBus()
    events = TypedSubscriptions(bus)
    invalid: list[int] = []
    events.subscribe(TaskPicked, lambda _: None, on_invalid=lambda env: invalid.append(env.seq))
    # a malformed event of another name reaches nobody: no parse, no on_invalid
    await bus.publish([_env(1, {"name": "routing.offer_ended", "offer_id": "x"})])
    assert invalid == []


async def test_a_failing_handler_does_not_stop_the_others_and_unsubscribe_stops_delivery() -> None:
    bus = MemoryBus()
    events = TypedSubscriptions(bus)
    seen: list[int] = []

    def broken(_: Published[OfferEnded]) -> None:
        raise RuntimeError("bug")

    events.subscribe(OfferEnded, broken)
    unsubscribe = events.subscribe(OfferEnded, lambda p: seen.append(p.seq))
    await bus.publish([_env(1, ENDED)])
    unsubscribe()
    await bus.publish([_env(2, ENDED)])
    assert seen == [1]


def test_event_names_come_from_the_classes_and_a_non_event_class_is_refused() -> None:
    assert event_name(ContactCreated) == "contact.created"
    assert event_names(OfferEnded, TaskPicked) == {"routing.offer_ended", "routing.task_picked"}

    class NotAnEvent(BaseModel):
        id: int

    with pytest.raises(TypeError, match="NotAnEvent"):
        event_name(NotAnEvent)
