"""Any PBX through the generic CTI endpoint, over real HTTP: a scripted PBX posts newCall / answer / hangup;
the call lands in the caller's conversation (recognised by their number), the answering agent gets the
``call.changed`` screen pop on their stream, the timeline says how it went; a missed call becomes a
callback task; repeats and events out of order are applied once; a wrong token changes nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import websockets
from sqlalchemy import select

from tests.conftest import seed_basics
from tests.routing.test_api import next_event, token_for
from threadline.actions import channels as channel_actions
from threadline.db.models import ConversationRow, MessageRow
from threadline.voice.models import CallRow

TOKEN = "pbx-token-0123456789abcdefghij"


async def pbx_channel(server: Any, ids: dict[str, int]) -> str:
    async with server.services.db.transaction() as s:
        row = await channel_actions.create_channel(s, server.services.box, kind="pbx", name="Office PBX",
                                                   default_queue_id=ids["general"], config={"token": TOKEN})
    return row.key


async def the_call(server: Any) -> tuple[CallRow, MessageRow, ConversationRow]:
    async with server.services.db.transaction(write=False) as s:
        [call] = list((await s.execute(select(CallRow))).scalars())
        msg = await s.get(MessageRow, call.message_id)
        conv = await s.get(ConversationRow, call.conversation_id)
        assert msg is not None and conv is not None
        return call, msg, conv


async def test_pbx_events_pop_the_customer_for_the_agent_and_log_the_call(server) -> None:
    ids = await seed_basics(server.services)
    key = await pbx_channel(server, ids)
    token = await token_for(server, "alice@example.com")
    t0 = datetime.now(UTC).replace(microsecond=0)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=server.url, headers=auth) as pbx, \
            websockets.connect(f"{server.ws_url}/api/v1/stream?token={token}") as ws:
        assert json.loads(await ws.recv())["name"] == "stream.ready"
        new = {"event": "newCall", "callId": "pbx-1", "direction": "in", "from": "+39 06 1234 5678", "to": "200",
               "timestamp": t0.isoformat()}
        r = await pbx.post(f"/hooks/{key}/cti", json=new)
        assert r.status_code == 200 and r.json()["state"] == "ringing", r.text
        again = await pbx.post(f"/hooks/{key}/cti", json=new)  # a PBX retry
        assert again.json()["duplicate"] is True
        # the hangup arrives before the answer: both apply, in the events' own times
        hang = {"event": "hangup", "callId": "pbx-1", "direction": "in", "cause": "normalClearing",
                "from": "+390612345678", "timestamp": (t0 + timedelta(seconds=200)).isoformat()}
        ans = {"event": "answer", "callId": "pbx-1", "direction": "in", "user": "alice@example.com",
               "from": "+390612345678", "timestamp": (t0 + timedelta(seconds=8)).isoformat()}
        assert (await pbx.post(f"/hooks/{key}/cti", json=ans)).status_code == 200
        pop = await next_event(ws, "call.changed", lambda e: e["data"]["agent_id"] == ids["alice"])
        assert pop["data"]["number"] == "+390612345678"
        assert (await pbx.post(f"/hooks/{key}/cti", json=hang)).json()["state"] == "ended"
        call, msg, conv = await the_call(server)
        assert call.from_number == "+390612345678" and call.agent_id == ids["alice"]
        assert msg.text == "Call, 3 min 12 s, answered by Alice", msg.text
        assert conv.status == "open"  # answered: nothing missed


async def test_a_missed_pbx_call_becomes_a_callback_task_and_bad_input_is_refused(server) -> None:
    ids = await seed_basics(server.services)
    key = await pbx_channel(server, ids)
    async with httpx.AsyncClient(base_url=server.url) as c:
        hook = f"/hooks/{key}/cti"
        wrong = await c.post(hook, json={"event": "newCall", "callId": "x"}, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert (await c.post(hook, json={"event": "newCall", "callId": "x"})).status_code == 401
        auth = {"Authorization": f"Bearer {TOKEN}"}
        bad = await c.post(hook, json={"event": "ring", "callId": "x"}, headers=auth)
        assert bad.status_code == 400 and "event" in bad.json()["detail"]
        huge = await c.post(hook, json={"event": "hangup", "callId": "x", "timestamp": 10**30}, headers=auth)
        assert huge.status_code == 400
        # a hangup for a call never announced creates it; unanswered, it is missed: a callback task
        r = await c.post(f"{hook}?token={TOKEN}", data={"event": "hangup", "callId": "pbx-9", "direction": "in",
                                                      "from": "+34 600 111 222", "cause": "cancel"})
        assert r.status_code == 200, r.text
    call, msg, conv = await the_call(server)
    assert call.end_cause == "abandoned" and call.callback_requested
    assert msg.text.startswith("Missed call")
    assert conv.status == "open" and conv.queue_id == ids["general"] and conv.assignee_id is None
