"""Web chat over real HTTP and websockets (SQLite and PostgreSQL): origins, visitor sessions and signed
identities, messages through the durable inbox, live replies with resume by seq, typing, receipts,
the visitor's place in the routing queue, attachments with limits, the offline form, CSAT, rate limits,
and the adapter's own rules."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import websockets

from tests.conftest import PASSWORD, seed_basics
from threadline.actions import channels as channel_actions
from threadline.actions import users as user_actions
from threadline.actions.channels import load_config
from threadline.channels.base import InvalidSignature
from threadline.channels.webchat import WebChatChannel, identity_hash
from threadline.domain.events import RoutingState
from threadline.domain.stream import Published

ORIGIN = "http://shop.example"
IDENTITY_SECRET = "host-site-identity-secret"


async def make_channel(server, ids: dict[str, int], **config: object) -> str:  # type: ignore[no-untyped-def]
    cfg = {"allowed_origins": [ORIGIN], "identity_secret": IDENTITY_SECRET,
           "prechat_fields": ["name", "email", "topic"],
           "topics": [{"label": "Billing", "queue_id": ids["billing"]}], **config}
    async with server.services.db.transaction() as s:
        row = await channel_actions.create_channel(s, server.services.box, kind="webchat", name="Chat",
                                                   default_queue_id=ids["general"], config=cfg)
        await user_actions.set_presence(s, ids["alice"], "available")
    return row.key


class Visitor:
    """A widget's calls, as the browser makes them (text/plain JSON, Origin header)."""

    def __init__(self, server, key: str, origin: str = ORIGIN) -> None:  # type: ignore[no-untyped-def]
        self.server, self.key = server, key
        self.http = httpx.AsyncClient(base_url=server.url, headers={"Origin": origin})
        self.token = ""

    async def post(self, path: str, body: dict, **params: object) -> httpx.Response:
        return await self.http.post(path, params={"channel": self.key, **params}, content=json.dumps(body),
                                    headers={"content-type": "text/plain;charset=UTF-8"})

    async def start(self, **body: object) -> dict:
        r = await self.post("/widget/session", {"token": self.token or None, **body})
        assert r.status_code == 200, r.text
        self.token = r.json()["token"]
        return r.json()

    async def say(self, text: str, client_id: str, **extra: object) -> httpx.Response:
        return await self.post("/widget/messages", {"token": self.token, "client_id": client_id, "text": text, **extra})

    async def history(self) -> dict:
        r = await self.http.get("/widget/history", params={"channel": self.key, "token": self.token})
        assert r.status_code == 200, r.text
        return r.json()

    def ws(self, after: int | None = None):  # type: ignore[no-untyped-def]
        url = f"{self.server.ws_url}/widget/ws?channel={self.key}&token={self.token}"
        return websockets.connect(url + (f"&after={after}" if after is not None else ""),
                                  additional_headers={"Origin": ORIGIN})

    async def aclose(self) -> None:
        await self.http.aclose()


async def agent(server, email: str = "alice@example.com") -> httpx.AsyncClient:  # type: ignore[no-untyped-def]
    c = httpx.AsyncClient(base_url=server.url)
    r = await c.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    c.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    return c


async def frame(ws, kind: str, timeout: float = 5.0) -> dict:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while True:
            f = json.loads(await ws.recv())
            if f["type"] == kind:
                return f


async def queue_frame(ws, pred=lambda f: True, timeout: float = 10.0) -> dict:  # type: ignore[no-untyped-def]
    """The next ``queue`` frame (place in the routing queue) that matches ``pred``."""
    async with asyncio.timeout(timeout):
        while True:
            f = json.loads(await ws.recv())
            if f["type"] == "queue" and pred(f):
                return f


async def test_origins_config_and_a_message_through_the_inbox(server) -> None:
    ids = await seed_basics(server.services)
    key = await make_channel(server, ids)
    v = Visitor(server, key)
    try:
        r = await v.http.get("/widget/config", params={"channel": key})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == ORIGIN
        assert r.json()["online"] is True and r.json()["topics"] == ["Billing"]
        evil = Visitor(server, key, origin="http://evil.example")
        refused = await evil.http.get("/widget/config", params={"channel": key})
        assert refused.status_code == 403 and "may not show this chat" in refused.json()["detail"]
        assert (await evil.post("/widget/session", {})).status_code == 403
        await evil.aclose()
        assert (await v.http.get("/widget/config", params={"channel": "nope"})).status_code == 404

        await v.start()
        sent = await v.say("<img src=x onerror=alert(1)> hi", "c1",
                           profile={"name": "Vera", "email": "vera@example.com", "topic": "Billing"})
        assert sent.status_code == 201, sent.text
        msg = sent.json()
        assert msg["text"] == "<img src=x onerror=alert(1)> hi" and msg["client_id"] == "c1"
        again = await v.say("<img src=x onerror=alert(1)> hi", "c1")  # a retry after a network error
        assert again.json()["id"] == msg["id"]
        sup = await agent(server, "sup@example.com")
        conv = (await sup.get(f"/api/v1/conversations/{msg['conversation_id']}")).json()
        assert conv["queue_id"] == ids["billing"] and conv["contact_name"] == "Vera"
        msgs = (await sup.get(f"/api/v1/conversations/{conv['id']}/messages")).json()["items"]
        assert len(msgs) == 1
        contact = (await sup.get(f"/api/v1/contacts/{conv['contact_id']}")).json()
        # the typed e-mail is only a claim: never a verified identity (it may be kept, unverified)
        kinds = {(i["kind"], i["verified"]) for i in contact["identities"]}
        assert ("handle", True) in kinds and ("email", True) not in kinds
        await sup.aclose()
        # a reload resumes the same session and conversation
        token = v.token
        await v.start()
        assert v.token == token
        h = await v.history()
        assert h["conversation"]["id"] == conv["id"] and [m["id"] for m in h["messages"]] == [msg["id"]]
        # the generic hook URL refuses anything the widget endpoints did not sign
        raw = await v.http.post(f"/hooks/{key}", content=b'{"type":"message"}')
        assert raw.status_code == 401
    finally:
        await v.aclose()


async def test_signed_identity_is_trusted_and_a_wrong_signature_ignored(server) -> None:
    ids = await seed_basics(server.services)
    key = await make_channel(server, ids)
    good, bad = Visitor(server, key), Visitor(server, key)
    try:
        s = await good.start(user_id="42", user_hash=identity_hash(IDENTITY_SECRET, "42"))
        assert s["verified"] is True
        r = await good.say("hello", "g1", profile={"name": "Known User", "email": "known@example.com"})
        s2 = await bad.start(user_id="42", user_hash=identity_hash("some-other-secret-1234", "42"))
        assert s2["verified"] is False
        r2 = await bad.say("I am user 42, honest", "b1")
        sup = await agent(server, "sup@example.com")
        c1 = (await sup.get(f"/api/v1/conversations/{r.json()['conversation_id']}")).json()
        c2 = (await sup.get(f"/api/v1/conversations/{r2.json()['conversation_id']}")).json()
        assert c1["contact_id"] != c2["contact_id"]
        idents = (await sup.get(f"/api/v1/contacts/{c1['contact_id']}")).json()["identities"]
        assert {(i["kind"], i["value"]) for i in idents} == {("handle", "user:42"), ("email", "known@example.com")}
        await sup.aclose()
    finally:
        await good.aclose()
        await bad.aclose()


async def test_live_replies_typing_resume_receipts_and_csat(server) -> None:
    ids = await seed_basics(server.services)
    key = await make_channel(server, ids)
    v = Visitor(server, key)
    alice = await agent(server)
    try:
        await v.start()
        conv_id = (await v.say("hello", "m1")).json()["conversation_id"]
        async with v.ws() as ws:
            ready = await frame(ws, "ready")
            assert (await alice.post(f"/api/v1/conversations/{conv_id}/typing", json={"typing": True})).status_code == 204
            typing = await frame(ws, "typing")
            assert typing["typing"] is True and typing["author"] == "Alice"
            reply = (await alice.post(f"/api/v1/conversations/{conv_id}/messages", json={"text": "Hi, Alice here"})).json()
            got = await frame(ws, "message")
            assert got["message"]["id"] == reply["id"] and got["message"]["from"] == "agent"
            assert got["message"]["author"] == "Alice" and got["seq"] > ready["seq"]
            status = await frame(ws, "status")  # the adapter confirmed it: sent
            assert status == {**status, "id": reply["id"], "status": "sent"}
            # the agent has seen the visitor's message: the widget can show "Seen"
            first_id = (await v.history())["messages"][0]["id"]
            marked = await alice.post(f"/api/v1/conversations/{conv_id}/read", json={})
            assert marked.json() == {"marked": [first_id]}
            seen = await frame(ws, "status")
            assert seen == {**seen, "id": first_id, "status": "read"}
            assert (await alice.post(f"/api/v1/conversations/{conv_id}/read", json={})).json() == {"marked": []}
            last = seen["seq"]
        # dropped: two replies and a note while away; back with after=<last seq>: both replies, once, no note
        r1 = (await alice.post(f"/api/v1/conversations/{conv_id}/messages", json={"text": "one"})).json()
        await alice.post(f"/api/v1/conversations/{conv_id}/notes", json={"text": "internal only"})
        r2 = (await alice.post(f"/api/v1/conversations/{conv_id}/messages", json={"text": "two"})).json()
        async with v.ws(after=last) as ws:
            await frame(ws, "ready")
            seen: list[int] = []
            async with asyncio.timeout(5):
                while len(seen) < 2:
                    f = json.loads(await ws.recv())
                    if f["type"] == "message":
                        seen.append(f["message"]["id"])
            assert seen == [r1["id"], r2["id"]]
            # the visitor read them: receipts come back through the inbox as delivery statuses
            rr = await v.post("/widget/receipts", {"token": v.token, "status": "read",
                                                   "message_ids": [reply["id"], r1["id"], r2["id"]]})
            assert rr.status_code == 200
            msgs = (await alice.get(f"/api/v1/conversations/{conv_id}/messages")).json()["items"]
            by_id = {m["id"]: m for m in msgs}
            assert by_id[reply["id"]]["delivery_status"] == "read"
            # the agent resolves: the widget hears it and asks for a rating
            assert (await alice.patch(f"/api/v1/conversations/{conv_id}", json={"status": "resolved"})).status_code == 200
            conv_frame = await frame(ws, "conversation")
            assert conv_frame["status"] == "resolved"
        early = await v.post("/widget/csat", {"token": v.token, "conversation_id": conv_id, "rating": 6})
        assert early.status_code == 422
        ok = await v.post("/widget/csat", {"token": v.token, "conversation_id": conv_id, "rating": 5,
                                           "comment": "Quick and kind"})
        assert ok.status_code == 201, ok.text
        contact_id = (await alice.get(f"/api/v1/conversations/{conv_id}")).json()["contact_id"]
        csat = (await alice.get(f"/api/v1/contacts/{contact_id}/csat")).json()
        assert [(c["rating"], c["comment"]) for c in csat["items"]] == [(5, "Quick and kind")]
        assert csat["average"] == 5
        # another visitor cannot rate (or see) this conversation
        other = Visitor(server, key)
        await other.start()
        await other.say("hi", "o1")
        stranger = await other.post("/widget/csat", {"token": other.token, "conversation_id": conv_id, "rating": 1})
        assert stranger.status_code == 404
        await other.aclose()
        # after a resolve the next message starts a new conversation
        new_conv = (await v.say("one more thing", "m2")).json()["conversation_id"]
        assert new_conv != conv_id
    finally:
        await v.aclose()
        await alice.aclose()


async def test_a_waiting_visitor_sees_their_place_in_the_queue_until_an_agent_takes_it(server) -> None:
    """The routing worker runs in the server; nobody is available, so the visitors' conversations wait."""
    ids = await seed_basics(server.services)
    async with server.services.db.transaction() as s:
        night = await user_actions.create_queue(s, "night", {"hours": {"timezone": "UTC", "weekly": {}}})  # never open
    key = await make_channel(server, ids, topics=[{"label": "Night", "queue_id": night.id}])
    async with server.services.db.transaction() as s:
        await user_actions.set_presence(s, ids["alice"], "offline")
    hub = server.services.integrations["webchat"].runtime.hub
    first, second, late = Visitor(server, key), Visitor(server, key), Visitor(server, key)
    sup, alice = await agent(server, "sup@example.com"), await agent(server)
    state = Published(RoutingState(at=0, queues=[], agents=[]), 0, datetime.now(UTC))
    try:
        for v in (first, second, late):
            await v.start()
        a = (await first.say("hello", "a1")).json()["conversation_id"]
        b = (await second.say("hello too", "b1")).json()["conversation_id"]
        async with first.ws() as ws1, second.ws() as ws2:
            assert await queue_frame(ws1, lambda f: f["waiting"]) == {
                "type": "queue", "waiting": True, "conversation_id": a, "position": 1, "ewt": None, "closed": False}
            f2 = await queue_frame(ws2, lambda f: f["waiting"])
            assert (f2["conversation_id"], f2["position"], f2["ewt"], f2["closed"]) == (b, 2, None, False)

            # a burst of router rounds costs one positions query per refresh interval, not one per event
            before = hub.queries
            for _ in range(50):
                hub.on_routing_state(state)
            assert hub._refresher is not None
            await hub._refresher
            assert 1 <= hub.queries - before <= 2

            # an agent takes the first conversation: its notice goes, and the queue moves for the second
            r = await sup.patch(f"/api/v1/conversations/{a}", json={"assignee_id": ids["alice"]})
            assert r.status_code == 200, r.text
            assert await queue_frame(ws1) == {"type": "queue", "waiting": False}
            moved = await queue_frame(ws2)
            assert (moved["conversation_id"], moved["position"]) == (b, 1)
            # alice is back, but her one chat slot is taken: the second gets an estimated wait
            r = await sup.put(f"/api/v1/routing/agents/{ids['alice']}", json={"capacity": {"chat": 1}})
            assert r.status_code == 204, r.text
            async with server.services.db.transaction() as s:
                await user_actions.set_presence(s, ids["alice"], "available")
            estimate = await queue_frame(ws2, lambda f: f.get("ewt") is not None)
            assert (estimate["conversation_id"], estimate["position"], estimate["closed"]) == (b, 1, False)
            assert estimate["ewt"] > 0

            # an agent answers the second one: the reply, then the notice goes
            reply = (await alice.post(f"/api/v1/conversations/{b}/messages", json={"text": "Hi, Alice here"})).json()
            assert (await frame(ws2, "message"))["message"]["id"] == reply["id"]
            assert await queue_frame(ws2) == {"type": "queue", "waiting": False}
            # the visitor's follow-up does not put them back in line: they have been answered
            await second.say("thanks!", "b2")
            await frame(ws2, "message")  # their own message: the hub has seen it
            await hub.refresh()

            # nobody connected here waits now: the router's rounds cost no query
            assert not any(v.maybe_waiting for v in hub.visitors)
            scheduled: list[bool] = []
            hub.schedule = lambda: scheduled.append(True)  # type: ignore[method-assign]
            hub.on_routing_state(state)
            del hub.schedule
            assert scheduled == []
        for v in (first, second):  # reconnecting: told at once that they no longer wait
            async with v.ws() as again:
                assert await queue_frame(again) == {"type": "queue", "waiting": False}

        # a visitor already connected writes in a queue outside its business hours: "closed", not a place
        async with late.ws() as ws3:
            await frame(ws3, "ready")
            c = (await late.say("anyone there?", "c1", profile={"topic": "Night"})).json()["conversation_id"]
            closed = await queue_frame(ws3, lambda f: f["waiting"])
            assert (closed["conversation_id"], closed["closed"]) == (c, True)
            assert (await sup.patch(f"/api/v1/conversations/{c}", json={"status": "resolved"})).status_code == 200
            assert await queue_frame(ws3) == {"type": "queue", "waiting": False}
    finally:
        for v in (first, second, late):
            await v.aclose()
        await sup.aclose()
        await alice.aclose()


def test_an_agent_reply_counts_as_an_answer_until_the_conversation_waits_anew() -> None:
    from threadline.channels.webchat.repo import QueueWait

    at = datetime(2026, 1, 5, 12, tzinfo=UTC)

    def wait(reply_id: int | None, activity_id: int | None, enqueued_at: datetime) -> QueueWait:
        return QueueWait(1, "open", None, 1, reply_id, at if reply_id else None, activity_id, "waiting", enqueued_at,
                         1, None, 1, {})

    queued = at - timedelta(seconds=60)
    assert not wait(None, None, queued).answered  # nobody has written yet
    assert wait(5, 3, queued).answered  # an agent replied after it started waiting (a follow-up changes nothing)
    assert not wait(5, 7, queued).answered  # then given back, moved or reopened (an activity line): waiting anew
    assert not wait(5, None, at + timedelta(seconds=60)).answered  # queued again after the reply (pending → open)


async def test_visitor_typing_reaches_the_agents_stream(server) -> None:
    ids = await seed_basics(server.services)
    key = await make_channel(server, ids)
    v = Visitor(server, key)
    alice = await agent(server)
    try:
        await v.start()
        # before the first message there is no conversation: nothing to tell anyone
        assert (await v.post("/widget/typing", {"token": v.token, "typing": True})).json()["sent"] is False
        conv_id = (await v.say("hello", "t0")).json()["conversation_id"]
        token = (await alice.post("/api/v1/tokens", json={"name": "stream"})).json()["token"]
        async with websockets.connect(f"{server.ws_url}/api/v1/stream?token={token}") as stream:
            assert json.loads(await stream.recv())["name"] == "stream.ready"
            assert (await v.post("/widget/typing", {"token": v.token, "typing": True})).json()["sent"] is True
            async with asyncio.timeout(5):
                while True:
                    event = json.loads(await stream.recv())
                    if event["name"] == "conversation.typing":
                        break
            assert event["data"] == {"name": "conversation.typing", "conversation_id": conv_id, "who": "visitor",
                                     "user_id": None, "typing": True}
        # an agent who cannot see the conversation cannot type in it
        bob = await agent(server, "bob@example.com")
        assert (await bob.post(f"/api/v1/conversations/{conv_id}/typing", json={"typing": True})).status_code == 404
        await bob.aclose()
    finally:
        await v.aclose()
        await alice.aclose()


async def test_attachments_limits_and_downloads(server) -> None:
    ids = await seed_basics(server.services)
    key = await make_channel(server, ids, max_attachment_bytes=2048)
    v = Visitor(server, key)
    try:
        await v.start()
        up = "/widget/attachments"
        params = {"channel": key, "token": v.token}
        bad_type = await v.http.post(up, params=params, files={"file": ("x.html", b"<script>", "text/html")})
        assert bad_type.status_code == 415 and "text/html" in bad_type.json()["detail"]
        too_big = await v.http.post(up, params=params, files={"file": ("big.png", b"0" * 4096, "image/png")})
        assert too_big.status_code == 413 and "2 KB" in too_big.json()["detail"]
        ok = await v.http.post(up, params=params, files={"file": ("receipt.pdf", b"%PDF-1.4 tiny", "application/pdf")})
        assert ok.status_code == 201, ok.text
        sent = await v.say("", "a1", attachments=[ok.json()["id"]])
        assert sent.status_code == 201, sent.text
        att = sent.json()["attachments"][0]
        assert att["url"] == f"/widget/attachments/{ok.json()['id']}" and att["name"] == "receipt.pdf"
        mine = await v.http.get(att["url"], params=params)
        assert mine.status_code == 200 and mine.content == b"%PDF-1.4 tiny"
        alice = await agent(server)
        agent_view = await alice.get(f"/api/v1/attachments/{ok.json()['id']}")
        assert agent_view.status_code == 200
        await alice.aclose()
        other = Visitor(server, key)
        await other.start()
        assert (await other.http.get(att["url"], params={"channel": key, "token": other.token})).status_code == 404
        await other.aclose()
    finally:
        await v.aclose()


async def test_a_flood_from_one_visitor_does_not_affect_another(server) -> None:
    ids = await seed_basics(server.services)
    key = await make_channel(server, ids, messages_per_minute=5)
    flood, calm = Visitor(server, key), Visitor(server, key)
    try:
        await flood.start()
        await calm.start()
        codes = [(await flood.say(f"spam {i}", f"s{i}")).status_code for i in range(8)]
        assert codes[:5] == [201] * 5 and codes[5:] == [429] * 3
        assert (await calm.say("hello", "c1")).status_code == 201
    finally:
        await flood.aclose()
        await calm.aclose()


async def test_offline_form_needs_an_email_and_reaches_the_inbox(server) -> None:
    ids = await seed_basics(server.services)
    key = await make_channel(server, ids)
    async with server.services.db.transaction() as s:
        await user_actions.set_presence(s, ids["alice"], "offline")
    v = Visitor(server, key)
    try:
        assert (await v.http.get("/widget/config", params={"channel": key})).json()["online"] is False
        await v.start()
        no_email = await v.say("call me back", "o1", offline=True)
        assert no_email.status_code == 422
        ok = await v.say("call me back", "o2", offline=True, profile={"name": "Olga", "email": "olga@example.com"})
        assert ok.status_code == 201
        assert "olga@example.com" in ok.json()["text"]
    finally:
        await v.aclose()


async def test_a_message_left_with_the_offline_form_shows_no_place_in_the_queue(server) -> None:
    """Issue 12 item 17: it is answered by e-mail; a chat visitor in the same queue still sees their place."""
    ids = await seed_basics(server.services)
    key = await make_channel(server, ids)
    async with server.services.db.transaction() as s:
        await user_actions.set_presence(s, ids["alice"], "offline")
    olga, chat = Visitor(server, key), Visitor(server, key)
    try:
        await olga.start()
        await chat.start()
        left = await olga.say("call me back", "o1", offline=True, profile={"name": "Olga", "email": "olga@example.com"})
        assert left.status_code == 201, left.text
        async with olga.ws() as ws1, chat.ws() as ws2:
            await frame(ws1, "ready")
            assert await queue_frame(ws1) == {"type": "queue", "waiting": False}
            # the chat visitor writes in the same queue and gets a place: the router has ranked both
            c = (await chat.say("hello?", "c1")).json()["conversation_id"]
            placed = await queue_frame(ws2, lambda f: f["waiting"])
            assert placed["conversation_id"] == c
        async with olga.ws() as again:  # a new connection after the router's rounds: still no place
            assert await queue_frame(again) == {"type": "queue", "waiting": False}
            # a follow-up in the chat does not put the offline message in line either
            await olga.say("it is about order 42", "o2")
            await frame(again, "message")
            hub = server.services.integrations["webchat"].runtime.hub
            await hub.refresh()
            conv_id = left.json()["conversation_id"]
            assert all(conv_id not in v.maybe_waiting for v in hub.visitors)
    finally:
        await olga.aclose()
        await chat.aclose()


async def test_a_foreign_origin_websocket_is_refused(server) -> None:
    ids = await seed_basics(server.services)
    key = await make_channel(server, ids)
    v = Visitor(server, key)
    try:
        await v.start()
        url = f"{server.ws_url}/widget/ws?channel={key}&token={v.token}"
        async with websockets.connect(url, additional_headers={"Origin": "http://evil.example"}) as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
        assert closed.value.rcvd.code == 4003
        async with websockets.connect(url.replace(v.token, v.token[:-2] + "xx"),
                                      additional_headers={"Origin": ORIGIN}) as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
        assert closed.value.rcvd.code == 4001
    finally:
        await v.aclose()


def test_adapter_tokens_identity_hash_and_config(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # The reference vector Chatwoot documents for the same HMAC-SHA256(secret, user id) scheme.
    assert identity_hash("webwidget-hmac-token", "user-42") == \
        "99bf6e9eef2db00b5570f2627fbad6cfefbc2b775f7248bbc0337f1dab13fe7f"
    cfg = WebChatChannel.Config.model_validate({"allowed_origins": ["https://Shop.example.com/"],
                                                "identity_secret": "x" * 20,
                                                "allowed_attachment_types": ["image/*", "application/pdf"]})
    a = WebChatChannel(cfg, None, scope="7")  # type: ignore[arg-type]
    other = WebChatChannel(cfg, None, scope="8")  # type: ignore[arg-type]
    assert a.origin_allowed("https://shop.example.com") and not a.origin_allowed("https://shop.example.com.evil.io")
    assert a.attachment_allowed("image/webp") and not a.attachment_allowed("image-ish/png")
    token = a.issue_token("vis", "u1")
    assert a.read_token(token).user_id == "u1"
    with pytest.raises(InvalidSignature):
        other.read_token(token)  # another channel's token
    head, payload, mac = token.split(".")
    with pytest.raises(InvalidSignature):
        a.read_token(f"{head}.{payload}x.{mac}")
    assert a.verified_user("u1", identity_hash("x" * 20, "u1")) == "u1"
    assert a.verified_user("u1", identity_hash("y" * 20, "u1")) is None
    assert a.verified_user("u1", None) is None
    with pytest.raises(ValueError):
        WebChatChannel.Config.model_validate({"allowed_origins": ["https://shop.example.com/path"]})
    # a webchat config survives the encrypted round trip (plain JSON values only)
    from threadline.security import SecretBox

    box = SecretBox("k" * 32)
    from threadline.actions.channels import dump_config
    from threadline.db.models import ChannelInstanceRow

    row = ChannelInstanceRow(kind="webchat", config_encrypted=box.encrypt(dump_config(cfg)))
    assert load_config(box, row) == cfg


def test_rate_limiter_window_is_per_key() -> None:
    from threadline.domain.ratelimit import RateLimiter

    rl = RateLimiter(max_keys=10)
    assert [rl.allow("a", 2, 60, now=t) for t in (0, 1, 2)] == [True, True, False]
    assert rl.allow("b", 2, 60, now=2)  # another visitor is not affected
    assert rl.allow("a", 2, 60, now=60.5)  # the first hit left the window
    for i in range(20):  # many keys: stale ones are forgotten, memory stays bounded
        rl.allow(("k", i), 1, 60, now=200 + i * 61)
    assert len(rl._hits) <= 10
