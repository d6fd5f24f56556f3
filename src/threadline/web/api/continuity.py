"""One customer across channels: merge/undo/split, merge suggestions, the journey and the customer 360."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from threadline.actions import continuity as actions
from threadline.actions.permissions import visible_contact, visible_contact_ids
from threadline.actions.views import contact_view, conversation_views
from threadline.db.repos import contacts as contacts_repo
from threadline.db.repos import continuity as repo
from threadline.domain.contacts import AttributeType
from threadline.domain.events import ContactView, ConversationView
from threadline.web.api.schemas import Id, In
from threadline.web.deps import CurrentActor, ServicesDep

router = APIRouter(tags=["customer continuity"])


class MergeIn(In):
    source_id: Id = Field(description="The contact (or conversation) merged into the one in the URL")


class MergeOut(BaseModel):
    merge_id: int
    source_id: int
    target_id: int
    moved: dict[str, Any]
    merged_at: datetime
    undone_at: datetime | None
    contact: ContactView


class SuggestionOut(BaseModel):
    id: int
    contact_id: int
    other_contact_id: int
    reason: str
    status: str
    created_at: datetime


class ActivityIn(In):
    kind: str = Field(max_length=40, description="page_view, article_read, crm, purchase, signup or custom")
    title: str = Field(default="", max_length=300)
    url: str = Field(default="", max_length=2000)
    data: dict[str, Any] = Field(default_factory=dict)
    at: datetime | None = None


class JourneyEntry(BaseModel):
    at: datetime
    kind: str  # conversation | page_view | article_read | crm | … | csat
    title: str
    url: str = ""
    channel: str | None = None
    conversation_id: int | None = None


class ChannelCount(BaseModel):
    kind: str
    name: str
    inbound_messages: int
    last_at: datetime


class ConversationSummary(BaseModel):
    conversation: ConversationView
    first_message: str
    last_message: str


class CsatOut(BaseModel):
    conversation_id: int
    rating: int
    comment: str
    at: datetime


class Customer360(BaseModel):
    contact: ContactView
    merged_into_id: int | None
    channels: list[ChannelCount]
    open_conversations: list[ConversationSummary]
    past_conversations: list[ConversationSummary]
    csat: list[CsatOut]
    csat_average: float | None
    journey: list[JourneyEntry]
    merge_suggestions: list[SuggestionOut]


async def _merge_out(session, row) -> MergeOut:  # type: ignore[no-untyped-def]
    target = await contacts_repo.get_contact(session, row.target_id)
    idents = await contacts_repo.identities_of(session, [row.target_id])
    return MergeOut(merge_id=row.id, source_id=row.source_id, target_id=row.target_id, moved=row.moved,
                    merged_at=row.merged_at, undone_at=row.undone_at,
                    contact=contact_view(target, idents[row.target_id]))


@router.post("/contacts/{contact_id}/merge", response_model=MergeOut, summary="Merge another contact into this one")
async def merge_contacts(contact_id: Id, body: MergeIn, actor: CurrentActor, services: ServicesDep) -> MergeOut:
    async with services.db.transaction() as session:
        row = await actions.merge_contacts(session, actor, body.source_id, contact_id)
        return await _merge_out(session, row)


@router.post("/contact-merges/{merge_id}/undo", response_model=MergeOut, summary="Undo a merge")
async def undo_merge(merge_id: Id, actor: CurrentActor, services: ServicesDep) -> MergeOut:
    async with services.db.transaction() as session:
        row = await actions.undo_merge(session, actor, merge_id)
        return await _merge_out(session, row)


@router.get("/merge-suggestions", response_model=list[SuggestionOut])
async def list_suggestions(actor: CurrentActor, services: ServicesDep, contact_id: Id | None = Query(default=None),
                           status: str = Query(default="open", pattern="^(open|merged|dismissed)$")
                           ) -> list[SuggestionOut]:
    async with services.db.transaction(write=False) as session:
        if contact_id is not None:
            await visible_contact(session, actor, contact_id)
        rows = await repo.suggestions_for(session, contact_id, status)
        if actor.visibility.limited:  # an agent: the suggestions about a contact they see
            seen = await visible_contact_ids(session, actor, sorted({c for r in rows
                                                                     for c in (r.contact_id, r.other_contact_id)}))
            rows = [r for r in rows if r.contact_id in seen or r.other_contact_id in seen]
        return [SuggestionOut.model_validate(r, from_attributes=True) for r in rows]


@router.post("/merge-suggestions/{suggestion_id}/dismiss", status_code=204)
async def dismiss_suggestion(suggestion_id: Id, actor: CurrentActor, services: ServicesDep) -> None:
    async with services.db.transaction() as session:
        await actions.dismiss_suggestion(session, actor, suggestion_id)


@router.post("/conversations/{conversation_id}/merge", response_model=ConversationView,
             summary="Merge another conversation of the same customer into this one")
async def merge_conversations(conversation_id: Id, body: MergeIn, actor: CurrentActor, services: ServicesDep
                              ) -> ConversationView:
    async with services.db.transaction() as session:
        return await actions.merge_conversations(session, actor, body.source_id, conversation_id)


@router.post("/messages/{message_id}/split", response_model=ConversationView, status_code=201,
             summary="Move a message into a new conversation of the same customer")
async def split_message(message_id: Id, actor: CurrentActor, services: ServicesDep) -> ConversationView:
    async with services.db.transaction() as session:
        return await actions.split_message(session, actor, message_id)


@router.post("/contacts/{contact_id}/activity", status_code=201, response_model=JourneyEntry,
             summary="Record a step of the customer's journey (a page view, an article read…)")
async def add_activity(contact_id: Id, body: ActivityIn, actor: CurrentActor, services: ServicesDep) -> JourneyEntry:
    async with services.db.transaction() as session:
        row = await actions.record_activity(session, contact_id, kind=body.kind, title=body.title, url=body.url,
                                            data=body.data, at=body.at, actor=actor)
        return JourneyEntry(at=row.at, kind=row.kind, title=row.title, url=row.url)


@router.get("/contacts/{contact_id}/360", response_model=Customer360, summary="Everything about one customer")
async def customer_360(contact_id: Id, actor: CurrentActor, services: ServicesDep) -> Customer360:
    async with services.db.transaction(write=False) as session:
        contact = await visible_contact(session, actor, contact_id)
        idents = await contacts_repo.identities_of(session, [contact.id])
        convs = [c for c in await repo.conversations_of(session, contact.id) if actor.can_see(c)]
        views = await conversation_views(session, convs)
        texts = await repo.first_and_last_texts(session, [c.id for c in convs])
        summaries = [ConversationSummary(conversation=v, first_message=texts[v.id][0][:200],
                                         last_message=texts[v.id][1][:200]) for v in views]
        csat = [CsatOut(conversation_id=c, rating=r, comment=t, at=at)
                for c, r, t, at in await repo.csat_of_conversations(session, [c.id for c in convs])]
        channels = [ChannelCount(kind=k, name=n, inbound_messages=c, last_at=at)
                    for k, n, c, at in await repo.inbound_counts_by_channel(session, contact.id)]
        journey = [JourneyEntry(at=a.at, kind=a.kind, title=a.title, url=a.url)
                   for a in await repo.activity_of(session, contact.id)]
        journey += [JourneyEntry(at=v.created_at, kind="conversation", title=s.first_message or f"Conversation #{v.id}",
                                 conversation_id=v.id) for v, s in zip(views, summaries, strict=True)]
        journey += [JourneyEntry(at=c.at, kind="csat", title=f"Rated {c.rating}/5 {c.comment}".strip(),
                                 conversation_id=c.conversation_id) for c in csat]
        journey.sort(key=lambda j: j.at, reverse=True)
        suggestions = [SuggestionOut.model_validate(r, from_attributes=True)
                       for r in await repo.suggestions_for(session, contact.id)]
        return Customer360(
            contact=contact_view(contact, idents[contact.id]), merged_into_id=contact.merged_into_id,
            channels=channels, open_conversations=[s for s in summaries if s.conversation.status != "resolved"],
            past_conversations=[s for s in summaries if s.conversation.status == "resolved"], csat=csat,
            csat_average=round(sum(c.rating for c in csat) / len(csat), 2) if csat else None,
            journey=journey[:300], merge_suggestions=suggestions)


class AttributeDefIn(In):
    label: str = Field(min_length=1, max_length=100)
    type: AttributeType
    options: list[str] = Field(default_factory=list, max_length=100, description="the choices of a select")


class AttributeDefOut(BaseModel):
    key: str
    label: str
    type: AttributeType
    options: list[str]


@router.get("/contact-attributes", response_model=list[AttributeDefOut], summary="Typed custom attributes")
async def list_attribute_defs(actor: CurrentActor, services: ServicesDep) -> list[AttributeDefOut]:
    async with services.db.transaction(write=False) as session:
        return [AttributeDefOut(key=d.key, label=d.label, type=d.type, options=list(d.options))
                for d in (await repo.attribute_defs(session)).values()]


@router.put("/contact-attributes/{key}", response_model=AttributeDefOut, summary="Define or change a custom attribute")
async def put_attribute_def(key: str, body: AttributeDefIn, actor: CurrentActor, services: ServicesDep
                            ) -> AttributeDefOut:
    async with services.db.transaction() as session:
        d = await actions.define_attribute(session, actor, key, label=body.label, type=body.type, options=body.options)
        return AttributeDefOut(key=d.key, label=d.label, type=d.type, options=list(d.options))


@router.delete("/contact-attributes/{key}", status_code=204, summary="Remove a custom attribute's definition")
async def delete_attribute_def(key: str, actor: CurrentActor, services: ServicesDep) -> None:
    async with services.db.transaction() as session:
        await actions.undefine_attribute(session, actor, key)
