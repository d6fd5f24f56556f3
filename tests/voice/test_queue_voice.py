"""A queue's call settings (``QueueSettings.voice``) at work: its recording policy over the line's, its
disposition codes at wrap-up, and sensitive contact actions that wait for a caller the IVR verified.
Through the real interface: FakeTwilio calls the running server, the agent uses the REST API."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import websockets
from sqlalchemy import update

from tests.conftest import seed_basics
from tests.routing.test_api import token_for
from tests.voice.fake_twilio import FakeTwilio
from tests.voice.test_twilio_calls import CALLER, SID, TOKEN, calls, connected_call
from threadline.actions import contacts as contact_actions
from threadline.actions import guards
from threadline.actions import users as user_actions
from threadline.voice.domain.calls import disposition_problem, record_policy, sensitive_locked
from threadline.voice.models import CallRow


async def queue_voice(server: Any, queue_id: int, **voice: Any) -> None:
    async with server.services.db.transaction() as s:
        await user_actions.update_queue(s, queue_id, settings={"voice": voice})


# --------------------------------------------------------------------------- the pure rules


@pytest.mark.parametrize(("queue", "channel", "expected"), [
    ("always", "never", "always"), ("never", "always", "never"), ("on_demand", "never", "on_demand"),
    ("channel", "always", "always"), (None, "on_demand", "on_demand"), ("channel", None, "never"),
    (None, None, "never"), ("bogus", "always", "always"),
])
def test_the_queue_decides_the_recording_unless_it_defers_to_the_line(queue, channel, expected) -> None:
    assert record_policy(queue, channel) == expected


def test_a_disposition_must_be_one_of_the_queues_codes_when_it_has_some() -> None:
    assert disposition_problem("anything", []) is None
    assert disposition_problem("resolved", ["resolved", "escalated"]) is None
    problem = disposition_problem("lost", ["resolved", "escalated"])
    assert problem is not None and "resolved, escalated" in problem and "'lost'" in problem


def test_sensitive_actions_wait_only_for_an_unverified_caller_on_a_call_that_is_not_over() -> None:
    assert sensitive_locked("connected", None, True)
    assert sensitive_locked("wrap_up", None, True)
    assert not sensitive_locked("connected", "pin", True)
    assert not sensitive_locked("ended", None, True)
    assert not sensitive_locked("connected", None, False)


# --------------------------------------------------------------------------- recording


async def test_a_queue_that_records_always_records_on_a_line_that_never_does(sqlite_server) -> None:
    server = sqlite_server
    ids = await seed_basics(server.services)
    await queue_voice(server, ids["general"], record="always")
    token = await token_for(server, "alice@example.com")
    async with FakeTwilio(account_sid=SID, auth_token=TOKEN) as tw, \
            httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as alice, \
            websockets.connect(f"{server.ws_url}/api/v1/stream?token={token}") as ws:
        call, row = await connected_call(server, ids, tw, alice, ws, record="never")
        await call.wait_for(lambda c: bool(c.recordings))  # started when the agent joined
        [row] = await calls(server)
        assert row.details.get("recording_sid") == call.recordings[0].sid


async def test_a_queue_that_never_records_wins_over_a_line_that_always_does(sqlite_server) -> None:
    server = sqlite_server
    ids = await seed_basics(server.services)
    await queue_voice(server, ids["general"], record="never")
    token = await token_for(server, "alice@example.com")
    async with FakeTwilio(account_sid=SID, auth_token=TOKEN) as tw, \
            httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as alice, \
            websockets.connect(f"{server.ws_url}/api/v1/stream?token={token}") as ws:
        call, row = await connected_call(server, ids, tw, alice, ws, record="always")
        await tw.settle()
        assert call.recordings == [] and tw.recordings == []
        refused = await alice.post(f"/api/v1/calls/{row.id}/recording", json={"action": "start"})
        assert refused.status_code == 409 and "'never'" in refused.json()["detail"]
        assert call.recordings == [] and not (await calls(server))[0].details.get("recording_sid")


# --------------------------------------------------------------------------- wrap-up codes


async def test_the_wrap_up_takes_only_the_queues_disposition_codes(sqlite_server) -> None:
    server = sqlite_server
    ids = await seed_basics(server.services)
    await queue_voice(server, ids["general"], dispositions=["resolved", "order-status"])
    token = await token_for(server, "alice@example.com")
    async with FakeTwilio(account_sid=SID, auth_token=TOKEN) as tw, \
            httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as alice, \
            websockets.connect(f"{server.ws_url}/api/v1/stream?token={token}") as ws:
        call, row = await connected_call(server, ids, tw, alice, ws)
        [listed] = (await alice.get("/api/v1/calls", params={"conversation_id": row.conversation_id})).json()
        assert listed["dispositions"] == ["resolved", "order-status"] and listed["sensitive_locked"] is False
        await call.hangup()
        await tw.settle()
        base = f"/api/v1/calls/{row.id}"
        refused = await alice.post(f"{base}/wrap-up", json={"disposition": "lost-parcel", "notes": "?"})
        assert refused.status_code == 422, refused.text
        assert "resolved, order-status" in refused.json()["detail"]
        assert not (await calls(server))[0].details.get("disposition")
        ok = await alice.post(f"{base}/wrap-up", json={"disposition": "order-status", "notes": "parcel found"})
        assert ok.status_code == 200, ok.text
        [listed] = (await alice.get("/api/v1/calls", params={"conversation_id": row.conversation_id})).json()
        assert listed["disposition"] == "order-status"
    # a queue without codes takes any text
    await queue_voice(server, ids["general"], dispositions=[])
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as alice:
        assert (await alice.post(f"/api/v1/calls/{row.id}/wrap-up", json={"disposition": "whatever"})).status_code == 200


# --------------------------------------------------------------------------- sensitive actions


async def test_sensitive_contact_actions_wait_for_a_verified_caller_when_the_queue_asks(sqlite_server) -> None:
    server = sqlite_server
    ids = await seed_basics(server.services)
    await queue_voice(server, ids["general"], verified_for_sensitive=True)
    assert "voice.verified_caller" in guards.sensitive_guards()
    async with server.services.db.transaction() as s:  # the caller is a known customer; another one writes
        caller = await contact_actions.create_contact(s, name="Maria Rossi", identities=[
            {"kind": "phone", "value": CALLER}], attributes={"plan": "basic"})
        other = await contact_actions.create_contact(s, name="Maria R.", identities=[
            {"kind": "email", "value": "maria@example.com"}], attributes={})
        writer = await contact_actions.create_contact(s, name="Zoe", identities=[
            {"kind": "email", "value": "zoe@example.com"}], attributes={})
    token = await token_for(server, "alice@example.com")
    sup_token = await token_for(server, "sup@example.com")
    async with FakeTwilio(account_sid=SID, auth_token=TOKEN) as tw, \
            httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as alice, \
            httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {sup_token}"}) as sup, \
            websockets.connect(f"{server.ws_url}/api/v1/stream?token={token}") as ws:
        call, row = await connected_call(server, ids, tw, alice, ws)
        assert row.contact_id == caller.id and row.verified_by is None
        [listed] = (await alice.get("/api/v1/calls", params={"conversation_id": row.conversation_id})).json()
        assert listed["sensitive_locked"] is True
        c = f"/api/v1/contacts/{caller.id}"
        refused = [
            await alice.patch(c, json={"attributes": {"plan": "gold"}}),
            await alice.post(f"{c}/identities", json={"kind": "email", "value": "new@example.com"}),
            await sup.post(f"{c}/merge", json={"source_id": other.id}),
            await sup.post(f"/api/v1/contacts/{other.id}/merge", json={"source_id": caller.id}),
        ]
        for r in refused:
            assert r.status_code == 409, r.text
            assert r.json()["detail"].startswith("the caller is not verified: verify them (PIN"), r.json()["detail"]
        assert (await alice.get(c)).json()["attributes"] == {"plan": "basic"}
        # the name is not a sensitive detail; a contact with no call is not affected
        assert (await alice.patch(c, json={"name": "Maria Rossi-Bianchi"})).status_code == 200
        assert (await sup.patch(f"/api/v1/contacts/{writer.id}", json={"attributes": {"plan": "gold"}})).status_code == 200
        assert (await sup.post(f"/api/v1/contacts/{writer.id}/identities",
                               json={"kind": "phone", "value": "+34600999888"})).status_code == 201
        # the IVR verified the caller (a flow's verify node sets verified_by): the same actions go through
        async with server.services.db.transaction() as s:
            await s.execute(update(CallRow).where(CallRow.id == row.id).values(verified_by="pin"))
        [listed] = (await alice.get("/api/v1/calls", params={"conversation_id": row.conversation_id})).json()
        assert listed["sensitive_locked"] is False
        ok = await alice.patch(c, json={"attributes": {"plan": "gold"}})
        assert ok.status_code == 200 and ok.json()["attributes"]["plan"] == "gold"
        assert (await alice.post(f"{c}/identities", json={"kind": "email", "value": "new@example.com"})).status_code == 201
        assert (await sup.post(f"{c}/merge", json={"source_id": other.id})).status_code == 200
        await call.hangup()


async def test_a_queue_that_does_not_ask_and_a_call_that_is_over_lock_nothing(sqlite_server) -> None:
    server = sqlite_server
    ids = await seed_basics(server.services)
    token = await token_for(server, "alice@example.com")
    async with FakeTwilio(account_sid=SID, auth_token=TOKEN) as tw, \
            httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as alice, \
            websockets.connect(f"{server.ws_url}/api/v1/stream?token={token}") as ws:
        call, row = await connected_call(server, ids, tw, alice, ws)
        c = f"/api/v1/contacts/{row.contact_id}"
        assert (await alice.patch(c, json={"attributes": {"plan": "gold"}})).status_code == 200  # the queue does not ask
        await queue_voice(server, ids["general"], verified_for_sensitive=True)
        assert (await alice.patch(c, json={"attributes": {"plan": "silver"}})).status_code == 409
        await call.hangup()
        await tw.settle()
        assert (await calls(server))[0].state == "ended"
        assert (await alice.patch(c, json={"attributes": {"plan": "silver"}})).status_code == 200  # the call is over
