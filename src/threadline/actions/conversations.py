"""Change a conversation: status, assignee, queue, team, labels, priority. Each change leaves an
activity line in the timeline and one ``conversation.updated`` event for everyone concerned.

A snooze with an end schedules a ``conversation.wake`` job at that time in the same transaction
(snoozing again moves it; any other status cancels it); when it is due, ``wake_conversation`` opens the
conversation again. A customer writing to a snoozed conversation opens it at once (actions/inbound/receive.py);
the job then finds nothing to wake."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions.events import emit
from threadline.actions.scheduler import cancel_job, schedule_job
from threadline.actions.views import conversation_view, message_view
from threadline.db.models import ConversationRow, MessageRow
from threadline.db.repos import conversations as repo
from threadline.db.repos import users as users_repo
from threadline.db.types import utcnow
from threadline.domain.access import Actor
from threadline.domain.conversations import Conversation, ConversationStatus, Priority, normalise_labels
from threadline.domain.errors import NotFound, PermissionDenied, ValidationFailed
from threadline.domain.events import (
    Audience,
    ConversationUpdated,
    ConversationView,
    MessageCreated,
    MessageView,
)
from threadline.domain.messages import MAX_TEXT, Direction
from threadline.domain.users import Role

UNSET: Any = object()
WAKE = "conversation.wake"  # the scheduled job that ends a snooze (key: the conversation id)
WOKEN = "The snooze ended: the conversation is open again"


def audience_for(*rows: ConversationRow | None, extra_users: tuple[int | None, ...] = (),
                 customer: bool = False) -> Audience:
    """Who sees an event about these conversations: their assignees, queues and teams (and supervisors),
    and, when the event is for the ``customer`` too (their messages and our replies, status, delivery,
    an agent typing; never notes or activity lines), the conversations' contacts."""
    users, queues, teams, contacts, conversations = set(), set(), set(), set(), set()
    for row in rows:
        if row is None:
            continue
        if row.id is not None:  # (a snapshot of the assignment before a change has none)
            conversations.add(row.id)
        if customer and row.contact_id is not None:
            contacts.add(row.contact_id)
        if row.assignee_id:
            users.add(row.assignee_id)
        if row.queue_id:
            queues.add(row.queue_id)
        if row.team_id:
            teams.add(row.team_id)
    users.update(u for u in extra_users if u)
    return Audience(users=sorted(users), queues=sorted(queues), teams=sorted(teams), contacts=sorted(contacts),
                    conversations=sorted(conversations))


def add_activity(session: AsyncSession, conv: ConversationRow, text: str, actor_id: int | None) -> MessageRow:
    msg = MessageRow(conversation_id=conv.id, direction=Direction.ACTIVITY.value, text=text, author_id=actor_id,
                     attachments=[], meta={})
    session.add(msg)
    return msg


async def add_note(session: AsyncSession, actor: Actor, conversation_id: int, text: str) -> MessageView:
    """An internal note: shown to agents in the timeline, never sent to the customer."""
    conv = actor.check_can_see(await repo.get_conversation(session, conversation_id), conversation_id)
    text = text.strip()
    if not text:
        raise ValidationFailed("a note needs text", field="text")
    if len(text) > MAX_TEXT:
        raise ValidationFailed(f"a note is at most {MAX_TEXT} characters", field="text")
    now = utcnow()
    row = MessageRow(conversation_id=conv.id, direction=Direction.NOTE.value, text=text, author_id=actor.user_id,
                     attachments=[], meta={}, created_at=now)
    session.add(row)
    conv.updated_at = now
    await session.flush()
    view = message_view(row)
    emit(session, MessageCreated(message=view), audience_for(conv))
    return view


async def _user_name(session: AsyncSession, user_id: int | None) -> str:
    if user_id is None:
        return "nobody"
    user = await users_repo.get_user(session, user_id)
    return user.name if user else f"user {user_id}"


async def update_conversation(
    session: AsyncSession,
    actor: Actor | None,
    conversation_id: int,
    *,
    status: str = UNSET,
    snoozed_until: datetime | None = UNSET,
    assignee_id: int | None = UNSET,
    queue_id: int | None = UNSET,
    team_id: int | None = UNSET,
    labels: list[str] = UNSET,
    priority: str = UNSET,
    note: str | None = None,
    transfer: bool = False,
) -> ConversationView:
    conv = await repo.get_conversation(session, conversation_id, for_update=True)
    if actor is not None:
        conv = actor.check_can_see(conv, conversation_id)
    elif conv is None:
        raise NotFound(f"conversation {conversation_id} does not exist")
    before = ConversationRow(assignee_id=conv.assignee_id, queue_id=conv.queue_id, team_id=conv.team_id)
    now = utcnow()
    actor_id = actor.user_id if actor else None
    who = actor.name if actor else "Threadline"
    changes: list[str] = []
    lines: list[str] = []

    if assignee_id is not UNSET and assignee_id != conv.assignee_id:
        if actor is not None and not actor.sees_everything and assignee_id not in (actor.user_id, None):
            raise PermissionDenied("agents may assign a conversation only to themselves; ask a supervisor")
        if actor is not None and not actor.sees_everything and assignee_id is None \
                and conv.assignee_id not in (actor.user_id, None):
            raise PermissionDenied("agents may only unassign themselves")
        if assignee_id is not None:
            user = await users_repo.get_user(session, assignee_id)
            if user is None or not user.active:
                raise ValidationFailed(f"user {assignee_id} does not exist", field="assignee_id")
            lines.append(f"{who} {'transferred' if transfer else 'assigned'} the conversation to {user.name}")
        else:
            lines.append(f"{who} unassigned {await _user_name(session, conv.assignee_id)}")
        conv.assignee_id = assignee_id
        changes.append("assignee_id")

    if queue_id is not UNSET and queue_id != conv.queue_id:
        queue = await users_repo.get_queue(session, queue_id) if queue_id is not None else None
        if queue_id is not None and queue is None:
            raise ValidationFailed(f"queue {queue_id} does not exist", field="queue_id")
        lines.append(f"{who} {'transferred' if transfer else 'moved'} the conversation to queue "
                     f"{queue.name if queue else '(none)'}")
        conv.queue_id = queue_id
        changes.append("queue_id")

    if team_id is not UNSET and team_id != conv.team_id:
        team = await users_repo.get_team(session, team_id) if team_id is not None else None
        if team_id is not None and team is None:
            raise ValidationFailed(f"team {team_id} does not exist", field="team_id")
        lines.append(f"{who} {'transferred' if transfer else 'moved'} the conversation to team "
                     f"{team.name if team else '(none)'}")
        conv.team_id = team_id
        changes.append("team_id")

    if priority is not UNSET and priority != conv.priority:
        try:
            conv.priority = Priority(priority).value
        except ValueError:
            raise ValidationFailed(
                f"priority must be one of {', '.join(p.value for p in Priority)}", field="priority") from None
        lines.append(f"{who} set the priority to {conv.priority}")
        changes.append("priority")

    if labels is not UNSET:
        new_labels = normalise_labels(labels)
        old = (await repo.labels_of(session, [conv.id]))[conv.id]
        if new_labels != old:
            await repo.set_labels(session, conv.id, new_labels)
            changes.append("labels")

    if status is not UNSET or snoozed_until is not UNSET:
        domain = Conversation(contact_id=conv.contact_id, status=ConversationStatus(conv.status),
                              snoozed_until=conv.snoozed_until, resolved_at=conv.resolved_at)
        target = status if status is not UNSET else conv.status
        until = snoozed_until if snoozed_until is not UNSET else None
        if domain.change_status(target, now, until):
            conv.status, conv.snoozed_until, conv.resolved_at = (
                domain.status.value, domain.snoozed_until, domain.resolved_at)
            verb = {"open": "reopened", "pending": "set to pending", "snoozed": "snoozed",
                    "resolved": "resolved"}[conv.status]
            lines.append(f"{who} {verb} the conversation")
            changes.append("status")
            await _schedule_wake(session, conv)

    if not changes:
        return await conversation_view(session, conv)
    conv.updated_at = now
    audience = audience_for(before, conv)
    activity: list[MessageRow] = []
    for line in lines:
        text = f"{line}: {note.strip()}" if note and note.strip() else line
        activity.append(add_activity(session, conv, text, actor_id))
    await session.flush()
    for msg in activity:
        emit(session, MessageCreated(message=message_view(msg)), audience)
    view = await conversation_view(session, conv)
    emit(session, ConversationUpdated(conversation=view, changes=changes, actor_id=actor_id),
         audience_for(before, conv, customer=True))
    return view


async def _schedule_wake(session: AsyncSession, conv: ConversationRow) -> None:
    if conv.status == ConversationStatus.SNOOZED.value and conv.snoozed_until is not None:
        await schedule_job(session, WAKE, conv.id, conv.snoozed_until)
    else:
        await cancel_job(session, WAKE, conv.id)


async def wake_conversation(session: AsyncSession, conversation_id: int, now: datetime) -> ConversationView | None:
    """End a snooze that is due: the conversation opens again, with an activity line and the usual
    ``conversation.updated`` (the desk, the stream, routing and webhooks see it), and moves to the top of
    the lists. Nothing happens (None) if it is no longer snoozed until then: a customer wrote, an agent
    reopened, resolved or snoozed it again."""
    conv = await repo.get_conversation(session, conversation_id, for_update=True)
    if conv is None:
        return None
    domain = Conversation(contact_id=conv.contact_id, status=ConversationStatus(conv.status),
                          snoozed_until=conv.snoozed_until, resolved_at=conv.resolved_at)
    if not domain.wake_if_due(now):
        return None
    conv.status, conv.snoozed_until, conv.resolved_at = domain.status.value, domain.snoozed_until, domain.resolved_at
    conv.updated_at = conv.last_activity_at = now
    audience = audience_for(conv)
    msg = add_activity(session, conv, WOKEN, None)
    await session.flush()
    emit(session, MessageCreated(message=message_view(msg)), audience)
    view = await conversation_view(session, conv)
    emit(session, ConversationUpdated(conversation=view, changes=["status"]), audience_for(conv, customer=True))
    return view


async def transfer_conversation(session: AsyncSession, actor: Actor, conversation_id: int, *,
                                assignee_id: int | None = UNSET, queue_id: int | None = UNSET,
                                team_id: int | None = UNSET, note: str | None = None) -> ConversationView:
    """Hand a conversation over to another agent, a team or a queue, with a note for whoever takes it.

    Agents may transfer what they hold (assigned to them, or unassigned in their queues and teams) to
    anyone; supervisors and admins transfer anything. Sent to a team or queue without an agent, the
    conversation is unassigned so that it waits there. Activity lines say "transferred", with the note.
    """
    conv = actor.check_can_see(await repo.get_conversation(session, conversation_id), conversation_id)
    if assignee_id is UNSET and queue_id is UNSET and team_id is UNSET:
        raise ValidationFailed("transfer to an agent, a team or a queue", field="assignee_id")
    if not actor.sees_everything and conv.assignee_id not in (actor.user_id, None):
        raise PermissionDenied("only the assigned agent or a supervisor may transfer this conversation")
    if assignee_id is UNSET:
        assignee_id = None
    elevated = replace(actor, role=Role.SUPERVISOR) if not actor.sees_everything else actor
    return await update_conversation(session, elevated, conversation_id, assignee_id=assignee_id,
                                     queue_id=queue_id, team_id=team_id, note=note, transfer=True)
