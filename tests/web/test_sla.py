"""Conversation SLA deadlines per queue, over real HTTP and the real websocket stream: a queue with a
first-response target of three seconds warns, then raises a breach (``conversation.sla_alert``) for the
conversation nobody answered, shown on the conversation (API fields, desk header); a reply before the
deadline prevents it. A note is not a reply; resolving stops the resolution clock."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime

import httpx
import websockets
from sqlalchemy import select
from tests.conftest import login, seed_basics
from tests.web.test_desk_pages import inbound
from tests.web.test_hooks_and_stream import token_for

from threadline.db.models import ScheduledJobRow


async def events_until(ws, done, timeout: float = 15.0) -> list[dict]:  # type: ignore[no-untyped-def]
    """Stream events until ``done(event)``; all of them."""
    seen: list[dict] = []
    async with asyncio.timeout(timeout):
        while True:
            msg = json.loads(await ws.recv())
            seen.append(msg)
            if done(msg):
                return seen


def alerts(seen: list[dict], conv_id: int) -> list[tuple[str, str]]:
    return [(m["data"]["target"], m["data"]["state"]) for m in seen
            if m["name"] == "conversation.sla_alert" and m["data"]["conversation_id"] == conv_id]


def sla_update(conv_id: int, key: str):  # type: ignore[no-untyped-def]
    """A conversation.updated for ``conv_id`` whose SLA has ``key`` set."""
    return lambda m: m["name"] == "conversation.updated" and m["data"]["conversation"]["id"] == conv_id \
        and m["data"]["conversation"]["sla"][key] is not None


async def test_a_missed_first_response_raises_a_breach_and_a_reply_in_time_prevents_it(server) -> None:
    ids = await seed_basics(server.services)
    sup = await token_for(server, "sup@example.com")
    admin = await token_for(server, "admin@example.com")
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {sup}"}) as c:
        r = await c.patch(f"/api/v1/queues/{ids['general']}", headers={"Authorization": f"Bearer {admin}"},
                          json={"settings": {"sla": {"first_response_seconds": 3, "resolution_seconds": 3600,
                                                     "near_breach_ratio": 0.5}}})
        assert r.status_code == 200, r.text
        async with websockets.connect(f"{server.ws_url}/api/v1/stream?token={sup}") as ws:
            assert json.loads(await ws.recv())["name"] == "stream.ready"
            late = await inbound(server.services, ids["channel"], "anyone there?", email="late@example.com")
            answered = await inbound(server.services, ids["channel"], "quick one", email="quick@example.com")
            r = await c.post(f"/api/v1/conversations/{answered}/messages", json={"text": "Here to help!"})
            assert r.status_code == 201
            noted = await inbound(server.services, ids["channel"], "internal only", email="noted@example.com")
            r = await c.post(f"/api/v1/conversations/{noted}/notes", json={"text": "VIP, be nice"})
            assert r.status_code == 201
            seen: list[dict] = []
            for conv_id in (late, noted):
                seen += await events_until(ws, lambda m, c=conv_id: m["name"] == "conversation.sla_alert"
                                           and m["data"]["conversation_id"] == c and m["data"]["state"] == "breached")

        assert alerts(seen, late) == [("first_response", "at_risk"), ("first_response", "breached")]
        assert alerts(seen, noted)[-1] == ("first_response", "breached")  # an internal note is no reply
        assert alerts(seen, answered) == []
        assert any(sla_update(answered, "first_response_at")(m) for m in seen)  # the header drops "Reply by"
        [breach] = [m for m in seen if m["name"] == "conversation.sla_alert" and m["data"]["conversation_id"] == late
                    and m["data"]["state"] == "breached"]
        assert breach["data"]["queue_id"] == ids["general"] and breach["data"]["target_seconds"] == 3

        conv = (await c.get(f"/api/v1/conversations/{late}")).json()
        sla = conv["sla"]
        assert sla["running"] and sla["first_response_at"] is None and sla["first_response_breached_at"]
        due = datetime.fromisoformat(sla["first_response_due_at"])
        assert (due - datetime.fromisoformat(conv["created_at"])).total_seconds() == 3
        assert datetime.fromisoformat(sla["first_response_breached_at"]) >= due
        assert sla["resolution_breached_at"] is None and sla["resolution_due_at"]
        ok = (await c.get(f"/api/v1/conversations/{answered}")).json()["sla"]
        assert ok["first_response_at"] and ok["first_response_breached_at"] is None

        # resolving stops the clock: the resolution timer is gone
        assert (await c.patch(f"/api/v1/conversations/{answered}", json={"status": "resolved"})).status_code == 200
        async with asyncio.timeout(10):
            while True:
                async with server.services.db.transaction(write=False) as s:
                    keys = {(j.kind, j.key) for j in (await s.execute(select(ScheduledJobRow))).scalars()}
                if ("sla.resolution", str(answered)) not in keys:
                    break
                await asyncio.sleep(0.05)
        assert ("sla.resolution", str(late)) in keys

    async with httpx.AsyncClient(base_url=server.url) as desk:
        await login(desk, "sup@example.com")
        header = (await desk.get(f"/desk/p/conversations/{late}/header")).text
        assert 'id="sla-first-response"' in header and "First reply late" in header
        header = (await desk.get(f"/desk/p/conversations/{answered}/header")).text
        assert "sla-first-response" not in header
