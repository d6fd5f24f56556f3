"""End to end over real HTTP and real websockets: a signed inbound message reaches the agent's stream;
bad signatures, replays and bad payloads are refused or dropped; replies go out through the outbox
with retries; the stream filters by audience and resumes after a drop with nothing lost or doubled."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
import websockets
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from tests.conftest import PASSWORD, make_server, run_server, seed_basics

from threadline.db.repos import channels as channels_repo
from threadline.security import sign, signature_matches

SECRET = "s3cret-s3cret-s3cret"


def signed(body: dict, secret: str = SECRET, ts: int | None = None) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    stamp = str(ts if ts is not None else int(time.time()))
    return raw, {"content-type": "application/json", "x-threadline-timestamp": stamp,
                 "x-threadline-signature": sign(secret, raw, stamp)}


async def hook_url(server, channel_id: int) -> str:  # type: ignore[no-untyped-def]
    async with server.services.db.transaction(write=False) as s:
        return f"/hooks/{(await channels_repo.get_channel(s, channel_id)).key}"


async def token_for(server, email: str) -> str:  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient(base_url=server.url) as c:
        r = await c.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        c.headers["X-CSRF-Token"] = r.json()["csrf_token"]
        return (await c.post("/api/v1/tokens", json={"name": "t"})).json()["token"]


async def next_event(ws, name: str, timeout: float = 5.0) -> dict:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while True:
            msg = json.loads(await ws.recv())
            if msg["name"] == name:
                return msg


async def test_signed_inbound_reaches_the_agent_stream_and_replays_are_dropped(server) -> None:
    ids = await seed_basics(server.services)
    url = await hook_url(server, ids["channel"])
    alice = await token_for(server, "alice@example.com")
    async with websockets.connect(f"{server.ws_url}/api/v1/stream?token={alice}") as ws:
        assert json.loads(await ws.recv())["name"] == "stream.ready"
        body, headers = signed({"id": "m-1", "contact": {"id": "cust-1", "name": "Maria", "phone": "+39 06 1234 5678"},
                                "text": "<script>alert(1)</script> hello"})
        async with httpx.AsyncClient(base_url=server.url) as c:
            r = await c.post(url, content=body, headers=headers)
            assert r.status_code == 200
            event = await next_event(ws, "message.created")
            assert event["data"]["message"]["text"] == "<script>alert(1)</script> hello"
            # the provider retries the same id: acknowledged, stored once
            again = await c.post(url, content=body, headers=headers)
            assert again.status_code == 200
            c.headers["Authorization"] = f"Bearer {alice}"
            convs = (await c.get("/api/v1/conversations")).json()["items"]
            assert len(convs) == 1 and convs[0]["contact_name"] == "Maria"
            msgs = (await c.get(f"/api/v1/conversations/{convs[0]['id']}/messages")).json()["items"]
            assert [m["direction"] for m in msgs] == ["in"]
            contact = (await c.get(f"/api/v1/contacts/{convs[0]['contact_id']}")).json()
            assert {(i["kind"], i["value"]) for i in contact["identities"]} >= {("phone", "+390612345678")}


async def test_forged_stale_and_malformed_inbound_are_refused_and_nothing_is_stored(server) -> None:
    ids = await seed_basics(server.services)
    url = await hook_url(server, ids["channel"])
    payload = {"id": "m-1", "contact": {"id": "c"}, "text": "hi"}
    async with httpx.AsyncClient(base_url=server.url) as c:
        body, headers = signed(payload, secret="wrong-secret-wrong-secret")
        r = await c.post(url, content=body, headers=headers)
        assert r.status_code == 401 and "signature" in r.json()["detail"]
        body, headers = signed(payload, ts=int(time.time()) - 3600)
        r = await c.post(url, content=body, headers=headers)
        assert r.status_code == 401 and "stale" in r.json()["detail"]
        r = await c.post(url, content=b"{}", headers={"content-type": "application/json"})
        assert r.status_code == 401
        raw = b"{not json"
        stamp = str(int(time.time()))
        r = await c.post(url, content=raw, headers={"x-threadline-timestamp": stamp,
                                                    "x-threadline-signature": sign(SECRET, raw, stamp)})
        assert r.status_code == 400 and "JSON" in r.json()["detail"]
        body, headers = signed({"id": "m-2", "contact": {"id": "c"}, "text": "x", "colour": "red"})
        r = await c.post(url, content=body, headers=headers)
        assert r.status_code == 400 and "colour" in r.json()["detail"]
        body, headers = signed({"id": "m-3", "contact": {"id": "c", "phone": "12"}, "text": "x"})
        r = await c.post(url, content=body, headers=headers)
        assert r.status_code == 400 and "phone" in r.json()["detail"]
        r = await c.post("/hooks/no-such-channel", content=b"{}")
        assert r.status_code == 404
    async with server.services.db.transaction(write=False) as s:
        from sqlalchemy import func, select

        from threadline.db.models import InboxItemRow, MessageRow

        assert (await s.execute(select(func.count()).select_from(InboxItemRow))).scalar_one() == 0
        assert (await s.execute(select(func.count()).select_from(MessageRow))).scalar_one() == 0


class FakeReceiver:
    """A partner system on loopback that receives our outbound webhooks: fails first, then accepts."""

    def __init__(self, plan: list[int]) -> None:
        self.plan = plan
        self.calls: list[dict] = []
        self.done = asyncio.Event()
        self.app = Starlette(routes=[Route("/inbox", self.inbox, methods=["POST"])])

    async def inbox(self, request: Request) -> JSONResponse:
        body = await request.body()
        ok = signature_matches(SECRET, body, request.headers["x-threadline-signature"],
                               request.headers["x-threadline-timestamp"])
        self.calls.append({"body": json.loads(body), "signature_ok": ok})
        status = self.plan.pop(0) if self.plan else 200
        if not self.plan:
            self.done.set()
        if status >= 400:
            return JSONResponse({"error": "nope"}, status_code=status)
        return JSONResponse({"id": f"partner-{len(self.calls)}"})


@pytest.mark.parametrize(("plan", "final"), [([503, 429, 200], "sent"), ([400], "failed")])
async def test_replies_go_out_through_the_outbox_with_retries(sqlite_url, tmp_path, plan, final) -> None:
    receiver = FakeReceiver(list(plan))
    async with run_server(receiver.app) as partner, await make_server(sqlite_url, tmp_path) as server:
        ids = await seed_basics(server.services)
        async with httpx.AsyncClient(base_url=server.url) as c:
            await c.post("/api/v1/auth/login", json={"email": "admin@example.com", "password": PASSWORD})
            c.headers["X-CSRF-Token"] = (await c.get("/api/v1/me")).json()["csrf_token"]
            r = await c.patch(f"/api/v1/channels/{ids['channel']}",
                              json={"config": {"webhook_url": f"{partner.url}/inbox"}})
            assert r.status_code == 200 and r.json()["config"]["secret"] == "********"
            body, headers = signed({"id": "m-1", "contact": {"id": "cust-9"}, "text": "where is my parcel?"})
            assert (await c.post(await hook_url(server, ids["channel"]), content=body, headers=headers)).status_code == 200
            conv_id = None
            async with asyncio.timeout(5):
                while conv_id is None:
                    items = (await c.get("/api/v1/conversations")).json()["items"]
                    conv_id = items[0]["id"] if items else None
                    await asyncio.sleep(0.02)
            token = (await c.post("/api/v1/tokens", json={"name": "ws"})).json()["token"]
            async with websockets.connect(f"{server.ws_url}/api/v1/stream?token={token}") as ws:
                await ws.recv()
                reply = await c.post(f"/api/v1/conversations/{conv_id}/messages", json={"text": "On its way!"})
                assert reply.status_code == 201 and reply.json()["delivery_status"] == "queued"
                status = await next_event(ws, "message.status_changed", timeout=10)
                assert status["data"]["status"] == final
            await asyncio.wait_for(receiver.done.wait(), 5)
            assert all(call["signature_ok"] for call in receiver.calls)
            assert receiver.calls[0]["body"]["to"] == {"id": "cust-9"}
            assert receiver.calls[0]["body"]["text"] == "On its way!"
            msgs = (await c.get(f"/api/v1/conversations/{conv_id}/messages")).json()["items"]
            out = [m for m in msgs if m["direction"] == "out"][0]
            assert out["delivery_status"] == final
            if final == "failed":
                assert "400" in out["error"]  # the provider's reason, visible to the agent
            else:
                assert out["provider_id"] == f"partner-{len(plan)}"


async def test_stream_audience_and_resume_after_a_drop(server) -> None:
    ids = await seed_basics(server.services)
    url = await hook_url(server, ids["channel"])
    alice, bob = await token_for(server, "alice@example.com"), await token_for(server, "bob@example.com")
    async with httpx.AsyncClient(base_url=server.url) as c:
        async with websockets.connect(f"{server.ws_url}/api/v1/stream?token={alice}") as a_ws, \
                websockets.connect(f"{server.ws_url}/api/v1/stream?token={bob}") as b_ws:
            await a_ws.recv()
            await b_ws.recv()
            body, headers = signed({"id": "m-1", "contact": {"id": "c1"}, "text": "first"})
            await c.post(url, content=body, headers=headers)
            first = await next_event(a_ws, "message.created")
            last_seq = first["seq"]
            # Bob serves only billing: he receives nothing about a conversation in general
            with pytest.raises(TimeoutError):
                await next_event(b_ws, "message.created", timeout=0.5)
        # Alice is offline while two more messages arrive
        for i in (2, 3):
            body, headers = signed({"id": f"m-{i}", "contact": {"id": "c1"}, "text": f"msg {i}"})
            assert (await c.post(url, content=body, headers=headers)).status_code == 200
        async with asyncio.timeout(5):
            while True:  # wait until both are stored and published
                msgs = (await c.get("/api/v1/conversations/1/messages",
                                    headers={"Authorization": f"Bearer {alice}"})).json()["items"]
                if len(msgs) == 3:
                    break
                await asyncio.sleep(0.02)
        async with websockets.connect(f"{server.ws_url}/api/v1/stream?token={alice}&after={last_seq}") as a_ws:
            ready = json.loads(await a_ws.recv())
            assert ready["name"] == "stream.ready"
            texts, seqs = [], []
            async with asyncio.timeout(5):
                while len(texts) < 2:
                    msg = json.loads(await a_ws.recv())
                    seqs.append(msg["seq"])
                    if msg["name"] == "message.created":
                        texts.append(msg["data"]["message"]["text"])
            assert texts == ["msg 2", "msg 3"] and seqs == sorted(set(seqs))
        async with websockets.connect(f"{server.ws_url}/api/v1/stream?token=tl_bogus") as bad:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await bad.recv()
            assert closed.value.rcvd.code == 4001
