"""Every domain event, typed, with a dotted name.

Actions create events in the same transaction as the change (the outbox), and decide who may see
each one (its ``Audience``). The websocket stream, outgoing webhooks and reports consume them.
A snapshot of the changed object travels with the event so a client can render it without a fetch.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from threadline.domain.conversations import ConversationStatus, Priority
from threadline.domain.messages import DeliveryStatus, Direction
from threadline.domain.routing.events import (
    OfferCreated,
    OfferEnded,
    RoutingSettingsChanged,
    RoutingState,
    SlaAlert,
    TaskPicked,
    TaskUnroutable,
    WrapUp,
    WrapUpEndRequested,
)
from threadline.domain.sla import SlaStage, SlaTarget
from threadline.domain.users import Presence


class Audience(BaseModel):
    """Who receives an event on the live stream, decided by the action that emits it.

    The desk: supervisors and admins see every event with ``supervisors=True``; agents see it when they are
    named, serve the queue, or are in the team. The customer side: ``contacts`` are the customers the event
    may be shown to (the web chat widget shows it to a visitor who is that contact; empty for what only
    agents see: notes, activity lines, alerts, the customer's own typing), and ``conversations`` are the
    conversations it belongs to, so a live view follows a conversation without reading the payload."""

    model_config = ConfigDict(extra="forbid")

    users: list[int] = Field(default_factory=list)
    queues: list[int] = Field(default_factory=list)
    teams: list[int] = Field(default_factory=list)
    supervisors: bool = True
    contacts: list[int] = Field(default_factory=list)
    conversations: list[int] = Field(default_factory=list)


class IdentityView(BaseModel):
    id: int
    kind: str
    value: str
    scope: str = ""
    verified: bool = True


class ContactView(BaseModel):
    id: int
    name: str
    identities: list[IdentityView]
    attributes: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class SlaView(BaseModel):
    """A conversation's SLA deadlines from its queue's targets (docs/sla.md). ``running``: the clock runs
    (in a queue and not resolved); a ``*_breached_at`` is set when that deadline passed unmet."""

    running: bool = False
    first_response_due_at: datetime | None = None
    first_response_at: datetime | None = None
    first_response_breached_at: datetime | None = None
    resolution_due_at: datetime | None = None
    resolution_breached_at: datetime | None = None


class ConversationView(BaseModel):
    id: int
    contact_id: int
    contact_name: str
    status: ConversationStatus
    priority: Priority
    queue_id: int | None
    assignee_id: int | None
    team_id: int | None
    labels: list[str]
    attributes: dict[str, Any]
    snoozed_until: datetime | None
    last_channel_instance_id: int | None
    created_at: datetime
    updated_at: datetime
    last_activity_at: datetime
    resolved_at: datetime | None
    sla: SlaView = Field(default_factory=SlaView)


class AttachmentView(BaseModel):
    url: str
    content_type: str
    name: str = ""
    size: int | None = None


class MessageView(BaseModel):
    id: int
    conversation_id: int
    direction: Direction
    text: str
    attachments: list[AttachmentView]
    channel_instance_id: int | None
    identity_id: int | None
    author_id: int | None
    provider_id: str | None
    delivery_status: DeliveryStatus | None
    error: str | None
    created_at: datetime
    # What the channel kept besides the text: an email's subject, sanitised HTML, full original text,
    # CC, auto-reply flag; a web chat's offline flag.
    meta: dict[str, Any] = Field(default_factory=dict)


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConversationCreated(_Event):
    name: Literal["conversation.created"] = "conversation.created"
    conversation: ConversationView


class ConversationUpdated(_Event):
    name: Literal["conversation.updated"] = "conversation.updated"
    conversation: ConversationView
    changes: list[str]
    actor_id: int | None = None


class ConversationSlaAlert(_Event):
    """A conversation's first-response or resolution deadline (its queue's SLA) is near (``at_risk``, at
    the queue's near-breach ratio of the time allowed) or passed unmet (``breached``). For the
    conversation's queue, its assignee and supervisors, like the routing SLA alerts."""

    name: Literal["conversation.sla_alert"] = "conversation.sla_alert"
    conversation_id: int
    queue_id: int | None
    assignee_id: int | None
    target: SlaTarget
    state: SlaStage
    due_at: datetime
    target_seconds: int


class MessageCreated(_Event):
    name: Literal["message.created"] = "message.created"
    message: MessageView


class MessageUpdated(_Event):
    """A stored message changed after it was created, e.g. its linked media were downloaded into storage."""

    name: Literal["message.updated"] = "message.updated"
    message: MessageView
    changes: list[str]


class MessageStatusChanged(_Event):
    name: Literal["message.status_changed"] = "message.status_changed"
    message_id: int
    conversation_id: int
    status: DeliveryStatus
    error: str | None = None


class ContactCreated(_Event):
    name: Literal["contact.created"] = "contact.created"
    contact: ContactView


class ContactUpdated(_Event):
    name: Literal["contact.updated"] = "contact.updated"
    contact: ContactView
    changes: list[str]


class PresenceChanged(_Event):
    name: Literal["user.presence_changed"] = "user.presence_changed"
    user_id: int
    status: Presence
    reason: str = ""


class ChannelChanged(_Event):
    """A channel instance was created or changed (name, settings, enabled): processes drop cached copies."""

    name: Literal["channel.changed"] = "channel.changed"
    channel_id: int
    kind: str
    enabled: bool


class ConversationTyping(_Event):
    """Someone is typing in a conversation (web chat visitor or agent). Ephemeral: nothing is stored but
    the event itself, sent on transitions only (throttled), so the stream and its resume work as usual."""

    name: Literal["conversation.typing"] = "conversation.typing"
    conversation_id: int
    who: Literal["visitor", "agent"]
    user_id: int | None = None
    typing: bool


class CsatSubmitted(_Event):
    """A customer rated a resolved conversation (1-5) with an optional comment."""

    name: Literal["csat.submitted"] = "csat.submitted"
    conversation_id: int
    contact_id: int
    rating: int
    comment: str = ""
    created_at: datetime



class ContactMerged(_Event):
    """``source`` was merged into ``contact`` (identities, conversations and attributes moved)."""

    name: Literal["contact.merged"] = "contact.merged"
    contact: ContactView
    source_id: int
    merge_id: int
    actor_id: int | None = None
    undone: bool = False


class MergeSuggested(_Event):
    """Two contacts may be one person; an agent decides (claims typed into forms never merge silently)."""

    name: Literal["contact.merge_suggested"] = "contact.merge_suggested"
    suggestion_id: int
    contact_id: int
    other_contact_id: int
    reason: str


class WebhookDisabled(_Event):
    """An outgoing webhook endpoint was switched off by Threadline: it failed every delivery for too long,
    or its receiver answered 410 Gone. An admin re-enables it once the receiver is fixed."""

    name: Literal["webhook.disabled"] = "webhook.disabled"
    endpoint_id: int
    description: str = ""
    reason: str
    consecutive_failures: int


class FlowSaved(_Event):
    """An admin saved a new version of a flow (an IVR or a chat bot); calls and chats started before keep
    the version they pinned."""

    name: Literal["flow.saved"] = "flow.saved"
    flow_id: int
    flow_name: str
    version: int
    actor_id: int | None = None


class CallChanged(_Event):
    """A call moved (ringing, queued, answered by an agent, ended): the desk pops the caller's
    conversation for the agent who answers, and the live view follows calls (``threadline/voice``)."""

    name: Literal["call.changed"] = "call.changed"
    call_id: int
    conversation_id: int
    contact_id: int | None
    state: str
    direction: str
    number: str
    agent_id: int | None = None
    end_cause: str | None = None
    verified_by: str | None = None
    provider: str | None = None  # twilio_voice, asterisk, pbx, webrtc (a call in the browser)
    video: bool = False


class CallMedia(_Event):
    """A browser call's session description for the other party (WebRTC signalling, no trickle: the
    agent's answer to the visitor's offer when the call goes peer to peer), pushed over the agents' and
    the widget's websockets."""

    name: Literal["call.media"] = "call.media"
    call_id: int
    conversation_id: int
    to: Literal["visitor", "agent"]
    sdp_type: Literal["offer", "answer"]
    sdp: str


Event = Annotated[
    ContactMerged | MergeSuggested | ConversationCreated | ConversationUpdated | ConversationSlaAlert | MessageCreated
    | MessageStatusChanged
    | MessageUpdated | ContactCreated | ContactUpdated | PresenceChanged | ChannelChanged
    | ConversationTyping | CsatSubmitted
    | OfferCreated | OfferEnded | TaskPicked | TaskUnroutable | SlaAlert | RoutingState | RoutingSettingsChanged
    | WrapUp | WrapUpEndRequested | WebhookDisabled | FlowSaved | CallChanged | CallMedia,
    Field(discriminator="name"),
]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def event_name(cls: type[BaseModel]) -> str:
    """The dotted name of an event class (its ``name`` literal), e.g. ``message.created``: consumers name
    the classes they want and derive the strings from them, so a renamed event cannot be missed."""
    field = cls.model_fields.get("name")
    if field is None or not isinstance(field.default, str):
        raise TypeError(f"{cls.__name__} is not an event class of threadline.domain.events")
    return field.default


def event_names(*classes: type[BaseModel]) -> frozenset[str]:
    """The dotted names of these event classes (what an outbox follower matches event heads against)."""
    return frozenset(event_name(cls) for cls in classes)


# High-frequency signals that only matter for a moment (someone typing, wallboard snapshots): marked
# ephemeral in the outbox when emitted, so retention forgets them after minutes instead of days.
EPHEMERAL_EVENTS = event_names(ConversationTyping, RoutingState)
# Every event name, from the union above (so a new event is never forgotten here); webhooks validate
# subscriptions against it.
EVENT_NAMES = sorted(event_name(cls) for cls in get_args(get_args(Event)[0]))


def parse_event(data: dict[str, Any]) -> Event:
    """Decode an event payload (as stored in the outbox and carried by the bus) into its class."""
    return EVENT_ADAPTER.validate_python(data)
