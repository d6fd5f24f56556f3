"""Twilio voice through the real interface: FakeTwilio (tests/voice/fake_twilio.py) places calls to the
running server, walks the TwiML it answers and sends signed callbacks; the app's REST calls go to the
fake. Inbound call → IVR → queue with announcements → offer on the agent's stream → accept over HTTP →
the caller and the agent's softphone meet in a conference → hang-up → "Call, 4 min 12 s, answered by
Alice" in the timeline; a caller who hangs up while queued is abandoned (and counted so); a callback
keeps the caller's place and dials them when an agent accepts; forged webhooks change nothing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import websockets
from sqlalchemy import select

from tests.conftest import seed_basics
from tests.routing.test_api import next_event, token_for
from tests.voice.fake_twilio import FakeTwilio
from threadline.actions import channels as channel_actions
from threadline.db.models import MessageRow
from threadline.db.types import utcnow
from threadline.flows import actions as flow_actions
from threadline.voice.models import CallRow

SID = "AC" + "a1" * 16
TOKEN = "twilio-auth-token-0123456789abcdef"
NUMBER = "+15005550006"
CALLER = "+34600111222"


async def voice_channel(server: Any, ids: dict[str, int], tw: FakeTwilio, **config: Any) -> str:
    server.services.factory.public_base_url = server.url  # Twilio must reach (and sign) our public URL
    async with server.services.db.transaction() as s:
        row = await channel_actions.create_channel(
            s, server.services.box, kind="twilio_voice", name="Phone", default_queue_id=ids["general"],
            config={"account_sid": SID, "auth_token": TOKEN, "phone_number": NUMBER, "api_base_url": tw.base_url,
                    **config})
    return row.key


async def calls(server: Any) -> list[CallRow]:
    async with server.services.db.transaction(write=False) as s:
        return list((await s.execute(select(CallRow).order_by(CallRow.id))).scalars())


async def entry(server: Any, message_id: int) -> MessageRow:
    async with server.services.db.transaction(write=False) as s:
        row = await s.get(MessageRow, message_id)
        assert row is not None
        return row


async def test_a_call_waits_in_the_queue_is_offered_accepted_and_bridged_then_logged(server) -> None:
    ids = await seed_basics(server.services)
    token = await token_for(server, "alice@example.com")
    async with FakeTwilio(account_sid=SID, auth_token=TOKEN) as tw, \
            httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as alice, \
            websockets.connect(f"{server.ws_url}/api/v1/stream?token={token}") as ws:
        key = await voice_channel(server, ids, tw, callback_key=None)
        assert json.loads(await ws.recv())["name"] == "stream.ready"
        assert (await alice.put("/api/v1/me/presence", json={"status": "available"})).status_code == 200

        call = await tw.incoming_call(from_=CALLER, to=NUMBER, url=f"{server.url}/hooks/{key}/voice")
        await call.wait_for("queued")
        assert any("Thank you for calling" in s for s in call.said)
        offer = (await next_event(ws, "routing.offer"))["data"]
        [row] = await calls(server)
        assert row.state == "queued" and row.from_number == CALLER
        assert offer["conversation_id"] == row.conversation_id
        await call.tick_wait()  # the wait URL: where the caller stands
        assert any("number 1" in s for s in call.said), call.said

        r = await alice.post(f"/api/v1/routing/offers/{offer['offer_id']}/accept")
        assert r.status_code == 200, r.text
        leg = await tw.outbound_call(to=f"client:agent-{ids['alice']}")  # the softphone rings
        await tw.answer(leg)
        await call.wait_for("in-conference")
        await next_event(ws, "call.changed", lambda e: e["data"]["state"] == "connected")
        tw.advance(252)
        await call.hangup()
        ended = await next_event(ws, "call.changed", lambda e: e["data"]["state"] == "ended")
        assert ended["data"]["end_cause"] == "completed" and ended["data"]["agent_id"] == ids["alice"]
        [row] = await calls(server)
        assert row.agent_id == ids["alice"] and row.answered_at is not None
        msg = await entry(server, row.message_id)
        assert msg.text == "Call, 4 min 12 s, answered by Alice", msg.text
        listed = (await alice.get("/api/v1/calls", params={"conversation_id": row.conversation_id})).json()
        assert [c["state"] for c in listed] == ["ended"]


async def test_an_agent_who_takes_calls_on_their_own_phone_is_dialled_there(sqlite_server) -> None:
    server = sqlite_server
    ids = await seed_basics(server.services)
    token = await token_for(server, "alice@example.com")
    own = "+34600999000"
    async with FakeTwilio(account_sid=SID, auth_token=TOKEN) as tw, \
            httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as alice, \
            websockets.connect(f"{server.ws_url}/api/v1/stream?token={token}") as ws:
        key = await voice_channel(server, ids, tw, callback_key=None, agent_endpoint="phone",
                                  agent_numbers={str(ids["alice"]): "+34 600 99 90 00"})
        assert json.loads(await ws.recv())["name"] == "stream.ready"
        assert (await alice.put("/api/v1/me/presence", json={"status": "available"})).status_code == 200
        call = await tw.incoming_call(from_=CALLER, to=NUMBER, url=f"{server.url}/hooks/{key}/voice")
        await call.wait_for("queued")
        offer = (await next_event(ws, "routing.offer"))["data"]
        assert (await alice.post(f"/api/v1/routing/offers/{offer['offer_id']}/accept")).status_code == 200
        leg = await tw.outbound_call(to=own)  # her own phone rings, with our number as the caller ID
        await tw.answer(leg)
        await call.wait_for("in-conference")
        await next_event(ws, "call.changed", lambda e: e["data"]["state"] == "connected")
        await call.hangup()


async def test_a_caller_who_hangs_up_while_queued_is_abandoned_and_leaves_routing(sqlite_server) -> None:
    server = sqlite_server
    ids = await seed_basics(server.services)
    sup = await token_for(server, "sup@example.com")
    async with FakeTwilio(account_sid=SID, auth_token=TOKEN) as tw, \
            httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {sup}"}) as client:
        key = await voice_channel(server, ids, tw)
        call = await tw.incoming_call(from_=CALLER, to=NUMBER, url=f"{server.url}/hooks/{key}/voice")
        await call.wait_for("queued")
        tw.advance(65)
        await call.hangup()
        await tw.settle()
        [row] = await calls(server)
        assert row.state == "ended" and row.end_cause == "abandoned"
        assert (await entry(server, row.message_id)).text.startswith("Missed call (hung up after waiting")
        async with asyncio.timeout(10):  # the router drops the task as abandoned in its next round
            while True:
                figures = (await client.get("/api/v1/routing/figures")).json()
                general = next(f for f in figures if f["queue_id"] == ids["general"])
                if general["abandoned"] == 1:
                    break
                await asyncio.sleep(0.1)
        task = await client.get(f"/api/v1/routing/tasks/{row.conversation_id}")
        assert task.status_code == 404


async def test_a_forged_or_unsigned_webhook_is_refused_and_changes_nothing(sqlite_server) -> None:
    server = sqlite_server
    ids = await seed_basics(server.services)
    async with FakeTwilio(account_sid=SID, auth_token=TOKEN) as tw:
        key = await voice_channel(server, ids, tw)
        url = f"{server.url}/hooks/{key}/voice"
        params = {"CallSid": "CA" + "0" * 32, "AccountSid": SID, "From": CALLER, "To": NUMBER, "CallStatus": "ringing"}
        forged = await tw.signed_post(url, params, auth_token="not-the-token-0123456789")
        assert forged.status_code == 401
        async with httpx.AsyncClient() as c:
            unsigned = await c.post(url, data=params)
        assert unsigned.status_code == 401 and "X-Twilio-Signature" in unsigned.json()["detail"]
        assert await calls(server) == []
        gather = f"{server.url}/hooks/{key}/voice/gather"
        bad = await tw.signed_post(f"{gather}?call=99999999999999", {"AccountSid": SID, "Digits": "1"})
        assert bad.status_code == 400 and bad.json()["type"] == "/problems/bad_payload"
        missing = await tw.signed_post(f"{gather}?call=42", {"AccountSid": SID, "Digits": "1"})
        assert missing.status_code == 404 and "call 42" in missing.json()["detail"]


async def test_a_callback_keeps_the_place_and_dials_the_customer_when_an_agent_accepts(sqlite_server) -> None:
    server = sqlite_server
    ids = await seed_basics(server.services)
    token = await token_for(server, "alice@example.com")
    async with FakeTwilio(account_sid=SID, auth_token=TOKEN) as tw, \
            httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as alice, \
            websockets.connect(f"{server.ws_url}/api/v1/stream?token={token}") as ws:
        key = await voice_channel(server, ids, tw, callback_key="1")
        assert json.loads(await ws.recv())["name"] == "stream.ready"
        call = await tw.incoming_call(from_=CALLER, to=NUMBER, url=f"{server.url}/hooks/{key}/voice")
        await call.wait_for("queued")
        await call.tick_wait()
        assert any("press 1" in s for s in call.said), call.said
        await call.press("1")
        await call.wait_for("completed")
        assert any("call you back" in s for s in call.said)
        [row] = await calls(server)
        assert row.callback_requested and row.end_cause != "abandoned"
        # the task kept its place: Alice comes online, is offered it, accepts; Threadline dials both
        assert (await alice.put("/api/v1/me/presence", json={"status": "available"})).status_code == 200
        offer = (await next_event(ws, "routing.offer"))["data"]
        assert offer["conversation_id"] == row.conversation_id
        assert (await alice.post(f"/api/v1/routing/offers/{offer['offer_id']}/accept")).status_code == 200
        customer = await tw.outbound_call(to=CALLER)  # the queue rings the customer first
        assert not [c for c in tw.calls if c.to == f"client:agent-{ids['alice']}"]
        await tw.answer(customer)
        await customer.wait_for("in-conference")
        agent = await tw.outbound_call(to=f"client:agent-{ids['alice']}")  # they answered: now Alice
        await tw.answer(agent)
        await agent.wait_for("in-conference")
        [row] = await calls(server)
        assert row.details["callback_done"] is True


async def test_a_queue_can_ring_the_agent_first_on_a_callback(sqlite_server) -> None:
    server = sqlite_server
    ids = await seed_basics(server.services)
    async with server.services.db.transaction() as s:
        from threadline.actions import users as user_actions
        from threadline.db.repos import users as users_repo
        q = await users_repo.get_queue(s, ids["general"])
        await user_actions.update_queue(s, ids["general"], settings={**(q.settings or {}),
                                                                     "voice": {"callback_order": "agent_first"}})
    token = await token_for(server, "alice@example.com")
    async with FakeTwilio(account_sid=SID, auth_token=TOKEN) as tw, \
            httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as alice, \
            websockets.connect(f"{server.ws_url}/api/v1/stream?token={token}") as ws:
        key = await voice_channel(server, ids, tw, callback_key="1")
        assert json.loads(await ws.recv())["name"] == "stream.ready"
        call = await tw.incoming_call(from_=CALLER, to=NUMBER, url=f"{server.url}/hooks/{key}/voice")
        await call.wait_for("queued")
        await call.tick_wait()
        await call.press("1")
        await call.wait_for("completed")
        assert (await alice.put("/api/v1/me/presence", json={"status": "available"})).status_code == 200
        offer = (await next_event(ws, "routing.offer"))["data"]
        assert (await alice.post(f"/api/v1/routing/offers/{offer['offer_id']}/accept")).status_code == 200
        agent = await tw.outbound_call(to=f"client:agent-{ids['alice']}")  # Alice first
        assert not [c for c in tw.calls if c.to == CALLER and c.direction != "inbound"]
        await tw.answer(agent)
        await agent.wait_for("in-conference")
        customer = await tw.outbound_call(to=CALLER)  # she is there: now the customer
        await tw.answer(customer)
        await customer.wait_for("in-conference")


async def test_an_ivr_menu_repeats_on_a_wrong_key_then_routes_with_the_flows_queue(sqlite_server) -> None:
    server = sqlite_server
    ids = await seed_basics(server.services)
    flow = {"start": "menu", "locales": ["en", "es"], "nodes": {
        "menu": {"type": "menu", "prompt": {"en": "For sales press 1, for billing press 2.",
                                            "es": "Para ventas pulse 1, para facturación pulse 2."},
                 "options": [{"key": "1", "label": {"en": "Sales", "es": "Ventas"}, "next": "sales"},
                             {"key": "2", "label": {"en": "Billing", "es": "Facturación"}, "next": "billing"}],
                 "max_tries": 2, "no_match": "sales"},
        "sales": {"type": "queue", "queue_id": ids["general"]},
        "billing": {"type": "queue", "queue_id": ids["billing"], "priority": 80}}}
    async with server.services.db.transaction() as s:
        row, _ = await flow_actions.create_flow(s, name="Main IVR", kind="ivr", definition=flow, now=utcnow())
        flow_id = row.id
    async with FakeTwilio(account_sid=SID, auth_token=TOKEN) as tw:
        key = await voice_channel(server, ids, tw, flow_id=flow_id, language="es-ES")
        call = await tw.incoming_call(from_=CALLER, to=NUMBER, url=f"{server.url}/hooks/{key}/voice")
        await call.wait_for(lambda c: c.pending == "gather")
        assert call.heard[-1].language == "es-ES" and "facturación" in call.said[-1]
        await call.press("7")  # not on the menu: heard again
        await call.wait_for(lambda c: c.pending == "gather")
        assert sum("pulse 2" in s for s in call.said) == 2
        await call.press("2")
        await call.wait_for("queued")
        [crow] = await calls(server)
        assert crow.queue_id == ids["billing"] and crow.flow_version == 1
        async with server.services.db.transaction(write=False) as s:
            from threadline.db.repos import conversations as repo
            conv = await repo.get_conversation(s, crow.conversation_id)
            assert conv is not None and conv.queue_id == ids["billing"] and conv.priority == "urgent"


async def connected_call(server: Any, ids: dict[str, int], tw: FakeTwilio, alice: httpx.AsyncClient, ws: Any,
                         **config: Any) -> tuple[Any, CallRow]:
    """A caller queued, offered to Alice, accepted and bridged: (the fake's call, the row)."""
    key = await voice_channel(server, ids, tw, callback_key=None, **config)
    assert json.loads(await ws.recv())["name"] == "stream.ready"
    assert (await alice.put("/api/v1/me/presence", json={"status": "available"})).status_code == 200
    call = await tw.incoming_call(from_=CALLER, to=NUMBER, url=f"{server.url}/hooks/{key}/voice")
    await call.wait_for("queued")
    offer = (await next_event(ws, "routing.offer"))["data"]
    assert (await alice.post(f"/api/v1/routing/offers/{offer['offer_id']}/accept")).status_code == 200
    await tw.answer(await tw.outbound_call(to=f"client:agent-{ids['alice']}"))
    await call.wait_for("in-conference")
    await next_event(ws, "call.changed", lambda e: e["data"]["state"] == "connected")
    [row] = await calls(server)
    return call, row


async def test_the_agent_holds_records_with_a_pci_gap_and_wraps_up(sqlite_server) -> None:
    server = sqlite_server
    ids = await seed_basics(server.services)
    token = await token_for(server, "alice@example.com")
    bob_token = await token_for(server, "bob@example.com")
    async with FakeTwilio(account_sid=SID, auth_token=TOKEN) as tw, \
            httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as alice, \
            httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {bob_token}"}) as bob, \
            websockets.connect(f"{server.ws_url}/api/v1/stream?token={token}") as ws:
        call, row = await connected_call(server, ids, tw, alice, ws, record="on_demand")
        base = f"/api/v1/calls/{row.id}"
        assert (await bob.post(f"{base}/hold", json={"hold": True})).status_code in (403, 404)  # not his call
        r = await alice.post(f"{base}/hold", json={"hold": True})
        assert r.status_code == 200, r.text
        conf = tw.conference(call.conference)
        await call.wait_for(lambda c: conf.participants[c.sid].hold)
        assert (await alice.post(f"{base}/hold", json={"hold": False})).status_code == 200
        await call.wait_for(lambda c: not conf.participants[c.sid].hold)

        assert (await alice.post(f"{base}/recording", json={"action": "pause"})).status_code == 409  # not recording
        assert (await alice.post(f"{base}/recording", json={"action": "start"})).status_code == 200
        tw.advance(10)
        assert (await alice.post(f"{base}/recording", json={"action": "pause"})).status_code == 200  # card number
        tw.advance(5)
        assert (await alice.post(f"{base}/recording", json={"action": "resume"})).status_code == 200
        tw.advance(3)
        [rec] = call.recordings
        assert [(round(a), round(b), how) for a, b, how in rec.paused_spans] == [(10, 15, "skip")]
        await call.hangup()
        await tw.settle()
        [row] = await calls(server)
        assert row.recording_url and row.details["recording_gaps"] and row.details["recording_gaps"][0][1] is not None
        audio = await alice.get(f"{base}/recording")  # played back through Threadline, with the account's key
        assert audio.status_code == 200 and audio.content[:4] == b"RIFF", audio.text[:200]
        assert (await bob.get(f"{base}/recording")).status_code in (403, 404)  # not his call, not his queue
        wrapped = await alice.post(f"{base}/wrap-up", json={"disposition": "order-status", "notes": "parcel found"})
        assert wrapped.status_code == 200, wrapped.text
        assert (await alice.post(f"{base}/wrap-up", json={"disposition": ""})).status_code == 422
        assert (await alice.post(f"{base}/hold", json={"hold": True})).status_code == 409  # the call is over
        assert (await alice.post("/api/v1/calls/99999999999/hold", json={"hold": True})).status_code == 422


async def test_a_blind_transfer_hands_the_call_over_and_a_failed_one_comes_back(server) -> None:
    ids = await seed_basics(server.services)
    token = await token_for(server, "alice@example.com")
    bob_token = await token_for(server, "bob@example.com")
    sup_token = await token_for(server, "sup@example.com")
    async with FakeTwilio(account_sid=SID, auth_token=TOKEN) as tw, \
            httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as alice, \
            httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {bob_token}"}) as bob, \
            httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {sup_token}"}) as sup, \
            websockets.connect(f"{server.ws_url}/api/v1/stream?token={token}") as ws:
        call, row = await connected_call(server, ids, tw, alice, ws)
        base = f"/api/v1/calls/{row.id}"
        busy = await alice.post(f"{base}/transfer", json={"agent_id": ids["bob"]})
        assert busy.status_code == 409 and "offline" in busy.json()["detail"]  # Bob is not available
        both = await alice.post(f"{base}/transfer", json={"agent_id": ids["bob"], "queue_id": ids["general"]})
        assert both.status_code == 422
        # an outside number that does not answer: the call comes back to Alice, with the reason
        r = await alice.post(f"{base}/transfer", json={"number": "+34 911 222 333", "mode": "blind"})
        assert r.status_code == 200, r.text
        leg = await tw.outbound_call(to="+34911222333")
        await tw.no_answer(leg)
        conf = tw.conference(call.conference)
        await call.wait_for(lambda c: not conf.participants[c.sid].hold)  # the worker takes them off hold
        async with server.services.db.transaction(write=False) as s:
            notes = [m.text for m in (await s.execute(select(MessageRow).where(
                MessageRow.conversation_id == row.conversation_id))).scalars()]
        assert any("Transfer to +34911222333 failed (no-answer)" in n for n in notes), notes
        # Bob comes online; a blind transfer to him: once he answers, the call is his and Alice leaves
        assert (await bob.put("/api/v1/me/presence", json={"status": "available"})).status_code == 200
        assert (await alice.post(f"{base}/transfer", json={"agent_id": ids["bob"]})).status_code == 200
        await tw.answer(await tw.outbound_call(to=f"client:agent-{ids['bob']}"))
        await call.wait_for(lambda c: f"agent-{ids['alice']}" not in {p.label for p in conf.participants.values()})
        labels = {p.label for p in conf.participants.values()}
        assert f"agent-{ids['bob']}" in labels and f"agent-{ids['alice']}" not in labels, labels
        [row] = await calls(server)
        assert row.agent_id == ids["bob"] and row.state == "connected"
        # a supervisor whispers to Bob: only he hears it (coaching his leg); an agent may not monitor
        assert (await alice.post(f"{base}/monitor", json={"mode": "listen"})).status_code == 403
        r = await sup.post(f"{base}/monitor", json={"mode": "whisper"})
        assert r.status_code == 200, r.text
        whisper = await tw.outbound_call(to=f"client:agent-{ids['sup']}")
        await tw.answer(whisper)
        await tw.settle()
        p = next(p for p in conf.participants.values() if p.label == f"supervisor-{ids['sup']}")
        assert p.coaching and p.call_sid_to_coach


async def test_click_to_call_rings_the_agent_and_the_customer_from_the_line(sqlite_server) -> None:
    server = sqlite_server
    ids = await seed_basics(server.services)
    token = await token_for(server, "alice@example.com")
    async with FakeTwilio(account_sid=SID, auth_token=TOKEN) as tw, \
            httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as alice:
        key = await voice_channel(server, ids, tw)
        missed = await tw.incoming_call(from_=CALLER, to=NUMBER, url=f"{server.url}/hooks/{key}/voice")
        await missed.wait_for("queued")
        await missed.hangup()
        await tw.settle()
        [first] = await calls(server)
        assert first.end_cause == "abandoned"
        wrong = await alice.post("/api/v1/calls", json={"conversation_id": first.conversation_id,
                                                        "number": "+34 911 000 000"})
        assert wrong.status_code == 422 and "customer's own numbers" in wrong.json()["detail"]
        r = await alice.post("/api/v1/calls", json={"conversation_id": first.conversation_id})
        assert r.status_code == 201, r.text
        out = r.json()
        assert out["direction"] == "outbound" and out["to_number"] == CALLER and out["from_number"] == NUMBER
        customer = await tw.outbound_call(to=CALLER)
        await tw.answer(await tw.outbound_call(to=f"client:agent-{ids['alice']}"))
        await tw.answer(customer)
        await customer.wait_for("in-conference")
        listed = (await alice.get("/api/v1/calls", params={"conversation_id": first.conversation_id})).json()
        async with asyncio.timeout(5):
            while listed[0]["state"] != "connected":
                await asyncio.sleep(0.05)
                listed = (await alice.get("/api/v1/calls", params={"conversation_id": first.conversation_id})).json()
        assert [c["direction"] for c in listed] == ["outbound", "inbound"]


async def test_nobody_to_take_the_call_records_a_voicemail_with_its_transcript(sqlite_server) -> None:
    server = sqlite_server
    ids = await seed_basics(server.services)
    flow = {"start": "vm", "nodes": {"vm": {"type": "voicemail", "prompt": {"en": "We are closed. Leave a message."},
                                             "max_seconds": 60}}}
    async with server.services.db.transaction() as s:
        row, _ = await flow_actions.create_flow(s, name="Closed", kind="ivr", definition=flow, now=utcnow())
    async with FakeTwilio(account_sid=SID, auth_token=TOKEN) as tw:
        key = await voice_channel(server, ids, tw, flow_id=row.id)
        call = await tw.incoming_call(from_=CALLER, to=NUMBER, url=f"{server.url}/hooks/{key}/voice")
        await call.wait_for(lambda c: c.pending == "record")
        assert any("Leave a message" in s for s in call.said)
        tw.advance(42)
        await call.hangup()
        await tw.settle()
        [crow] = await calls(server)
        assert crow.end_cause == "voicemail" and crow.recording_url
        assert (await entry(server, crow.message_id)).text.startswith("Voicemail 0:")
        url = f"{server.url}/hooks/{key}/voice/transcription?call={crow.id}"
        params = {"AccountSid": SID, "CallSid": crow.provider_ref, "TranscriptionSid": "TR" + "1" * 32,
                  "TranscriptionStatus": "completed", "TranscriptionText": "Hi, my parcel <b>never</b> came"}
        assert (await tw.signed_post(url, params)).status_code == 200
        assert (await tw.signed_post(url, params)).status_code == 200  # a retry: one note
        async with server.services.db.transaction(write=False) as s:
            notes = [m.text for m in (await s.execute(select(MessageRow).where(
                MessageRow.conversation_id == crow.conversation_id))).scalars() if m.text.startswith("Transcript")]
        assert notes == ["Transcript (Twilio): Hi, my parcel <b>never</b> came"]  # kept as text; the desk escapes it
        async with server.services.db.transaction(write=False) as s:
            from threadline.db.repos import conversations as repo
            conv = await repo.get_conversation(s, crow.conversation_id)
            assert conv is not None and conv.queue_id == ids["general"] and conv.status == "open"  # a task


async def test_recordings_older_than_the_retention_are_deleted_at_the_provider_too(sqlite_server) -> None:
    from datetime import timedelta

    from threadline.voice import actions as voice_actions
    from threadline.voice.worker import recordings_job
    from threadline.workers.scheduler import Job

    server = sqlite_server
    ids = await seed_basics(server.services)
    token = await token_for(server, "alice@example.com")
    async with FakeTwilio(account_sid=SID, auth_token=TOKEN) as tw, \
            httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as alice, \
            websockets.connect(f"{server.ws_url}/api/v1/stream?token={token}") as ws:
        call, row = await connected_call(server, ids, tw, alice, ws, record="on_demand")
        assert (await alice.post(f"/api/v1/calls/{row.id}/recording", json={"action": "start"})).status_code == 200
        await call.hangup()
        await tw.settle()
        [row] = await calls(server)
        assert row.recording_url and len(tw.recordings) == 1
        prune = recordings_job(server.services.factory, days=30)
        job = Job(1, voice_actions.RECORDINGS_JOB, "all", utcnow(), {}, 1)
        async with server.services.db.transaction() as s:  # a day later: within the retention, kept
            await prune(s, job, utcnow() + timedelta(days=1))
        assert tw.deleted_recordings == [] and (await calls(server))[0].recording_url
        async with server.services.db.transaction() as s:  # 31 days later: deleted there, and here
            await prune(s, job, utcnow() + timedelta(days=31))
        [row] = await calls(server)
        assert row.recording_url is None and len(tw.deleted_recordings) == 1 and tw.recordings == []
        assert (await alice.get(f"/api/v1/calls/{row.id}/recording")).status_code == 404
        assert (await entry(server, row.message_id)).meta["call"]["recording"] is False


async def test_the_ivr_verifies_the_caller_by_pin_and_the_agent_sees_it(sqlite_server) -> None:
    from threadline.actions import contacts as contact_actions

    server = sqlite_server
    ids = await seed_basics(server.services)
    async with server.services.db.transaction() as s:  # a known customer with a PIN on file
        await contact_actions.create_contact(s, name="Maria Rossi", identities=[{"kind": "phone", "value": CALLER}],
                                             attributes={"pin": "4321"})
        flow = {"start": "pin", "nodes": {
            "pin": {"type": "verify", "prompt": {"en": "Enter your PIN, then hash."}, "against": "pin",
                    "max_tries": 2, "ok": "q", "fail": "q"},
            "q": {"type": "queue", "queue_id": ids["general"]}}}
        row, _ = await flow_actions.create_flow(s, name="PIN", kind="ivr", definition=flow, now=utcnow())
    async with FakeTwilio(account_sid=SID, auth_token=TOKEN) as tw:
        key = await voice_channel(server, ids, tw, flow_id=row.id)
        call = await tw.incoming_call(from_=CALLER, to=NUMBER, url=f"{server.url}/hooks/{key}/voice")
        await call.wait_for(lambda c: c.pending == "gather")
        await call.press("1111#")  # wrong: asked again
        await call.wait_for(lambda c: c.pending == "gather")
        await call.press("4321#")
        await call.wait_for("queued")
        [crow] = await calls(server)
        assert crow.verified_by == "pin" and crow.details["verification"] == {"attribute": "pin", "ok": True}
        async with server.services.db.transaction(write=False) as s:
            msg = await s.get(MessageRow, crow.message_id)
            assert msg is not None and msg.meta["call"]["verified_by"] == "pin"
        # the digits typed are never stored: not in the call's events, not in the flow state
        assert "4321" not in json.dumps(crow.flow_state) and "4321" not in json.dumps(crow.details)
        async with server.services.db.transaction(write=False) as s:
            from threadline.voice.models import CallEventRow
            stored = json.dumps([e.data for e in (await s.execute(select(CallEventRow))).scalars()])
        assert "4321" not in stored and "1111" not in stored, stored
