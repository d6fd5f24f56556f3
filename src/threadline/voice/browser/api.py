"""Calls in the browser: a visitor calls from the web chat widget, an agent answers in the desk. Media is
WebRTC; Threadline does the signalling (session descriptions with every ICE candidate in them, no
trickle) over HTTP and its websockets, and takes part in the media only when the call's queue records
calls (always or on demand), or while it speaks to a waiting caller: then each browser connects to the
server (``media.py``), which relays, records and announces.

The visitor's side (``/widget/calls…``, authenticated like every widget endpoint: the channel key, an
allowed ``Origin``, the visitor token in the body or query; JSON sent as text/plain, so no preflight):

| call | what it does |
| --- | --- |
| ``POST /widget/calls`` ``{token, video, locale}`` | start a call in the visitor's conversation (rung on its agent's desk, or queued as a voice task) |
| ``POST /widget/calls/{id}/media`` ``{token, type: "offer", sdp}`` | the visitor's offer: relayed calls get the server's answer at once; peer to peer, the agent's answer comes as a ``call_media`` frame |
| ``GET /widget/calls/{id}?token=`` | the call as it stands (and the agent's answer, for a widget that missed the frame) |
| ``POST /widget/calls/{id}/hangup`` ``{token}`` | the visitor hangs up |

The agent's side (``/api/v1/calls/{id}/media``, ``/decline``), with the usual hold, recording, hang-up
and wrap-up of ``voice/api.py``, which hand browser calls to the functions at the end of this module.
A relayed call lives in the process that took its offers: with several web processes, the load balancer
keeps ``/widget/calls/{id}`` and ``/api/v1/calls/{id}`` of one call on one process (docs/channels/voice.md).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from collections import OrderedDict
from typing import Annotated, Any, Literal

import structlog
from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from threadline import jsonguard
from threadline.channels.base import InvalidSignature
from threadline.channels.webchat.web.routes import cors, effective_origin, problem
from threadline.db.models import ContactRow
from threadline.db.repos import contacts as contacts_repo
from threadline.db.repos import conversations as conversation_repo
from threadline.db.repos import users as users_repo
from threadline.db.types import utcnow
from threadline.domain.errors import Conflict, DomainError, NotFound, PermissionDenied, ValidationFailed
from threadline.domain.ratelimit import RateLimiter
from threadline.voice import actions
from threadline.voice import repo as voice_repo
from threadline.voice.browser.media import AGENT, CUSTOMER, MediaCall, MediaHub, frames_of
from threadline.voice.domain import calls as calls_domain
from threadline.voice.domain.calls import CallState, announcement, locale_of, text
from threadline.web.deps import CurrentActor, ServicesDep, SupervisorActor

log = structlog.get_logger(__name__)

widget = APIRouter(tags=["web chat (visitors)"])
agent = APIRouter(tags=["voice"])  # included under /api/v1/calls by voice/api.py
CallId = Annotated[int, Path(ge=1, le=2**31 - 1)]
MAX_SDP = 20_000
CALLS_PER_MINUTE = 5  # per visitor
CALLS_PER_IP_MINUTE = 10  # per address (new visitor ids are free)
MEDIA_PER_MINUTE = 10  # offers per call
ANNOUNCE_EVERY = 30.0  # seconds between a waiting caller's place-in-queue announcements (relayed calls)
_tasks: set[asyncio.Task[None]] = set()


class Refused(Exception):
    def __init__(self, status: int, detail: str, code: str) -> None:
        super().__init__(detail)
        self.status, self.detail, self.code = status, detail, code


def hub(services: Any) -> MediaHub:
    return services.voice.media  # type: ignore[no-any-return]


def _limiter(services: Any) -> RateLimiter:
    """This process's limits on browser calls (kept with its media hub)."""
    h = hub(services)
    if h.limiter is None:
        h.limiter = RateLimiter()
    return h.limiter  # type: ignore[no-any-return]


def ice_servers(services: Any, call_id: int) -> list[dict[str, Any]]:
    """The STUN/TURN servers for one call: the configured ones, and the TURN servers with credentials
    made for this call and valid for a few hours (the TURN REST scheme coturn's ``use-auth-secret`` takes:
    username ``{expiry}:{name}``, password base64(HMAC-SHA1(secret, username))), so no lasting TURN
    password ever reaches a browser."""
    settings = services.settings
    servers = list(hub(services).ice_servers)
    secret = settings.webrtc_turn_secret
    if settings.webrtc_turn_urls and secret is not None:
        username = f"{int(time.time()) + settings.webrtc_turn_ttl_seconds}:tl-call-{call_id}"
        mac = hmac.new(secret.get_secret_value().encode(), username.encode(), hashlib.sha1).digest()
        servers.append({"urls": list(settings.webrtc_turn_urls), "username": username,
                        "credential": base64.b64encode(mac).decode()})
    return servers


def relay_only(services: Any) -> bool:
    """Agents' browsers use the TURN relay only (when one is set), so a visitor never learns an agent's
    own addresses from the session description."""
    return bool(services.settings.webrtc_turn_urls and services.settings.webrtc_turn_secret is not None)


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "?"


def _spawn(coro: Any) -> None:
    task = asyncio.get_running_loop().create_task(coro)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


# --------------------------------------------------------------------------- the visitor


class StartIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    token: str | None = Field(default=None, max_length=1000)
    video: bool = False
    locale: str = Field(default="en", max_length=20)


def _sdp(v: str) -> str:
    """A session description as browsers write them: ``v=0`` first, at least one media section."""
    if not v.startswith("v=0") or "\nm=" not in v:
        raise ValueError("not a session description (it starts with v=0 and has an m= line)")
    return v


class MediaIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    token: str | None = Field(default=None, max_length=1000)
    type: Literal["offer", "answer"]
    sdp: str = Field(min_length=10, max_length=MAX_SDP)

    @field_validator("sdp")
    @classmethod
    def _session(cls, v: str) -> str:
        return _sdp(v)


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    token: str | None = Field(default=None, max_length=1000)


class Visitor:
    def __init__(self, channel: Any, adapter: Any, session: Any, origin: str | None) -> None:
        self.channel, self.adapter, self.session, self.origin = channel, adapter, session, origin

    def answer(self, body: Any, status: int = 200) -> JSONResponse:
        return JSONResponse(body, status_code=status, headers=cors(self.origin))


async def _visitor(request: Request, services: Any, token: str | None) -> Visitor:
    origin, browser = effective_origin(request.headers, request.url.scheme)
    key = request.query_params.get("channel")
    channel = await services.channels.by_key(key) if key else None
    if channel is None or channel.kind != "webchat" or not channel.enabled:
        raise Refused(404, "This chat is not available.", "unknown_channel")
    adapter = services.factory.for_row(channel)
    if browser and not adapter.origin_allowed(origin):
        raise Refused(403, f"This website ({origin or 'unknown origin'}) may not show this chat.", "origin_not_allowed")
    if not token:
        raise Refused(401, "Start a chat session first.", "no_session")
    try:
        vs = adapter.read_token(token)
    except InvalidSignature:
        raise Refused(401, "This chat session is not valid any more; reload the page.", "bad_session") from None
    return Visitor(channel, adapter, vs, origin)


def _body(raw: bytes, model: type[BaseModel]) -> Any:
    try:
        return model.model_validate(jsonguard.loads(raw or b"{}"))
    except ValidationError as exc:
        err = exc.errors()[0]
        raise Refused(422, f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}", "invalid") from None
    except ValueError:
        raise Refused(422, "the body is not JSON", "invalid") from None


async def _guard(request: Request, handler: Any) -> Response:
    try:
        return await handler()  # type: ignore[no-any-return]
    except Refused as exc:
        return problem(exc.status, exc.detail, exc.code, request.headers.get("origin"))
    except DomainError as exc:
        return problem(exc.status, exc.message, exc.code, request.headers.get("origin"))


async def _visitors_call(session: Any, v: Visitor, call_id: int, *, lock: bool = False) -> Any:
    """The call, if it is this visitor's (on this channel, their contact); 404 otherwise."""
    call = await voice_repo.get(session, call_id, for_update=lock)
    ident = await contacts_repo.find_identity(session, v.adapter.visitor_identity(v.session))
    if call is None or ident is None or call.channel_instance_id != v.channel.id or call.contact_id != ident.contact_id \
            or call.provider != actions.BROWSER:
        raise Refused(404, f"call {call_id} is not yours", "unknown_call")
    return call


def _widget_view(call: Any, services: Any) -> dict[str, Any]:
    return {"id": call.id, "conversation_id": call.conversation_id, "state": call.state, "end_cause": call.end_cause,
            "media": call.details.get("media", "p2p"), "video": bool(call.details.get("video")),
            "ice_servers": ice_servers(services, call.id),
            "answer": call.details.get("answer") if call.details.get("media") == "p2p" else None}


async def record_policy(session: Any, queue_id: int | None) -> str:
    """The queue's recording policy for browser calls (a chat has no phone line: "channel" means never)."""
    voice = (await actions.queue_voices(session, [queue_id])).get(queue_id) if queue_id is not None else None
    return calls_domain.record_policy(voice.record if voice is not None else None, None)


@widget.post("/widget/calls", summary="The visitor starts a voice or video call in the browser", status_code=201)
async def start_call(request: Request, services: ServicesDep) -> Response:
    async def handle() -> Response:
        body = _body(await request.body(), StartIn)
        v = await _visitor(request, services, body.token)
        allowed = v.adapter.config.calls
        if allowed == "off" or (body.video and allowed != "video"):
            raise Refused(403, "Video calls are not offered here." if allowed == "voice" else
                          "Calls are not offered here.", "calls_off")
        if not _limiter(services).allow((v.channel.id, v.session.visitor_id, "call"), CALLS_PER_MINUTE) or \
                not _limiter(services).allow((v.channel.id, _client_ip(request), "call"), CALLS_PER_IP_MINUTE):
            raise Refused(429, "You're calling too often; please wait a moment.", "rate_limited")
        ident_value = v.adapter.visitor_identity(v.session)
        async with services.db.transaction(write=True) as session:
            ident = await contacts_repo.find_identity(session, ident_value)
            name = ""
            if ident is not None:
                contact = await session.get(ContactRow, ident.contact_id, with_for_update=True)  # one call at a time
                name = contact.name if contact is not None and contact.name else ""
                if await voice_repo.live_browser_call(session, ident.contact_id) is not None:
                    raise Refused(409, "You are already in a call.", "in_call")
            call = await actions.open_browser_call(session, v.channel, identity=ident_value, name=name,
                                                   video=body.video, locale=locale_of(body.locale), now=utcnow(),
                                                   record_policy=record_policy)
            view = _widget_view(call, services)
        log.info("browser_call_started", call_id=view["id"], media=view["media"], video=body.video)
        return v.answer(view, 201)
    return await _guard(request, handle)


@widget.get("/widget/calls/{call_id}", summary="The visitor's call as it stands")
async def get_call(call_id: CallId, request: Request, services: ServicesDep) -> Response:
    async def handle() -> Response:
        v = await _visitor(request, services, request.query_params.get("token"))
        async with services.db.transaction(write=True) as session:
            call = await _visitors_call(session, v, call_id, lock=True)
            if call.state != CallState.ENDED:  # the widget asks every few seconds while in a call: still there
                await actions.browser_seen(session, call, utcnow())
            return v.answer(_widget_view(call, services))
    return await _guard(request, handle)


@widget.post("/widget/calls/{call_id}/media", summary="The visitor's session description (WebRTC offer)")
async def visitor_media(call_id: CallId, request: Request, services: ServicesDep) -> Response:
    async def handle() -> Response:
        body = _body(await request.body(), MediaIn)
        v = await _visitor(request, services, body.token)
        if body.type != "offer":
            raise Refused(422, "type: the visitor's browser sends an offer", "invalid")
        if not _limiter(services).allow((v.channel.id, call_id, "media"), MEDIA_PER_MINUTE):
            raise Refused(429, "Too many connection attempts for this call; please wait a moment.", "rate_limited")
        async with services.db.transaction(write=True) as session:
            call = await _visitors_call(session, v, call_id, lock=True)
            if call.state == CallState.ENDED:
                raise Refused(409, "This call has ended.", "call_ended")
            if call.details.get("media") != "relay":
                await actions.browser_offer(session, call, body.sdp)
                return v.answer({"sdp": None, "media": "p2p"})
            locale, conversation_id = call.locale, call.conversation_id
        if hub(services).get(call_id) is None and hub(services).full():
            raise Refused(503, "We can't take more calls in the browser right now; please try again soon.", "busy")
        media = hub(services).open(call_id, _gone_handler(services))
        try:
            sdp = await media.answer(CUSTOMER, body.sdp, ice_servers(services, call_id))
        except ValueError as exc:
            if not media.pcs:  # nothing connected: nothing to keep
                await hub(services).end(call_id)
            raise Refused(422, f"sdp: not a usable offer ({exc})", "invalid") from None
        if not media.announcing:
            media.announcing = True
            _spawn(_announce(services, media, call_id, locale))
        log.info("browser_call_media", call_id=call_id, who=CUSTOMER, conversation_id=conversation_id)
        return v.answer({"sdp": sdp, "media": "relay"})
    return await _guard(request, handle)


@widget.post("/widget/calls/{call_id}/hangup", summary="The visitor hangs up")
async def visitor_hangup(call_id: CallId, request: Request, services: ServicesDep) -> Response:
    async def handle() -> Response:
        body = _body(await request.body(), TokenIn)
        v = await _visitor(request, services, body.token)
        async with services.db.transaction(write=True) as session:
            call = await _visitors_call(session, v, call_id, lock=True)
            await actions.hang_up(session, call, utcnow())
            state = call.state
        await finish(services, call_id)
        return v.answer({"id": call_id, "state": state})
    return await _guard(request, handle)


# --------------------------------------------------------------------------- the agent


class AgentMediaOut(BaseModel):
    call_id: int
    media: Literal["p2p", "relay"]
    video: bool
    ice_servers: list[dict[str, Any]]
    relay_only: bool = Field(default=False, description="Use only the TURN relay (iceTransportPolicy relay): "
                             "the visitor does not learn your addresses")
    offer: str | None = Field(description="Peer to peer: the visitor's offer, to answer (null until their "
                              "browser sent it)")


class AgentMediaIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["offer", "answer"]
    sdp: str = Field(min_length=10, max_length=MAX_SDP)

    @field_validator("sdp")
    @classmethod
    def _session(cls, v: str) -> str:
        return _sdp(v)


class AgentMediaAnswer(BaseModel):
    call_id: int
    state: str
    sdp: str | None = Field(description="Relayed: the server's answer to your offer")


async def _agents_call(services: Any, actor: Any, call_id: int) -> Any:
    async with services.db.transaction(write=False) as session:
        call = await voice_repo.get(session, call_id)
        if call is None or call.provider != actions.BROWSER:
            raise NotFound(f"browser call {call_id} does not exist")
        conv = actor.check_can_see(await conversation_repo.get_conversation(session, call.conversation_id),
                                   call.conversation_id)
    if call.agent_id != actor.user_id:
        raise PermissionDenied("this call rings for another agent" if call.agent_id else
                               "this call waits in the queue: accept its offer first")
    del conv
    if call.state not in (CallState.OFFERED, CallState.QUEUED, CallState.CONNECTED, CallState.ON_HOLD):
        raise Conflict(f"the call is {call.state.replace('_', ' ')}")
    return call


@agent.get("/{call_id}/media", response_model=AgentMediaOut, summary="How to connect to a browser call: peer to "
           "peer (answer the visitor's offer) or relayed (send your offer)")
async def agent_media(call_id: CallId, actor: CurrentActor, services: ServicesDep) -> AgentMediaOut:
    call = await _agents_call(services, actor, call_id)
    media = call.details.get("media", "p2p")
    return AgentMediaOut(call_id=call.id, media=media, video=bool(call.details.get("video")),
                         ice_servers=ice_servers(services, call.id), relay_only=relay_only(services),
                         offer=call.details.get("offer") if media == "p2p" else None)


@agent.post("/{call_id}/media", response_model=AgentMediaAnswer, summary="Answer a browser call: your answer "
            "(peer to peer) or your offer (relayed)", responses={409: {"description": "Not ringing for you, or "
                                                                      "the visitor's browser is not ready yet"}})
async def agent_answer(call_id: CallId, body: AgentMediaIn, actor: CurrentActor, services: ServicesDep) \
        -> AgentMediaAnswer:
    call = await _agents_call(services, actor, call_id)
    media, now = call.details.get("media", "p2p"), utcnow()
    sdp_back: str | None = None
    if media == "p2p":
        if body.type != "answer":
            raise Conflict("this call is peer to peer: answer the visitor's offer (GET …/media)")
        if not call.details.get("offer"):
            raise Conflict("the visitor's browser has not sent its offer yet: try again in a moment")
    else:
        if body.type != "offer":
            raise Conflict("this call is relayed by the server: send an offer")
        mc = hub(services).get(call_id)
        if mc is None or CUSTOMER not in mc.pcs:
            raise Conflict("the visitor's browser is not connected to this server yet: try again in a moment")
        try:
            sdp_back = await mc.answer(AGENT, body.sdp, ice_servers(services, call_id))
        except ValueError as exc:
            raise ValidationFailed(f"sdp: not a usable offer ({exc})", field="sdp") from None
    async with services.db.transaction(write=True) as session:
        fresh = await voice_repo.get(session, call_id, for_update=True)
        if fresh is None or fresh.state == CallState.ENDED:
            raise Conflict("the visitor hung up")
        await actions.browser_answered(session, fresh, actor.user_id, now,
                                       sdp=body.sdp if media == "p2p" else None)
        state = fresh.state
        recording = fresh.details.get("recording_sid") == "local"
        paused = bool(fresh.details.get("recording_paused"))
    if media == "relay":
        mc = hub(services).get(call_id)
        if mc is not None:
            mc.to_customer.script.clear()  # stop any announcement and the music: the agent is here
            mc.hold(state == CallState.ON_HOLD)  # an agent who reconnects while on hold finds it so
            if recording:
                mc.recorder.start()
                mc.recorder.paused = paused
    log.info("browser_call_answered", call_id=call_id, agent_id=actor.user_id, media=media)
    return AgentMediaAnswer(call_id=call_id, state=state, sdp=sdp_back)


@agent.post("/{call_id}/decline", response_model=AgentMediaAnswer, summary="Decline a browser call ringing for you "
            "(it waits in the queue for the next agent)")
async def agent_decline(call_id: CallId, actor: CurrentActor, services: ServicesDep) -> AgentMediaAnswer:
    call = await _agents_call(services, actor, call_id)
    if call.state != CallState.OFFERED:
        raise Conflict(f"the call is {call.state.replace('_', ' ')}, not ringing")
    async with services.db.transaction(write=True) as session:
        fresh = await voice_repo.get(session, call_id, for_update=True)
        assert fresh is not None
        await actions.browser_declined(session, fresh, utcnow(), "declined the call")
        state = fresh.state
    if state == CallState.ENDED:
        await finish(services, call_id)
    return AgentMediaAnswer(call_id=call_id, state=state, sdp=None)


# --------------------------------------------------------------------------- what voice/api.py hands over


async def hold(services: Any, call: Any, on: bool) -> str:
    mc = hub(services).get(call.id)
    if mc is not None:
        mc.hold(on)
    async with services.db.transaction(write=True) as session:
        fresh = await voice_repo.get(session, call.id, for_update=True)
        assert fresh is not None
        await actions.hold(session, fresh, on, utcnow())
    return "on hold" if on else "back from hold"


async def recording(services: Any, call: Any, action: str) -> str:
    if call.details.get("media") != "relay":
        raise Conflict("this browser call is peer to peer: its queue does not record calls")
    if action == "start" and call.details.get("recording_sid"):
        raise Conflict("the call is being recorded already")
    if action != "start" and not call.details.get("recording_sid"):
        raise Conflict("the call is not being recorded")
    mc = hub(services).get(call.id)
    if mc is None:
        raise Conflict("this call's media is not on this server process")
    now = utcnow()
    async with services.db.transaction(write=True) as session:
        fresh = await voice_repo.get(session, call.id, for_update=True)
        assert fresh is not None
        actions.browser_recording(fresh, action, now)
        await actions.refresh_entry(session, fresh)
    if action == "start":
        mc.recorder.start()
    else:
        mc.recorder.paused = action == "pause"
    return {"start": "recording", "pause": "recording paused", "resume": "recording resumed"}[action]


async def transfer(services: Any, call: Any, *, agent_id: int | None, queue_id: int | None, by: int) -> str:
    """Blind transfer: the agent leaves, the caller waits (music when relayed) for the target to answer."""
    if agent_id is not None:
        async with services.db.transaction(write=False) as session:
            target = await users_repo.get_user(session, agent_id)
        if target is None or not target.active:
            raise NotFound(f"agent {agent_id} does not exist")
        if agent_id == call.agent_id:
            raise Conflict("the call is yours already")
        if target.presence != "available":
            raise Conflict(f"{target.name} is {target.presence}: pick someone available, or a queue")
    async with services.db.transaction(write=True) as session:
        fresh = await voice_repo.get(session, call.id, for_update=True)
        assert fresh is not None
        await actions.browser_transfer(session, fresh, utcnow(), by=by, agent_id=agent_id, queue_id=queue_id)
    mc = hub(services).get(call.id)
    if mc is not None:  # relayed: the agent's leg goes, the caller hears music until the next agent connects
        await mc.drop(AGENT)
        mc.to_customer.hold(True)
    return f"transferred to {target.name}" if agent_id is not None else "transferred to the queue"


async def monitor(services: Any, call: Any, supervisor: int, mode: str, sdp: str | None) -> tuple[str, str]:
    """A supervisor listens to, whispers to the agent of, or joins a relayed browser call with their own
    browser (their offer → the server's answer). A peer-to-peer call has no media on the server."""
    if call.details.get("media") != "relay":
        raise Conflict("this browser call is peer to peer (its queue does not record): the server carries no "
                       "audio to listen to; queues whose calls supervisors monitor should record")
    if not sdp:
        raise ValidationFailed("send your browser's offer in sdp to listen to a call in the browser", field="sdp")
    try:
        _sdp(sdp)
    except ValueError as exc:
        raise ValidationFailed(f"sdp: {exc}", field="sdp") from None
    mc = hub(services).get(call.id)
    if mc is None or not mc.connected:
        raise Conflict("this call's media is not on this server process")
    try:
        answer = await mc.monitor(supervisor, mode, sdp, ice_servers(services, call.id))
    except ValueError as exc:
        raise ValidationFailed(f"sdp: not a usable offer ({exc})", field="sdp") from None
    async with services.db.transaction(write=True) as session:
        await voice_repo.record_event(session, call.id, f"monitor:{supervisor}:{mode}:{utcnow().isoformat()}",
                                      "monitor", None, {"by": supervisor, "mode": mode})
    return answer, {"listen": "listening", "whisper": "whispering to the agent", "barge": "in the call"}[mode]


@agent.delete("/{call_id}/monitor", summary="Stop listening to (or whispering in, or being in) a browser call")
async def stop_monitor(call_id: CallId, actor: SupervisorActor, services: ServicesDep) -> dict[str, Any]:
    mc = hub(services).get(call_id)
    if mc is not None:
        await mc.unmonitor(actor.user_id)
    return {"call_id": call_id, "detail": "stopped"}


async def hangup(services: Any, call: Any) -> str:
    async with services.db.transaction(write=True) as session:
        fresh = await voice_repo.get(session, call.id, for_update=True)
        assert fresh is not None
        await actions.hang_up(session, fresh, utcnow())
    await finish(services, call.id)
    return "hung up"


async def finish(services: Any, call_id: int) -> None:
    """The call is over: close its media on this process and keep its recording (two channels, WAV) in the
    file store, as the call's recording."""
    mc = await hub(services).end(call_id)
    if mc is None or not mc.recording:
        return
    sha = await asyncio.to_thread(services.files.put, mc.recording)
    async with services.db.transaction(write=True) as session:
        call = await voice_repo.get(session, call_id, for_update=True)
        if call is not None:
            await actions.recording(session, call, url=f"file:{sha}", seconds=round(mc.recorder.seconds()),
                                    gaps=call.details.get("recording_gaps"),
                                    transcribe=bool(services.settings.stt_model_dir))
    log.info("browser_call_recorded", call_id=call_id, seconds=round(mc.recorder.seconds(), 1))


def _gone_handler(services: Any) -> Any:
    async def gone(call_id: int, who: str) -> None:
        """A party's connection failed or closed (tab closed, network gone): the call ends."""
        try:
            async with services.db.transaction(write=True) as session:
                call = await voice_repo.get(session, call_id, for_update=True)
                if call is not None and call.state != CallState.ENDED:
                    await actions.hang_up(session, call, utcnow())
            await finish(services, call_id)
        except Exception:
            log.exception("browser_call_end_failed", call_id=call_id)
    return gone


# --------------------------------------------------------------------------- what a waiting caller hears

_spoken: OrderedDict[tuple[str, str], bytes] = OrderedDict()  # (line, locale) → espeak's 8 kHz WAV (~40 KB)
SPOKEN_MAX = 200


async def _speak(lines: list[str], locale: str) -> list[bytes]:
    from threadline.voice.worker.ari import espeak  # noqa: PLC0415

    frames: list[bytes] = []
    for line in lines:
        key = (line, locale)
        wav = _spoken.get(key)
        if wav is None:
            wav = await espeak(line, locale) or b""
            _spoken[key] = wav
            while len(_spoken) > SPOKEN_MAX:
                _spoken.popitem(last=False)
        else:
            _spoken.move_to_end(key)
        if wav:
            frames += await asyncio.to_thread(frames_of, wav)
    return frames


async def _announce(services: Any, media: MediaCall, call_id: int, locale: str) -> None:
    """While the relayed caller waits: a welcome, then their place and estimated wait every
    ``ANNOUNCE_EVERY`` seconds, with music in between (espeak-ng speaks; without it, music only)."""
    try:
        media.to_customer.hold(True)  # music while nobody speaks to them
        media.to_customer.say(await _speak([text("welcome", locale)], locale))
        while not media.ended:
            async with services.db.transaction(write=False) as session:
                call = await voice_repo.get(session, call_id)
                if call is None or call.state not in (CallState.QUEUED, CallState.OFFERED, CallState.RINGING):
                    break
                figures = await actions.wait_figures(session, call)
            if media.to_customer.quiet():
                media.to_customer.say(await _speak(announcement(figures.position, figures.ewt_seconds, locale),
                                                   locale))
            for _ in range(int(ANNOUNCE_EVERY * 4)):
                if media.ended or media.connected:
                    break
                await asyncio.sleep(0.25)
            if media.connected:
                break
    except Exception:
        log.exception("browser_call_announce_failed", call_id=call_id)
    finally:
        if not media.ended:
            media.to_customer.hold(False)
