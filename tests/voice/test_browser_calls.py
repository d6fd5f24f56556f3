"""Calls in the browser through the real interface: a visitor of the web chat (httpx with the widget's
Origin and token, its websocket) calls, routing offers the call to Alice, who answers over the API;
each browser is a real WebRTC peer (aiortc) sending a known sound. Peer to peer, Threadline relays the
session descriptions (the visitor's offer, the agent's answer as a ``call_media`` frame) and the two
peers hear each other; relayed (the queue records every call), the server answers both, speaks to the
waiting caller, relays, and keeps a two-channel WAV whose channels carry each party's sound for as long
as the call lasted. Bad tokens, other visitors' calls, calls switched off and garbage descriptions are
refused with a reason."""

from __future__ import annotations

import asyncio
import io
import json
import math
import struct
import wave
from array import array
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.channels.webchat.test_webchat import ORIGIN, Visitor, frame, make_channel
from tests.conftest import seed_basics
from tests.routing.test_api import next_event, token_for
from threadline.actions import users as user_actions
from threadline.db.repos import users as users_repo

aiortc = pytest.importorskip("aiortc")
from aiortc import RTCPeerConnection, RTCSessionDescription  # noqa: E402
from aiortc.contrib.media import MediaPlayer  # noqa: E402

EARLY = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"  # shaped, not usable


def tone(path: Path, hz: float, seconds: float = 2.0, rate: int = 48_000) -> str:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * hz * i / rate)))
                               for i in range(int(rate * seconds))))
    return str(path)


class Peer:
    """A browser's WebRTC side: sends a looping sound, counts the frames with sound it receives."""

    def __init__(self, sound: str) -> None:
        self.pc = RTCPeerConnection()
        self.player = MediaPlayer(sound, loop=True)
        self.pc.addTrack(self.player.audio)
        self.heard = 0
        self._sound = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.pc.on("track", lambda track: self._tasks.append(asyncio.ensure_future(self._listen(track))))

    async def _listen(self, track: Any) -> None:
        try:
            while True:
                f = await track.recv()
                if any(bytes(f.planes[0])):
                    self.heard += 1
                    self._sound.set()
        except Exception:
            return

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def answer(self, offer: str) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return str(self.pc.localDescription.sdp)

    async def accept(self, answer: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))

    async def hears(self, frames: int = 25, timeout: float = 10.0) -> None:
        start = self.heard
        async with asyncio.timeout(timeout):
            while self.heard - start < frames:
                self._sound.clear()
                await self._sound.wait()

    async def close(self) -> None:
        await self.pc.close()
        for t in self._tasks:
            t.cancel()


async def setup(server: Any, *, record: str = "channel", calls: str = "video") -> tuple[dict[str, int], str]:
    ids = await seed_basics(server.services)
    key = await make_channel(server, ids, calls=calls)
    async with server.services.db.transaction() as s:
        q = await users_repo.get_queue(s, ids["general"])
        await user_actions.update_queue(s, ids["general"], settings={**(q.settings or {}), "voice": {"record": record}})
        await user_actions.set_presence(s, ids["alice"], "offline")  # nobody takes the chat until a test says so
    return ids, key


async def visitor_with_conversation(server: Any, key: str) -> Visitor:
    v = Visitor(server, key)
    await v.start()
    r = await v.say("Can I call you?", "c1", profile={"name": "Vera", "email": "vera@example.com"})
    assert r.status_code == 201, r.text
    v.conversation_id = r.json()["conversation_id"]  # type: ignore[attr-defined]
    return v


async def test_a_browser_call_is_routed_answered_peer_to_peer_and_hung_up(server, tmp_path: Path) -> None:
    ids, key = await setup(server)
    token = await token_for(server, "alice@example.com")
    v = await visitor_with_conversation(server, key)
    caller, agent = Peer(tone(tmp_path / "v.wav", 440)), Peer(tone(tmp_path / "a.wav", 660))
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as alice, \
            websockets.connect(f"{server.ws_url}/api/v1/stream?token={token}") as stream, v.ws() as vws:
        assert json.loads(await stream.recv())["name"] == "stream.ready"
        assert (await alice.put("/api/v1/me/presence", json={"status": "available"})).status_code == 200
        # Alice has the chat already, so the call rings her directly
        r = await alice.patch(f"/api/v1/conversations/{v.conversation_id}", json={"assignee_id": ids["alice"]})
        assert r.status_code == 200, r.text

        r = await v.post("/widget/calls", {"token": v.token, "video": False, "locale": "es-ES"})
        assert r.status_code == 201, r.text
        call = r.json()
        assert call["media"] == "p2p" and call["state"] == "offered" and r.headers["access-control-allow-origin"] == ORIGIN
        ringing = await next_event(stream, "call.changed", lambda e: e["data"]["call_id"] == call["id"])
        assert ringing["data"]["provider"] == "webrtc" and ringing["data"]["state"] == "offered"
        assert ringing["data"]["agent_id"] is not None

        # the agent is too quick: the visitor's browser has not sent its offer yet
        assert (await alice.post(f"/api/v1/calls/{call['id']}/media",
                                 json={"type": "answer", "sdp": EARLY})).status_code == 409
        r = await v.post(f"/widget/calls/{call['id']}/media", {"token": v.token, "type": "offer",
                                                                 "sdp": await caller.offer()})
        assert r.status_code == 200 and r.json() == {"sdp": None, "media": "p2p"}, r.text
        m = (await alice.get(f"/api/v1/calls/{call['id']}/media")).json()
        assert m["media"] == "p2p" and m["offer"].startswith("v=0")
        r = await alice.post(f"/api/v1/calls/{call['id']}/media", json={"type": "answer",
                                                                       "sdp": await agent.answer(m["offer"])})
        assert r.status_code == 200 and r.json()["state"] == "connected", r.text
        got = await frame(vws, "call_media")
        assert got["id"] == call["id"] and got["sdp_type"] == "answer"
        await caller.accept(got["sdp"])
        await caller.hears()  # the agent's 660 Hz, straight from the agent's peer
        await agent.hears()
        assert (await frame(vws, "call", ))["id"] == call["id"]

        # hold is a state both sides see; then the visitor hangs up
        assert (await alice.post(f"/api/v1/calls/{call['id']}/hold", json={"hold": True})).status_code == 200
        assert (await alice.post(f"/api/v1/calls/{call['id']}/recording", json={"action": "start"})).status_code == 409
        r = await v.post(f"/widget/calls/{call['id']}/hangup", {"token": v.token})
        assert r.status_code == 200 and r.json()["state"] == "ended"
        ended = await next_event(stream, "call.changed", lambda e: e["data"]["state"] == "ended")
        assert ended["data"]["end_cause"] == "completed"
        calls = (await alice.get("/api/v1/calls", params={"conversation_id": call["conversation_id"]})).json()
        assert calls[0]["provider"] == "webrtc" and calls[0]["answered_at"] and calls[0]["agent_id"]
        w = await alice.post(f"/api/v1/calls/{call['id']}/wrap-up", json={"disposition": "resolved"})
        assert w.status_code == 200, w.text
    await caller.close()
    await agent.close()
    await v.aclose()


async def test_a_recorded_queue_relays_the_call_speaks_to_the_caller_and_keeps_both_channels(
        sqlite_server, tmp_path: Path) -> None:
    server = sqlite_server
    _, key = await setup(server, record="always")
    token = await token_for(server, "alice@example.com")
    v = await visitor_with_conversation(server, key)
    caller, agent = Peer(tone(tmp_path / "v.wav", 440)), Peer(tone(tmp_path / "a.wav", 660))
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as alice, \
            websockets.connect(f"{server.ws_url}/api/v1/stream?token={token}") as stream:
        assert json.loads(await stream.recv())["name"] == "stream.ready"
        r = await v.post("/widget/calls", {"token": v.token})
        assert r.status_code == 201, r.text
        call = r.json()
        assert call["media"] == "relay" and call["state"] == "queued"
        r = await v.post(f"/widget/calls/{call['id']}/media", {"token": v.token, "type": "offer",
                                                                 "sdp": await caller.offer()})
        assert r.status_code == 200 and r.json()["media"] == "relay", r.text
        await caller.accept(r.json()["sdp"])
        await caller.hears(10)  # while waiting: the welcome (espeak-ng) or the music on hold
        assert (await alice.put("/api/v1/me/presence", json={"status": "available"})).status_code == 200
        offer = (await next_event(stream, "routing.offer",
                                  lambda e: e["data"]["conversation_id"] == call["conversation_id"]))["data"]
        assert (await alice.post(f"/api/v1/routing/offers/{offer['offer_id']}/accept")).status_code == 200
        await next_event(stream, "call.changed", lambda e: e["data"]["state"] == "offered")
        m = (await alice.get(f"/api/v1/calls/{call['id']}/media")).json()
        assert m["media"] == "relay" and m["offer"] is None
        wrong = await alice.post(f"/api/v1/calls/{call['id']}/media", json={"type": "answer", "sdp": EARLY})
        assert wrong.status_code == 409 and "send an offer" in wrong.json()["detail"]
        r = await alice.post(f"/api/v1/calls/{call['id']}/media", json={"type": "offer", "sdp": await agent.offer()})
        assert r.status_code == 200 and r.json()["sdp"], r.text
        await agent.accept(r.json()["sdp"])
        await agent.hears(50)  # the caller's 440 Hz, relayed by the server (1 s)
        await caller.hears(50)
        # PCI: a pause leaves silence where it was, marked
        assert (await alice.post(f"/api/v1/calls/{call['id']}/recording", json={"action": "pause"})).status_code == 200
        await asyncio.sleep(1.0)
        assert (await alice.post(f"/api/v1/calls/{call['id']}/recording", json={"action": "resume"})).status_code == 200
        await agent.hears(50)
        r = await alice.post(f"/api/v1/calls/{call['id']}/hangup")
        assert r.status_code == 200, r.text
        await next_event(stream, "call.changed", lambda e: e["data"]["state"] == "ended")
        await caller.close()
        await agent.close()

        calls = (await alice.get("/api/v1/calls", params={"conversation_id": call["conversation_id"]})).json()
        talk = (calls[0]["ended_at"] and calls[0]["recording_seconds"])
        assert talk and 2 <= calls[0]["recording_seconds"] <= 15, calls[0]
        wav = await alice.get(f"/api/v1/calls/{call['id']}/recording")
        assert wav.status_code == 200 and wav.headers["content-type"] == "audio/wav"
        with wave.open(io.BytesIO(wav.content)) as w:
            assert w.getnchannels() == 2 and w.getframerate() == 16_000
            seconds = w.getnframes() / w.getframerate()
            pcm = array("h", w.readframes(w.getnframes()))
        assert abs(seconds - calls[0]["recording_seconds"]) <= 1
        left, right = pcm[0::2], pcm[1::2]
        rms = [math.sqrt(sum(x * x for x in ch[i:i + 1600]) / 1600) for ch in (left, right)
               for i in range(0, len(ch) - 1600, 1600)]
        per = len(rms) // 2
        assert sum(1 for r_ in rms[:per] if r_ > 300) >= 10, "the customer's channel is silent"
        assert sum(1 for r_ in rms[per:] if r_ > 300) >= 10, "the agent's channel is silent"
        assert sum(1 for r_ in rms[:per] if r_ < 10) >= 5, "the paused second is not silent"
        async with server.services.db.transaction(write=False) as s:
            from threadline.voice import repo as voice_repo
            row = await voice_repo.get(s, call["id"])
            assert row is not None and row.details["recording_gaps"] and row.details["recording_gaps"][0][1] is not None
        # the visitor may not fetch anything of it; another agent's token may not play it
        assert (await v.http.get(f"/api/v1/calls/{call['id']}/recording")).status_code == 401
    await v.aclose()


async def test_bad_input_is_refused_with_a_reason(sqlite_server, tmp_path: Path) -> None:
    server = sqlite_server
    ids, key = await setup(server, calls="voice")
    v = await visitor_with_conversation(server, key)
    other = Visitor(server, key)
    await other.start()
    try:
        assert (await v.post("/widget/calls", {"token": "v1.forged.token"})).status_code == 401
        assert (await v.post("/widget/calls", {})).status_code == 401
        video = await v.post("/widget/calls", {"token": v.token, "video": True})
        assert video.status_code == 403 and "Video calls" in video.json()["detail"]
        bad = await v.post("/widget/calls", {"token": v.token, "video": "yes please"})
        assert bad.status_code == 422 and "video" in bad.json()["detail"]
        r = await v.post("/widget/calls", {"token": v.token})
        assert r.status_code == 201
        call = r.json()
        assert (await v.post("/widget/calls", {"token": v.token})).status_code == 409  # one call at a time
        # another visitor cannot see, offer to or hang up this call
        assert (await other.http.get(f"/widget/calls/{call['id']}",
                                     params={"channel": key, "token": other.token})).status_code == 404
        assert (await other.post(f"/widget/calls/{call['id']}/hangup", {"token": other.token})).status_code == 404
        huge = await v.post(f"/widget/calls/{call['id']}/media", {"token": v.token, "type": "offer", "sdp": "v" * 30_000})
        assert huge.status_code == 422 and "sdp" in huge.json()["detail"]
        assert (await v.post(f"/widget/calls/{2**40}/media", {"token": v.token, "type": "offer",
                                                             "sdp": EARLY})).status_code in (404, 422)
        garbage = await v.post(f"/widget/calls/{call['id']}/media", {"token": v.token, "type": "offer",
                                                                       "sdp": "v=0 not a description"})
        assert garbage.status_code == 422 and "session description" in garbage.json()["detail"]
        evil = Visitor(server, key, origin="http://evil.example")
        assert (await evil.post("/widget/calls", {"token": v.token})).status_code == 403
        await evil.aclose()
        # an agent who is not on the call cannot answer it
        bob = await token_for(server, "bob@example.com")
        async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {bob}"}) as c:
            assert (await c.get(f"/api/v1/calls/{call['id']}/media")).status_code in (403, 404)
        ended = await v.post(f"/widget/calls/{call['id']}/hangup", {"token": v.token})
        assert ended.status_code == 200 and ended.json()["state"] == "ended"
        late = await v.post(f"/widget/calls/{call['id']}/media", {"token": v.token, "type": "offer", "sdp": EARLY})
        assert late.status_code == 409
        async with server.services.db.transaction() as s:
            from threadline.actions import channels as channel_actions
            row = await channel_actions.create_channel(s, server.services.box, kind="webchat", name="No calls",
                                                       default_queue_id=ids["general"],
                                                       config={"allowed_origins": ["http://other.example"]})
            off_key = row.key
        off = Visitor(server, off_key, origin="http://other.example")
        await off.start()
        assert (await off.post("/widget/calls", {"token": off.token})).status_code == 403
        await off.aclose()
    finally:
        await v.aclose()
        await other.aclose()

