"""An event at its place in the stream: what a typed subscriber receives (``bus.typed``).

``seq`` is the event's stream position (clients resume after it); ``created_at`` is when the action
emitted it, so a consumer can tell an old event replayed from the log from a fresh one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import ValidationError

from threadline.domain.events import Audience, Event, parse_event

E = TypeVar("E")


@dataclass(frozen=True, slots=True)
class Published(Generic[E]):
    event: E
    seq: int
    created_at: datetime


class LiveEvent:
    """An event as the live stream fans it out: its place (``seq``, ``created_at``), its ``audience``
    (typed, decided by the action that emitted it) and the event itself, decoded through the event union
    once per process and only when a connection asks for it (``event``; None for an event stored by an
    older version in another shape). ``payload`` is the event as stored (JSON), which the desk's frames
    carry unchanged."""

    __slots__ = ("seq", "name", "payload", "audience", "created_at", "_event", "_decoded")

    def __init__(self, seq: int, name: str, payload: dict[str, Any], audience: Audience,
                 created_at: datetime) -> None:
        self.seq, self.name, self.payload, self.audience, self.created_at = seq, name, payload, audience, created_at
        self._event: Event | None = None
        self._decoded = False

    @property
    def event(self) -> Event | None:
        if not self._decoded:
            self._decoded = True
            try:
                self._event = parse_event(self.payload)
            except ValidationError:
                self._event = None
        return self._event

    def published(self) -> Published[Event] | None:
        event = self.event
        return None if event is None else Published(event, self.seq, self.created_at)
