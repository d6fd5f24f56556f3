"""The rules around calls in the browser that keep them from hanging or leaking: a widget that goes quiet
ends its call, an agent who does not answer (or declines) hands it to the next agent, an agent who is away
is not rung, a reassigned conversation's call rings its new agent (and only them), the conversation gets
its own routing class back, unreadable session descriptions are refused with 422 (never 500), a full
process says 503, TURN credentials are made per call, and a stopping process ends its relayed calls."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.channels.webchat.test_webchat import frame
from tests.routing.test_api import token_for
from tests.voice.test_browser_calls import Peer, setup, tone, visitor_with_conversation
from threadline.actions import users as user_actions
from threadline.db.models import ConversationRow
from threadline.db.types import utcnow
from threadline.voice import actions
from threadline.voice import repo as voice_repo
from threadline.voice.browser import api as browser_api

BAD_SDP = ["v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n",
           "v=0\r\nm=audio\r\na=setup:holdconn\r\n", "v=0 not an sdp at all"]


async def call_row(server: Any, call_id: int) -> Any:
    async with server.services.db.transaction(write=False) as s:
        return await voice_repo.get(s, call_id)


async def watch(server: Any, call_id: int, after: timedelta) -> str | None:
    async with server.services.db.transaction(write=True) as s:
        call = await voice_repo.get(s, call_id, for_update=True)
        return await actions.browser_watch(s, call, utcnow() + after)


async def test_a_quiet_widget_ends_its_call_and_a_ringing_agent_who_does_not_answer_hands_it_on(server) -> None:
    ids, key = await setup(server)
    v = await visitor_with_conversation(server, key)
    token = await token_for(server, "alice@example.com")
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as alice:
        assert (await alice.put("/api/v1/me/presence", json={"status": "available"})).status_code == 200
        assert (await alice.patch(f"/api/v1/conversations/{v.conversation_id}",
                                  json={"assignee_id": ids["alice"]})).status_code == 200
        call = (await v.post("/widget/calls", {"token": v.token})).json()
        assert call["state"] == "offered"
        assert await watch(server, call["id"], timedelta(seconds=10)) is None  # nothing yet
        # Alice lets it ring past the ring time: it goes back to the queue, and she no longer has it
        r = await v.http.get(f"/widget/calls/{call['id']}", params={"channel": key, "token": v.token})
        assert r.status_code == 200  # (the widget's heartbeat)
        assert await watch(server, call["id"], timedelta(seconds=41)) is None
        row = await call_row(server, call["id"])
        assert row.state == "queued" and row.agent_id is None
        assert (await alice.get(f"/api/v1/calls/{call['id']}/media")).status_code == 403
        # the widget goes quiet (no heartbeat for 45 s): the call ends, the visitor may call again
        assert await watch(server, call["id"], timedelta(seconds=50)) == "the visitor's widget is gone"
        row = await call_row(server, call["id"])
        assert row.state == "ended" and row.end_cause == "abandoned"
        async with server.services.db.transaction(write=False) as s:
            conv = await s.get(ConversationRow, row.conversation_id)
            assert "channel_class" not in (conv.attributes or {})
        again = await v.post("/widget/calls", {"token": v.token})
        assert again.status_code == 201, again.text
    await v.aclose()


async def test_an_agent_who_is_away_is_not_rung_and_a_reassigned_call_rings_the_new_agent(sqlite_server) -> None:
    server = sqlite_server
    ids, key = await setup(server)
    v = await visitor_with_conversation(server, key)
    async with server.services.db.transaction() as s:
        conv = await s.get(ConversationRow, v.conversation_id)
        conv.assignee_id = ids["alice"]  # Alice has the chat but is offline
        conv.attributes = {**(conv.attributes or {}), "channel_class": "messaging"}
    call = (await v.post("/widget/calls", {"token": v.token})).json()
    assert call["state"] == "queued"  # not rung on an offline desk: routing finds someone
    row = await call_row(server, call["id"])
    assert row.details["channel_class_before"] == "messaging"

    sup = await token_for(server, "sup@example.com")
    bob = await token_for(server, "bob@example.com")
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {sup}"}) as c, \
            httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {bob}"}) as b:
        async with server.services.db.transaction() as s:
            await actions.accepted(s, [v.conversation_id], {v.conversation_id: ids["alice"]}, utcnow())
        assert (await call_row(server, call["id"])).agent_id == ids["alice"]
        async with server.services.db.transaction() as s:  # a supervisor gives the conversation to Bob
            (await s.get(ConversationRow, v.conversation_id)).assignee_id = ids["bob"]
            await actions.accepted(s, [v.conversation_id], {v.conversation_id: ids["bob"]}, utcnow())
        row = await call_row(server, call["id"])
        assert row.state == "offered" and row.agent_id == ids["bob"]
        assert (await c.get(f"/api/v1/calls/{call['id']}/media")).status_code == 403  # a supervisor does not answer
        declined = await b.post(f"/api/v1/calls/{call['id']}/decline")  # Bob declines: the next agent
        assert declined.status_code == 200 and declined.json()["state"] == "queued", declined.text
    await v.post(f"/widget/calls/{call['id']}/hangup", {"token": v.token})
    async with server.services.db.transaction(write=False) as s:
        conv = await s.get(ConversationRow, v.conversation_id)
        assert conv.attributes["channel_class"] == "messaging"  # its own class back
    await v.aclose()


async def test_unreadable_descriptions_get_422_and_a_full_process_503(sqlite_server, tmp_path: Path) -> None:
    server = sqlite_server
    ids, key = await setup(server, record="always")
    v = await visitor_with_conversation(server, key)
    call = (await v.post("/widget/calls", {"token": v.token})).json()
    assert call["media"] == "relay"
    for sdp in BAD_SDP:
        r = await v.post(f"/widget/calls/{call['id']}/media", {"token": v.token, "type": "offer", "sdp": sdp})
        assert r.status_code == 422 and r.json()["detail"].startswith("sdp: "), (sdp, r.text)
    assert browser_api.hub(server.services).get(call["id"]) is None  # nothing kept of the failed attempts
    caller = Peer(tone(tmp_path / "v.wav", 440))
    r = await v.post(f"/widget/calls/{call['id']}/media", {"token": v.token, "type": "offer",
                                                             "sdp": await caller.offer()})
    assert r.status_code == 200, r.text
    token = await token_for(server, "alice@example.com")
    async with server.services.db.transaction() as s:
        await actions.accepted(s, [v.conversation_id], {v.conversation_id: ids["alice"]}, utcnow())
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as alice:
        for sdp in BAD_SDP:
            r = await alice.post(f"/api/v1/calls/{call['id']}/media", json={"type": "offer", "sdp": sdp})
            assert r.status_code == 422, (sdp, r.text)

    server.services.voice.media.max_calls = 1  # this process relays one call: the next gets 503
    v2 = type(v)(server, key)
    await v2.start()
    await v2.say("me too", "c9")
    call2 = (await v2.post("/widget/calls", {"token": v2.token})).json()
    busy = await v2.post(f"/widget/calls/{call2['id']}/media", {"token": v2.token, "type": "offer",
                                                                 "sdp": await Peer(tone(tmp_path / "w.wav", 300)).offer()})
    assert busy.status_code == 503 and "can't take more calls" in busy.json()["detail"]

    # the process stops: its relayed call ends in the database (not a call nobody carries)
    await server.services.voice.media.stop()
    row = await call_row(server, call["id"])
    assert row.state == "ended"
    await caller.close()
    await v.aclose()
    await v2.aclose()


async def test_turn_credentials_are_made_per_call_and_agents_use_the_relay_only(tmp_path: Path) -> None:
    from tests.conftest import make_settings
    from threadline.voice.browser.media import MediaHub

    settings = make_settings("sqlite+aiosqlite://", tmp_path, webrtc_turn_urls=["turn:turn.example.com:3478"],
                             webrtc_turn_secret="turn-shared-secret", webrtc_ice_servers=[{"urls": "stun:s.example"}])

    class Voice:
        media = MediaHub(ice_servers=settings.webrtc_ice_servers)

    class Services:
        pass

    services = Services()
    services.settings, services.voice = settings, Voice()  # type: ignore[attr-defined]
    servers = browser_api.ice_servers(services, 42)
    assert servers[0] == {"urls": "stun:s.example"}
    turn = servers[1]
    expiry, name = turn["username"].split(":")
    assert name == "tl-call-42" and int(expiry) > int(utcnow().timestamp()) + 3600
    mac = hmac.new(b"turn-shared-secret", turn["username"].encode(), hashlib.sha1).digest()
    assert turn["credential"] == base64.b64encode(mac).decode()
    assert browser_api.relay_only(services) is True



@pytest.mark.parametrize("record", ["never", "always"])
async def test_a_browser_call_is_transferred_blind_to_another_agent(sqlite_server, tmp_path: Path, record: str) -> None:
    """Alice hands the call to Bob. Peer to peer (``never``), the widget offers again when the call rings
    anew and Bob's answer reaches it; relayed (``always``), the caller hears music until Bob connects to the
    server. Either way Bob hears the caller, and Alice no longer controls the call."""
    server = sqlite_server
    ids, key = await setup(server, record=record)
    v = await visitor_with_conversation(server, key)
    async with server.services.db.transaction() as s:
        await user_actions.set_presence(s, ids["alice"], "available")
        await user_actions.set_presence(s, ids["bob"], "available")
        (await s.get(ConversationRow, v.conversation_id)).assignee_id = ids["alice"]
    alice_token, bob_token = await token_for(server, "alice@example.com"), await token_for(server, "bob@example.com")
    caller, alice, bob = (Peer(tone(tmp_path / f"{n}.wav", hz)) for n, hz in (("v", 440), ("a", 660), ("b", 880)))
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {alice_token}"}) as a, \
            httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {bob_token}"}) as b, \
            v.ws() as vws:
        call = (await v.post("/widget/calls", {"token": v.token})).json()
        base = f"/api/v1/calls/{call['id']}"
        assert call["state"] == "offered", call
        r = await v.post(f"/widget/calls/{call['id']}/media", {"token": v.token, "type": "offer",
                                                                 "sdp": await caller.offer()})
        if record == "never":
            m = (await a.get(f"{base}/media")).json()
            assert (await a.post(f"{base}/media", json={"type": "answer",
                                                         "sdp": await alice.answer(m["offer"])})).status_code == 200
            await caller.accept((await frame(vws, "call_media"))["sdp"])
        else:
            await caller.accept(r.json()["sdp"])
            answer = await a.post(f"{base}/media", json={"type": "offer", "sdp": await alice.offer()})
            await alice.accept(answer.json()["sdp"])
        await caller.hears()

        t = await a.post(f"{base}/transfer", json={"agent_id": ids["bob"]})
        assert t.status_code == 200 and "Bob" in t.json()["detail"], t.text
        assert (await call_row(server, call["id"])).agent_id == ids["bob"]
        assert (await a.post(f"{base}/hangup")).status_code in (403, 404, 409)  # not Alice's call any more
        if record == "never":  # the widget sees the call ringing again and offers to whoever answers
            states: list[str] = []
            while states[-1:] != ["offered"] or "connected" not in states:
                states.append((await frame(vws, "call"))["state"])
            await caller.close()
            caller = Peer(tone(tmp_path / "v2.wav", 440))
            await v.post(f"/widget/calls/{call['id']}/media", {"token": v.token, "type": "offer",
                                                                 "sdp": await caller.offer()})
            m = (await b.get(f"{base}/media")).json()
            r = await b.post(f"{base}/media", json={"type": "answer", "sdp": await bob.answer(m["offer"])})
            assert r.status_code == 200, r.text
            await caller.accept((await frame(vws, "call_media"))["sdp"])
        else:
            await caller.hears(10)  # music while Bob's desk rings
            answer = await b.post(f"{base}/media", json={"type": "offer", "sdp": await bob.offer()})
            assert answer.status_code == 200, answer.text
            await bob.accept(answer.json()["sdp"])
        await caller.hears(25)
        await bob.hears(25)  # Bob hears the caller
        assert (await b.post(f"{base}/hangup")).status_code == 200
    for p in (caller, alice, bob):
        await p.close()
    await v.aclose()


async def test_a_supervisor_listens_whispers_and_joins_a_relayed_browser_call(sqlite_server, tmp_path: Path) -> None:
    """With their own browser: listening hears both parties; a whisper reaches the agent only; joining
    reaches both. A peer-to-peer call has no audio on the server (409); an agent may not listen (403)."""
    import asyncio

    server = sqlite_server
    ids, key = await setup(server, record="always")
    v = await visitor_with_conversation(server, key)
    async with server.services.db.transaction() as s:
        await user_actions.set_presence(s, ids["alice"], "available")
        (await s.get(ConversationRow, v.conversation_id)).assignee_id = ids["alice"]
    alice_token, sup_token = await token_for(server, "alice@example.com"), await token_for(server, "sup@example.com")
    caller, alice, sup = (Peer(tone(tmp_path / f"{n}.wav", hz)) for n, hz in (("v", 440), ("a", 660), ("s", 880)))
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {alice_token}"}) as a, \
            httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {sup_token}"}) as su:
        call = (await v.post("/widget/calls", {"token": v.token})).json()
        base = f"/api/v1/calls/{call['id']}"
        r = await v.post(f"/widget/calls/{call['id']}/media", {"token": v.token, "type": "offer",
                                                                 "sdp": await caller.offer()})
        await caller.accept(r.json()["sdp"])
        answer = await a.post(f"{base}/media", json={"type": "offer", "sdp": await alice.offer()})
        await alice.accept(answer.json()["sdp"])
        await alice.hears()
        live = (await su.get("/api/v1/calls/live")).json()
        assert [(c["provider"], c["media"]) for c in live] == [("webrtc", "relay")]
        assert (await a.post(f"{base}/monitor", json={"mode": "listen", "sdp": await sup.offer()})).status_code == 403
        assert (await su.post(f"{base}/monitor", json={"mode": "listen"})).status_code == 422  # needs an offer

        r = await su.post(f"{base}/monitor", json={"mode": "listen", "sdp": sup.pc.localDescription.sdp})
        assert r.status_code == 200 and r.json()["detail"] == "listening" and r.json()["sdp"], r.text
        await sup.accept(r.json()["sdp"])
        await sup.hears(25)  # both parties, mixed
        mc = browser_api.hub(server.services).get(call["id"])
        assert mc is not None and mc.to_agent.pace.mixed == 0 and mc.to_customer.pace.mixed == 0
        for mode, customer_mixed in (("whisper", False), ("barge", True)):
            await sup.close()
            sup = Peer(tone(tmp_path / "s.wav", 880))
            before = (mc.to_agent.pace.mixed, mc.to_customer.pace.mixed)
            r = await su.post(f"{base}/monitor", json={"mode": mode, "sdp": await sup.offer()})
            assert r.status_code == 200, r.text
            await sup.accept(r.json()["sdp"])
            await sup.hears(25)
            async with asyncio.timeout(10):  # the supervisor's voice reaches the agent (and, joining, the caller)
                while mc.to_agent.pace.mixed - before[0] < 25:
                    await alice.hears(5)
            await caller.hears(25)
            assert (mc.to_customer.pace.mixed > before[1]) is customer_mixed, (mode, mc.to_customer.pace)
        assert (await su.delete(f"{base}/monitor")).status_code == 200
        assert mc.monitors == {}
        assert (await a.post(f"{base}/hangup")).status_code == 200
    for p in (caller, alice, sup):
        await p.close()
    await v.aclose()


async def test_a_peer_to_peer_browser_call_cannot_be_listened_to(sqlite_server, tmp_path: Path) -> None:
    server = sqlite_server
    ids, key = await setup(server)
    v = await visitor_with_conversation(server, key)
    async with server.services.db.transaction() as s:
        await user_actions.set_presence(s, ids["alice"], "available")
        (await s.get(ConversationRow, v.conversation_id)).assignee_id = ids["alice"]
    alice_token, sup_token = await token_for(server, "alice@example.com"), await token_for(server, "sup@example.com")
    caller, alice = Peer(tone(tmp_path / "v.wav", 440)), Peer(tone(tmp_path / "a.wav", 660))
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {alice_token}"}) as a, \
            httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {sup_token}"}) as su:
        call = (await v.post("/widget/calls", {"token": v.token})).json()
        await v.post(f"/widget/calls/{call['id']}/media", {"token": v.token, "type": "offer", "sdp": await caller.offer()})
        m = (await a.get(f"/api/v1/calls/{call['id']}/media")).json()
        assert (await a.post(f"/api/v1/calls/{call['id']}/media",
                             json={"type": "answer", "sdp": await alice.answer(m["offer"])})).status_code == 200
        r = await su.post(f"/api/v1/calls/{call['id']}/monitor", json={"mode": "listen", "sdp": await Peer(
            tone(tmp_path / "s.wav", 880)).offer()})
        assert r.status_code == 409 and "peer to peer" in r.json()["detail"]
    for p in (caller, alice):
        await p.close()
    await v.aclose()
