"""An event at its place in the stream: what a typed subscriber receives (``bus.typed``).

``seq`` is the event's stream position (clients resume after it); ``created_at`` is when the action
emitted it, so a consumer can tell an old event replayed from the log from a fresh one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

E = TypeVar("E")


@dataclass(frozen=True, slots=True)
class Published(Generic[E]):
    event: E
    seq: int
    created_at: datetime
