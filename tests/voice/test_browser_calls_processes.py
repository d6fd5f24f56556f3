"""A relayed browser call with two web processes on one host: the visitor's and the agent's requests reach
a process that is not the media process; it forwards them (web/forward.py) to the one that relays the
host's calls, so the call's media lives in one process and both parties hear each other. Two apps in one
test process stand for the two processes (they share the database and the run folder); the real
multi-process run is tests/web/test_processes.py."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
import websockets

from tests.conftest import make_server
from tests.routing.test_api import next_event, token_for
from tests.voice.test_browser_calls import Peer, setup, tone, visitor_with_conversation

pytest.importorskip("aiortc")


async def test_a_relayed_call_lives_in_the_media_process_whichever_process_the_requests_reach(
        sqlite_url: str, tmp_path: Path) -> None:
    async with await make_server(sqlite_url, tmp_path, processes=2) as one:
        media = one.app.state.media
        await asyncio.wait_for(media.leading.wait(), 10)  # the first process takes the media lock
        async with await make_server(sqlite_url, tmp_path, processes=2) as two:
            assert media.here and not two.app.state.media.here
            _, key = await setup(two, record="always")
            token = await token_for(two, "alice@example.com")
            v = await visitor_with_conversation(two, key)
            caller, agent = Peer(tone(tmp_path / "v.wav", 440)), Peer(tone(tmp_path / "a.wav", 660))
            async with httpx.AsyncClient(base_url=two.url, headers={"Authorization": f"Bearer {token}"}) as alice, \
                    websockets.connect(f"{two.ws_url}/api/v1/stream?token={token}") as stream:
                assert json.loads(await stream.recv())["name"] == "stream.ready"
                r = await v.post("/widget/calls", {"token": v.token})
                assert r.status_code == 201 and r.json()["media"] == "relay", r.text
                call = r.json()
                r = await v.post(f"/widget/calls/{call['id']}/media", {"token": v.token, "type": "offer",
                                                                         "sdp": await caller.offer()})
                assert r.status_code == 200 and r.json()["media"] == "relay", r.text
                assert one.services.voice.media.get(call["id"]) is not None  # the media process has it
                assert two.services.voice.media.get(call["id"]) is None
                await caller.accept(r.json()["sdp"])
                assert (await alice.put("/api/v1/me/presence", json={"status": "available"})).status_code == 200
                offer = (await next_event(stream, "routing.offer",
                                          lambda e: e["data"]["conversation_id"] == call["conversation_id"]))["data"]
                assert (await alice.post(f"/api/v1/routing/offers/{offer['offer_id']}/accept")).status_code == 200
                await next_event(stream, "call.changed", lambda e: e["data"]["state"] == "offered")
                r = await alice.post(f"/api/v1/calls/{call['id']}/media",
                                     json={"type": "offer", "sdp": await agent.offer()})
                assert r.status_code == 200 and r.json()["sdp"], r.text
                await agent.accept(r.json()["sdp"])
                await agent.hears(25)  # the caller's sound, relayed by the media process
                await caller.hears(25)
                assert (await alice.post(f"/api/v1/calls/{call['id']}/hold", json={"hold": True})).status_code == 200
                assert one.services.voice.media.get(call["id"]).to_customer.on_hold  # type: ignore[union-attr]
                r = await alice.post(f"/api/v1/calls/{call['id']}/hangup")
                assert r.status_code == 200, r.text
                await next_event(stream, "call.changed", lambda e: e["data"]["state"] == "ended")
                assert one.services.voice.media.get(call["id"]) is None
            await caller.close()
            await agent.close()
            await v.aclose()

