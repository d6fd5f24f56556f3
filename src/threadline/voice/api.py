"""Voice routes.

Twilio call-control webhooks, under the channel's hook URL (``/hooks/{key}/voice…``): each is checked
with the ``twilio`` library's ``RequestValidator`` against the public URL it came to (401 and nothing
changes when forged), applied in one transaction, and answered with TwiML built by the ``twilio``
library (``voice/domain/twiml.py``). A retried request (same body) gets the answer it got the first time
and changes nothing again; status events are applied in Twilio's ``SequenceNumber`` order, once.

| path | Twilio sends it | answer |
| --- | --- | --- |
| ``/voice`` | a call comes in | the IVR's first turn, or straight to the queue |
| ``/voice/gather?call=`` | the caller pressed keys or spoke (or nothing) | the IVR's next turn |
| ``/voice/wait?call=`` | the queue's wait URL, again after each turn | place, estimated wait, callback offer, music |
| ``/voice/wait-key?call=`` | a key pressed while waiting | leave for a callback, or keep waiting |
| ``/voice/queue-result?call=`` | the wait ended (redirected to the agent, left, hung up) | goodbye or nothing |
| ``/voice/status`` | the number's status callback (and of callbacks, agent legs) | empty |
| ``/voice/conference?call=`` | conference events (the agent joined, someone left, hold) | empty |
| ``/voice/voicemail``, ``/voice/recording`` | a voicemail was recorded; a recording is ready | goodbye / empty |

The generic CTI endpoint (``POST /hooks/{key}/cti``, a ``pbx`` channel) takes any PBX's newCall / answer
/ hangup events (``voice/domain/calls.CtiEvent``), authenticated by the channel's token.

The REST API: ``GET /api/v1/calls?conversation_id=`` (the calls of a conversation the caller may see).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from threadline.channels.base import (
    BadPayload,
    InvalidSignature,
    PermanentSendError,
    RawRequest,
    RetryableSendError,
)
from threadline.db.models import ChannelInstanceRow
from threadline.db.types import utcnow
from threadline.domain.errors import (
    Conflict,
    DomainError,
    NotFound,
    PermissionDenied,
    ProviderFailed,
    ValidationFailed,
)
from threadline.domain.users import Role
from threadline.flows import domain as flow
from threadline.voice import actions
from threadline.voice import repo as voice_repo
from threadline.voice.browser import api as browser
from threadline.voice.domain import twiml
from threadline.voice.domain.calls import TWILIO_END, CallState, Direction, announcement, cti_event, text
from threadline.web.deps import CurrentActor, ServicesDep, SupervisorActor
from threadline.web.errors import problem

hooks = APIRouter(tags=["voice"])
# what a call control may answer besides the usual: not yours (403), not connected (409), the provider said no
CONTROL: dict[int | str, dict[str, Any]] = {
    403: {"description": "Not the agent on this call (or a supervisor)"},
    409: {"description": "The call is not connected, or its phone system takes no commands"},
    502: {"description": "The phone provider refused or failed the command; its reason is in detail"}}
CallId = Annotated[int, Path(ge=1, le=2**31 - 1)]
router = APIRouter(prefix="/calls", tags=["voice"])
XML = "text/xml"
SECRET_FIELDS = frozenset({"Digits", "SpeechResult", "UnstableSpeechResult", "Confidence"})
EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response />'
MAX_FORM = 64 * 1024


class Hook:
    """One verified Twilio voice request: its channel, adapter, form and time."""

    def __init__(self, channel: Any, adapter: Any, form: dict[str, str], raw: bytes, now: datetime,
                 hook_url: str) -> None:
        self.channel, self.adapter, self.form, self.raw, self.now = channel, adapter, form, raw, now
        self.hook_url = hook_url

    @property
    def base(self) -> str:
        return self.hook_url + "/voice"

    def urls(self, call_id: int) -> twiml.Urls:
        return twiml.Urls(self.base, call_id)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()[:32]

    def at(self) -> datetime:
        """When the provider says the event happened (its ``Timestamp``), else when it arrived; a time
        more than a day away from ours is not believed."""
        try:
            when = parsedate_to_datetime(self.form.get("Timestamp", ""))
        except (TypeError, ValueError, IndexError):
            return self.now
        if when.tzinfo is None or abs((when - self.now).total_seconds()) > 86_400:
            return self.now
        return when.astimezone(UTC)

    def seq(self) -> int | None:
        value = self.form.get("SequenceNumber", "")
        return int(value) if value.isdigit() and len(value) < 10 else None


def _xml(body: str, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type=XML)


async def _hook(services: Any, key: str, request: Request, suffix: str) -> Hook | Response:
    channel = await services.channels.by_key(key)
    if channel is None or not channel.enabled or channel.kind != "twilio_voice":
        return problem(404, "no enabled voice channel has this hook URL")
    body = await request.body()
    if len(body) > MAX_FORM:
        return problem(413, f"a voice webhook carries at most {MAX_FORM} bytes")
    headers = {k.lower(): v for k, v in request.headers.items()}
    req = RawRequest("POST", str(request.url), headers, body)
    adapter = services.factory.for_row(channel)
    try:
        adapter.verify_request(req, suffix)
    except InvalidSignature as exc:
        return problem(401, f"signature check failed: {exc}", code="invalid_signature")
    try:
        form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        return problem(400, "the form body is not UTF-8", code="bad_payload")
    if form.get("AccountSid") and form["AccountSid"] != adapter.config.account_sid:
        return problem(400, f"AccountSid {form['AccountSid'][:40]} is not this channel's account", code="bad_payload")
    # the public hook URL (THREADLINE_PUBLIC_BASE_URL); without one, the URL this request came to
    hook_url = adapter.hook_url or f"{str(request.base_url).rstrip('/')}/hooks/{key}"
    return Hook(channel, adapter, form, body, utcnow(), hook_url)


class BadHookRequest(DomainError):
    """A voice webhook that cannot be understood (400; a missing call, like any, is 404): the app's error
    handler answers both as problem documents, so the hooks need no handling of their own."""

    status = 400
    code = "bad_payload"


def _call_id(call: str | None) -> int:
    if call is None or not call.isdigit() or len(call) > 10 or int(call) > 2**31 - 1:
        raise BadHookRequest("the URL's call parameter is not a call id")
    return int(call)


async def _replayed(session: Any, call: Any, h: Hook, step: str) -> str | None:
    """The answer given to this very request before (a retry), or None when it is new (then recorded)."""
    key = f"{step}:{h.digest}"
    # what the caller typed or said (a PIN, an account number, a card) is never stored: only that they answered
    kept = {k: h.form[k] for k in list(h.form)[:40] if k not in SECRET_FIELDS}
    if await voice_repo.record_event(session, call.id, key, step, h.seq(), kept):
        return None
    for ev in await voice_repo.events(session, call.id):
        if ev.key == key:
            return str(ev.data.get("_answer", EMPTY))
    return EMPTY


async def _remember(session: Any, call: Any, h: Hook, step: str, answer: str) -> str:
    for ev in await voice_repo.events(session, call.id):
        if ev.key == f"{step}:{h.digest}":
            ev.data = {**ev.data, "_answer": answer}
    return answer


# --------------------------------------------------------------------------- rendering a flow turn


async def _render(session: Any, h: Hook, call: Any, turn: actions.FlowTurn) -> str:
    urls, locale = h.urls(call.id), turn.locale
    lines = [s.text for s in turn.says if s.text]
    if turn.ask is not None:
        a = turn.ask
        digits = a.num_digits if a.kind == "digits" else 1
        return twiml.ask(urls, lines, locale, prompt=a.prompt, num_digits=digits, timeout_seconds=a.timeout_seconds,
                         speech=a.speech, finish_on_key="#" if a.kind == "digits" and not a.num_digits else None)
    if turn.enqueue is not None:
        return await _enqueue(session, h, call, turn.enqueue.queue_id, lines, locale, priority=turn.enqueue.priority,
                              callback_key=turn.enqueue.callback_key)
    if turn.voicemail is not None:
        await actions.start_voicemail(session, call, h.now)
        prompt = turn.voicemail.prompt or text("voicemail_prompt", locale)
        return twiml.voicemail(urls, " ".join([*lines, prompt]), locale, turn.voicemail.max_seconds)
    goodbye = [*lines, *([turn.hangup.text] if turn.hangup is not None and turn.hangup.text else [])]
    await actions.hang_up(session, call, h.now)  # the flow ends the call (self-service, or a dead end)
    return twiml.hangup(goodbye, locale)


async def _enqueue(session: Any, h: Hook, call: Any, queue_id: int | None, lines: list[str], locale: str, *,
                   priority: int = 0, callback_key: str | None = None) -> str:
    key = callback_key or h.adapter.config.callback_key
    if not await actions.enqueue(session, call, queue_id, h.now, priority=priority, callback_key=key):
        await actions.start_voicemail(session, call, h.now)
        return twiml.voicemail(h.urls(call.id), " ".join([*lines, text("closed", locale)]), locale, 120)
    return twiml.enqueue(h.urls(call.id), lines, locale)


# --------------------------------------------------------------------------- Twilio webhooks


@hooks.post("/hooks/{key}/voice", summary="Twilio: a call comes in", response_class=Response)
async def incoming(key: str, request: Request, services: ServicesDep) -> Response:
    h = await _hook(services, key, request, "/voice")
    if isinstance(h, Response):
        return h
    sid, caller = h.form.get("CallSid", ""), h.form.get("From", "")
    if not sid.startswith("CA") or len(sid) > 64:
        return problem(400, "no CallSid: not a Twilio voice request", code="bad_payload")
    cfg = h.adapter.config
    async with services.db.transaction(write=True) as session:
        call, created = await actions.open_call(
            session, h.channel, ref=sid, direction=Direction.INBOUND, customer=caller,
            ours=h.form.get("To", cfg.phone_number), locale=cfg.language, now=h.now,
            name=h.form.get("CallerName", ""), details={"caller_country": h.form.get("FromCountry", "")})
        replay = await _replayed(session, call, h, "incoming")
        if replay is not None:
            return _xml(replay)
        if not created and call.state != CallState.RINGING:
            return _xml(EMPTY)
        definition = await actions.load_flow(session, call, cfg.flow_id)
        if definition is None:
            answer = await _enqueue(session, h, call, h.channel.default_queue_id, [text("welcome", call.locale)],
                                    call.locale)
        else:
            answer = await _render(session, h, call, await actions.run_flow(session, call, definition, None, h.now))
        return _xml(await _remember(session, call, h, "incoming", answer))


@hooks.post("/hooks/{key}/voice/gather", summary="Twilio: the caller answered a question", response_class=Response)
async def gathered(key: str, request: Request, services: ServicesDep, call: str | None = Query(None)) -> Response:
    h = await _hook(services, key, request, "/voice/gather")
    if isinstance(h, Response):
        return h
    call_id = _call_id(call)
    async with services.db.transaction(write=True) as session:
        row = await actions.get_call(session, call_id, h.channel.id)
        replay = await _replayed(session, row, h, "gather")
        if replay is not None:
            return _xml(replay)
        if row.state != CallState.IN_FLOW:
            return _xml(EMPTY)
        definition = await actions.load_flow(session, row, None)
        if definition is None:
            return _xml(twiml.hangup([], row.locale))
        digits, speech = h.form.get("Digits", "").strip(), h.form.get("SpeechResult", "").strip()
        reply: flow.Reply = flow.Digits(digits[:64]) if digits else flow.Text(speech[:500]) if speech \
            else flow.Timeout()
        answer = await _render(session, h, row, await actions.run_flow(session, row, definition, reply, h.now))
        return _xml(await _remember(session, row, h, "gather", answer))


@hooks.post("/hooks/{key}/voice/wait", summary="Twilio: a queued caller's wait music", response_class=Response)
async def wait(key: str, request: Request, services: ServicesDep, call: str | None = Query(None)) -> Response:
    h = await _hook(services, key, request, "/voice/wait")
    if isinstance(h, Response):
        return h
    call_id = _call_id(call)
    async with services.db.transaction(write=False) as session:
        row = await actions.get_call(session, call_id, h.channel.id, lock=False)
        figures = await actions.wait_figures(session, row)
    cfg = h.adapter.config
    return _xml(twiml.waiting(h.urls(call_id), announcement(figures.position, figures.ewt_seconds, row.locale),
                              row.locale, callback_key=row.details.get("callback_key") or cfg.callback_key,
                              music_url=cfg.hold_music_url, pause_seconds=cfg.announce_every_seconds))


@hooks.post("/hooks/{key}/voice/wait-key", summary="Twilio: a key pressed while queued", response_class=Response)
async def wait_key(key: str, request: Request, services: ServicesDep, call: str | None = Query(None)) -> Response:
    h = await _hook(services, key, request, "/voice/wait-key")
    if isinstance(h, Response):
        return h
    call_id = _call_id(call)
    async with services.db.transaction(write=False) as session:  # any other key changes nothing: a read
        row = await actions.get_call(session, call_id, h.channel.id, lock=False)
        wanted = row.details.get("callback_key") or h.adapter.config.callback_key
    if wanted and h.form.get("Digits", "").strip() == wanted and row.state == CallState.QUEUED:
        async with services.db.transaction(write=True) as session:
            row = await actions.get_call(session, call_id, h.channel.id)
            if row.state == CallState.QUEUED:
                await actions.request_callback(session, row, h.now)
                return _xml(twiml.leave())
    return _xml(EMPTY)  # any other key: the wait goes on (Twilio fetches the wait URL again)


@hooks.post("/hooks/{key}/voice/queue-result", summary="Twilio: how a queued caller's wait ended", response_class=Response)
async def queue_result(key: str, request: Request, services: ServicesDep, call: str | None = Query(None)) -> Response:
    h = await _hook(services, key, request, "/voice/queue-result")
    if isinstance(h, Response):
        return h
    call_id = _call_id(call)
    async with services.db.transaction(write=True) as session:
        row = await actions.get_call(session, call_id, h.channel.id)
        result = h.form.get("QueueResult", "")
        if result == "leave" and row.callback_requested:
            await actions.hang_up(session, row, h.at())  # their leg ends; their task keeps its place
            return _xml(twiml.hangup([text("callback_taken", row.locale)], row.locale))
        if result == "hangup":
            await actions.hang_up(session, row, h.at())
    return _xml(EMPTY)


@hooks.post("/hooks/{key}/voice/status", summary="Twilio: call status callbacks", response_class=Response)
async def status(key: str, request: Request, services: ServicesDep, call: str | None = Query(None),
                 leg: str | None = Query(None)) -> Response:
    h = await _hook(services, key, request, "/voice/status")
    if isinstance(h, Response):
        return h
    if leg not in (None, "agent", "callback", "transfer", "monitor"):
        return problem(400, "leg must be agent, callback, transfer or monitor (or absent: the customer's call)",
                       code="bad_payload")
    sid, state = h.form.get("CallSid", ""), h.form.get("CallStatus", "")
    failed = state in ("no-answer", "busy", "failed", "canceled")
    # Which statuses change anything: a leg's end (every leg), a callback answered. The rest (queued,
    # initiated, ringing, in-progress of a call already under way) change nothing and take no write:
    # each would otherwise queue for the single writer behind the inbox and the other callbacks.
    acts = state in TWILIO_END or failed or (leg == "callback" and state in ("in-progress", "answered"))
    if not acts:
        async with services.db.transaction(write=False) as session:
            if call is not None:
                await actions.get_call(session, _call_id(call), h.channel.id, lock=False)
        return _xml(EMPTY)
    async with services.db.transaction(write=True) as session:
        if call is not None:
            row = await actions.get_call(session, _call_id(call), h.channel.id)
        else:
            row = await voice_repo.by_ref(session, h.channel.id, sid, for_update=True)
        if row is None:
            return _xml(EMPTY)  # a call we never saw (another app's number): acknowledged
        key_ = f"status:{leg or 'customer'}:{sid}:{state}:{h.form.get('SequenceNumber', '')}"
        if not await voice_repo.record_event(session, row.id, key_, "status", h.seq(), {"status": state, "leg": leg}):
            return _xml(EMPTY)
        if leg is not None and leg.startswith("transfer"):
            if state in ("no-answer", "busy", "failed", "canceled"):
                await actions.transfer_failed(session, row, state, h.now)
        elif leg == "agent":
            if state in ("no-answer", "busy", "failed", "canceled") and row.state in (CallState.OFFERED,
                                                                                     CallState.QUEUED):
                await actions.agent_missed(session, row, h.now, state)
        elif leg == "callback":
            if state == "in-progress" or state == "answered":
                row.details = {**row.details, "callback_answered": True}
            elif state in ("no-answer", "busy", "failed", "canceled"):
                await actions.callback_failed(session, row, h.now, state)
        elif sid == row.provider_ref:
            await actions.call_status(session, row, state, h.seq(), h.at())
    return _xml(EMPTY)


@hooks.post("/hooks/{key}/voice/conference", summary="Twilio: conference events", response_class=Response)
async def conference(key: str, request: Request, services: ServicesDep, call: str | None = Query(None)) -> Response:
    h = await _hook(services, key, request, "/voice/conference")
    if isinstance(h, Response):
        return h
    event, sid = h.form.get("StatusCallbackEvent", ""), h.form.get("CallSid", "")
    async with services.db.transaction(write=True) as session:
        row = await actions.get_call(session, _call_id(call), h.channel.id)
        key_ = f"conf:{event}:{sid}:{h.form.get('SequenceNumber', '')}"
        if not await voice_repo.record_event(session, row.id, key_, "conference", h.seq(),
                                             {"event": event, "call_sid": sid, "label": h.form.get("ParticipantLabel", "")}):
            return _xml(EMPTY)
        customer = {row.provider_ref, row.details.get("callback_sid")}
        label = h.form.get("ParticipantLabel", "")
        if h.form.get("ConferenceSid", "").startswith("CF") and not row.details.get("conference_sid"):
            row.details = {**row.details, "conference_sid": h.form["ConferenceSid"][:64]}
        if event == "participant-join" and sid and sid not in customer and label != "customer":
            if not label and row.details.get("agent_call_sid") == sid:
                label = f"agent-{row.agent_id}"
            policy = await actions.recording_policy(session, row, h.adapter.config.record)
            await actions.participant_joined(session, row, label, h.at(), record=policy == "always")
            if label.startswith("agent-") and row.details.get("callback_waiting") == "customer":
                row.details = {k: v for k, v in row.details.items() if k != "callback_waiting"}
                await actions.command(session, row, "dial_customer", h.at())  # agent first: now the customer
        elif event == "participant-join" and sid in customer and row.details.get("callback_waiting") == "agent":
            row.details = {k: v for k, v in row.details.items() if k != "callback_waiting"}
            await actions.command(session, row, "add_agent", h.at())  # the customer answered: now the agent
        elif event == "participant-leave" and sid not in customer and label != "customer":
            await actions.participant_left(session, row, label, h.at())
        elif event == "participant-hold" and sid in customer:
            await actions.hold(session, row, True, h.at())
        elif event == "participant-unhold" and sid in customer:
            await actions.hold(session, row, False, h.at())
        elif event == "participant-leave" and sid in customer:
            await actions.hang_up(session, row, h.at())
        elif event == "conference-end":
            await actions.hang_up(session, row, h.at())
    return _xml(EMPTY)


def _seconds(value: str) -> int | None:
    return int(value) if value.isdigit() and len(value) < 7 else None


@hooks.post("/hooks/{key}/voice/voicemail", summary="Twilio: a voicemail was recorded", response_class=Response)
async def voicemail_done(key: str, request: Request, services: ServicesDep, call: str | None = Query(None)) -> Response:
    h = await _hook(services, key, request, "/voice/voicemail")
    if isinstance(h, Response):
        return h
    async with services.db.transaction(write=True) as session:
        row = await actions.get_call(session, _call_id(call), h.channel.id)
        if h.form.get("RecordingUrl"):
            await actions.recording(session, row, url=h.form["RecordingUrl"][:2000],
                                    seconds=_seconds(h.form.get("RecordingDuration", "")),
                                    transcribe=bool(services.settings.stt_model_dir))
        await actions.voicemail_left(session, row, h.now)
        await actions.hang_up(session, row, h.at())  # we answer <Hangup/>: the call ends with its message
        return _xml(twiml.hangup([], row.locale))


@hooks.post("/hooks/{key}/voice/recording", summary="Twilio: a recording is ready", response_class=Response)
async def recording_ready(key: str, request: Request, services: ServicesDep, call: str | None = Query(None)) -> Response:
    h = await _hook(services, key, request, "/voice/recording")
    if isinstance(h, Response):
        return h
    async with services.db.transaction(write=True) as session:
        row = await actions.get_call(session, _call_id(call), h.channel.id)
        if h.form.get("RecordingStatus", "completed") == "completed" and h.form.get("RecordingUrl"):
            await actions.recording(session, row, url=h.form["RecordingUrl"][:2000],
                                    seconds=_seconds(h.form.get("RecordingDuration", "")),
                                    transcribe=bool(services.settings.stt_model_dir))
    return _xml(EMPTY)


@hooks.post("/hooks/{key}/voice/transcription", summary="Twilio: a voicemail's transcript", response_class=Response)
async def transcription(key: str, request: Request, services: ServicesDep, call: str | None = Query(None)) -> Response:
    h = await _hook(services, key, request, "/voice/transcription")
    if isinstance(h, Response):
        return h
    async with services.db.transaction(write=True) as session:
        row = await actions.get_call(session, _call_id(call), h.channel.id)
        said = h.form.get("TranscriptionText", "").strip()[:5000]
        fresh = await voice_repo.record_event(session, row.id, f"transcript:{h.form.get('TranscriptionSid', '')}",
                                              "transcript", None, {"status": h.form.get("TranscriptionStatus")})
        if fresh and h.form.get("TranscriptionStatus") == "completed" and said:
            await actions.transcript(session, row, said, "Twilio")
    return _xml(EMPTY)


# --------------------------------------------------------------------------- any PBX: the CTI endpoint


@hooks.post("/hooks/{key}/cti", summary="Any PBX: call events (newCall, answer, hangup)")
async def cti(key: str, request: Request, services: ServicesDep) -> Response:
    channel = await services.channels.by_key(key)
    if channel is None or not channel.enabled or channel.kind != "pbx":
        return problem(404, "no enabled PBX channel has this hook URL")
    body = await request.body()
    if len(body) > MAX_FORM:
        return problem(413, f"a CTI event carries at most {MAX_FORM} bytes")
    headers = {k.lower(): v for k, v in request.headers.items()}
    adapter: Any = services.factory.for_row(channel)
    try:
        adapter.verify(RawRequest("POST", str(request.url), headers, body))
    except InvalidSignature as exc:
        return problem(401, f"authentication failed: {exc}", code="invalid_signature")
    try:
        event = cti_event(adapter.event(RawRequest("POST", str(request.url), headers, body)))
    except (BadPayload, ValueError) as exc:
        return problem(400, f"cannot understand the event: {exc}", code="bad_payload")
    async with services.db.transaction(write=True) as session:
        result = await actions.cti_event(session, channel, event, utcnow())
    return Response(content=CtiAnswer(**result).model_dump_json(), media_type="application/json")


class CtiAnswer(BaseModel):
    call_id: int
    conversation_id: int
    state: str
    duplicate: bool = False


# --------------------------------------------------------------------------- REST


class CallOut(BaseModel):
    id: int
    conversation_id: int
    channel_id: int
    provider: str
    direction: str
    from_number: str
    to_number: str
    state: str
    end_cause: str | None
    queue_id: int | None
    agent_id: int | None
    verified_by: str | None
    callback_requested: bool
    started_at: datetime
    enqueued_at: datetime | None
    answered_at: datetime | None
    ended_at: datetime | None
    recording_seconds: int | None
    recording_state: Literal["off", "recording", "paused"] = "off"
    disposition: str | None = None
    video: bool = False  # a video call in the browser
    dispositions: list[str] = Field(default_factory=list, description="the codes the call's queue takes at wrap-up "
                                    "(empty: any text)")
    sensitive_locked: bool = Field(default=False, description="sensitive actions on the caller's contact wait "
                                   "until the caller is verified (the queue asks for it)")


@router.get("", summary="The calls of a conversation", response_model=list[CallOut])
async def list_calls(actor: CurrentActor, services: ServicesDep,
                     conversation_id: int = Query(ge=1, le=2**31 - 1)) -> list[CallOut]:
    from threadline.db.repos import conversations as conversation_repo  # noqa: PLC0415
    async with services.db.transaction(write=False) as session:
        actor.check_can_see(await conversation_repo.get_conversation(session, conversation_id), conversation_id)
        rows = await voice_repo.for_conversation(session, conversation_id)
        voices = await actions.queue_voices(session, [r.queue_id for r in rows])
    return [_call_out(r).model_copy(update=actions.queue_fields(r, voices)) for r in rows]


def _call_out(r: Any) -> CallOut:
    return CallOut(id=r.id, conversation_id=r.conversation_id, channel_id=r.channel_instance_id, provider=r.provider,
                   direction=r.direction, from_number=r.from_number, to_number=r.to_number, state=r.state,
                   end_cause=r.end_cause, queue_id=r.queue_id, agent_id=r.agent_id, verified_by=r.verified_by,
                   callback_requested=r.callback_requested, started_at=r.started_at, enqueued_at=r.enqueued_at,
                   answered_at=r.answered_at, ended_at=r.ended_at, recording_seconds=r.recording_seconds,
                   recording_state="off" if not r.details.get("recording_sid") else
                   "paused" if r.details.get("recording_paused") else "recording",
                   disposition=r.details.get("disposition"), video=bool(r.details.get("video")))


# --------------------------------------------------------------------------- the agent's call controls

class HoldIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hold: bool


class RecordingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["start", "pause", "resume"]


class TransferIn(BaseModel):
    """Exactly one target: an agent, a queue or an outside number. ``blind``: the customer waits on hold
    until the target answers, then the call is theirs and you leave; ``warm``: the target joins you and
    the customer (three-way) and you leave when you are done."""

    model_config = ConfigDict(extra="forbid")
    agent_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    queue_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    number: str | None = Field(default=None, max_length=40)
    mode: Literal["blind", "warm"] = "blind"


class MonitorIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["listen", "whisper", "barge"]
    sdp: str | None = Field(default=None, max_length=20_000, description="A call in the browser: your browser's "
                            "offer (the answer comes back in ``sdp``); phone calls ring your phone instead")


class WrapUpIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    disposition: str = Field(min_length=1, max_length=60)
    notes: str = Field(default="", max_length=2000)


class ControlOut(BaseModel):
    call_id: int
    state: str
    detail: str
    sdp: str | None = None  # monitoring a call in the browser: the server's answer to your offer


async def _controlled(services: Any, actor: Any, call_id: int, *, supervise: bool = False) -> tuple[Any, Any]:
    """The live Twilio call and its adapter, for the agent who has it (or a supervisor); 404/403/409."""
    from threadline.db.repos import conversations as conversation_repo  # noqa: PLC0415
    async with services.db.transaction(write=False) as session:
        row = await voice_repo.get(session, call_id)
        if row is None:
            raise NotFound(f"call {call_id} does not exist")
        actor.check_can_see(await conversation_repo.get_conversation(session, row.conversation_id), row.conversation_id)
        channel = await session.get(ChannelInstanceRow, row.channel_instance_id)
    if supervise:
        actor.require(Role.SUPERVISOR, "listen to, whisper to or join a call")
    elif row.agent_id != actor.user_id and not actor.role.at_least(Role.SUPERVISOR):
        raise PermissionDenied("only the agent on this call (or a supervisor) may control it")
    if row.state not in (CallState.CONNECTED, CallState.ON_HOLD):
        raise Conflict(f"the call is {row.state.replace('_', ' ')}, not connected")
    if row.provider == actions.BROWSER:
        return row, None  # a call in the browser: voice/browser/api.py
    if channel is not None and channel.kind == "asterisk":
        return row, services.factory.for_row(channel)  # through ARI (voice/worker/ari.py)
    if channel is None or channel.kind != "twilio_voice":
        raise Conflict("this call's phone system takes no commands from Threadline (CTI only)")
    return row, services.factory.for_row(channel)


def _asterisk(adapter: Any) -> bool:
    return getattr(adapter, "kind", None) == "asterisk"


async def _asterisk_recording(services: Any, adapter: Any, row: Any, action: str) -> str:
    from threadline.voice.worker import ari  # noqa: PLC0415
    now = utcnow()
    if action == "start":
        if row.details.get("recording_sid"):
            raise Conflict("the call is being recorded already")
        async with services.db.transaction(write=False) as session:
            if await actions.recording_policy(session, row, None) == "never":
                raise Conflict("this call's queue does not record calls (its recording policy is 'never')")
    elif not row.details.get("recording_sid"):
        raise Conflict("the call is not being recorded")
    name = None

    async def step() -> None:
        nonlocal name
        name = await ari.recording(adapter, row, action)
    await _provider(step())
    async with services.db.transaction(write=True) as session:
        fresh = await actions.get_call(session, row.id, row.channel_instance_id)
        if action == "start":
            fresh.details = {**fresh.details, "recording_sid": name, "recording_started_at": now.isoformat()}
        else:
            actions.recording_marks(fresh, "paused" if action == "pause" else "in-progress", now)
        await actions.refresh_entry(session, fresh)
    return {"start": "recording", "pause": "recording paused", "resume": "recording resumed"}[action]


async def _provider(step: Any) -> None:
    try:
        await step
    except (PermanentSendError, RetryableSendError) as exc:
        raise ProviderFailed(f"the phone provider refused: {exc}") from None


def _out(row: Any, detail: str) -> ControlOut:
    return ControlOut(call_id=row.id, state=row.state, detail=detail)


def _conf(row: Any) -> str:
    from threadline.voice.domain.calls import conference_name  # noqa: PLC0415
    return row.details.get("conference_sid") or row.details.get("conference") or conference_name(
        row.conversation_id, row.id)


@router.post("/{call_id}/hold", response_model=ControlOut, summary="Put the customer on hold (music) or back", responses=CONTROL)
async def hold(call_id: CallId, body: HoldIn, actor: CurrentActor, services: ServicesDep) -> ControlOut:
    row, adapter = await _controlled(services, actor, call_id)
    if adapter is None:
        return _out(row, await browser.hold(services, row, body.hold))
    if _asterisk(adapter):
        from threadline.voice.worker import ari  # noqa: PLC0415
        await _provider(ari.hold(adapter, row, body.hold))
        async with services.db.transaction(write=True) as session:
            fresh = await actions.get_call(session, row.id, row.channel_instance_id)
            await actions.hold(session, fresh, body.hold, utcnow())
        return _out(row, "on hold" if body.hold else "back from hold")
    fields = {"Hold": "true" if body.hold else "false"}
    if body.hold and adapter.config.hold_music_url:
        fields["HoldUrl"] = adapter.config.hold_music_url
    await _provider(adapter.update_participant(_conf(row), "customer", fields))
    return _out(row, "on hold" if body.hold else "back from hold")


@router.post("/{call_id}/recording", response_model=ControlOut,
             summary="Start, pause (a marked gap, e.g. while a card number is read) or resume the recording", responses=CONTROL)
async def recording(call_id: CallId, body: RecordingIn, actor: CurrentActor, services: ServicesDep) -> ControlOut:
    row, adapter = await _controlled(services, actor, call_id)
    if adapter is None:
        return _out(row, await browser.recording(services, row, body.action))
    if _asterisk(adapter):
        return _out(row, await _asterisk_recording(services, adapter, row, body.action))
    customer = row.details.get("callback_sid") or row.provider_ref
    now = utcnow()
    if body.action == "start":
        if row.details.get("recording_sid"):
            raise Conflict("the call is being recorded already")
        async with services.db.transaction(write=False) as session:
            policy = await actions.recording_policy(session, row, adapter.config.record)
        if policy == "never":
            raise Conflict("this call is not recorded (its queue's or, failing that, its line's recording "
                           "policy is 'never')")
        sid = ""

        async def start() -> None:
            nonlocal sid
            sid = await adapter.start_recording(customer, twiml.Urls(adapter.hook_url + "/voice", row.id).recording)
        await _provider(start())
        async with services.db.transaction(write=True) as session:
            fresh = await actions.get_call(session, row.id, row.channel_instance_id)
            fresh.details = {**fresh.details, "recording_sid": sid, "recording_started_at": now.isoformat()}
        return _out(row, "recording")
    if not row.details.get("recording_sid"):
        raise Conflict("the call is not being recorded")
    status = "paused" if body.action == "pause" else "in-progress"
    await _provider(adapter.set_recording(customer, status))
    async with services.db.transaction(write=True) as session:
        fresh = await actions.get_call(session, row.id, row.channel_instance_id)
        actions.recording_marks(fresh, status, now)
    return _out(row, "recording paused" if status == "paused" else "recording resumed")


@router.post("/{call_id}/transfer", response_model=ControlOut, summary="Transfer to an agent, a queue or a number", responses=CONTROL)
async def transfer(call_id: CallId, body: TransferIn, actor: CurrentActor, services: ServicesDep) -> ControlOut:
    targets = [t for t in (body.agent_id, body.queue_id, body.number) if t is not None]
    if len(targets) != 1:
        raise ValidationFailed("give exactly one of agent_id, queue_id or number", field="body")
    row, adapter = await _controlled(services, actor, call_id)
    if adapter is None:
        if body.number is not None or body.mode != "blind":
            raise Conflict("a call in the browser is transferred blind, to an agent or a queue (not to a number)")
        return _out(row, await browser.transfer(services, row, agent_id=body.agent_id, queue_id=body.queue_id,
                                                by=actor.user_id))
    if _asterisk(adapter):
        raise Conflict("transfer this call from your phone (Asterisk's own transfer); Threadline follows it")
    urls, name, now = twiml.Urls(adapter.hook_url + "/voice", row.id), _conf(row), utcnow()
    if body.queue_id is not None:
        async with services.db.transaction(write=True) as session:
            fresh = await actions.get_call(session, row.id, row.channel_instance_id)
            if not await actions.transfer_to_queue(session, fresh, body.queue_id, now, by=actor.user_id):
                raise NotFound(f"queue {body.queue_id} does not exist")
        # the customer leaves the conference for the queue's music; the agent is free
        await _provider(adapter.redirect(row.details.get("callback_sid") or row.provider_ref,
                                         twiml.enqueue(urls, [], row.locale)))
        return _out(row, "transferred to the queue")
    if body.agent_id is not None:
        async with services.db.transaction(write=False) as session:
            from threadline.db.repos import users as users_repo  # noqa: PLC0415
            target = await users_repo.get_user(session, body.agent_id)
        if target is None or not target.active:
            raise NotFound(f"agent {body.agent_id} does not exist")
        if body.agent_id == row.agent_id:
            raise Conflict("the call is yours already")
        if target.presence != "available":
            raise Conflict(f"{target.name} is {target.presence}: pick someone available, or a queue")
        to, label = adapter.config.agent_to(body.agent_id), f"agent-{body.agent_id}"
    else:
        from threadline.domain.contacts import normalise_phone  # noqa: PLC0415
        to, label = normalise_phone(body.number or ""), "external"
    async with services.db.transaction(write=True) as session:
        fresh = await actions.get_call(session, row.id, row.channel_instance_id)
        await actions.start_transfer(session, fresh, by=actor.user_id, mode=body.mode, now=now,
                                     agent_id=body.agent_id, number=None if body.agent_id else to)
    if body.mode == "blind":
        await _provider(adapter.update_participant(name, "customer", {"Hold": "true"}))
    await _provider(adapter.add_participant(name, to, label=label, status_callback=urls.leg_status("transfer")))
    return _out(row, f"calling {to}")


@router.post("/{call_id}/monitor", response_model=ControlOut,
             summary="A supervisor listens, whispers to the agent (only they hear) or joins the call", responses=CONTROL)
async def monitor(call_id: CallId, body: MonitorIn, actor: CurrentActor, services: ServicesDep) -> ControlOut:
    row, adapter = await _controlled(services, actor, call_id, supervise=True)
    if adapter is None:
        sdp, detail = await browser.monitor(services, row, actor.user_id, body.mode, body.sdp)
        return ControlOut(call_id=row.id, state=row.state, detail=detail, sdp=sdp)
    if getattr(adapter, "kind", None) == "asterisk":
        from threadline.db.repos import users as users_repo  # noqa: PLC0415
        from threadline.voice.worker import ari  # noqa: PLC0415
        async with services.db.transaction(write=False) as session:
            me = await users_repo.get_user(session, actor.user_id)
        try:
            await _provider(ari.monitor(adapter, row, supervisor_id=actor.user_id, email=me.email if me else "",
                                        mode=body.mode, attempt=utcnow().strftime("%H%M%S")))
        except ValueError as exc:
            raise Conflict(str(exc)) from None
    else:
        await _twilio_monitor(adapter, row, actor, body)
    async with services.db.transaction(write=True) as session:
        await voice_repo.record_event(session, row.id, f"monitor:{actor.user_id}:{body.mode}:{utcnow().isoformat()}",
                                      "monitor", None, {"by": actor.user_id, "mode": body.mode})
    return _out(row, {"listen": "listening", "whisper": "whispering to the agent", "barge": "in the call"}[body.mode])


async def _twilio_monitor(adapter: Any, row: Any, actor: Any, body: MonitorIn) -> None:
    urls = twiml.Urls(adapter.hook_url + "/voice", row.id)
    agent_sid = row.details.get("agent_call_sid")
    if body.mode == "whisper" and not agent_sid:
        raise Conflict("no agent leg to whisper to")
    label = f"supervisor-{actor.user_id}"  # rung where they take calls as an agent would be
    await _provider(adapter.add_participant(_conf(row), adapter.config.agent_to(actor.user_id), label=label,
                                            status_callback=urls.leg_status("monitor"),
                                            coach=agent_sid if body.mode == "whisper" else None,
                                            muted=body.mode == "listen"))


@router.post("/{call_id}/hangup", response_model=ControlOut, summary="End the call for everyone", responses=CONTROL)
async def hangup(call_id: CallId, actor: CurrentActor, services: ServicesDep) -> ControlOut:
    row, adapter = await _controlled(services, actor, call_id)
    if adapter is None:
        return _out(row, await browser.hangup(services, row))
    if _asterisk(adapter):
        await _provider(adapter.hangup(row.provider_ref))  # the loop ends the call on ChannelDestroyed
        return _out(row, "hanging up")
    await _provider(adapter.end_call(row.details.get("callback_sid") or row.provider_ref))
    return _out(row, "hanging up")


@router.post("/{call_id}/wrap-up", response_model=ControlOut, summary="The call's disposition code and notes", responses=CONTROL)
async def wrap_up(call_id: CallId, body: WrapUpIn, actor: CurrentActor, services: ServicesDep) -> ControlOut:
    from threadline.db.repos import conversations as conversation_repo  # noqa: PLC0415
    async with services.db.transaction(write=True) as session:
        row = await voice_repo.get(session, call_id, for_update=True)
        if row is None:
            raise NotFound(f"call {call_id} does not exist")
        actor.check_can_see(await conversation_repo.get_conversation(session, row.conversation_id), row.conversation_id)
        if row.agent_id != actor.user_id and not actor.role.at_least(Role.SUPERVISOR):
            raise PermissionDenied("only the agent who took the call (or a supervisor) may wrap it up")
        await actions.check_disposition(session, row, body.disposition.strip())
        await actions.wrap_up(session, row, disposition=body.disposition.strip(), notes=body.notes.strip(),
                              by=actor.user_id)
        return _out(row, "wrapped up")


class TransferTargets(BaseModel):
    agents: list[dict[str, Any]]
    queues: list[dict[str, Any]]


@router.get("/{call_id}/transfer-targets", response_model=TransferTargets,
            summary="Who the call can go to: available agents (not you) and the queues", responses=CONTROL)
async def transfer_targets(call_id: CallId, actor: CurrentActor, services: ServicesDep) -> TransferTargets:
    row, _ = await _controlled(services, actor, call_id)
    from threadline.db.repos import users as users_repo  # noqa: PLC0415
    async with services.db.transaction(write=False) as session:
        users = await users_repo.list_users(session)
        queues = await users_repo.list_queues(session)
    return TransferTargets(
        agents=[{"id": u.id, "name": u.name} for u in users
                if u.active and u.presence == "available" and u.id not in (actor.user_id, row.agent_id)],
        queues=[{"id": q.id, "name": q.name} for q in queues])


voice_router = APIRouter(prefix="/voice", tags=["voice"])


class SoftphoneToken(BaseModel):
    token: str
    identity: str
    channel_id: int
    sdk: str = "/static/desk/vendor/twilio-voice-2.18.5.min.js"


@voice_router.post("/token", response_model=SoftphoneToken,
                   summary="An access token for the desk's softphone (Twilio Voice JS SDK), valid one hour")
async def softphone_token(actor: CurrentActor, services: ServicesDep) -> SoftphoneToken:
    from threadline.db.repos import channels as channels_repo  # noqa: PLC0415
    async with services.db.transaction(write=False) as session:
        rows = [c for c in await channels_repo.list_channels(session) if c.kind == "twilio_voice" and c.enabled]
    for channel in rows:
        token = services.factory.for_row(channel).softphone_token(f"agent-{actor.user_id}")
        if token:
            return SoftphoneToken(token=token, identity=f"agent-{actor.user_id}", channel_id=channel.id)
    raise NotFound("no phone line has a softphone API key (set api_key_sid and api_key_secret on a Twilio Voice "
                   "channel)")


class LiveCall(BaseModel):
    id: int
    conversation_id: int
    provider: str = ""
    media: str | None = None  # a call in the browser: p2p or relay (only relayed calls can be listened to)
    state: str
    number: str
    agent_id: int | None
    agent_name: str | None
    queue_id: int | None
    started_at: datetime
    answered_at: datetime | None
    verified_by: str | None


@router.get("/live", response_model=list[LiveCall], summary="Calls in progress, for the live view (supervisors)")
async def live_calls(actor: SupervisorActor, services: ServicesDep) -> list[LiveCall]:
    from threadline.db.repos import users as users_repo  # noqa: PLC0415
    async with services.db.transaction(write=False) as session:
        rows = await voice_repo.live(session)
        names = {u.id: u.name for u in await users_repo.list_users(session)}
    return [LiveCall(id=r.id, conversation_id=r.conversation_id, provider=r.provider, media=r.details.get("media"),
                     state=r.state, number=actions.customer_number(r),
                     agent_id=r.agent_id, agent_name=names.get(r.agent_id) if r.agent_id else None,
                     queue_id=r.queue_id, started_at=r.started_at, answered_at=r.answered_at,
                     verified_by=r.verified_by) for r in rows]


@router.get("/{call_id}/recording", summary="Play the call's recording (supervisors, and the agent who took the call)",
            response_class=Response, responses={200: {"content": {"audio/wav": {}}}, **CONTROL})
async def play_recording(call_id: CallId, actor: CurrentActor, services: ServicesDep) -> Response:
    from urllib.parse import urlsplit  # noqa: PLC0415

    from threadline.db.repos import conversations as conversation_repo  # noqa: PLC0415
    async with services.db.transaction(write=False) as session:
        row = await voice_repo.get(session, call_id)
        if row is None:
            raise NotFound(f"call {call_id} does not exist")
        actor.check_can_see(await conversation_repo.get_conversation(session, row.conversation_id), row.conversation_id)
        channel = await session.get(ChannelInstanceRow, row.channel_instance_id)
    if row.agent_id != actor.user_id and not actor.role.at_least(Role.SUPERVISOR):
        raise PermissionDenied("recordings are for supervisors and the agent who took the call")
    if row.recording_url and row.recording_url.startswith("file:"):  # recorded here (a browser call)
        try:
            data = services.files.read(row.recording_url[5:])
        except (ValueError, OSError):
            raise NotFound("this call's recording is gone") from None
        return Response(data, media_type="audio/wav", headers={"Cache-Control": "private, no-store"})
    if row.recording_url and channel is not None and channel.kind == "asterisk":  # stored on the PBX
        try:
            data, ctype = await services.factory.for_row(channel).fetch_recording(row.recording_url)
        except (PermanentSendError, RetryableSendError) as exc:
            raise ProviderFailed(f"the phone system did not give the recording: {exc}") from None
        return Response(data, media_type=ctype, headers={"Cache-Control": "private, no-store"})
    if not row.recording_url or channel is None or channel.kind != "twilio_voice":
        raise NotFound("this call has no recording")
    adapter: Any = services.factory.for_row(channel)
    # the URL came in a signed callback; still, only ever fetch it from the provider's own API host
    if urlsplit(row.recording_url).netloc != urlsplit(adapter.config.api_base_url).netloc:
        raise Conflict("the recording is not on the channel's provider; fetch it there")
    try:
        data, ctype = await adapter.fetch_recording(row.recording_url)
    except (PermanentSendError, RetryableSendError) as exc:
        raise ProviderFailed(f"the phone provider did not give the recording: {exc}") from None
    return Response(data, media_type=ctype, headers={"Cache-Control": "private, no-store"})


class PlaceCallIn(BaseModel):
    """Call the customer of a conversation, from a phone line (its number is the caller ID)."""

    model_config = ConfigDict(extra="forbid")
    conversation_id: int = Field(ge=1, le=2**31 - 1)
    channel_id: int | None = Field(default=None, ge=1, le=2**31 - 1, description="The phone line (default: the first)")
    number: str | None = Field(default=None, max_length=40, description="One of the contact's numbers (default: "
                               "the one they last used)")


@router.post("", response_model=CallOut, status_code=201, summary="Click-to-call: ring my softphone and the customer",
             responses={502: CONTROL[502]})
async def place_call(body: PlaceCallIn, actor: CurrentActor, services: ServicesDep) -> CallOut:
    from threadline.db.repos import channels as channels_repo  # noqa: PLC0415
    from threadline.db.repos import contacts as contacts_repo  # noqa: PLC0415
    from threadline.db.repos import conversations as conversation_repo  # noqa: PLC0415
    from threadline.domain.contacts import normalise_phone  # noqa: PLC0415
    async with services.db.transaction(write=True) as session:
        conv = actor.check_can_see(await conversation_repo.get_conversation(session, body.conversation_id),
                                   body.conversation_id)
        lines = [c for c in await channels_repo.list_channels(session) if c.kind == "twilio_voice" and c.enabled
                 and (body.channel_id is None or c.id == body.channel_id)]
        if not lines:
            raise NotFound("no phone line (a Twilio Voice channel) to call from")
        phones = [i.value for i in (await contacts_repo.identities_of(session, [conv.contact_id]))[conv.contact_id]
                  if i.kind == "phone"]
        number = normalise_phone(body.number) if body.number else (phones[-1] if phones else None)
        if number is None:
            raise Conflict("the customer has no phone number: add one to the contact first")
        if number not in phones:
            raise ValidationFailed("call one of the customer's own numbers (add it to the contact first)",
                                   field="number")
        adapter: Any = services.factory.for_row(lines[0])
        row = await actions.place_call(session, lines[0], conversation_id=conv.id, agent_id=actor.user_id,
                                       number=number, ours=adapter.config.phone_number, now=utcnow())
        return _call_out(row)


# --------------------------------------------------------------------------- Asterisk ARI prompts


@hooks.get("/hooks/{key}/voice/prompts/{name}", summary="Asterisk: a spoken prompt (WAV)", response_class=Response)
async def ari_prompt(key: str, name: str, services: ServicesDep) -> Response:
    """A prompt the ARI loop spoke with espeak-ng (``voice/worker/ari.py``), fetched by Asterisk for a
    ``sound:http…/{sha256}.wav`` playback. Public like the hook URL: a prompt is what every caller hears;
    prompts live in their own store, so no other file can be served here."""
    from threadline.voice.worker.ari import KIND, prompt_store

    channel = await services.channels.by_key(key)
    if channel is None or not channel.enabled or channel.kind != KIND or not name.endswith(".wav"):
        return problem(404, "no such prompt")
    try:
        data = prompt_store(services.files).read(name.removesuffix(".wav"))
    except (ValueError, OSError):
        return problem(404, "no such prompt")
    return Response(data, media_type="audio/wav")


# calls in the browser: the visitor's endpoints beside the widget's, the agent's under /api/v1/calls
router.include_router(browser.agent)
hooks.include_router(browser.widget)
