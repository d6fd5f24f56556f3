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
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel

from threadline.channels.base import BadPayload, InvalidSignature, RawRequest
from threadline.db.types import utcnow
from threadline.domain.errors import NotFound
from threadline.flows import domain as flow
from threadline.voice import actions
from threadline.voice import repo as voice_repo
from threadline.voice.domain import twiml
from threadline.voice.domain.calls import CallState, Direction, announcement, cti_event, text
from threadline.web.deps import CurrentActor, ServicesDep
from threadline.web.errors import problem

hooks = APIRouter(tags=["voice"])
router = APIRouter(prefix="/calls", tags=["voice"])
XML = "text/xml"
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


def _call_id(call: str | None) -> int:
    if call is None or not call.isdigit() or len(call) > 10 or int(call) > 2**31 - 1:
        raise BadPayload("the URL's call parameter is not a call id")
    return int(call)


async def _replayed(session: Any, call: Any, h: Hook, step: str) -> str | None:
    """The answer given to this very request before (a retry), or None when it is new (then recorded)."""
    key = f"{step}:{h.digest}"
    if await voice_repo.record_event(session, call.id, key, step, h.seq(), {k: h.form[k] for k in list(h.form)[:40]}):
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
    try:
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
    except BadPayload as exc:
        return problem(400, str(exc), code="bad_payload")
    except NotFound as exc:
        return problem(404, str(exc))


@hooks.post("/hooks/{key}/voice/wait", summary="Twilio: a queued caller's wait music", response_class=Response)
async def wait(key: str, request: Request, services: ServicesDep, call: str | None = Query(None)) -> Response:
    h = await _hook(services, key, request, "/voice/wait")
    if isinstance(h, Response):
        return h
    try:
        call_id = _call_id(call)
        async with services.db.transaction(write=False) as session:
            row = await actions.get_call(session, call_id, h.channel.id, lock=False)
            figures = await actions.wait_figures(session, row)
    except BadPayload as exc:
        return problem(400, str(exc), code="bad_payload")
    except NotFound as exc:
        return problem(404, str(exc))
    cfg = h.adapter.config
    return _xml(twiml.waiting(h.urls(call_id), announcement(figures.position, figures.ewt_seconds, row.locale),
                              row.locale, callback_key=row.details.get("callback_key") or cfg.callback_key,
                              music_url=cfg.hold_music_url, pause_seconds=cfg.announce_every_seconds))


@hooks.post("/hooks/{key}/voice/wait-key", summary="Twilio: a key pressed while queued", response_class=Response)
async def wait_key(key: str, request: Request, services: ServicesDep, call: str | None = Query(None)) -> Response:
    h = await _hook(services, key, request, "/voice/wait-key")
    if isinstance(h, Response):
        return h
    try:
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
    except BadPayload as exc:
        return problem(400, str(exc), code="bad_payload")
    except NotFound as exc:
        return problem(404, str(exc))
    return _xml(EMPTY)  # any other key: the wait goes on (Twilio fetches the wait URL again)


@hooks.post("/hooks/{key}/voice/queue-result", summary="Twilio: how a queued caller's wait ended", response_class=Response)
async def queue_result(key: str, request: Request, services: ServicesDep, call: str | None = Query(None)) -> Response:
    h = await _hook(services, key, request, "/voice/queue-result")
    if isinstance(h, Response):
        return h
    try:
        call_id = _call_id(call)
        async with services.db.transaction(write=True) as session:
            row = await actions.get_call(session, call_id, h.channel.id)
            result = h.form.get("QueueResult", "")
            if result == "leave" and row.callback_requested:
                await actions.hang_up(session, row, h.at())  # their leg ends; their task keeps its place
                return _xml(twiml.hangup([text("callback_taken", row.locale)], row.locale))
            if result == "hangup":
                await actions.hang_up(session, row, h.at())
    except BadPayload as exc:
        return problem(400, str(exc), code="bad_payload")
    except NotFound as exc:
        return problem(404, str(exc))
    return _xml(EMPTY)


@hooks.post("/hooks/{key}/voice/status", summary="Twilio: call status callbacks", response_class=Response)
async def status(key: str, request: Request, services: ServicesDep, call: str | None = Query(None),
                 leg: str | None = Query(None)) -> Response:
    h = await _hook(services, key, request, "/voice/status")
    if isinstance(h, Response):
        return h
    if leg not in (None, "agent", "callback"):
        return problem(400, "leg must be 'agent' or 'callback' (or absent: the customer's call)", code="bad_payload")
    sid, state = h.form.get("CallSid", ""), h.form.get("CallStatus", "")
    try:
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
            if leg == "agent":
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
    except BadPayload as exc:
        return problem(400, str(exc), code="bad_payload")
    except NotFound as exc:
        return problem(404, str(exc))
    return _xml(EMPTY)


@hooks.post("/hooks/{key}/voice/conference", summary="Twilio: conference events", response_class=Response)
async def conference(key: str, request: Request, services: ServicesDep, call: str | None = Query(None)) -> Response:
    h = await _hook(services, key, request, "/voice/conference")
    if isinstance(h, Response):
        return h
    event, sid = h.form.get("StatusCallbackEvent", ""), h.form.get("CallSid", "")
    try:
        async with services.db.transaction(write=True) as session:
            row = await actions.get_call(session, _call_id(call), h.channel.id)
            key_ = f"conf:{event}:{sid}:{h.form.get('SequenceNumber', '')}"
            if not await voice_repo.record_event(session, row.id, key_, "conference", h.seq(),
                                                 {"event": event, "call_sid": sid, "label": h.form.get("ParticipantLabel", "")}):
                return _xml(EMPTY)
            customer = {row.provider_ref, row.details.get("callback_sid")}
            if event == "participant-join" and sid and sid not in customer:
                await actions.agent_joined(session, row, h.at())
            elif event == "participant-hold" and sid in customer:
                await actions.hold(session, row, True, h.at())
            elif event == "participant-unhold" and sid in customer:
                await actions.hold(session, row, False, h.at())
            elif event == "participant-leave" and sid in customer:
                await actions.hang_up(session, row, h.at())
            elif event == "conference-end":
                await actions.hang_up(session, row, h.at())
    except BadPayload as exc:
        return problem(400, str(exc), code="bad_payload")
    except NotFound as exc:
        return problem(404, str(exc))
    return _xml(EMPTY)


def _seconds(value: str) -> int | None:
    return int(value) if value.isdigit() and len(value) < 7 else None


@hooks.post("/hooks/{key}/voice/voicemail", summary="Twilio: a voicemail was recorded", response_class=Response)
async def voicemail_done(key: str, request: Request, services: ServicesDep, call: str | None = Query(None)) -> Response:
    h = await _hook(services, key, request, "/voice/voicemail")
    if isinstance(h, Response):
        return h
    try:
        async with services.db.transaction(write=True) as session:
            row = await actions.get_call(session, _call_id(call), h.channel.id)
            if h.form.get("RecordingUrl"):
                await actions.recording(session, row, url=h.form["RecordingUrl"][:2000],
                                        seconds=_seconds(h.form.get("RecordingDuration", "")))
            await actions.voicemail_left(session, row, h.now)
            return _xml(twiml.hangup([], row.locale))
    except BadPayload as exc:
        return problem(400, str(exc), code="bad_payload")
    except NotFound as exc:
        return problem(404, str(exc))


@hooks.post("/hooks/{key}/voice/recording", summary="Twilio: a recording is ready", response_class=Response)
async def recording_ready(key: str, request: Request, services: ServicesDep, call: str | None = Query(None)) -> Response:
    h = await _hook(services, key, request, "/voice/recording")
    if isinstance(h, Response):
        return h
    try:
        async with services.db.transaction(write=True) as session:
            row = await actions.get_call(session, _call_id(call), h.channel.id)
            if h.form.get("RecordingStatus", "completed") == "completed" and h.form.get("RecordingUrl"):
                await actions.recording(session, row, url=h.form["RecordingUrl"][:2000],
                                        seconds=_seconds(h.form.get("RecordingDuration", "")))
    except BadPayload as exc:
        return problem(400, str(exc), code="bad_payload")
    except NotFound as exc:
        return problem(404, str(exc))
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


@router.get("", summary="The calls of a conversation", response_model=list[CallOut])
async def list_calls(actor: CurrentActor, services: ServicesDep,
                     conversation_id: int = Query(ge=1, le=2**31 - 1)) -> list[CallOut]:
    from threadline.db.repos import conversations as conversation_repo  # noqa: PLC0415
    async with services.db.transaction(write=False) as session:
        actor.check_can_see(await conversation_repo.get_conversation(session, conversation_id), conversation_id)
        rows = await voice_repo.for_conversation(session, conversation_id)
    return [CallOut(id=r.id, conversation_id=r.conversation_id, channel_id=r.channel_instance_id, provider=r.provider,
                    direction=r.direction, from_number=r.from_number, to_number=r.to_number, state=r.state,
                    end_cause=r.end_cause, queue_id=r.queue_id, agent_id=r.agent_id, verified_by=r.verified_by,
                    callback_requested=r.callback_requested, started_at=r.started_at, enqueued_at=r.enqueued_at,
                    answered_at=r.answered_at, ended_at=r.ended_at, recording_seconds=r.recording_seconds)
            for r in rows]
