"""The server's side of a browser call's media, when it takes part (``aiortc``): it relays audio between
the visitor and the agent, records both into a two-channel WAV (customer left, agent right), speaks to
the caller while they wait (welcome, place in the queue, estimated wait) and plays music on hold.

One ``MediaCall`` per call, held by this process's ``MediaHub``. Each party is an ``RTCPeerConnection``
to the server; what a party hears is a ``Speaker`` track, paced at 20 ms by the server's clock, fed
(in that order of precedence) by prompts, by the other party's audio while connected and not on hold,
by music on hold, or by silence. A party's audio is read by a pump task that hands each frame to the
recorder and to the other party's speaker. Everything is s16 stereo 48 kHz in 20 ms frames, as the Opus
decoder gives them, so a frame is relayed without a copy.

The recorder keeps each side at 16 kHz mono in a temporary file, aligned on the wall clock (a party
that stops sending for a while leaves silence, not a shift); while the recording is paused (a card
number read out, PCI) it writes silence, so the gap stays where it was, and the call's details mark it.
At the end the two sides are interleaved into one WAV for the file store.

Python media is CPU-bound: ``bench/voice_media.py`` measures how many relayed and recorded calls one
process carries before frames are late (docs/performance.md). Calls whose queue does not record stay
peer to peer: the server only relays their session descriptions.
"""

from __future__ import annotations

import asyncio
import io
import math
import operator
import tempfile
import time
import wave
from array import array
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import structlog

log = structlog.get_logger(__name__)

RATE = 48_000
SAMPLES = 960  # 20 ms
PTIME = SAMPLES / RATE
FRAME_BYTES = SAMPLES * 2 * 2  # s16 stereo
REC_RATE = 16_000
MAX_SCRIPT = 50 * 60  # frames of prompts a speaker may hold (a minute)
MAX_LIVE = 6  # at most 120 ms of the other party's audio buffered (older frames are dropped)
LATE = 0.02  # a frame handed to the encoder this much after its time is late
CUSTOMER, AGENT = "customer", "agent"


def _av() -> Any:
    import av  # noqa: PLC0415  (loaded on the first browser call, not at start)

    return av


def _frame(data: bytes) -> Any:
    av = _av()
    f = av.AudioFrame(format="s16", layout="stereo", samples=SAMPLES)
    f.planes[0].update(data)
    f.sample_rate = RATE
    return f


SILENCE = bytes(FRAME_BYTES)


def frames_of(audio: bytes) -> list[bytes]:
    """An audio file (WAV, or anything FFmpeg reads) as 20 ms s16 stereo 48 kHz frames (raw bytes)."""
    av = _av()
    out: list[bytes] = []
    resampler = av.AudioResampler(format="s16", layout="stereo", rate=RATE, frame_size=SAMPLES)
    with av.open(io.BytesIO(audio)) as container:
        for frame in container.decode(audio=0):
            for f in resampler.resample(frame):
                out.append(bytes(f.planes[0])[:FRAME_BYTES])
    for f in resampler.resample(None):
        out.append(bytes(f.planes[0])[:FRAME_BYTES].ljust(FRAME_BYTES, b"\0"))
    return out


def hold_music(seconds: float = 6.0) -> list[bytes]:
    """A soft arpeggio (generated once: no file to ship or download), looped while a party is on hold. Each
    note is whole periods of a sine, so notes join at zero (no clicks); built with array slicing, fast."""
    notes = [261.63, 329.63, 392.0, 523.25, 392.0, 329.63]  # C E G C G E
    per = int(RATE * seconds / len(notes))
    mono = array("h")
    for hz in notes:
        n = round(RATE / hz)
        period = array("h", (int(2500 * math.sin(2 * math.pi * k / n)) for k in range(n)))
        mono.extend(period * (per // n))
    both = array("h", bytes(4 * len(mono)))
    both[0::2], both[1::2] = mono, mono
    raw = both.tobytes()
    return [raw[i:i + FRAME_BYTES].ljust(FRAME_BYTES, b"\0") for i in range(0, len(raw), FRAME_BYTES)]


def mix(a: bytes, b: bytes) -> bytes:
    """Two 20 ms s16 frames as one (summed, clipped)."""
    x, y = array("h"), array("h")
    x.frombytes(a.ljust(FRAME_BYTES, b"\0"))
    y.frombytes(b.ljust(FRAME_BYTES, b"\0"))
    return array("h", [max(-32768, min(32767, i + j)) for i, j in zip(x, y, strict=True)]).tobytes()


def audio_level(frame: Any) -> int:
    """The RFC 6465 level (dBov) aiortc puts in every audio packet it sends, from a quarter of the samples.
    aiortc's own loops over every sample in Python (about 1.8 ms a frame, the largest cost of a relayed
    call here); the level is a rough 7-bit figure, so a quarter of the samples give the same value."""
    pcm = array("h")
    pcm.frombytes(bytes(frame.planes[0])[:frame.samples * 2 * len(frame.layout.channels)])
    some = pcm[::4]
    total = sum(map(operator.mul, some, some)) * 4
    rms = math.sqrt(total / (frame.samples * 32767 * 32767)) if frame.samples else 0.0
    return round(min(0.0, max(-127.0, 20 * math.log10(rms)))) if rms > 0 else -127


def _faster_aiortc() -> None:
    import aiortc.rtp  # noqa: PLC0415

    aiortc.rtp.compute_audio_level_dbov = audio_level  # the sender looks it up on the module at each frame


@dataclass
class Pace:
    """How well a speaker kept time (the bench reads these)."""

    frames: int = 0
    late: int = 0
    worst: float = 0.0
    mixed: int = 0  # frames that carried the second voice (a supervisor's, or the agent's to a supervisor)


class Speaker:
    """What one party hears, as an aiortc track (``track()``): paced at 20 ms."""

    def __init__(self, music: list[bytes]) -> None:
        self.script: deque[bytes] = deque()  # prompts to say, then back to whatever else
        self.live: deque[Any] = deque(maxlen=MAX_LIVE)  # the other party's frames
        self.extra: deque[Any] = deque(maxlen=MAX_LIVE)  # a second voice mixed in (a supervisor; the agent
        # for a supervisor who listens)
        self.music = music
        self.on_hold = False
        self.pace = Pace()
        self._n = 0
        self._music_at = 0
        self._t0: float | None = None

    def say(self, frames: list[bytes]) -> None:
        room = MAX_SCRIPT - len(self.script)  # at most a minute of prompts queued
        if room > 0:
            self.script.extend(frames[:room])

    def feed(self, frame: Any) -> None:
        if not self.on_hold:
            self.live.append(frame)

    def feed_extra(self, frame: Any) -> None:
        if not self.on_hold:
            self.extra.append(frame)

    def hold(self, on: bool) -> None:
        self.on_hold = on
        if on:
            self.live.clear()

    def quiet(self) -> bool:
        """Nothing left to say (the prompts were heard)."""
        return not self.script

    async def next_frame(self) -> Any:
        now = time.monotonic()
        if self._t0 is None or now - (self._t0 + self._n * PTIME) > 0.5:
            self._t0, self._n = now - self._n * PTIME, self._n  # (re)start the clock after a long stall
        due = self._t0 + self._n * PTIME
        if due > now:
            await asyncio.sleep(due - now)
        lateness = time.monotonic() - due
        self.pace.frames += 1
        if lateness > LATE:
            self.pace.late += 1
        self.pace.worst = max(self.pace.worst, lateness)
        if self.script:
            frame = _frame(self.script.popleft())
        elif self.live and self.extra:
            frame = _frame(mix(bytes(self.live.popleft().planes[0])[:FRAME_BYTES],
                               bytes(self.extra.popleft().planes[0])[:FRAME_BYTES]))
            self.pace.mixed += 1
        elif self.live:
            frame = self.live.popleft()
        elif self.extra:
            frame = self.extra.popleft()
            self.pace.mixed += 1
        elif self.on_hold and self.music:
            frame = _frame(self.music[self._music_at % len(self.music)])
            self._music_at += 1
        else:
            frame = _frame(SILENCE)
        frame.pts, frame.time_base, frame.sample_rate = self._n * SAMPLES, Fraction(1, RATE), RATE
        self._n += 1
        return frame

    def track(self) -> Any:
        from aiortc import MediaStreamTrack  # noqa: PLC0415

        speaker = self

        class SpeakerTrack(MediaStreamTrack):
            kind = "audio"

            async def recv(self) -> Any:
                return await speaker.next_frame()

        return SpeakerTrack()


class _Side:
    def __init__(self) -> None:
        self.file = tempfile.TemporaryFile()  # deleted when closed (or when the process dies)
        self.written = 0  # samples
        self.resampler = _av().AudioResampler(format="s16", layout="mono", rate=REC_RATE)


class Recorder:
    """Both parties' audio, aligned on the wall clock, into one two-channel WAV at the end."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.sides = {CUSTOMER: _Side(), AGENT: _Side()}
        self.t0: float | None = None
        self.paused = False
        self.heard = {CUSTOMER: 0, AGENT: 0}  # frames with any sound in them (tests, the bench)

    @property
    def on(self) -> bool:
        return self.t0 is not None

    def start(self) -> None:
        if self.t0 is None:
            self.t0 = self.clock()

    def write(self, who: str, frame: Any) -> None:
        if self.t0 is None:
            return
        side = self.sides[who]
        due = int((self.clock() - self.t0) * REC_RATE)
        for f in side.resampler.resample(frame):
            data = bytes(f.planes[0])[:f.samples * 2]
            gap = due - (side.written + f.samples)
            if gap > REC_RATE // 20:  # more than 50 ms behind the clock: the party sent nothing for a while
                side.file.write(bytes(gap * 2))
                side.written += gap
            if self.paused:
                data = bytes(len(data))
            elif any(data):
                self.heard[who] += 1
            side.file.write(data)
            side.written += f.samples

    def seconds(self) -> float:
        return max(s.written for s in self.sides.values()) / REC_RATE

    def finish(self) -> bytes | None:
        """The recording as a two-channel 16 kHz WAV (customer left, agent right); None if it never
        started. Reads and interleaves one second at a time."""
        if self.t0 is None:
            self.close()
            return None
        total = max(s.written for s in self.sides.values())
        out = io.BytesIO()
        with wave.open(out, "wb") as w:
            w.setnchannels(2)
            w.setsampwidth(2)
            w.setframerate(REC_RATE)
            for s in self.sides.values():
                s.file.seek(0)
            step = REC_RATE
            for _ in range(0, total, step):
                chunk = [array("h"), array("h")]
                for i, s in enumerate(self.sides.values()):
                    chunk[i].frombytes(s.file.read(step * 2))
                n = max(len(chunk[0]), len(chunk[1]))
                for c in chunk:
                    if len(c) < n:
                        c.extend(array("h", bytes(2 * (n - len(c)))))
                both = array("h", bytes(4 * n))
                both[0::2], both[1::2] = chunk[0], chunk[1]
                w.writeframes(both.tobytes())
        self.close()
        return out.getvalue()

    def close(self) -> None:
        for s in self.sides.values():
            s.file.close()


Gone = Callable[[int, str], Awaitable[None]]  # (call id, who) when a party's connection failed or closed


@dataclass
class MediaCall:
    """One browser call's media on the server."""

    call_id: int
    music: list[bytes]
    on_gone: Gone | None = None
    to_customer: Speaker = field(init=False)
    to_agent: Speaker = field(init=False)
    recorder: Recorder = field(default_factory=Recorder)
    pcs: dict[str, Any] = field(default_factory=dict)
    pumps: list[asyncio.Task[None]] = field(default_factory=list)
    ended: bool = False
    recording: bytes | None = None  # the two-channel WAV, once closed
    announcing: bool = False  # a task speaks to the waiting caller (one per call)
    monitors: dict[int, tuple[Any, str, Speaker]] = field(default_factory=dict)  # supervisor → (pc, mode, hears)

    def __post_init__(self) -> None:
        self.to_customer = Speaker(self.music)
        self.to_agent = Speaker([])  # on hold, the agent hears silence

    @property
    def connected(self) -> bool:
        return CUSTOMER in self.pcs and AGENT in self.pcs

    def speaker_for(self, who: str) -> Speaker:
        return self.to_customer if who == CUSTOMER else self.to_agent

    async def answer(self, who: str, offer_sdp: str, ice_servers: list[dict[str, Any]]) -> str:
        """Take a party's offer (full ICE gathering, no trickle): the server's answer SDP."""
        from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription  # noqa: PLC0415

        if who in self.pcs:
            await self.pcs.pop(who).close()
        servers = [RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
                   for s in ice_servers]
        pc = RTCPeerConnection(RTCConfiguration(iceServers=servers or None))
        pc.addTrack(self.speaker_for(who).track())

        @pc.on("track")
        def on_track(track: Any) -> None:
            if track.kind == "audio":
                self.pumps.append(asyncio.get_running_loop().create_task(self._pump(who, track)))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed") and not self.ended and self.pcs.get(who) is pc \
                    and self.on_gone is not None:
                log.info("browser_call_party_gone", call_id=self.call_id, who=who, state=pc.connectionState)
                await self.on_gone(self.call_id, who)

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:  # aiortc's parser raises AttributeError, AssertionError, KeyError…
            await pc.close()
            raise ValueError(f"{type(exc).__name__}: {exc}"[:200] or "unreadable") from None
        if self.ended:  # the call ended while we negotiated
            await pc.close()
            raise ValueError("the call has ended")
        self.pcs[who] = pc
        return str(pc.localDescription.sdp)

    async def _pump(self, who: str, track: Any) -> None:
        from aiortc.mediastreams import MediaStreamError  # noqa: PLC0415

        other = self.to_agent if who == CUSTOMER else self.to_customer
        try:
            while True:
                frame = await track.recv()
                if self.connected:
                    self.recorder.write(who, frame)
                    other.feed(frame)
                    for _, _, hears in list(self.monitors.values()):  # a supervisor hears both parties
                        (hears.feed if who == CUSTOMER else hears.feed_extra)(frame)
        except MediaStreamError:
            return

    async def monitor(self, supervisor: int, mode: str, offer_sdp: str, ice_servers: list[dict[str, Any]]) -> str:
        """A supervisor joins the media: ``listen`` (hears both parties), ``whisper`` (the agent also hears
        them), ``barge`` (both parties hear them). Their answer SDP; closing their connection ends it."""
        from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription  # noqa: PLC0415
        from aiortc.mediastreams import MediaStreamError  # noqa: PLC0415

        await self.unmonitor(supervisor)
        servers = [RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
                   for s in ice_servers]
        pc = RTCPeerConnection(RTCConfiguration(iceServers=servers or None))
        hears = Speaker([])
        pc.addTrack(hears.track())

        async def speak(track: Any) -> None:
            try:
                while True:
                    frame = await track.recv()
                    if mode in ("whisper", "barge"):
                        self.to_agent.feed_extra(frame)
                    if mode == "barge":
                        self.to_customer.feed_extra(frame)
            except MediaStreamError:
                return

        @pc.on("track")
        def on_track(track: Any) -> None:
            if track.kind == "audio":
                self.pumps.append(asyncio.get_running_loop().create_task(speak(track)))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed") and self.monitors.get(supervisor, (None,))[0] is pc:
                self.monitors.pop(supervisor, None)

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:
            await pc.close()
            raise ValueError(f"{type(exc).__name__}: {exc}"[:200]) from None
        self.monitors[supervisor] = (pc, mode, hears)
        return str(pc.localDescription.sdp)

    async def unmonitor(self, supervisor: int) -> None:
        old = self.monitors.pop(supervisor, None)
        if old is not None:
            await old[0].close()

    async def drop(self, who: str) -> None:
        """A party leaves the media without ending the call (a transfer): their connection closes."""
        pc = self.pcs.pop(who, None)
        if pc is not None:
            await pc.close()

    def hold(self, on: bool) -> None:
        """The customer hears music and the agent is not heard (nor hears the customer)."""
        self.to_customer.hold(on)
        self.to_agent.hold(on)

    async def close(self) -> bytes | None:
        self.ended = True
        for pc in [*self.pcs.values(), *(m[0] for m in self.monitors.values())]:
            await pc.close()
        self.monitors.clear()
        for t in self.pumps:
            t.cancel()
        self.recording = await asyncio.to_thread(self.recorder.finish)
        return self.recording


class MediaHub:
    """This process's browser calls that the server takes part in."""

    def __init__(self, *, ice_servers: list[dict[str, Any]] | None = None, max_calls: int = 20) -> None:
        self.calls: dict[int, MediaCall] = {}
        self.max_calls = max_calls  # relayed calls this process carries at most (bench/voice_media.py)
        self.limiter: Any = None  # the browser calls' rate limits in this process (voice/browser/api.py)
        self._ready = False
        self.ice_servers = ice_servers or []
        self._music: list[bytes] | None = None

    def music(self) -> list[bytes]:
        if self._music is None:
            self._music = hold_music()
        return self._music

    def get(self, call_id: int) -> MediaCall | None:
        return self.calls.get(call_id)

    def full(self) -> bool:
        return len(self.calls) >= self.max_calls

    def open(self, call_id: int, on_gone: Gone | None = None) -> MediaCall:
        if not self._ready:
            _faster_aiortc()
            self._ready = True
        call = self.calls.get(call_id)
        if call is None:
            call = self.calls[call_id] = MediaCall(call_id, self.music(), on_gone)
        return call

    async def end(self, call_id: int) -> MediaCall | None:
        call = self.calls.pop(call_id, None)
        if call is not None and not call.ended:
            await call.close()
        return call

    async def stop(self) -> None:
        """The process stops: each call ends as if its parties had gone (``on_gone`` hangs it up and keeps
        its recording), so no call stays live in the database with nobody carrying its media."""
        for call_id, call in list(self.calls.items()):
            if call.on_gone is not None and not call.ended:
                try:
                    await call.on_gone(call_id, "server")
                except Exception:
                    log.exception("browser_call_stop_failed", call_id=call_id)
            await self.end(call_id)
