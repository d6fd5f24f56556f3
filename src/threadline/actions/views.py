"""Snapshots of rows as the domain's view models (used by events and the API alike)."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from threadline.db.models import ContactRow, ConversationRow, IdentityRow, MessageRow
from threadline.db.repos import contacts as contacts_repo
from threadline.db.repos import conversations as conv_repo
from threadline.domain.events import (
    AttachmentView,
    ContactView,
    ConversationView,
    IdentityView,
    MessageView,
    SlaView,
)


def identity_view(row: IdentityRow) -> IdentityView:
    return IdentityView(id=row.id, kind=row.kind, value=row.value, scope=row.scope, verified=row.verified)


def contact_view(row: ContactRow, identities: Sequence[IdentityRow]) -> ContactView:
    return ContactView(
        id=row.id, name=row.name, identities=[identity_view(i) for i in identities],
        attributes=row.attributes or {}, created_at=row.created_at, updated_at=row.updated_at,
    )


async def contact_views(session: AsyncSession, rows: Sequence[ContactRow]) -> list[ContactView]:
    idents = await contacts_repo.identities_of(session, [r.id for r in rows])
    return [contact_view(r, idents[r.id]) for r in rows]


def _conversation_view(row: ConversationRow, labels: list[str], contact_name: str) -> ConversationView:
    return ConversationView(
        id=row.id, contact_id=row.contact_id, contact_name=contact_name, status=row.status,
        priority=row.priority, queue_id=row.queue_id, assignee_id=row.assignee_id, team_id=row.team_id,
        labels=labels, attributes=row.attributes or {}, snoozed_until=row.snoozed_until,
        last_channel_instance_id=row.last_channel_instance_id, created_at=row.created_at,
        updated_at=row.updated_at, last_activity_at=row.last_activity_at, resolved_at=row.resolved_at,
        sla=SlaView(running=row.sla_started_at is not None, first_response_due_at=row.first_response_due_at,
                    first_response_at=row.first_response_at, first_response_breached_at=row.first_response_breached_at,
                    resolution_due_at=row.resolution_due_at, resolution_breached_at=row.resolution_breached_at),
    )


async def conversation_views(session: AsyncSession, rows: Sequence[ConversationRow], *,
                             names: dict[int, str] | None = None, unlabelled: Collection[int] = ()
                             ) -> list[ConversationView]:
    """Views of many conversations with two queries; a caller that already knows the contacts' names
    (``names``) or that some conversations cannot have labels yet (``unlabelled``: just created) saves them."""
    labels = await conv_repo.labels_of(session, [r.id for r in rows if r.id not in unlabelled])
    if names is None:
        names = await contacts_repo.names_of(session, [r.contact_id for r in rows])
    return [_conversation_view(r, labels.get(r.id, []), names.get(r.contact_id, "")) for r in rows]


async def conversation_view(session: AsyncSession, row: ConversationRow) -> ConversationView:
    return (await conversation_views(session, [row]))[0]


def message_view(row: MessageRow) -> MessageView:
    return MessageView(
        id=row.id, conversation_id=row.conversation_id, direction=row.direction, text=row.text,
        attachments=[AttachmentView(**a) for a in (row.attachments or [])],
        channel_instance_id=row.channel_instance_id, identity_id=row.identity_id, author_id=row.author_id,
        provider_id=row.provider_id, delivery_status=row.delivery_status, error=row.error,
        created_at=row.created_at, meta=row.meta or {},
    )
