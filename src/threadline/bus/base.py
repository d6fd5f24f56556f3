from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Envelope:
    """A published event: its stream position ``seq``, name, payload and audience."""

    seq: int
    name: str
    payload: dict[str, Any]
    audience: dict[str, Any]
    created_at: datetime

    def to_json_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "name": self.name, "payload": self.payload, "audience": self.audience,
                "created_at": self.created_at.isoformat()}

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> Envelope:
        return cls(seq=int(data["seq"]), name=data["name"], payload=data["payload"], audience=data["audience"],
                   created_at=datetime.fromisoformat(data["created_at"]))


Subscriber = Callable[[Envelope], None]


class Bus(Protocol):
    """Publish envelopes to every subscriber in every process (the Redis bus) or this one (memory).

    Subscribers are plain callables that must not block: they hand the envelope to their own queue.
    ``wake`` tells the relay (wherever it runs) that new events were committed.
    """

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def publish(self, envelopes: list[Envelope]) -> None: ...
    def subscribe(self, fn: Subscriber) -> Callable[[], None]: ...
    def on_wake(self, fn: Callable[[], None]) -> None: ...
    async def wake(self) -> None: ...
