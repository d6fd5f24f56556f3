"""The agent desk's reads: view counts, the names every page shows, the open conversation with its
customer sidebar, running wrap-ups. The desk pages (``web/desk/routes.py``) render them; what an
agent sees is the rule of ``domain/access.py``."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions import consent as consent_actions
from threadline.actions import contacts as contact_actions
from threadline.actions import csat as csat_actions
from threadline.actions import routing as routing_actions
from threadline.actions.views import conversation_view, conversation_views, message_view
from threadline.channels.registry import get_adapter_class
from threadline.db.repos import channels as channels_repo
from threadline.db.repos import contacts as contacts_repo
from threadline.db.repos import continuity as continuity_repo
from threadline.db.repos import conversations as conv_repo
from threadline.db.repos import desk as desk_repo
from threadline.db.repos import queue_view
from threadline.db.repos import routing as routing_repo
from threadline.db.repos import users as users_repo
from threadline.domain.access import Actor

QUEUE_VIEW = "waiting"  # the Queue view's name (and its key in view_counts)


async def view_counts(session: AsyncSession, actor: Actor) -> dict[str, Any]:
    """The open conversations of each view (mine, unassigned, all, per queue) and the Queue view's tasks."""
    open_ = list(desk_repo.OPEN_STATUSES)
    vis = actor.visibility
    return {
        "mine": await desk_repo.count_conversations(
            session, conv_repo.ConversationFilter(status=open_, assignee_id=actor.user_id, visible_to=vis)),
        "unassigned": await desk_repo.count_conversations(
            session, conv_repo.ConversationFilter(status=open_, unassigned=True, visible_to=vis)),
        "all": await desk_repo.count_conversations(session, conv_repo.ConversationFilter(status=open_, visible_to=vis)),
        "queues": await desk_repo.open_counts_by_queue(session, vis),
        QUEUE_VIEW: await queue_view.queue_count(session, vis),
    }


async def directory(session: AsyncSession, actor: Actor) -> dict[str, Any]:
    """What every desk page names: the signed-in user, users, queues (and those the actor serves), teams,
    channels."""
    queues = {q.id: q for q in await users_repo.list_queues(session)}
    return {
        "me": await users_repo.get_user(session, actor.user_id),
        "users": {u.id: u for u in await users_repo.list_users(session)},
        "queues": queues, "teams": {t.id: t for t in await users_repo.list_teams(session)},
        "my_queues": [q for qid, q in queues.items() if actor.visibility.serves(qid)],
        "channels": {c.id: c for c in await channels_repo.list_channels(session)},
    }


async def running_wrap_ups(session: AsyncSession, actor: Actor) -> dict[str, Any]:
    """The agent's wrap-ups still running (a wrap-up ended by "Ready" waits for the router: not shown)."""
    now = time.time()
    running = [w for w in await routing_actions.my_wrap_ups(session, actor) if w.until is None or w.until > now]
    names = await routing_repo.contact_names(session, [w.conversation_id for w in running]) if running else {}
    return {"wrapups": running, "wrapup_names": names, "now_ts": now}


def channel_title(kind: str) -> str:
    cls = get_adapter_class(kind)
    return cls.title if cls else kind


async def conversation_page(session: AsyncSession, actor: Actor, conversation_id: int) -> dict[str, Any]:
    """The open conversation: timeline, contact and identities, where a reply can go, the contact's other
    conversations the actor may see, CSAT, journey, merge suggestions, canned responses, consent.
    NotFound when the actor may not see it (``Actor.check_can_see``)."""
    conv = actor.check_can_see(await conv_repo.get_conversation(session, conversation_id), conversation_id)
    view = await conversation_view(session, conv)
    msgs, _ = await conv_repo.list_messages(session, conv.id, None, 500)
    contact = await contacts_repo.get_contact(session, conv.contact_id)
    identities = (await contacts_repo.identities_of(session, [conv.contact_id]))[conv.contact_id]
    ident_by_id = {i.id: i for i in identities}
    used = await desk_repo.channels_used_by_identities(session, list(ident_by_id))
    channels = {c.id: c for c in await channels_repo.list_channels(session)}
    targets = []  # where a reply can go: (channel, identity) pairs the customer has written through
    for ident_id, chan_ids in used.items():
        for chan_id in sorted(chan_ids):
            chan = channels.get(chan_id)
            if chan is not None and chan.enabled:
                targets.append({"value": f"{chan_id}:{ident_id}", "channel": chan, "identity": ident_by_id[ident_id],
                                "last": chan_id == conv.last_channel_instance_id
                                and ident_id == conv.last_identity_id})
    history = [c for c in await desk_repo.conversations_of_contact(session, conv.contact_id) if c.id != conv.id]
    history_visible = [c for c in history if actor.can_see(c)]
    # an e-mail conversation's subject (its first mail's), shown in the header
    subject = next((str(m.meta["email"].get("subject") or "") for m in msgs
                    if m.direction == "in" and isinstance((m.meta or {}).get("email"), dict)
                    and m.meta["email"].get("subject")), "")
    return {
        "current": view, "messages": [message_view(m) for m in msgs], "contact": contact, "subject": subject,
        "identities": identities, "ident_by_id": ident_by_id, "targets": targets,
        "history": await conversation_views(session, history_visible),
        "history_previews": await desk_repo.last_messages(session, [c.id for c in history_visible]),
        "csat": await csat_actions.contact_csat(session, actor, conv.contact_id),
        "journey": await continuity_repo.activity_of(session, conv.contact_id, 8),
        "suggestions": await continuity_repo.suggestions_for(session, conv.contact_id),
        "canned": [{"shortcut": c.shortcut, "title": c.title, "text": c.text}
                   for c in await desk_repo.list_canned(session)],
        "channel_titles": {c.id: channel_title(c.kind) for c in channels.values()},
        # opt-outs per channel kind and dead addresses: shown, never edited by hand (the channels keep them)
        "consent": consent_actions.consent_view(contact.attributes if contact else None),
        "reserved_attributes": contact_actions.RESERVED_ATTRIBUTES,
    }
