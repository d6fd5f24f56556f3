"""Asterisk ARI through the real interface: FakeAri (tests/voice/fake_ari.py) plays Asterisk, a real
Threadline server runs the voice loops. A caller enters Stasis → hears the IVR menu → presses a key →
is queued with music → routing offers the call, Alice accepts over HTTP → Threadline builds a mixing
bridge and originates Alice's endpoint into the app → her leg enters Stasis and joins the bridge → the
caller hangs up → "Call, …, answered by Alice". Also: a caller who hangs up while queued is abandoned;
events for unknown channels change nothing; repeated events are applied once.

With ``THREADLINE_TEST_ARI_URL`` set (and ``THREADLINE_TEST_ARI_USER`` / ``…_PASSWORD`` /
``…_DIAL``), ``test_a_real_asterisk`` runs a smoke call against a real Asterisk (docs/channels/voice.md).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import shutil
import wave
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import websockets
from sqlalchemy import select

from tests.conftest import seed_basics
from tests.routing.test_api import next_event, token_for
from tests.voice.fake_ari import FakeAri
from threadline.actions import channels as channel_actions
from threadline.db.models import MessageRow
from threadline.db.types import utcnow
from threadline.files.store import FileStore
from threadline.flows import actions as flow_actions
from threadline.voice.models import CallRow
from threadline.voice.worker.ari import AriConnection, Prompts, prompt_store, to_8khz

CALLER = "+34600111222"
TIMEOUT = 10.0


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = TIMEOUT) -> Any:
    """Poll ``check`` until it returns something truthy (for what no event announces), bounded."""
    async with asyncio.timeout(timeout):
        while True:
            if value := await check():
                return value
            await asyncio.sleep(0.02)


async def asterisk_channel(server: Any, ids: dict[str, int], ari: FakeAri, **config: Any) -> int:
    async with server.services.db.transaction() as s:
        row = await channel_actions.create_channel(
            s, server.services.box, kind="asterisk", name="Asterisk", default_queue_id=ids["general"],
            config={"ari_url": ari.base_url, "username": ari.username, "password": ari.password, **config})
    return row.id


async def connection(server: Any, channel_id: int) -> AriConnection:
    loop = server.services.voice.ari
    loop.wake()  # channel.changed wakes it too, once the relay publishes it
    conn = await eventually(lambda: _conn(loop, channel_id))
    await asyncio.wait_for(conn.connected.wait(), TIMEOUT)
    return conn


async def _conn(loop: Any, channel_id: int) -> AriConnection | None:
    return loop.connections.get(channel_id)


async def calls(server: Any) -> list[CallRow]:
    async with server.services.db.transaction(write=False) as s:
        return list((await s.execute(select(CallRow).order_by(CallRow.id))).scalars())


async def entry(server: Any, message_id: int) -> MessageRow:
    async with server.services.db.transaction(write=False) as s:
        row = await s.get(MessageRow, message_id)
        assert row is not None
        return row


async def handled(conn: AriConnection, n: int) -> None:
    """Wait until the connection has handled ``n`` events (repeats and unknowns included)."""
    async def check() -> bool:
        return conn.handled >= n
    await eventually(check)


async def menu_flow(server: Any, ids: dict[str, int]) -> int:
    flow = {"start": "menu", "locales": ["en"], "nodes": {
        "menu": {"type": "menu", "prompt": {"en": "For sales press 1, for billing press 2."},
                 "options": [{"key": "1", "label": {"en": "Sales"}, "next": "sales"},
                             {"key": "2", "label": {"en": "Billing"}, "next": "billing"}],
                 "max_tries": 2, "no_match": "sales"},
        "sales": {"type": "queue", "queue_id": ids["general"]},
        "billing": {"type": "queue", "queue_id": ids["billing"], "priority": 80}}}
    async with server.services.db.transaction() as s:
        row, _ = await flow_actions.create_flow(s, name="Main IVR", kind="ivr", definition=flow, now=utcnow())
        return row.id


async def test_nothing_connects_without_an_asterisk_channel(sqlite_server) -> None:
    server = sqlite_server
    await seed_basics(server.services)
    loop = server.services.voice.ari
    assert loop in server.services.voice.parts and loop.running
    await loop.tick()
    assert loop.connections == {} and not loop.leader.held


async def test_a_caller_hears_the_ivr_presses_a_key_waits_and_is_bridged_with_alice(sqlite_server) -> None:
    server = sqlite_server
    ids = await seed_basics(server.services)
    flow_id = await menu_flow(server, ids)
    token = await token_for(server, "alice@example.com")
    async with FakeAri() as ari, \
            httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as alice, \
            websockets.connect(f"{server.ws_url}/api/v1/stream?token={token}") as ws:
        assert json.loads(await ws.recv())["name"] == "stream.ready"
        conn = await connection(server, await asterisk_channel(server, ids, ari, flow_id=flow_id))

        start = await ari.incoming("c-1", CALLER)
        await ari.command("POST", "/channels/c-1/answer")
        menu = await ari.command("POST", "/channels/c-1/play")
        if shutil.which("espeak-ng") is None:
            assert menu.params["media"] == "sound:beep"  # no espeak-ng here: the fallback (see Prompts)
        else:
            assert menu.params["media"].startswith("sound:http")  # spoken once into the file store
        [row] = await calls(server)
        assert row.state == "in_flow" and row.provider == "asterisk" and row.provider_ref == "c-1"
        await ari.send(start)  # a repeated StasisStart: nothing new
        await ari.dtmf("c-1", "1")
        await ari.command("POST", "/channels/c-1/moh")  # queued: music on hold
        assert ari.count("POST", "/channels/c-1/answer") == 1
        [row] = await calls(server)
        assert row.state == "queued" and row.queue_id == ids["general"] and row.from_number == CALLER

        assert (await alice.put("/api/v1/me/presence", json={"status": "available"})).status_code == 200
        offer = (await next_event(ws, "routing.offer"))["data"]
        assert offer["conversation_id"] == row.conversation_id
        r = await alice.post(f"/api/v1/routing/offers/{offer['offer_id']}/accept")
        assert r.status_code == 200, r.text

        bridge = f"/bridges/tl-call-{row.id}"
        await ari.command("POST", bridge, type="mixing")
        await ari.command("POST", f"{bridge}/addChannel", channel="c-1")
        dial = await ari.command("POST", "/channels")
        assert dial.params["endpoint"] == "PJSIP/alice" and dial.params["app"] == "threadline"
        assert dial.params["appArgs"] == f"agent,{row.id}" and dial.params["callerId"] == CALLER
        agent_leg = dial.params["channelId"]
        await ari.answer_originated(agent_leg)
        await ari.command("POST", f"{bridge}/addChannel", channel=agent_leg)
        await next_event(ws, "call.changed", lambda e: e["data"]["state"] == "connected")
        assert ari.bridges[f"tl-call-{row.id}"] == ["c-1", agent_leg]

        await ari.hangup("c-1")
        ended = await next_event(ws, "call.changed", lambda e: e["data"]["state"] == "ended")
        assert ended["data"]["end_cause"] == "completed" and ended["data"]["agent_id"] == ids["alice"]
        await ari.command("DELETE", f"/channels/{agent_leg}")  # Alice's leg goes too
        await ari.command("DELETE", bridge)
        [row] = await calls(server)
        assert row.agent_id == ids["alice"] and row.answered_at is not None and row.ended_at is not None
        text = (await entry(server, row.message_id)).text
        assert re.fullmatch(r"Call, \d+ s, answered by Alice", text), text
        await handled(conn, 1)
        assert conn.legs == {}


async def test_a_recorded_call_in_the_bridge_and_a_supervisor_listening_and_whispering(sqlite_server) -> None:
    """The queue records every call: when Alice's leg enters the bridge, the bridge records; Asterisk's
    RecordingFinished makes it the call's recording, which Alice plays from Threadline. Meanwhile a
    supervisor listens and whispers through snoop channels."""
    server = sqlite_server
    ids = await seed_basics(server.services)
    async with server.services.db.transaction() as s:
        from threadline.actions import users as user_actions
        from threadline.db.repos import users as users_repo
        q = await users_repo.get_queue(s, ids["general"])
        await user_actions.update_queue(s, ids["general"], settings={**(q.settings or {}), "voice": {"record": "always"}})
    token = await token_for(server, "alice@example.com")
    async with FakeAri() as ari, \
            httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as alice, \
            websockets.connect(f"{server.ws_url}/api/v1/stream?token={token}") as ws:
        assert json.loads(await ws.recv())["name"] == "stream.ready"
        await connection(server, await asterisk_channel(server, ids, ari))
        await ari.incoming("c-9", CALLER)
        await ari.command("POST", "/channels/c-9/moh")  # no flow: straight to the queue
        [row] = await calls(server)
        assert (await alice.put("/api/v1/me/presence", json={"status": "available"})).status_code == 200
        offer = (await next_event(ws, "routing.offer"))["data"]
        assert (await alice.post(f"/api/v1/routing/offers/{offer['offer_id']}/accept")).status_code == 200
        dial = await ari.command("POST", "/channels")
        dial_agent = dial.params["channelId"]
        await ari.answer_originated(dial_agent)
        rec = await ari.command("POST", f"/bridges/tl-call-{row.id}/record")
        assert rec.params["name"] == f"tl-call-rec-{row.id}" and rec.params["format"] == "wav"
        listed = (await alice.get("/api/v1/calls", params={"conversation_id": row.conversation_id})).json()
        assert listed[0]["recording_state"] == "recording"
        await next_event(ws, "call.changed", lambda e: e["data"]["state"] == "connected")

        # a supervisor listens (a snoop on the caller hears both), whispers (a snoop on Alice's leg speaks to
        # her only) and joins (the call's bridge); an agent may not
        assert (await alice.post(f"/api/v1/calls/{row.id}/monitor", json={"mode": "listen"})).status_code == 403
        sup_token = await token_for(server, "sup@example.com")
        async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {sup_token}"}) as sup:
            r = await sup.post(f"/api/v1/calls/{row.id}/monitor", json={"mode": "listen"})
            assert r.status_code == 200 and r.json()["detail"] == "listening", r.text
            snoop = await ari.command("POST", "/channels/c-9/snoop")
            assert snoop.params["spy"] == "both" and snoop.params["whisper"] == "none"
            dial = await ari.wait_for(lambda cmds: [c for c in cmds if c.path == "/channels" and
                                                    c.params.get("appArgs", "").startswith("monitor,")])
            leg = dial[0].params["channelId"]
            assert dial[0].params["endpoint"] == "PJSIP/sup"
            await ari.answer_originated(leg)
            added = await ari.command("POST", f"/bridges/tl-mon-{leg}/addChannel")
            assert added.params["channel"] == f"{leg},{snoop.params['snoopId']}"
            await ari.hangup(leg)
            await ari.command("DELETE", f"/channels/{snoop.params['snoopId']}")
            await ari.command("DELETE", f"/bridges/tl-mon-{leg}")
            r = await sup.post(f"/api/v1/calls/{row.id}/monitor", json={"mode": "whisper"})
            assert r.status_code == 200, r.text
            whisper = await ari.command("POST", f"/channels/{dial_agent}/snoop")
            assert whisper.params["whisper"] == "out"
        await ari.hangup("c-9")
        await next_event(ws, "call.changed", lambda e: e["data"]["state"] == "ended")
        await ari.push("RecordingFinished", recording={"name": f"tl-call-rec-{row.id}", "format": "wav",
                                                       "target_uri": f"bridge:tl-call-{row.id}", "state": "done",
                                                       "duration": 42})
        await next_event(ws, "call.changed", lambda e: e["data"]["state"] == "ended")
        played = await eventually(lambda: _played(alice, row.id))
        assert played.headers["content-type"] == "audio/wav" and played.content.startswith(b"RIFF")


async def test_the_agent_holds_records_on_demand_pauses_and_hangs_up_an_asterisk_call(sqlite_server) -> None:
    server = sqlite_server
    ids = await seed_basics(server.services)
    async with server.services.db.transaction() as s:
        from threadline.actions import users as user_actions
        from threadline.db.repos import users as users_repo
        q = await users_repo.get_queue(s, ids["general"])
        await user_actions.update_queue(s, ids["general"], settings={**(q.settings or {}),
                                                                     "voice": {"record": "on_demand"}})
    token = await token_for(server, "alice@example.com")
    async with FakeAri() as ari, \
            httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as alice, \
            websockets.connect(f"{server.ws_url}/api/v1/stream?token={token}") as ws:
        assert json.loads(await ws.recv())["name"] == "stream.ready"
        await connection(server, await asterisk_channel(server, ids, ari))
        await ari.incoming("c-7", CALLER)
        await ari.command("POST", "/channels/c-7/moh")
        [row] = await calls(server)
        assert (await alice.put("/api/v1/me/presence", json={"status": "available"})).status_code == 200
        offer = (await next_event(ws, "routing.offer"))["data"]
        assert (await alice.post(f"/api/v1/routing/offers/{offer['offer_id']}/accept")).status_code == 200
        dial = await ari.command("POST", "/channels")
        await ari.answer_originated(dial.params["channelId"])
        await next_event(ws, "call.changed", lambda e: e["data"]["state"] == "connected")
        assert ari.count("POST", f"/bridges/tl-call-{row.id}/record") == 0  # on demand: not yet
        base = f"/api/v1/calls/{row.id}"

        assert (await alice.post(f"{base}/hold", json={"hold": True})).status_code == 200
        await ari.command("POST", f"/bridges/tl-call-{row.id}/removeChannel", channel="c-7")
        assert ari.count("POST", "/channels/c-7/moh") == 2  # music again while held
        await next_event(ws, "call.changed", lambda e: e["data"]["state"] == "on_hold")
        assert (await alice.post(f"{base}/hold", json={"hold": False})).status_code == 200
        await ari.command("DELETE", "/channels/c-7/moh")
        await next_event(ws, "call.changed", lambda e: e["data"]["state"] == "connected")

        r = await alice.post(f"{base}/recording", json={"action": "start"})
        assert r.status_code == 200 and r.json()["detail"] == "recording", r.text
        await ari.command("POST", f"/bridges/tl-call-{row.id}/record", name=f"tl-call-rec-{row.id}")
        assert (await alice.post(f"{base}/recording", json={"action": "pause"})).status_code == 200
        await ari.command("POST", f"/recordings/live/tl-call-rec-{row.id}/pause")
        assert (await alice.post(f"{base}/recording", json={"action": "resume"})).status_code == 200
        await ari.command("DELETE", f"/recordings/live/tl-call-rec-{row.id}/pause")
        [row] = await calls(server)
        assert row.details["recording_gaps"][0][1] is not None  # the paused span is marked
        transfer = await alice.post(f"{base}/transfer", json={"queue_id": ids["billing"]})
        assert transfer.status_code == 409 and "from your phone" in transfer.json()["detail"]

        assert (await alice.post(f"{base}/hangup")).status_code == 200
        await ari.command("DELETE", "/channels/c-7")
        await ari.hangup("c-7", by_app=True)
        ended = await next_event(ws, "call.changed", lambda e: e["data"]["state"] == "ended")
        assert ended["data"]["end_cause"] == "completed"


async def test_a_queued_caller_asks_for_a_callback_and_is_called_back_when_alice_accepts(sqlite_server) -> None:
    server = sqlite_server
    ids = await seed_basics(server.services)
    token = await token_for(server, "alice@example.com")
    async with FakeAri() as ari, \
            httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as alice, \
            websockets.connect(f"{server.ws_url}/api/v1/stream?token={token}") as ws:
        assert json.loads(await ws.recv())["name"] == "stream.ready"
        await connection(server, await asterisk_channel(server, ids, ari, callback_key="1",
                                                        outbound_endpoint_template="PJSIP/{digits}@trunk"))
        await ari.incoming("c-5", CALLER)
        await ari.command("POST", "/channels/c-5/moh")
        await ari.dtmf("c-5", "1")  # waiting, the caller asks to be called back
        await ari.command("DELETE", "/channels/c-5")  # told so, then the line hangs up
        [row] = await calls(server)
        await eventually(lambda: _ended(server, row.id))
        [row] = await calls(server)
        assert row.end_cause == "callback" and row.callback_requested

        assert (await alice.put("/api/v1/me/presence", json={"status": "available"})).status_code == 200
        offer = (await next_event(ws, "routing.offer"))["data"]  # the task kept its place
        assert offer["conversation_id"] == row.conversation_id
        assert (await alice.post(f"/api/v1/routing/offers/{offer['offer_id']}/accept")).status_code == 200
        dial = await ari.command("POST", "/channels", endpoint=f"PJSIP/{CALLER.lstrip('+')}@trunk")
        assert dial.params["appArgs"] == f"callback,{row.id}"
        customer = dial.params["channelId"]
        await ari.answer_originated(customer)  # the customer answers: into the bridge, then Alice is dialled
        await ari.command("POST", f"/bridges/tl-call-{row.id}/addChannel", channel=customer)
        agent = await ari.command("POST", "/channels", endpoint="PJSIP/alice")
        await ari.answer_originated(agent.params["channelId"])
        await ari.command("POST", f"/bridges/tl-call-{row.id}/addChannel", channel=agent.params["channelId"])
        await ari.hangup(customer)  # they are done: Alice's leg and the bridge go
        await ari.command("DELETE", f"/channels/{agent.params['channelId']}")
        await ari.command("DELETE", f"/bridges/tl-call-{row.id}")


async def _ended(server: Any, call_id: int) -> bool:
    return any(c.id == call_id and c.state == "ended" for c in await calls(server))


async def _played(alice: httpx.AsyncClient, call_id: int) -> httpx.Response | None:
    r = await alice.get(f"/api/v1/calls/{call_id}/recording")
    return r if r.status_code == 200 else None


async def tone(line: str, locale: str) -> bytes:
    """A stand-in for espeak-ng: one second of 22.05 kHz audio, as espeak-ng writes it."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(22050)
        w.writeframes(b"\x01\x00" * 22050)
    return to_8khz(out.getvalue())


async def test_a_caller_who_hangs_up_while_queued_is_abandoned(sqlite_server) -> None:
    server = sqlite_server
    ids = await seed_basics(server.services)
    server.services.factory.public_base_url = server.url  # Asterisk fetches spoken prompts from us
    server.services.voice.ari.prompts = Prompts(prompt_store(server.services.files), tone)
    async with FakeAri() as ari, httpx.AsyncClient() as asterisk:
        await connection(server, await asterisk_channel(server, ids, ari))
        await ari.incoming("c-9", CALLER)
        welcome = await ari.command("POST", "/channels/c-9/play")  # no flow: welcome, then the channel's queue
        url = welcome.params["media"].removeprefix("sound:")
        assert re.fullmatch(rf"{server.url}/hooks/[\w-]+/voice/prompts/[0-9a-f]{{64}}\.wav", url), url
        wav = await asterisk.get(url)
        assert wav.status_code == 200 and wav.headers["content-type"] == "audio/wav"
        assert (await asterisk.get(url.replace(".wav", "0.wav"))).status_code == 404
        await ari.command("POST", "/channels/c-9/moh")
        await ari.hangup("c-9")

        async def ended() -> list[CallRow]:
            rows = await calls(server)
            return rows if rows and rows[0].state == "ended" else []
        [row] = await eventually(ended)
        assert row.end_cause == "abandoned"
        assert (await entry(server, row.message_id)).text.startswith("Missed call (hung up after waiting")
        async with server.services.db.transaction(write=False) as s:
            from threadline.db.repos import conversations as repo
            conv = await repo.get_conversation(s, row.conversation_id)
            assert conv is not None and conv.status == "resolved" and "abandoned_at" in conv.attributes


async def test_unknown_channels_and_repeats_change_nothing(sqlite_server) -> None:
    server = sqlite_server
    ids = await seed_basics(server.services)
    async with FakeAri() as ari:
        conn = await connection(server, await asterisk_channel(server, ids, ari))
        await ari.dtmf("ghost", "5")
        await ari.push("ChannelHangupRequest", cause=16, channel=ari.channel("ghost", number=CALLER))
        await ari.push("ChannelDestroyed", cause=16, cause_txt="Normal Clearing",
                       channel=ari.channel("ghost", number=CALLER))
        await ari.push("StasisStart", args=["agent", "999"], channel=ari.channel("tl-agent-999-1", number=""))
        await ari.send({"type": "StasisStart"})  # no channel at all
        await ari.send({"nonsense": True})
        for q in ari._sockets:
            q.put_nowait("not json")
        await ari.command("DELETE", "/channels/tl-agent-999-1")  # an agent leg for no call is hung up
        await handled(conn, 6)
        assert await calls(server) == []
        assert ari.count("POST", "/channels/ghost/answer") == 0

        # the loop is alive: a real caller still works, and a repeated hang-up is applied once
        await ari.incoming("c-2", CALLER)
        await ari.command("POST", "/channels/c-2/moh")
        hangup = await ari.push("ChannelHangupRequest", cause=16, channel=ari.channels["c-2"])
        await ari.send(hangup)
        await ari.send(hangup)

        async def ended() -> list[CallRow]:
            rows = await calls(server)
            return rows if rows and rows[0].state == "ended" else []
        [row] = await eventually(ended)
        async with server.services.db.transaction(write=False) as s:
            texts = [m.text for m in (await s.execute(select(MessageRow).where(
                MessageRow.conversation_id == row.conversation_id).order_by(MessageRow.id))).scalars()]
        assert texts[0].startswith("Missed call") and sum("call" in t.lower() for t in texts) == 1, texts


async def test_prompts_are_spoken_once_into_the_file_store(tmp_path) -> None:
    said: list[str] = []

    async def synth(line: str, locale: str) -> bytes:
        said.append(line)
        return await tone(line, locale)

    files = FileStore(tmp_path / "files")
    prompts = Prompts(files, synth)
    first = await prompts.uri("Hello", "en", "http://tl.lan/hooks/k/voice/prompts")
    again = await prompts.uri("Hello", "en", "http://tl.lan/hooks/k/voice/prompts")
    assert first == again and said == ["Hello"]
    sha = first.rsplit("/", 1)[1].removesuffix(".wav")
    assert first == f"sound:http://tl.lan/hooks/k/voice/prompts/{sha}.wav"
    with wave.open(str(files.path(sha))) as w:
        assert w.getframerate() == 8000 and w.getnframes() == 8000
    assert await Prompts(None, synth).uri("Hello", "en", "http://x") == "sound:beep"


@pytest.mark.skipif(not os.environ.get("THREADLINE_TEST_ARI_URL"), reason="THREADLINE_TEST_ARI_URL is not set")
async def test_a_real_asterisk(sqlite_server) -> None:
    """Against a real Asterisk: Threadline connects to the app, originates ``THREADLINE_TEST_ARI_DIAL``
    (e.g. ``Local/200@from-internal``, an extension whose dialplan runs ``Stasis(threadline)``), sees the
    call enter the app, answered and queued, then hangs it up and sees it ended."""
    server = sqlite_server
    ids = await seed_basics(server.services)
    url = os.environ["THREADLINE_TEST_ARI_URL"]
    async with server.services.db.transaction() as s:
        row = await channel_actions.create_channel(
            s, server.services.box, kind="asterisk", name="Asterisk", default_queue_id=ids["general"],
            config={"ari_url": url, "username": os.environ.get("THREADLINE_TEST_ARI_USER", "threadline"),
                    "password": os.environ.get("THREADLINE_TEST_ARI_PASSWORD", ""),
                    "app": os.environ.get("THREADLINE_TEST_ARI_APP", "threadline")})
    conn = await connection(server, row.id)
    dial = os.environ.get("THREADLINE_TEST_ARI_DIAL", "Local/200@from-internal")
    await conn.adapter.originate(dial, app_args="test", caller_id="+34600111222")

    async def queued() -> list[CallRow]:
        rows = await calls(server)
        return rows if rows and rows[0].state == "queued" else []
    [call] = await eventually(queued, 30)
    await conn.adapter.hangup(call.provider_ref)

    async def ended() -> list[CallRow]:
        rows = await calls(server)
        return rows if rows and rows[0].state == "ended" else []
    await eventually(ended, 30)
