"""Request and response bodies of the REST API (responses reuse the domain's view models)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from threadline.domain.events import ContactView, ConversationView, MessageView
from threadline.domain.ids import Id, IdOrZero  # noqa: F401 - the bounded id types, re-exported for the routes
from threadline.queries.users import QueueOut, TeamOut, UserOut  # noqa: F401 - read models, re-exported


class In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginIn(In):
    email: str = Field(max_length=320)
    password: str = Field(max_length=1024)


class MeOut(UserOut):
    csrf_token: str | None = Field(description="Send as X-CSRF-Token on writes made with the session cookie")


class UserCreate(In):
    email: str = Field(max_length=320)
    name: str = Field(min_length=1, max_length=200)
    role: str = "agent"
    password: str | None = Field(default=None, max_length=1024)
    skills: dict[str, int] = Field(default_factory=dict)
    languages: list[str] = Field(default_factory=list, max_length=20)
    team_ids: list[Id] = Field(default_factory=list)
    queue_ids: list[Id] = Field(default_factory=list)


class UserUpdate(In):
    name: str | None = Field(default=None, max_length=200)
    role: str | None = None
    skills: dict[str, int] | None = None
    languages: list[str] | None = Field(default=None, max_length=20)
    team_ids: list[Id] | None = None
    queue_ids: list[Id] | None = None
    active: bool | None = None


class PasswordIn(In):
    password: str = Field(max_length=1024)


class PresenceIn(In):
    status: str
    reason: str = Field(default="", max_length=100)


class TeamIn(In):
    name: str = Field(min_length=1, max_length=100)


class QueueIn(In):
    name: str = Field(min_length=1, max_length=100)
    team_id: Id | None = None
    settings: dict[str, Any] = Field(default_factory=dict)


class QueueUpdate(In):
    name: str | None = Field(default=None, max_length=100)
    team_id: Id | None = None
    settings: dict[str, Any] | None = None


class ChannelIn(In):
    kind: str = Field(max_length=40)
    name: str = Field(min_length=1, max_length=100)
    config: dict[str, Any] = Field(default_factory=dict)
    default_queue_id: Id | None = None
    enabled: bool = True


class ChannelUpdate(In):
    name: str | None = Field(default=None, max_length=100)
    config: dict[str, Any] | None = None
    default_queue_id: Id | None = None
    enabled: bool | None = None


class ChannelOut(BaseModel):
    id: int
    kind: str
    name: str
    enabled: bool
    default_queue_id: int | None
    inbound_url: str | None = Field(default=None, description="Paste at the provider (admins only)")
    config: dict[str, Any] | None = Field(default=None, description="Secrets masked (admins only)")
    embed_snippet: str | None = Field(default=None, description="Paste into your website (web chat; admins only)")


class IdentityIn(In):
    kind: str
    value: str = Field(max_length=320)
    scope: str = Field(default="", max_length=100)


class ContactCreate(In):
    name: str = Field(default="", max_length=200)
    identities: list[IdentityIn] = Field(default_factory=list, max_length=50)
    attributes: dict[str, Any] = Field(default_factory=dict)


class ContactUpdate(In):
    name: str | None = Field(default=None, max_length=200)
    attributes: dict[str, Any] | None = None


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null at the end")


class ContactPage(Page[ContactView]):
    pass


class ConversationPage(Page[ConversationView]):
    pass


class MessagePage(Page[MessageView]):
    pass


class ConversationUpdate(In):
    # Fields left out are not changed; null means "none" where that exists (no assignee, queue, team, snooze
    # time) and is refused (422) where it does not: send [] to remove every label.
    status: str = Field(default=None, max_length=20)  # type: ignore[assignment]
    snoozed_until: datetime | None = None
    assignee_id: Id | None = None
    queue_id: Id | None = None
    team_id: Id | None = None
    labels: list[str] = Field(default=None, max_length=50)  # type: ignore[assignment]
    priority: str = Field(default=None, max_length=20)  # type: ignore[assignment]
    note: str | None = Field(default=None, max_length=2000, description="Why (shown in the activity line)")


class AttachmentIn(In):
    url: str = Field(min_length=1, max_length=2000)
    content_type: str = Field(default="application/octet-stream", max_length=200)
    name: str = Field(default="", max_length=300)
    size: int | None = Field(default=None, ge=0)


class ReplyIn(In):
    text: str = Field(default="", max_length=65_536)
    attachments: list[AttachmentIn] = Field(default_factory=list, max_length=20)
    channel_instance_id: Id | None = None
    identity_id: Id | None = None


class NoteIn(In):
    text: str = Field(max_length=65_536)


class TokenIn(In):
    name: str = Field(min_length=1, max_length=100)


class TokenOut(BaseModel):
    id: int
    user_id: int
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


class TokenCreated(TokenOut):
    token: str = Field(description="Shown once; only its hash is stored")
