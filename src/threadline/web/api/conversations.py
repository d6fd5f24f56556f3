"""Conversations and their messages. Agents see what is assigned to them and what is in their queues
or teams; supervisors and admins see everything."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import Field

from threadline.actions import conversations as conv_actions
from threadline.actions import outbound as outbound_actions
from threadline.actions.views import conversation_view, conversation_views, message_view
from threadline.db.repos import conversations as repo
from threadline.db.repos.common import decode_cursor
from threadline.domain.conversations import ConversationStatus, Priority
from threadline.domain.events import ConversationView, MessageView
from threadline.queries.kept import kept, viewer
from threadline.web.api.schemas import (
    ConversationPage,
    ConversationUpdate,
    Id,
    In,
    MessagePage,
    NoteIn,
    ReplyIn,
)
from threadline.web.deps import CurrentActor, ServicesDep

router = APIRouter(tags=["conversations"])


@router.get("/conversations", response_model=ConversationPage,
            summary="List conversations, most recent activity first, with filters and cursor pagination")
async def list_conversations(
    request: Request, actor: CurrentActor, services: ServicesDep,
    status: Annotated[list[ConversationStatus] | None, Query()] = None,
    priority: Annotated[list[Priority] | None, Query()] = None,
    queue_id: Id | None = None,
    assignee_id: Id | None = None,
    unassigned: bool = False,
    team_id: Id | None = None,
    contact_id: Id | None = None,
    channel_instance_id: Id | None = None,
    label: str | None = Query(default=None, max_length=63),
    cursor: str | None = Query(default=None, max_length=500),
    limit: int = Query(default=25, ge=1, le=100),
) -> ConversationPage:
    flt = repo.ConversationFilter(
        status=[s.value for s in status or []], priority=[p.value for p in priority or []], queue_id=queue_id,
        assignee_id=assignee_id, unassigned=unassigned, team_id=team_id, contact_id=contact_id,
        label=label.strip().lower() if label else None, channel_instance_id=channel_instance_id,
        visible_to=actor.visibility,
    )

    async def page() -> bytes:
        async with services.db.transaction(write=False) as session:
            rows, nxt = await repo.list_conversations(session, flt, cursor, limit)
            return ConversationPage(items=await conversation_views(session, rows), next_cursor=nxt).model_dump_json(
            ).encode()

    # kept while the database is unchanged, per viewer and query (queries/kept.py)
    body = await kept(services.db, ("api.conversations", viewer(actor), request.url.query), page)
    return Response(body, media_type="application/json")  # type: ignore[return-value]


@router.get("/conversations/{conversation_id}", response_model=ConversationView)
async def get_conversation(conversation_id: Id, actor: CurrentActor, services: ServicesDep) -> ConversationView:
    async with services.db.transaction(write=False) as session:
        conv = actor.check_can_see(await repo.get_conversation(session, conversation_id), conversation_id)
        return await conversation_view(session, conv)


@router.patch("/conversations/{conversation_id}", response_model=ConversationView,
              summary="Change status, assignee, queue, team, labels or priority (only the fields sent)")
async def update_conversation(conversation_id: Id, body: ConversationUpdate, actor: CurrentActor,
                              services: ServicesDep) -> ConversationView:
    async with services.db.transaction(write=True) as session:
        return await conv_actions.update_conversation(session, actor, conversation_id,
                                                      **body.model_dump(exclude_unset=True))


@router.get("/conversations/{conversation_id}/messages", response_model=MessagePage,
            summary="The timeline: messages from every channel, notes and activity, oldest first")
async def list_messages(conversation_id: Id, actor: CurrentActor, services: ServicesDep,
                        cursor: str | None = Query(default=None, max_length=500),
                        limit: int = Query(default=100, ge=1, le=500)) -> MessagePage:
    after_id = None
    if cursor:
        (value,) = decode_cursor(cursor, 1)
        after_id = int(value) if isinstance(value, int) else None
    async with services.db.transaction(write=False) as session:
        actor.check_can_see(await repo.get_conversation(session, conversation_id), conversation_id)
        rows, nxt = await repo.list_messages(session, conversation_id, after_id, limit)
    return MessagePage(items=[message_view(r) for r in rows], next_cursor=nxt)


@router.post("/conversations/{conversation_id}/messages", response_model=MessageView, status_code=201,
             summary="Reply to the customer (on the channel they last used, unless one is given)")
async def reply(conversation_id: Id, body: ReplyIn, actor: CurrentActor, services: ServicesDep) -> MessageView:
    attachments = [a.model_dump() for a in body.attachments]
    return await services.writes.run(lambda session: outbound_actions.send_reply(  # group commit
        session, actor, conversation_id, body.text, attachments=attachments,
        channel_instance_id=body.channel_instance_id, identity_id=body.identity_id))


@router.post("/conversations/{conversation_id}/notes", response_model=MessageView, status_code=201,
             summary="Add an internal note (never sent to the customer)")
async def add_note(conversation_id: Id, body: NoteIn, actor: CurrentActor, services: ServicesDep) -> MessageView:
    return await services.writes.run(lambda session: conv_actions.add_note(session, actor, conversation_id, body.text))


class TransferIn(In):
    assignee_id: Id | None = Field(default=None, description="The agent who takes it over")
    team_id: Id | None = None
    queue_id: Id | None = None
    note: str | None = Field(default=None, max_length=2000, description="Shown in the activity line")


@router.post("/conversations/{conversation_id}/transfer", response_model=ConversationView,
             summary="Hand over to an agent, a team or a queue, with a note (agents: what they hold)")
async def transfer(conversation_id: Id, body: TransferIn, actor: CurrentActor, services: ServicesDep
                   ) -> ConversationView:
    targets = body.model_dump(exclude_unset=True, exclude={"note"})
    async with services.db.transaction(write=True) as session:
        return await conv_actions.transfer_conversation(session, actor, conversation_id, note=body.note, **targets)
