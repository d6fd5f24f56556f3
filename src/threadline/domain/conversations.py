"""Conversations: one per customer issue, shared by every channel.

A conversation carries **no channel**: each message says which channel instance and identity it
came through, so a customer who starts in web chat and goes on by SMS stays in one thread.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
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


# --- which conversation an inbound message joins: a pure planner, applied by actions/inbound/receive.py ---

@dataclass(frozen=True, slots=True)
class ConversationFacts:
    """A stored conversation as placement sees it."""

    id: int
    contact_id: int
    status: ConversationStatus
    snoozed_until: datetime | None = None
    last_channel_instance_id: int | None = None
    has_last_identity: bool = False  # replies already have an address to go to


@dataclass(frozen=True, slots=True)
class Arrival:
    """One inbound message as placement sees it, its sender already recognised."""

    contact_id: int
    channel_id: int
    queue_id: int | None = None  # where a new conversation starts: the pre-chat topic's queue, else the channel's
    automatic: bool = False  # an out-of-office, a bounce…: recorded quietly
    bound_to: int | None = None  # the conversation the channel's session is bound to (web chat)
    references: tuple[int, ...] = ()  # conversations of the earlier messages it answers (email), strongest first


@dataclass(frozen=True, slots=True)
class NewConversation:
    """A conversation the plan starts; ``index`` is its place in ``PlacementPlan.new``."""

    index: int
    contact_id: int
    queue_id: int | None
    channel_id: int
    resolved: bool = False  # an automatic message with nowhere to go: nobody is asked to handle it


ConversationRef = int | NewConversation  # a stored conversation's id, or one the plan starts


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one message goes and what that changes on its conversation."""

    conversation: ConversationRef
    changes: tuple[str, ...] = ()  # for ``conversation.updated`` on a stored conversation
    reopen: bool = False  # becomes open (snooze and resolution cleared)
    touch: bool = False  # last channel and activity time move (never for an automatic message)
    switched_channel: bool = False  # a timeline line: the customer continued on another channel
    sets_last_identity: bool = False  # replies go to the identity this message came from

    @property
    def is_new(self) -> bool:
        return isinstance(self.conversation, NewConversation)


@dataclass(slots=True)
class PlacementPlan:
    placements: list[Placement]  # one per arrival, in order
    new: list[NewConversation] = field(default_factory=list)


@dataclass(slots=True)
class _Working:
    contact_id: int
    status: ConversationStatus
    snoozed_until: datetime | None
    last_channel: int | None
    has_last_identity: bool


def _hint(arrival: Arrival, conversations: Mapping[int, ConversationFacts]) -> ConversationFacts | None:
    """The conversation the channel points at: a bound session's (ignored once resolved, so a new message
    after the end of an issue starts a new conversation), else the one the message answers (even resolved)."""
    conv = conversations.get(arrival.bound_to) if arrival.bound_to else None
    if conv is not None and conv.status is ConversationStatus.RESOLVED and not arrival.automatic:
        conv = None
    if conv is None:
        for ref in arrival.references:
            conv = conversations.get(ref)
            if conv is not None:
                break
    return conv


def place_messages(arrivals: Sequence[Arrival], conversations: Mapping[int, ConversationFacts], *,
                   open_by_contact: Mapping[int, int], recent_by_contact: Mapping[int, int] | None = None,
                   now: datetime) -> PlacementPlan:
    """Decide which conversation each inbound message joins or starts, in order, from the facts read for the
    batch: ``conversations`` (those the hints, the open and the recent maps name), each contact's open one
    and, when the channel reopens recent issues, each contact's conversation resolved a short while ago.

    Per message: the channel's hint (unless it names someone else's conversation), else the contact's open
    conversation (reopening a pending or snoozed one), else a recently resolved one (not for a bound session,
    which starts anew), else a new one. An automatic message is recorded quietly: in the conversation it
    answers (even resolved) or the contact's open one, changing neither its status, activity time nor where
    replies go; with nowhere to go it starts a conversation resolved from the start.
    """
    hints = [_hint(a, conversations) for a in arrivals]  # from the stored state, before the batch changes it
    state: dict[ConversationRef, _Working] = {
        cid: _Working(c.contact_id, c.status, c.snoozed_until, c.last_channel_instance_id, c.has_last_identity)
        for cid, c in conversations.items()}
    open_now: dict[int, ConversationRef] = dict(open_by_contact)
    recent = recent_by_contact or {}
    plan = PlacementPlan(placements=[])
    for arrival, hint in zip(arrivals, hints, strict=True):
        ref: ConversationRef | None = hint.id if hint is not None else None
        if hint is None or hint.contact_id != arrival.contact_id:  # a hint never moves a message to someone else
            ref = open_now.get(arrival.contact_id)
            if ref is None and not arrival.bound_to and not arrival.automatic:
                ref = recent.get(arrival.contact_id)
                if ref is not None:
                    open_now[arrival.contact_id] = ref
        if arrival.automatic:
            if ref is None:
                ref = NewConversation(len(plan.new), arrival.contact_id, arrival.queue_id, arrival.channel_id,
                                      resolved=True)
                plan.new.append(ref)
                state[ref] = _Working(arrival.contact_id, ConversationStatus.RESOLVED, None, arrival.channel_id,
                                      False)
            conv = state[ref]
            plan.placements.append(Placement(ref, sets_last_identity=not conv.has_last_identity))
            conv.has_last_identity = True
            continue
        changes: list[str] = []
        reopen = False
        if ref is None:
            ref = NewConversation(len(plan.new), arrival.contact_id, arrival.queue_id, arrival.channel_id)
            plan.new.append(ref)
            state[ref] = _Working(arrival.contact_id, ConversationStatus.OPEN, None, None, False)
            open_now[arrival.contact_id] = ref
        else:
            conv = state[ref]
            domain = Conversation(contact_id=conv.contact_id, status=conv.status, snoozed_until=conv.snoozed_until)
            if domain.on_customer_message(now):
                conv.status, conv.snoozed_until, reopen = domain.status, None, True
                changes.append("status")
        conv = state[ref]
        switched = False
        if conv.last_channel != arrival.channel_id:
            changes.append("last_channel_instance_id")
            switched = conv.last_channel is not None and not isinstance(ref, NewConversation)
        conv.last_channel, conv.has_last_identity = arrival.channel_id, True
        plan.placements.append(Placement(ref, tuple(changes), reopen=reopen, touch=True, switched_channel=switched,
                                         sets_last_identity=True))
    return plan
