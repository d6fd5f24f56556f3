"""Asterisk ARI: the loop that runs calls on every enabled ``asterisk`` channel.

One connection per channel instance to its Stasis app's events websocket (``/ari/events?app=…``),
reconnected with backoff, in the process that holds the ``voice-ari`` leader lock (ARI delivers an app's
events to one socket: the newest wins). Nothing connects while no asterisk channel exists.

Each event is reduced into the voice actions in a write transaction, then the loop tells Asterisk what
to do by REST (the adapter's client), never inside the event's transaction:

* ``StasisStart`` of a caller → ``open_call`` (the channel id is the call's provider ref) → answer → the
  flow's first turn (``run_flow``), executed: sayings are played, a question collects keys from
  ``ChannelDtmfReceived`` (one key for a menu, ``num_digits`` or up to ``#`` for digits, the question's
  timeout counted from the end of its prompt), a queue plays music on hold with the caller's place and
  wait every ``announce_every_seconds``, a voicemail records, a hang-up hangs up.
* ``ChannelHangupRequest`` / ``StasisEnd`` / ``ChannelDestroyed`` of a caller → ``hang_up`` (abandoned
  while queued: the action decides); the agent's leg and the bridge are hung up and destroyed.
* ``voice.connect`` (an agent accepted): ``connect_job`` builds a mixing bridge ``tl-call-{id}``, moves
  the caller into it (music on the bridge) and originates the agent's endpoint into the app with
  ``appArgs=agent,{call id}``; when that leg enters Stasis it joins the bridge → ``agent_joined``.

Prompts are audio. A say node's ``audio`` is played as it is (``sound:…``, ``recording:…``; a bare name
becomes ``sound:name``). Text is spoken once with ``espeak-ng`` into the file store and played by URL
(``sound:http…/voice/prompts/{sha256}.wav``); without espeak-ng (or a file store, or a URL Asterisk can
fetch from) the loop plays ``sound:beep`` and logs it.

Events are deduplicated by their content (type, channel, timestamp, key, playback…), and every action is
idempotent on the call's state: a repeated event changes nothing. What a call is waiting for (keys, a
playback's end) is kept in memory: a restart mid-IVR leaves that caller to hang up or time out in Asterisk.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import io
import json
import shutil
import tempfile
import uuid
import wave
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog
import websockets
from sqlalchemy.ext.asyncio import AsyncSession

from threadline.adapters import AdapterFactory
from threadline.db.leader import LeaderLock
from threadline.db.models import ChannelInstanceRow
from threadline.db.repos import channels as channels_repo
from threadline.db.repos import users as users_repo
from threadline.db.session import Database
from threadline.db.types import utcnow
from threadline.files.store import FileStore
from threadline.flows import domain as flow
from threadline.loop import BackgroundLoop
from threadline.voice import actions
from threadline.voice import repo as voice_repo
from threadline.voice.domain.calls import CallState, Direction, announcement, text
from threadline.workers.scheduler import Job

log = structlog.get_logger(__name__)

KIND = "asterisk"
AGENT_ARG = "agent"  # appArgs of an agent's leg: agent,{call id}
CALLBACK_ARG = "callback"  # appArgs of a customer called back: callback,{call id}
CALLBACK_PREFIX = "tl-cb-"  # ids of the customer legs of callbacks: tl-cb-{call id}-{attempt}
AGENT_PREFIX = "tl-agent-"  # ids of the agent legs Threadline originates: tl-agent-{call id}-{attempt}
BEEP = "sound:beep"
VOICES = {"en": "en-us", "es": "es", "it": "it"}


MONITOR_ARG = "monitor"  # the appArgs of a supervisor's leg: monitor,{call id},{listen|whisper|barge},{snoop id}
SUPERVISOR_PREFIX = "tl-sup-"  # the channel id of a supervisor's leg
CALL_RECORDING = "tl-call-rec-"  # the name of an answered call's recording (its bridge's): + the call id


def bridge_id(call_id: int) -> str:
    return f"tl-call-{call_id}"


def agent_leg_call(channel_id: str) -> int | None:
    """The call an agent leg (``tl-agent-{call}-{n}``) belongs to."""
    if not channel_id.startswith(AGENT_PREFIX):
        return None
    head = channel_id[len(AGENT_PREFIX):].split("-")[0]
    return int(head) if head.isdigit() else None


# --------------------------------------------------------------------------- prompts


def prompt_store(files: FileStore) -> FileStore:
    """Where spoken prompts are kept: beside the file store, not in it, so the public prompts URL can
    never serve a customer's attachment (``voice/api.py``)."""
    return FileStore(files.root.parent / "prompts")


Synth = Callable[[str, str], Awaitable[bytes | None]]


async def espeak(line: str, locale: str) -> bytes | None:
    """``line`` spoken by espeak-ng as an 8 kHz mono 16-bit WAV (what Asterisk's ``wav`` format plays);
    None when espeak-ng is not installed."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "p.wav"
        proc = await asyncio.create_subprocess_exec(exe, "-v", VOICES.get(locale, "en-us"), "-w", str(out), line,
                                                    stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.PIPE)
        _, err = await proc.communicate()
        if proc.returncode != 0 or not out.exists():
            log.warning("espeak_failed", error=err.decode(errors="replace")[:200])
            return None
        return to_8khz(out.read_bytes())


def to_8khz(data: bytes) -> bytes:
    """A 16-bit mono WAV resampled to 8 kHz (nearest sample: telephone quality is the ceiling anyway)."""
    with wave.open(io.BytesIO(data)) as src:
        rate, width, channels = src.getframerate(), src.getsampwidth(), src.getnchannels()
        frames = src.readframes(src.getnframes())
    if width != 2 or channels != 1:
        raise ValueError("expected 16-bit mono audio")
    samples = array.array("h", frames)
    if rate != 8000:
        n = int(len(samples) * 8000 / rate)
        samples = array.array("h", (samples[int(i * rate / 8000)] for i in range(n)))
    out = io.BytesIO()
    with wave.open(out, "wb") as dst:
        dst.setnchannels(1)
        dst.setsampwidth(2)
        dst.setframerate(8000)
        dst.writeframes(samples.tobytes())
    return out.getvalue()


class Prompts:
    """Text → a media URI Asterisk can play, each text spoken once (kept in the file store)."""

    def __init__(self, files: FileStore | None, synth: Synth = espeak) -> None:
        self.files = files
        self.synth = synth
        self._made: dict[tuple[str, str], str | None] = {}  # (locale, text) → sha256 (None: cannot speak)
        self._warned = False

    async def uri(self, line: str, locale: str, base_url: str | None) -> str:
        if self.files is None or not base_url:
            return self._beep("no file store or no URL Asterisk can fetch prompts from")
        key = (locale, line)
        if key not in self._made:
            data = await self.synth(line, locale)
            self._made[key] = await asyncio.to_thread(self.files.put, data) if data else None
        sha = self._made[key]
        if sha is None:
            return self._beep("espeak-ng is not installed")
        return f"sound:{base_url.rstrip('/')}/{sha}.wav"

    def _beep(self, why: str) -> str:
        if not self._warned:
            log.warning("ari_prompts_beep", reason=why, hint="install espeak-ng, or give say nodes audio")
            self._warned = True
        return BEEP


# --------------------------------------------------------------------------- one channel instance


@dataclass
class Plan:
    """What a caller hears and does next, decided in a transaction, carried out by REST after it."""

    says: list[tuple[str, str | None]]  # (text, audio)
    locale: str = "en"
    ask: flow.Ask | None = None
    queued: bool = False
    voicemail_seconds: int | None = None
    hangup: bool = False


@dataclass
class Leg:
    """A caller's channel while the loop waits for something of it (in memory)."""

    call_id: int
    ask: flow.Ask | None = None
    digits: str = ""
    token: int = 0  # bumps with each question: a stale timeout does nothing
    timer: asyncio.Task[None] | None = None
    playing: set[str] = field(default_factory=set)
    then: dict[str, str] = field(default_factory=dict)  # playback id → what follows its end: ask | moh | record | hangup
    queued: bool = False
    announcer: asyncio.Task[None] | None = None
    record_seconds: int = 120

    def cancel(self) -> None:
        for task in (self.timer, self.announcer):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        self.timer = self.announcer = None


class AriConnection:
    """The events websocket of one asterisk channel and the calls on it."""

    def __init__(self, db: Database, channel_id: int, adapter: Any, prompts: Prompts, *,
                 max_backoff: float = 30.0, clock: Callable[[], datetime] = utcnow, transcribe: bool = False) -> None:
        self.db = db
        self.transcribe = transcribe  # voicemails go to the local speech-to-text model (voice.transcribe)
        self.channel_id = channel_id
        self.adapter = adapter
        self.prompts = prompts
        self.max_backoff = max_backoff
        self.clock = clock
        self.legs: dict[str, Leg] = {}
        self.monitors: dict[str, tuple[str, str]] = {}  # a supervisor's leg → (its bridge, its snoop channel)
        self.lock = asyncio.Lock()  # events and timers of this channel, one at a time
        self.connected = asyncio.Event()
        self.handled = 0  # events handled (tests, diagnostics)
        self.error: str | None = None
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._stopping = asyncio.Event()
        self._ws: Any = None

    # --- the socket -----------------------------------------------------------------------------

    async def run(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                async with websockets.connect(self.adapter.events_url(), open_timeout=10, ping_interval=20,
                                              max_size=2**20) as ws:
                    self._ws = ws
                    self.connected.set()
                    self.error = None
                    backoff = 0.5
                    log.info("ari_connected", channel_id=self.channel_id, app=self.adapter.config.app)
                    async for raw in ws:
                        await self.dispatch(raw)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - reconnect with backoff
                self.error = f"{exc.__class__.__name__}: {exc}"
                log.warning("ari_connection_error", channel_id=self.channel_id, error=self.error)
            finally:
                self._ws = None
                self.connected.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), backoff)
            backoff = min(backoff * 2, self.max_backoff)

    async def close(self) -> None:
        self._stopping.set()
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        for leg in self.legs.values():
            leg.cancel()

    async def dispatch(self, raw: str | bytes) -> None:
        try:
            event = json.loads(raw)
        except ValueError:
            log.warning("ari_unreadable_event", channel_id=self.channel_id)
            return
        if not isinstance(event, dict) or not self._fresh(event):
            return
        async with self.lock:
            try:
                await self.handle(event)
            except Exception:
                log.exception("ari_event_failed", channel_id=self.channel_id, type=event.get("type"))
            self.handled += 1

    def _fresh(self, event: dict[str, Any]) -> bool:
        """False for an event already seen (the same type, channel, time, key, playback…)."""
        ch = event.get("channel") if isinstance(event.get("channel"), dict) else {}
        parts = [event.get("type"), ch.get("id"), event.get("timestamp"), event.get("digit"),
                 (event.get("playback") or {}).get("id") if isinstance(event.get("playback"), dict) else None,
                 (event.get("recording") or {}).get("name") if isinstance(event.get("recording"), dict) else None,
                 json.dumps(event.get("args"))]
        key = json.dumps(parts, default=str)
        if key in self._seen:
            return False
        self._seen[key] = None
        while len(self._seen) > 5000:
            self._seen.popitem(last=False)
        return True

    # --- events ---------------------------------------------------------------------------------

    async def handle(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        ch = event.get("channel") if isinstance(event.get("channel"), dict) else {}
        cid = str(ch.get("id") or "")
        if kind == "StasisStart":
            args = [str(a) for a in event.get("args") or []]
            if args[:1] == [AGENT_ARG]:
                await self.agent_entered(cid, args)
            elif args[:1] == [MONITOR_ARG]:
                await self.supervisor_entered(cid, args)
            elif args[:1] == [CALLBACK_ARG]:
                await self.called_back(cid, args)
            elif cid and args[:1] not in (["snoop"], ["test"]):  # legs Threadline placed for itself
                await self.caller_entered(cid, ch)
        elif kind == "ChannelDtmfReceived":
            await self.digit(cid, str(event.get("digit") or ""))
        elif kind == "PlaybackFinished":
            playback = event.get("playback") or {}
            await self.playback_finished(str(playback.get("id", "")))
        elif kind in ("ChannelHangupRequest", "StasisEnd", "ChannelDestroyed"):
            if cid.startswith(SUPERVISOR_PREFIX):
                await self.supervisor_gone(cid)
            elif cid.startswith(CALLBACK_PREFIX):
                await self.callback_gone(cid, event)
            elif agent_leg_call(cid) is not None:
                await self.agent_gone(cid, event)
            elif cid:
                await self.caller_gone(cid)
        elif kind == "RecordingFinished":
            await self.recorded(event.get("recording") or {})

    async def caller_entered(self, cid: str, ch: dict[str, Any]) -> None:
        cfg, now = self.adapter.config, self.clock()
        caller = ch.get("caller") or {}
        ours = cfg.our_number or str((ch.get("dialplan") or {}).get("exten") or "")
        async with self.db.transaction(write=True) as s:
            channel = await s.get(ChannelInstanceRow, self.channel_id)
            if channel is None:
                return
            call, created = await actions.open_call(
                s, channel, ref=cid, direction=Direction.INBOUND, customer=str(caller.get("number") or "anonymous"),
                ours=ours, locale=cfg.language, now=now, name=str(caller.get("name") or ""),
                details={"ari_channel": str(ch.get("name") or "")[:200]})
            if not created:
                return
            definition = await actions.load_flow(s, call, cfg.flow_id)
            if definition is None:
                plan = await self._enqueue(s, call, channel.default_queue_id, [(text("welcome", call.locale), None)],
                                           call.locale, now)
            else:
                plan = await self._plan(s, call, await actions.run_flow(s, call, definition, None, now), now)
            call_id = call.id
        await self.adapter.answer(cid)
        await self.execute(cid, call_id, plan)

    async def _plan(self, s: AsyncSession, call: Any, turn: actions.FlowTurn, now: datetime) -> Plan:
        says: list[tuple[str, str | None]] = [(say.text, say.audio) for say in turn.says if say.text or say.audio]
        if turn.ask is not None:
            return Plan(says, turn.locale, ask=turn.ask)
        if turn.enqueue is not None:
            return await self._enqueue(s, call, turn.enqueue.queue_id, says, turn.locale, now,
                                       priority=turn.enqueue.priority)
        if turn.voicemail is not None:
            await actions.start_voicemail(s, call, now)
            prompt = turn.voicemail.prompt or text("voicemail_prompt", turn.locale)
            return Plan([*says, (prompt, None)], turn.locale, voicemail_seconds=turn.voicemail.max_seconds)
        bye = [(turn.hangup.text, None)] if turn.hangup is not None and turn.hangup.text else []
        return Plan([*says, *bye], turn.locale, hangup=True)

    async def _enqueue(self, s: AsyncSession, call: Any, queue_id: int | None, says: list[tuple[str, str | None]],
                       locale: str, now: datetime, *, priority: int = 0) -> Plan:
        if not await actions.enqueue(s, call, queue_id, now, priority=priority):
            await actions.start_voicemail(s, call, now)
            return Plan([*says, (text("closed", locale), None)], locale, voicemail_seconds=120)
        return Plan(says, locale, queued=True)

    async def execute(self, cid: str, call_id: int, plan: Plan) -> None:
        leg = self.legs.setdefault(cid, Leg(call_id))
        media = [await self._media(line, audio, plan.locale) for line, audio in plan.says]
        if plan.ask is not None:
            leg.ask, leg.digits, leg.token = plan.ask, "", leg.token + 1
            if plan.ask.prompt:
                media.append(await self._media(plan.ask.prompt, None, plan.locale))
        last = await self._play(cid, leg, media)
        follow = "ask" if plan.ask is not None else "moh" if plan.queued else "record" \
            if plan.voicemail_seconds is not None else "hangup"
        if plan.voicemail_seconds is not None:
            leg.record_seconds = plan.voicemail_seconds
        if plan.queued:
            leg.queued = True
            if leg.announcer is None:
                leg.announcer = asyncio.create_task(self._announce(cid, leg), name=f"ari-announce-{call_id}")
        if last is None:
            await self._then(cid, leg, follow)
        else:
            leg.then[last] = follow

    async def _media(self, line: str, audio: str | None, locale: str) -> str:
        if audio:
            return audio if ":" in audio else f"sound:{audio}"
        cfg = self.adapter.config
        base = cfg.prompts_url or (f"{self.adapter.hook_url}/voice/prompts" if self.adapter.hook_url else None)
        return await self.prompts.uri(line, locale, base)

    async def _play(self, cid: str, leg: Leg, media: list[str]) -> str | None:
        """Play each item (Asterisk queues a channel's playbacks); the last playback's id."""
        last = None
        for item in media:
            pid = f"tl-pb-{uuid.uuid4().hex[:16]}"
            leg.playing.add(pid)
            await self.adapter.play(cid, item, playback_id=pid, lang=self.adapter.config.language)
            last = pid
        return last

    async def _then(self, cid: str, leg: Leg, what: str) -> None:
        if what == "ask" and leg.ask is not None:
            self._arm(cid, leg, leg.ask.timeout_seconds)
        elif what == "moh" and leg.queued:
            await self.adapter.start_moh(cid, self.adapter.config.moh_class)
        elif what == "record":
            await self.adapter.record(cid, f"tl-voicemail-{leg.call_id}", max_seconds=leg.record_seconds)
        elif what == "hangup":
            self.legs.pop(cid, None)
            leg.cancel()
            await self.adapter.hangup(cid)

    async def playback_finished(self, pid: str) -> None:
        for cid, leg in list(self.legs.items()):
            if pid in leg.playing:
                leg.playing.discard(pid)
                what = leg.then.pop(pid, None)
                if what is not None:
                    await self._then(cid, leg, what)
                return

    # --- keys -----------------------------------------------------------------------------------

    def _arm(self, cid: str, leg: Leg, seconds: float) -> None:
        if leg.timer is not None:
            leg.timer.cancel()
        leg.timer = asyncio.create_task(self._timeout(cid, leg, leg.token, seconds), name=f"ari-ask-{leg.call_id}")

    async def _timeout(self, cid: str, leg: Leg, token: int, seconds: float) -> None:
        await asyncio.sleep(seconds)
        async with self.lock:
            if self.legs.get(cid) is leg and leg.token == token and leg.ask is not None:
                leg.timer = None
                await self.answer(cid, leg, flow.Digits(leg.digits) if leg.digits else flow.Timeout())

    async def digit(self, cid: str, key: str) -> None:
        leg = self.legs.get(cid)
        cfg = self.adapter.config
        if leg is not None and leg.queued and leg.ask is None and key and key == cfg.callback_key \
                and cfg.outbound_endpoint_template:
            await self.wants_callback(cid, leg)
            return
        if leg is None or leg.ask is None or not key:
            log.info("ari_dtmf_ignored", channel_id=self.channel_id, ari_channel=cid, known=leg is not None)
            return
        ask = leg.ask
        if not leg.digits:  # barge-in: a key stops the prompt
            for pid in list(leg.playing):
                leg.then.pop(pid, None)
                await self.adapter.stop_playback(pid)
            leg.playing.clear()
        if key == "#" and ask.kind == "digits":
            await self.answer(cid, leg, flow.Digits(leg.digits) if leg.digits else flow.NoInput())
            return
        leg.digits += key
        wanted = 1 if ask.kind == "choice" else ask.num_digits or ask.max_digits
        if wanted and len(leg.digits) >= wanted:
            await self.answer(cid, leg, flow.Digits(leg.digits))
        else:
            self._arm(cid, leg, ask.timeout_seconds)

    async def answer(self, cid: str, leg: Leg, reply: flow.Reply) -> None:
        """The caller answered the question (or did not, in time): the flow's next turn."""
        leg.ask, leg.digits, leg.token = None, "", leg.token + 1
        if leg.timer is not None and leg.timer is not asyncio.current_task():
            leg.timer.cancel()
        leg.timer = None
        now = self.clock()
        async with self.db.transaction(write=True) as s:
            call = await voice_repo.by_ref(s, self.channel_id, cid, for_update=True)
            if call is None or call.state != CallState.IN_FLOW:
                return
            definition = await actions.load_flow(s, call, None)
            if definition is None:
                plan = Plan([], call.locale, hangup=True)
            else:
                plan = await self._plan(s, call, await actions.run_flow(s, call, definition, reply, now), now)
        await self.execute(cid, leg.call_id, plan)

    # --- the queue ------------------------------------------------------------------------------

    async def _announce(self, cid: str, leg: Leg) -> None:
        """Every ``announce_every_seconds`` while queued: the caller's place and wait, then music again."""
        every = self.adapter.config.announce_every_seconds
        while True:
            await asyncio.sleep(every)
            async with self.lock:
                if self.legs.get(cid) is not leg:
                    return
                async with self.db.transaction(write=False) as s:
                    call = await voice_repo.get(s, leg.call_id)
                    if call is None or call.state != CallState.QUEUED:
                        leg.queued = False
                        leg.announcer = None
                        return
                    figures = await actions.wait_figures(s, call)
                    locale = call.locale
                lines = announcement(figures.position, figures.ewt_seconds, locale)
                cfg = self.adapter.config
                if cfg.callback_key and cfg.outbound_endpoint_template:
                    lines.append(text("callback_offer", locale, key=cfg.callback_key))
                if not lines:
                    continue
                await self.adapter.stop_moh(cid)
                last = await self._play(cid, leg, [await self._media(line, None, locale) for line in lines])
                if last is not None:
                    leg.then[last] = "moh"

    # --- the end of a leg -----------------------------------------------------------------------

    async def caller_gone(self, cid: str) -> None:
        leg = self.legs.pop(cid, None)
        if leg is not None:
            leg.cancel()
        async with self.db.transaction(write=True) as s:
            call = await voice_repo.by_ref(s, self.channel_id, cid, for_update=True)
            if call is None or call.state == CallState.ENDED:
                return
            await actions.hang_up(s, call, self.clock())
            agent_leg, bridge = call.details.get("agent_channel"), call.details.get("bridge")
        if agent_leg:
            await self.adapter.hangup(str(agent_leg))
        if bridge:
            await self.adapter.destroy_bridge(str(bridge))

    async def agent_entered(self, cid: str, args: list[str]) -> None:
        call_id = int(args[1]) if len(args) > 1 and args[1].isdigit() else None
        hang_up_leg = True
        async with self.db.transaction(write=True) as s:
            call = await voice_repo.get(s, call_id, for_update=True) if call_id is not None else None
            callback = call is not None and bool(call.details.get("callback_answered"))
            if call is not None and call.channel_instance_id == self.channel_id \
                    and (callback or call.state in (CallState.OFFERED, CallState.QUEUED, CallState.CONNECTED)):
                bridge = str(call.details.get("bridge") or bridge_id(call.id))
                await self.adapter.add_to_bridge(bridge, cid)
                await self.adapter.bridge_moh(bridge, False)
                call.details = {**call.details, "agent_channel": cid, "bridge": bridge}
                await actions.agent_joined(s, call, self.clock())
                hang_up_leg = False
                if await actions.recording_policy(s, call, None) == "always":  # the queue records its calls
                    await self.adapter.record_bridge(bridge, f"{CALL_RECORDING}{call.id}")
                    call.details = {**call.details, "recording_sid": f"{CALL_RECORDING}{call.id}",
                                    "recording_started_at": self.clock().isoformat()}
        if hang_up_leg:  # the caller left meanwhile, or this is not a call of ours
            log.info("ari_agent_leg_refused", channel_id=self.channel_id, ari_channel=cid, call_id=call_id)
            await self.adapter.hangup(cid)

    async def wants_callback(self, cid: str, leg: Leg) -> None:
        """A queued caller pressed the callback key: their task keeps its place, they hear that they will
        be called back, and the line hangs up (the call ends as ``callback``, not abandoned)."""
        async with self.db.transaction(write=True) as s:
            call = await voice_repo.get(s, leg.call_id, for_update=True)
            if call is None or call.state != CallState.QUEUED:
                return
            await actions.request_callback(s, call, self.clock())
            locale = call.locale
        leg.queued = False
        if leg.announcer is not None:
            leg.announcer.cancel()
            leg.announcer = None
        await self.adapter.stop_moh(cid)
        await self.execute(cid, leg.call_id, Plan([(text("callback_taken", locale), None)], locale, hangup=True))

    async def called_back(self, cid: str, args: list[str]) -> None:
        """The customer answered our callback: into the call's bridge with music, and the agent who accepted
        is dialled into it (``agent_entered``)."""
        call_id = int(args[1]) if len(args) > 1 and args[1].isdigit() else None
        async with self.db.transaction(write=True) as s:
            call = await voice_repo.get(s, call_id, for_update=True) if call_id is not None else None
            if call is None or call.channel_instance_id != self.channel_id or call.agent_id is None:
                await self.adapter.hangup(cid)
                return
            bridge = await self.adapter.create_bridge(bridge_id(call.id), "mixing", name=bridge_id(call.id))
            await self.adapter.add_to_bridge(bridge, cid)
            await self.adapter.bridge_moh(bridge, True, self.adapter.config.moh_class)
            call.details = {**call.details, "callback_answered": True, "bridge": bridge}
            await dial_agent(s, self.adapter, call, int(call.agent_id), bridge)

    async def callback_gone(self, cid: str, event: dict[str, Any]) -> None:
        """The customer's callback leg ended: never answered (busy, no answer) → tried again later by
        policy; answered → the call is over for the agent too."""
        head = cid[len(CALLBACK_PREFIX):].split("-")[0]
        if event.get("type") != "ChannelDestroyed" or not head.isdigit():
            return
        agent_leg = bridge = None
        async with self.db.transaction(write=True) as s:
            call = await voice_repo.get(s, int(head), for_update=True)
            if call is None or call.channel_instance_id != self.channel_id \
                    or call.details.get("callback_channel") != cid:
                return
            if not call.details.get("callback_answered"):
                cause = str(event.get("cause_txt") or "no answer").lower()
                await actions.callback_failed(s, call, self.clock(), "busy" if "busy" in cause else "no-answer")
            else:
                agent_leg, bridge = call.details.get("agent_channel"), call.details.get("bridge")
            call.details = {k: v for k, v in call.details.items() if k not in ("callback_channel", "callback_answered")}
        if agent_leg:
            await self.adapter.hangup(str(agent_leg))
        if bridge:
            await self.adapter.destroy_bridge(str(bridge))

    async def supervisor_entered(self, cid: str, args: list[str]) -> None:
        """A supervisor's phone answered (``monitor,{call},{mode},{snoop}``): to barge, it joins the call's
        bridge; to listen or whisper, a bridge of its own with the snoop channel (which hears both parties
        and, for a whisper, speaks to the agent only)."""
        call_id = int(args[1]) if len(args) > 1 and args[1].isdigit() else None
        mode, snoop = (args[2] if len(args) > 2 else ""), (args[3] if len(args) > 3 else "")
        async with self.db.transaction(write=False) as s:
            call = await voice_repo.get(s, call_id) if call_id is not None else None
        if call is None or call.channel_instance_id != self.channel_id or call.state not in (
                CallState.CONNECTED, CallState.ON_HOLD):
            await self.adapter.hangup(cid)  # the call is over, or not ours
            if snoop:
                await self.adapter.hangup(snoop)
            return
        if mode == "barge":
            await self.adapter.add_to_bridge(str(call.details.get("bridge") or bridge_id(call.id)), cid)
            return
        bridge = await self.adapter.create_bridge(f"tl-mon-{cid}", "mixing", name=f"tl-mon-{cid}")
        await self.adapter.add_to_bridge(bridge, cid, snoop)
        self.monitors[cid] = (bridge, snoop)

    async def supervisor_gone(self, cid: str) -> None:
        bridge, snoop = self.monitors.pop(cid, (None, None))
        if snoop:
            await self.adapter.hangup(snoop)
        if bridge:
            await self.adapter.destroy_bridge(bridge)

    async def agent_gone(self, cid: str, event: dict[str, Any]) -> None:
        call_id = agent_leg_call(cid)
        customer = None
        async with self.db.transaction(write=True) as s:
            call = await voice_repo.get(s, call_id, for_update=True) if call_id is not None else None
            if call is None or call.channel_instance_id != self.channel_id:
                return
            if call.state == CallState.OFFERED and call.details.get("agent_channel") == cid:
                # the agent's phone never answered: the caller waits for the next agent
                cause = str(event.get("cause_txt") or event.get("type") or "no answer")
                call.details = {k: v for k, v in call.details.items() if k != "agent_channel"}
                await actions.agent_missed(s, call, self.clock(), cause)
            elif call.state in (CallState.CONNECTED, CallState.ON_HOLD) and call.details.get("agent_channel") == cid:
                customer = call.provider_ref  # the agent hung up: so does the call
            elif call.details.get("callback_answered") and call.details.get("agent_channel") == cid:
                customer = call.details.get("callback_channel")  # a callback: the agent left (or never answered)
        if customer:
            await self.adapter.hangup(customer)

    async def recorded(self, recording: dict[str, Any]) -> None:
        name = str(recording.get("name") or "")
        target = str(recording.get("target_uri") or "")
        if name.startswith(CALL_RECORDING) and name[len(CALL_RECORDING):].isdigit():
            await self._call_recorded(int(name[len(CALL_RECORDING):]), name, recording)
            return
        if not name.startswith("tl-voicemail-") or not target.startswith("channel:"):
            return
        async with self.db.transaction(write=True) as s:
            call = await voice_repo.by_ref(s, self.channel_id, target.removeprefix("channel:"), for_update=True)
            if call is None or call.details.get("voicemail"):
                return
            seconds = recording.get("duration")
            await actions.recording(s, call, url=f"{self.adapter.config.ari_url}/ari/recordings/stored/{name}/file",
                                    seconds=int(seconds) if isinstance(seconds, int | float) else None,
                                    transcribe=self.transcribe)
            await actions.voicemail_left(s, call, self.clock())


    async def _call_recorded(self, call_id: int, name: str, recording: dict[str, Any]) -> None:
        """The recording of an answered call (the bridge's) is stored on the Asterisk server."""
        async with self.db.transaction(write=True) as s:
            call = await voice_repo.get(s, call_id, for_update=True)
            if call is None or call.channel_instance_id != self.channel_id or call.recording_url:
                return
            seconds = recording.get("duration")
            await actions.recording(s, call, url=f"{self.adapter.config.ari_url}/ari/recordings/stored/{name}/file",
                                    seconds=int(seconds) if isinstance(seconds, int | float) else None,
                                    transcribe=self.transcribe)


# --------------------------------------------------------------------------- the loop


class AriLoop(BackgroundLoop):
    """One ``AriConnection`` per enabled asterisk channel, while this process leads ``voice-ari``."""

    name = "voice-ari"

    def __init__(self, db: Database, factory: AdapterFactory, *, files: FileStore | None = None,
                 interval: float = 10.0, max_backoff: float = 30.0, transcribe: bool = False) -> None:
        super().__init__(interval=interval)
        self.db = db
        self.transcribe = transcribe
        self.factory = factory
        self.prompts = Prompts(prompt_store(files) if files is not None else None)
        self.max_backoff = max_backoff
        self.leader = LeaderLock(db, "voice-ari")
        self.connections: dict[int, AriConnection] = {}
        self._tasks: dict[int, tuple[str, asyncio.Task[None]]] = {}

    def on_event(self, env: Any) -> None:
        if getattr(env, "name", "") == "channel.changed" and (env.payload or {}).get("kind") == KIND:
            self.wake()

    async def tick(self) -> float | None:
        async with self.db.transaction(write=False) as s:
            rows = [r for r in await channels_repo.list_channels(s) if r.kind == KIND and r.enabled]
        if not rows:
            await self._stop_all()
            if self.leader.held:
                await self.leader.release()
            return None
        if not await self.leader.try_acquire():
            await self._stop_all()
            return None
        wanted = {r.id: r for r in rows}
        for channel_id, (config_key, task) in list(self._tasks.items()):
            row = wanted.get(channel_id)
            if task.done() or row is None or row.config_encrypted != config_key:
                await self._stop(channel_id)
        for channel_id, row in wanted.items():
            if channel_id not in self._tasks:
                conn = AriConnection(self.db, row.id, self.factory.for_row(row), self.prompts,
                                     max_backoff=self.max_backoff, transcribe=self.transcribe)
                self.connections[channel_id] = conn
                self._tasks[channel_id] = (row.config_encrypted, asyncio.create_task(conn.run(), name=f"ari-{row.id}"))
        return None

    async def _stop(self, channel_id: int) -> None:
        conn = self.connections.pop(channel_id, None)
        entry = self._tasks.pop(channel_id, None)
        if conn is not None:
            await conn.close()
        if entry is not None:
            _, task = entry
            done, _ = await asyncio.wait({task}, timeout=5)
            if not done:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _stop_all(self) -> None:
        for channel_id in list(self._tasks):
            await self._stop(channel_id)

    async def on_stop(self) -> None:
        await self._stop_all()
        await self.leader.release()


async def connect_job(session: AsyncSession, job: Job, now: datetime, factory: AdapterFactory) -> bool:
    """The ``voice.connect`` job for a call on an asterisk channel (False: not one, the caller goes on).

    A mixing bridge ``tl-call-{id}`` (created or updated: a retry is safe), the caller moved into it with
    music, and the agent's endpoint originated into the app (``appArgs=agent,{call id}``): the loop adds
    that leg to the bridge when it enters Stasis."""
    call = await voice_repo.get(session, int(job.key), for_update=True)
    if call is None or call.provider != KIND:
        return False
    channel = await session.get(ChannelInstanceRow, call.channel_instance_id)
    if channel is None or not channel.enabled:
        return True
    adapter: Any = factory.for_row(channel)
    agent_id = int(job.payload["agent_id"])
    if job.payload.get("callback"):  # the customer first: the agent is dialled when they answer
        endpoint = adapter.config.outbound_endpoint(actions.customer_number(call))
        if endpoint is None or call.details.get("callback_channel"):
            return True  # no way to dial out (callbacks are not offered then), or dialling already
        attempt = int(call.details.get("callback_attempts", 0)) + 1
        leg = await adapter.originate(endpoint, app_args=f"{CALLBACK_ARG},{call.id}",
                                      channel_id=f"{CALLBACK_PREFIX}{call.id}-{attempt}",
                                      caller_id=adapter.config.our_number or None)
        call.agent_id = agent_id
        call.details = {**call.details, "callback_channel": leg, "callback_done": True, "agent_id": agent_id}
        log.info("voice_callback_ari", call_id=call.id, agent_id=agent_id, endpoint=endpoint)
        return True
    if call.state not in (CallState.QUEUED, CallState.OFFERED):
        return True  # the caller left meanwhile
    bridge = await adapter.create_bridge(bridge_id(call.id), "mixing", name=bridge_id(call.id))
    await adapter.stop_moh(call.provider_ref)
    await adapter.add_to_bridge(bridge, call.provider_ref)
    await adapter.bridge_moh(bridge, True, adapter.config.moh_class)
    await dial_agent(session, adapter, call, agent_id, bridge)
    log.info("voice_connect_ari", call_id=call.id, agent_id=agent_id, endpoint=call.details["agent_endpoint"],
             bridge=bridge)
    return True


async def dial_agent(session: AsyncSession, adapter: Any, call: Any, agent_id: int, bridge: str) -> None:
    """Originate the agent's endpoint into the app (``appArgs=agent,{call id}``); ``agent_entered`` adds the
    leg to ``bridge`` when it answers."""
    user = await users_repo.get_user(session, agent_id)
    endpoint = adapter.agent_endpoint(agent_id, user.email if user is not None else str(agent_id))
    attempt = int(call.details.get("agent_attempts", 0)) + 1
    leg = await adapter.originate(endpoint, app_args=f"{AGENT_ARG},{call.id}",
                                  channel_id=f"{AGENT_PREFIX}{call.id}-{attempt}",
                                  caller_id=actions.customer_number(call))
    call.details = {**call.details, "bridge": bridge, "agent_channel": leg, "agent_id": agent_id,
                    "agent_endpoint": endpoint, "agent_attempts": attempt}


async def monitor(adapter: Any, call: Any, *, supervisor_id: int, email: str, mode: str, attempt: str) -> str:
    """A supervisor listens to, whispers to the agent of, or joins an Asterisk call: a snoop channel on
    the customer's leg (listen: hears both parties) or the agent's (whisper: speaks to the agent only),
    and the supervisor's own phone originated into the app (``supervisor_entered`` bridges them)."""
    snoop = ""
    if mode != "barge":
        target = call.provider_ref if mode == "listen" else str(call.details.get("agent_channel") or "")
        if not target:
            raise ValueError("no agent leg to whisper to")
        snoop = await adapter.snoop(target, spy="both", whisper="out" if mode == "whisper" else "none",
                                    app_args="snoop", snoop_id=f"tl-snoop-{call.id}-{supervisor_id}-{attempt}")
    return str(await adapter.originate(adapter.agent_endpoint(supervisor_id, email),
                                       app_args=f"{MONITOR_ARG},{call.id},{mode},{snoop}",
                                       channel_id=f"{SUPERVISOR_PREFIX}{call.id}-{supervisor_id}-{attempt}",
                                       caller_id=f"Monitor {actions.customer_number(call)}"))


async def hold(adapter: Any, call: Any, on: bool) -> None:
    """The agent puts the caller on hold (out of the bridge, hearing music) or back."""
    bridge = str(call.details.get("bridge") or bridge_id(call.id))
    if on:
        await adapter.remove_from_bridge(bridge, call.provider_ref)
        await adapter.start_moh(call.provider_ref, adapter.config.moh_class)
    else:
        await adapter.stop_moh(call.provider_ref)
        await adapter.add_to_bridge(bridge, call.provider_ref)


async def recording(adapter: Any, call: Any, action: str) -> str | None:
    """The agent starts (the bridge records, named ``tl-call-rec-{id}``), pauses or resumes the recording;
    the recording's name when it starts."""
    name = f"{CALL_RECORDING}{call.id}"
    if action == "start":
        await adapter.record_bridge(str(call.details.get("bridge") or bridge_id(call.id)), name)
        return name
    await adapter.pause_recording(name, action == "pause")
    return None
