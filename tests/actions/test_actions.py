"""Actions against a real database (SQLite and PostgreSQL): the only writers, each with its events."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from tests.conftest import seed_basics

from threadline.actions import contacts as contact_actions
from threadline.actions import conversations as conv_actions
from threadline.actions import inbound as inbound_actions
from threadline.actions import outbound as outbound_actions
from threadline.actions import users as user_actions
from threadline.actions.events import capture_events
from threadline.actions.permissions import Actor
from threadline.db.models import OutboxEventRow
from threadline.db.repos import channels as channels_repo
from threadline.db.repos import conversations as conv_repo
from threadline.db.repos import plumbing as plumbing_repo
from threadline.domain.contacts import IdentityKind, IdentityValue, normalise_identity
from threadline.domain.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from threadline.domain.messages import DeliveryStatus, InboundMessage, Sender, StatusUpdate
from threadline.domain.users import Role


def sender(channel_id: int, ext: str, *, email: str | None = None, name: str = "Maria") -> Sender:
    idents = [IdentityValue(IdentityKind.HANDLE, ext, str(channel_id))]
    if email:
        idents.append(normalise_identity("email", email))
    return Sender(identities=tuple(idents), name=name)


async def test_inbound_creates_contact_and_conversation_with_events_for_the_queue(services) -> None:
    ids = await seed_basics(services)
    async with services.db.transaction() as s:
        channel = await channels_repo.get_channel(s, ids["channel"])
        with capture_events() as events:
            msg = await inbound_actions.receive_inbound(
                s, channel, InboundMessage("p-1", sender(channel.id, "c-1", email="M@Example.com"), "hello"))
    assert msg is not None
    names = [e.name for e, _ in events]
    assert names == ["contact.created", "conversation.created", "message.created"]
    audience = events[1][1]
    assert audience.queues == [ids["general"]] and audience.supervisors
    async with services.db.transaction(write=False) as s:
        conv = await conv_repo.get_conversation(s, msg.conversation_id)
        assert conv.queue_id == ids["general"] and conv.last_channel_instance_id == channel.id
        stored = (await s.execute(select(OutboxEventRow.name).where(OutboxEventRow.published_at.is_(None))
                                  .order_by(OutboxEventRow.id))).scalars().all()
        assert list(stored)[-3:] == names  # in the outbox, committed with the change


async def test_same_provider_id_is_stored_once_and_next_message_joins_the_open_conversation(services) -> None:
    ids = await seed_basics(services)
    async with services.db.transaction() as s:
        channel = await channels_repo.get_channel(s, ids["channel"])
        first = await inbound_actions.receive_inbound(s, channel, InboundMessage("p-1", sender(channel.id, "c"), "a"))
        again = await inbound_actions.receive_inbound(s, channel, InboundMessage("p-1", sender(channel.id, "c"), "a"))
        second = await inbound_actions.receive_inbound(s, channel, InboundMessage("p-2", sender(channel.id, "c"), "b"))
    assert first is not None and again is None and second is not None
    assert second.conversation_id == first.conversation_id


async def test_resolved_conversation_reopens_when_the_customer_writes(services) -> None:
    ids = await seed_basics(services)
    sup = Actor(ids["sup"], Role.SUPERVISOR, "Sup")
    async with services.db.transaction() as s:
        channel = await channels_repo.get_channel(s, ids["channel"])
        first = await inbound_actions.receive_inbound(s, channel, InboundMessage("p-1", sender(channel.id, "c"), "a"))
        await conv_actions.update_conversation(s, sup, first.conversation_id, status="resolved")
    async with services.db.transaction() as s:
        with capture_events() as events:
            nxt = await inbound_actions.receive_inbound(s, channel, InboundMessage("p-2", sender(channel.id, "c"), "b"))
        conv = await conv_repo.get_conversation(s, nxt.conversation_id)
    # The last resolved conversation is not reused by default: a new issue starts a new conversation.
    assert nxt.conversation_id != first.conversation_id and conv.status == "open"
    assert "conversation.created" in [e.name for e, _ in events]


async def test_agent_permissions_on_conversations(services) -> None:
    ids = await seed_basics(services)
    alice = Actor(ids["alice"], Role.AGENT, "Alice", queue_ids=[ids["general"]])
    bob = Actor(ids["bob"], Role.AGENT, "Bob", queue_ids=[ids["billing"]])
    async with services.db.transaction() as s:
        channel = await channels_repo.get_channel(s, ids["channel"])
        msg = await inbound_actions.receive_inbound(s, channel, InboundMessage("p-1", sender(channel.id, "c"), "a"))
    cid = msg.conversation_id
    async with services.db.transaction() as s:
        with pytest.raises(NotFound):  # Bob does not serve the general queue
            await conv_actions.update_conversation(s, bob, cid, status="resolved")
    async with services.db.transaction() as s:
        with pytest.raises(PermissionDenied):
            await conv_actions.update_conversation(s, alice, cid, assignee_id=ids["bob"])
    async with services.db.transaction() as s:
        with capture_events() as events:
            view = await conv_actions.update_conversation(s, alice, cid, assignee_id=ids["alice"],
                                                          labels=["VIP", "billing"], priority="high")
    assert view.assignee_id == ids["alice"] and view.labels == ["billing", "vip"]
    updated = [(e, a) for e, a in events if e.name == "conversation.updated"]
    assert updated and set(updated[0][0].changes) == {"assignee_id", "labels", "priority"}
    assert ids["alice"] in updated[0][1].users
    activity = [e for e, _ in events if e.name == "message.created"]
    assert any("assigned the conversation to Alice" in e.message.text for e in activity)
    async with services.db.transaction() as s:
        with pytest.raises(ValidationFailed):
            await conv_actions.update_conversation(s, alice, cid, priority="extreme")


async def test_reply_queues_an_outbound_job_and_status_only_moves_forward(services) -> None:
    ids = await seed_basics(services)
    alice = Actor(ids["alice"], Role.AGENT, "Alice", queue_ids=[ids["general"]])
    async with services.db.transaction() as s:
        channel = await channels_repo.get_channel(s, ids["channel"])
        msg = await inbound_actions.receive_inbound(s, channel, InboundMessage("p-1", sender(channel.id, "c"), "a"))
        reply = await outbound_actions.send_reply(s, alice, msg.conversation_id, "Hi, on it")
        job = await plumbing_repo.job_for_message(s, reply.id)
        assert reply.delivery_status == "queued" and job is not None and job.status == "pending"
        await outbound_actions.record_sent(s, job, "prov-9", DeliveryStatus.SENT)
    async with services.db.transaction() as s:
        assert await outbound_actions.apply_status(s, channel, StatusUpdate("prov-9", DeliveryStatus.READ))
        assert not await outbound_actions.apply_status(s, channel, StatusUpdate("prov-9", DeliveryStatus.DELIVERED))
        assert not await outbound_actions.apply_status(s, channel, StatusUpdate("unknown", DeliveryStatus.READ))
        stored = await conv_repo.get_message(s, reply.id)
        assert stored.delivery_status == "read"
    async with services.db.transaction() as s:
        with pytest.raises(ValidationFailed, match="at most"):
            await outbound_actions.send_reply(s, alice, msg.conversation_id, "x" * 70_000)


async def test_users_teams_queues_and_contacts_validation(services) -> None:
    await seed_basics(services)
    async with services.db.transaction() as s:
        with pytest.raises(Conflict):
            await user_actions.create_user(s, email="ALICE@example.com", name="Other")
        with pytest.raises(ValidationFailed, match="at least"):
            await user_actions.create_user(s, email="x@example.com", name="X", password="short")
        with pytest.raises(ValidationFailed, match="queue 999"):
            await user_actions.create_user(s, email="y@example.com", name="Y", queue_ids=[999])
        with pytest.raises(ValidationFailed, match="settings"):
            await user_actions.create_queue(s, "bad", {"sla": {"answer_seconds": -1}})
        view = await contact_actions.create_contact(
            s, name="Lucía", identities=[{"kind": "phone", "value": "+34 612 345 678"}])
        assert view.identities[0].value == "+34612345678"
        with pytest.raises(Conflict):
            await contact_actions.create_contact(s, name="Dup", identities=[{"kind": "phone", "value": "+34612345678"}])
    async with services.db.transaction() as s:
        with capture_events() as events:
            await user_actions.set_presence(s, 3, "break", "lunch")
        assert events[0][0].name == "user.presence_changed"


async def test_channel_hints_place_a_message_in_the_right_conversation(services) -> None:
    ids = await seed_basics(services)
    async with services.db.transaction() as s:
        channel = await channels_repo.get_channel(s, ids["channel"])
        first = await inbound_actions.receive_inbound(
            s, channel, InboundMessage("m-1", sender(channel.id, "c"), "billing question", queue_id=ids["billing"]))
        conv = await conv_repo.get_conversation(s, first.conversation_id)
        assert conv.queue_id == ids["billing"]  # the pre-chat topic picked the queue
        await conv_actions.update_conversation(s, None, conv.id, status="resolved")
        # A reply to a resolved conversation's message (email References) reopens it...
        reply = await inbound_actions.receive_inbound(
            s, channel, InboundMessage("m-2", sender(channel.id, "c"), "re: billing", references=("nope", "m-1")))
        assert reply.conversation_id == conv.id and conv.status == "open"
        await conv_actions.update_conversation(s, None, conv.id, status="resolved")
        # ...but a session bound to a resolved conversation starts a new one (a new issue).
        fresh = await inbound_actions.receive_inbound(
            s, channel, InboundMessage("m-3", sender(channel.id, "c"), "another thing", conversation_id=conv.id))
        assert fresh.conversation_id != conv.id
        # A hint that points at someone else's conversation is ignored.
        other = await inbound_actions.receive_inbound(
            s, channel, InboundMessage("m-4", sender(channel.id, "d"), "hi", conversation_id=fresh.conversation_id))
        assert other.conversation_id not in (fresh.conversation_id, conv.id)
        # A batch: two messages from one new customer land in one new conversation, in order.
        both = await inbound_actions.receive_inbound_batch(s, [
            (channel, InboundMessage("m-5", sender(channel.id, "e"), "one")),
            (channel, InboundMessage("m-6", sender(channel.id, "e"), "two")),
            (channel, InboundMessage("m-5", sender(channel.id, "e"), "one again"))])
        assert both[0].conversation_id == both[1].conversation_id and both[2] is None


async def test_a_provider_id_given_twice_does_not_make_the_sender_retry_forever(services) -> None:
    from threadline.db.repos import plumbing as plumbing_repo

    ids = await seed_basics(services)
    async with services.db.transaction() as s:
        channel = await channels_repo.get_channel(s, ids["channel"])
        first = await inbound_actions.receive_inbound(s, channel, InboundMessage("p-1", sender(channel.id, "c"), "a"))
        actor = Actor(user_id=ids["alice"], role=Role.AGENT, name="Alice", queue_ids=[ids["general"]])
        one = await outbound_actions.send_reply(s, actor, first.conversation_id, "first answer")
        two = await outbound_actions.send_reply(s, actor, first.conversation_id, "second answer")
        for view in (one, two):
            job = await plumbing_repo.job_for_message(s, view.id)
            await outbound_actions.record_sent(s, job, "provider-42", DeliveryStatus.SENT)
        await s.flush()
        rows = {m.id: m for m in (await conv_repo.list_messages(s, first.conversation_id, None, 50))[0]}
        assert rows[one.id].provider_id == "provider-42" and rows[two.id].provider_id is None
        assert rows[two.id].meta["duplicate_provider_id"] == "provider-42"
        assert rows[two.id].delivery_status == "sent"


async def test_the_action_decides_which_events_the_customer_sees(services) -> None:
    """The audience names the conversation's contact on what the customer may see (their message, our
    reply, a status change) and never on what only agents see (a note, an activity line); every event
    about a conversation names it."""
    ids = await seed_basics(services)
    sup = Actor(ids["sup"], Role.SUPERVISOR, "Sup")
    async with services.db.transaction() as s:
        channel = await channels_repo.get_channel(s, ids["channel"])
        with capture_events() as events:
            msg = await inbound_actions.receive_inbound(s, channel, InboundMessage("p-1", sender(channel.id, "c"), "hi"))
            assert msg is not None
            cid = msg.conversation_id
            await outbound_actions.send_reply(s, sup, cid, "hello")
            await conv_actions.add_note(s, sup, cid, "internal")
            await conv_actions.update_conversation(s, sup, cid, status="resolved")
        contact_id = (await conv_repo.get_conversation(s, cid)).contact_id
    seen = [(e.name, getattr(getattr(e, "message", None), "direction", None), a) for e, a in events]
    for name, direction, audience in seen:
        if name == "contact.created":
            continue
        assert audience.conversations == [cid], name
        customer = name in ("conversation.created", "conversation.updated") or direction in ("in", "out")
        assert audience.contacts == ([contact_id] if customer else []), (name, direction)
    assert {d for n, d, _ in seen if n == "message.created"} == {"in", "out", "note", "activity"}
