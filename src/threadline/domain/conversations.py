"""Conversations: one per customer issue, shared by every channel.

A conversation carries **no channel**: each message says which channel instance and identity it
came through, so a customer who starts in web chat and goes on by SMS stays in one thread.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime

from threadline.domain.errors import InvalidTransition, ValidationFailed


class ConversationStatus(enum.StrEnum):
    OPEN = "open"
    PENDING = "pending"  # waiting on the customer
    SNOOZED = "snoozed"  # hidden until a time or until the customer writes
    RESOLVED = "resolved"


class Priority(enum.StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"

    @property
    def rank(self) -> int:
        return _PRIORITY_RANK[self]


_PRIORITY_RANK = {Priority.LOW: 0, Priority.NORMAL: 1, Priority.HIGH: 2, Priority.URGENT: 3}

_ALLOWED: dict[ConversationStatus, set[ConversationStatus]] = {
    ConversationStatus.OPEN: {ConversationStatus.PENDING, ConversationStatus.SNOOZED, ConversationStatus.RESOLVED},
    ConversationStatus.PENDING: {ConversationStatus.OPEN, ConversationStatus.SNOOZED, ConversationStatus.RESOLVED},
    ConversationStatus.SNOOZED: {ConversationStatus.OPEN, ConversationStatus.PENDING, ConversationStatus.RESOLVED},
    ConversationStatus.RESOLVED: {ConversationStatus.OPEN},
}

_LABEL_RE = re.compile(r"^[\w][\w\-. :/]{0,62}$", re.UNICODE)


def normalise_label(raw: str) -> str:
    label = raw.strip().lower()
    if not _LABEL_RE.match(label):
        raise ValidationFailed(
            f"label {raw!r} must be 1-63 letters, digits, spaces or - _ . : / and start with a letter or digit",
            field="labels",
        )
    return label


def normalise_labels(raw: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    for item in raw:
        seen[normalise_label(item)] = None
    if len(seen) > 50:
        raise ValidationFailed("a conversation has at most 50 labels", field="labels")
    return sorted(seen)


@dataclass(slots=True)
class Conversation:
    contact_id: int
    status: ConversationStatus = ConversationStatus.OPEN
    priority: Priority = Priority.NORMAL
    queue_id: int | None = None
    assignee_id: int | None = None
    team_id: int | None = None
    labels: list[str] = field(default_factory=list)
    attributes: dict[str, object] = field(default_factory=dict)
    snoozed_until: datetime | None = None
    resolved_at: datetime | None = None
    id: int | None = None

    def change_status(self, new: ConversationStatus | str, now: datetime,
                      snoozed_until: datetime | None = None) -> bool:
        """Move to ``new``; return False when nothing changes, raise InvalidTransition when not allowed."""
        try:
            new = ConversationStatus(new)
        except ValueError:
            raise ValidationFailed(f"unknown status {new!r}", field="status") from None
        if new is self.status:
            if new is ConversationStatus.SNOOZED and snoozed_until != self.snoozed_until:
                self.snoozed_until = snoozed_until
                return True
            return False
        if new not in _ALLOWED[self.status]:
            raise InvalidTransition(
                f"a {self.status.value} conversation cannot become {new.value}; reopen it first", field="status"
            )
        if new is ConversationStatus.SNOOZED:
            if snoozed_until is not None and snoozed_until <= now:
                raise ValidationFailed("snooze until a time in the future", field="snoozed_until")
            self.snoozed_until = snoozed_until
        else:
            self.snoozed_until = None
        self.resolved_at = now if new is ConversationStatus.RESOLVED else None
        self.status = new
        return True

    def on_customer_message(self, now: datetime) -> bool:
        """A customer wrote: a pending, snoozed or resolved conversation opens again."""
        if self.status is ConversationStatus.OPEN:
            return False
        return self.change_status(ConversationStatus.OPEN, now)

    def wake_if_due(self, now: datetime) -> bool:
        if self.status is ConversationStatus.SNOOZED and self.snoozed_until and self.snoozed_until <= now:
            return self.change_status(ConversationStatus.OPEN, now)
        return False
