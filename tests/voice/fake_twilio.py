"""A loopback fake of Twilio Programmable Voice for tests.

``FakeTwilio`` serves the REST subset a contact center uses (Calls, Calls/Recordings, Conferences,
Conferences/Participants, Recordings media) on 127.0.0.1 and plays the part of the phone network: it posts
signed webhooks to the app (``X-Twilio-Signature`` from ``RequestValidator.compute_signature``, form encoded,
as Twilio does), parses the TwiML answers with ``xml.etree`` and walks them verb by verb.

Nothing runs on timers. The test decides what the caller does (``press``, ``say``, ``hangup``), when a wait
loop iterates (``tick_wait``), when a Gather or Record times out (``tw.timeout``), and when a dialled leg
answers (``tw.answer`` / ``tw.no_answer`` / ``tw.busy``). Time is a virtual clock (``tw.advance``) so
durations (QueueTime, RecordingDuration, CallDuration) are exact.

Every operation a test awaits returns once the fake is quiescent: every walker is blocked on the caller (or
finished) and every callback has been delivered. ``call.wait_for`` waits on events for what the app does by
REST in its own time. Errors (an unknown verb, a non-2xx or non-TwiML answer, a Leave outside a queue...)
are collected in ``tw.errors`` and raised as ``AssertionError`` from the next awaited operation and from
``__aexit__``; ``tw.take_errors()`` clears the ones a test expects.

Pointing the real ``twilio`` library at the fake: ``tw.client()``, or
``Client(sid, token, http_client=rewrite_http_client(tw.base_url))`` (an ``AsyncHttpClient`` on httpx that
rewrites ``https://*.twilio.com`` to the fake; use the ``*_async`` methods). An app that takes an API base
URL can instead set ``client.api.base_url = tw.base_url`` on its own client.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import io
import itertools
import re
import socket
import ssl
import wave
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from twilio.http import AsyncHttpClient
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response as TwilioResponse
from twilio.request_validator import RequestValidator
from twilio.rest import Client

API_VERSION = "2010-04-01"
DEFAULT_HOLD_MUSIC = "http://com.twilio.music.classical.s3.amazonaws.com/BusyStrings.mp3"
CALL_EVENTS = ("initiated", "ringing", "answered", "completed")
CONFERENCE_EVENTS = {"start", "end", "join", "leave", "mute", "hold", "modify", "speaker", "announcement"}


# ---------------------------------------------------------------------------------------------- helpers


def _rewrite(url: str, base_url: str) -> str:
    parts = urlsplit(url)
    if parts.hostname and (parts.hostname == "twilio.com" or parts.hostname.endswith(".twilio.com")):
        base = urlsplit(base_url)
        return urlunsplit((base.scheme, base.netloc, parts.path, parts.query, parts.fragment))
    return url


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    return ssl.create_default_context()  # built once: a fresh one per request costs ~20 ms


class RewritingAsyncHttpClient(AsyncHttpClient):
    """A twilio ``AsyncHttpClient`` on httpx that sends ``https://*.twilio.com/...`` to ``base_url``."""

    def __init__(self, base_url: str, timeout: float | None = 10.0) -> None:
        import logging

        super().__init__(logging.getLogger("twilio.fake_http_client"), True, timeout)
        self.base_url = base_url.rstrip("/")

    async def request(self, method: str, url: str, params: dict[str, object] | None = None,
                      data: dict[str, object] | None = None, headers: dict[str, str] | None = None,
                      auth: tuple[str, str] | None = None, timeout: float | None = None,
                      allow_redirects: bool = False) -> TwilioResponse:
        async with httpx.AsyncClient(timeout=timeout or self.timeout, verify=_ssl_context()) as http:
            r = await http.request(method.upper(), _rewrite(url, self.base_url), params=params, data=data,
                                   headers=headers, auth=auth, follow_redirects=allow_redirects)
        self._test_only_last_response = TwilioResponse(r.status_code, r.text, r.headers)
        return self._test_only_last_response


class RewritingHttpClient(TwilioHttpClient):
    """The blocking variant (requests). Only usable from another thread than the fake's event loop."""

    def __init__(self, base_url: str, **kw: Any) -> None:
        super().__init__(**kw)
        self.base_url = base_url.rstrip("/")

    def request(self, method: str, url: str, *args: Any, **kw: Any) -> TwilioResponse:  # type: ignore[override]
        return super().request(method, _rewrite(url, self.base_url), *args, **kw)


def rewrite_http_client(base_url: str, *, is_async: bool = True,
                        timeout: float | None = 10.0) -> RewritingAsyncHttpClient | RewritingHttpClient:
    """An http client for ``twilio.rest.Client(http_client=...)`` that talks to ``base_url``."""
    if is_async:
        return RewritingAsyncHttpClient(base_url, timeout)
    return RewritingHttpClient(base_url, timeout=timeout)


@contextlib.asynccontextmanager
async def serve_app(app: Any) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn on 127.0.0.1 (a free port); yields its base URL.

    Starts and stops the server without uvicorn's main loop, whose 0.1 s ticks and shutdown sleep would
    dominate these tests (uses ``Server.startup``, ``servers`` and ``server_state``, uvicorn 0.30+)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)
    await server.startup(sockets=[sock])
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        for srv in server.servers:
            srv.close()
        for connection in list(server.server_state.connections):
            connection.shutdown()
        tasks = list(server.server_state.tasks)
        if tasks:
            await asyncio.wait(tasks, timeout=3)
        sock.close()


def _bool(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() == "true"


def _rfc2822(dt: datetime) -> str:
    return format_datetime(dt)


class _Form:
    """Parsed form/query pairs, keeping repeated names (StatusCallbackEvent)."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs

    def get(self, name: str, default: str | None = None) -> str | None:
        for k, v in self.pairs:
            if k == name:
                return v
        return default

    def getlist(self, name: str) -> list[str]:
        return [v for k, v in self.pairs if k == name]

    def __contains__(self, name: str) -> bool:
        return any(k == name for k, _ in self.pairs)

    def dict(self) -> dict[str, str]:
        return dict(self.pairs)


# ------------------------------------------------------------------------------------------ data model


@dataclass
class Heard:
    """Something the caller heard: ``kind`` is say, play, dtmf (Play digits), pause or beep."""

    kind: str
    text: str | None = None
    url: str | None = None
    language: str | None = None
    voice: str | None = None
    digits: str | None = None
    loop: int = 1
    length: float = 0
    context: str = "call"  # call, gather, wait (Enqueue waitUrl), conference-wait, hold


@dataclass
class Exchange:
    """One HTTP exchange: ``kind`` "app" (the fake called the app) or "rest" (the app called the fake)."""

    kind: str
    method: str
    url: str
    params: dict[str, str]
    headers: dict[str, str]
    status: int
    body: str
    purpose: str = ""
    call_sid: str | None = None
    twiml: ET.Element | None = None
    pairs: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = ""


@dataclass
class Step:
    url: str | None = None
    method: str = "POST"
    params: dict[str, str] = field(default_factory=dict)
    purpose: str = "redirect"
    twiml: str | None = None


@dataclass
class Recording:
    sid: str
    call_sid: str | None
    conference_sid: str | None
    source: str
    started_at: datetime
    status: str = "in-progress"
    ended_at: datetime | None = None
    channels: int = 1
    track: str = "both"
    status_callback: str | None = None
    status_callback_method: str = "POST"
    status_callback_events: set[str] = field(default_factory=lambda: {"completed"})
    pauses: list[list[Any]] = field(default_factory=list)  # [start_s, end_s or None, behavior]
    history: list[tuple[str, float]] = field(default_factory=list)  # (status, seconds since start)
    url: str = ""

    def _offset(self, at: datetime) -> float:
        return (at - self.started_at).total_seconds()

    @property
    def paused_spans(self) -> list[tuple[float, float | None, str]]:
        """``(start, end, PauseBehavior)`` in seconds from the recording's start."""
        return [(p[0], p[1], p[2]) for p in self.pauses]

    @property
    def duration(self) -> int | None:
        if self.ended_at is None:
            return None
        total = self._offset(self.ended_at)
        for start, end, behavior in self.pauses:
            if behavior == "skip":
                total -= (end if end is not None else total) - start
        return int(round(total))


@dataclass
class Participant:
    call: FakeCall
    muted: bool = False
    hold: bool = False
    coaching: bool = False
    call_sid_to_coach: str | None = None
    beep: str = "true"
    start_conference_on_enter: bool = True
    end_conference_on_exit: bool = False
    label: str | None = None
    status: str = "connected"
    hold_url: str | None = None
    wake: asyncio.Future[Any] | None = None  # the TwiML walker waiting in <Dial><Conference>


@dataclass
class FakeConference:
    sid: str
    friendly_name: str
    created_at: datetime
    status: str = "init"  # init, in-progress, completed
    participants: dict[str, Participant] = field(default_factory=dict)
    status_callback: str | None = None
    status_callback_method: str = "POST"
    status_callback_events: set[str] = field(default_factory=lambda: {"start", "end"})
    record: bool = False
    recording_status_callback: str | None = None
    recording_status_callback_method: str = "POST"
    recordings: list[Recording] = field(default_factory=list)
    events: list[tuple[str, str | None]] = field(default_factory=list)  # (StatusCallbackEvent, CallSid)
    seq: itertools.count = field(default_factory=itertools.count)
    ended_reason: str | None = None


@dataclass
class FakeQueue:
    sid: str
    name: str
    members: list[FakeCall] = field(default_factory=list)


class _Interrupt(Exception):  # noqa: N818 - control flow, raised into a walker
    pass


class _Hangup(_Interrupt):
    pass


class _Redirect(_Interrupt):
    def __init__(self, step: Step) -> None:
        super().__init__(step.url)
        self.step = step


class _End(Exception):  # noqa: N818 - the TwiML walk is over (Hangup, Reject, application error)
    pass


_LEAVE = object()
_TIMEOUT = object()


@dataclass
class _Input:
    digits: str | None = None
    speech: str | None = None


class FakeCall:
    """One call leg. ``state``: ringing, in-progress, queued (in an Enqueue), in-conference, dialing,
    bridged, then completed / busy / no-answer / failed / canceled. ``status`` is Twilio's CallStatus."""

    def __init__(self, tw: FakeTwilio, sid: str, *, from_: str, to: str, direction: str,
                 parent: FakeCall | None = None) -> None:
        self.tw = tw
        self.sid = sid
        self.from_ = from_
        self.to = to
        self.direction = direction
        self.parent = parent
        self.status = "ringing"
        self.state = "ringing"
        self.pending: str | None = None  # what the walker waits for: gather, record, enqueue-wait, dial...
        self.heard: list[Heard] = []
        self.dtmf_sent: list[str] = []
        self.queue: str | None = None
        self.conference: str | None = None
        self.recordings: list[Recording] = []
        self.legs: list[FakeCall] = []
        self.created_at = tw.now
        self.answered_at: datetime | None = None
        self.ended_at: datetime | None = None
        self.url: str | None = None
        self.method = "POST"
        self.twiml: str | None = None
        self.status_callback: str | None = None
        self.status_callback_method = "POST"
        self.status_callback_events: set[str] = {"completed"}
        self.machine_detection: str | None = None
        self.record = False
        self.recording_status_callback: str | None = None
        self.answered_by: str | None = None
        self.gather: ET.Element | None = None
        self.status_callbacks: list[dict[str, str]] = []
        self._seq = itertools.count()
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Future[Any] | None = None
        self._interrupt: _Interrupt | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._change = asyncio.Event()
        self._join: dict[str, Any] | None = None  # a REST-added participant leg: join on answer
        self._on_end: list[Callable[[FakeCall], None]] = []
        self._claimed = False
        self._doc_url: str | None = None
        self._enqueue: tuple[FakeQueue, str | None, str, datetime] | None = None

    def __repr__(self) -> str:
        return f"<FakeCall {self.sid} {self.direction} {self.from_}->{self.to} {self.state}/{self.pending}>"

    @property
    def ended(self) -> bool:
        return self.state in ("completed", "busy", "no-answer", "failed", "canceled")

    @property
    def said(self) -> list[str]:
        return [h.text or "" for h in self.heard if h.kind == "say"]

    @property
    def played(self) -> list[str]:
        return [h.url or "" for h in self.heard if h.kind == "play"]

    def _changed(self) -> None:
        ev, self._change = self._change, asyncio.Event()
        ev.set()
        self.tw._changed()

    def _set_state(self, state: str) -> None:
        self.state = state
        self._changed()

    async def wait_for(self, target: str | Callable[[FakeCall], bool], timeout: float = 5.0) -> FakeCall:
        """Wait until ``state == target`` (a string) or ``target(call)`` is true; raise AssertionError."""
        pred = (lambda c: c.state == target) if isinstance(target, str) else target
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not pred(self):
            self.tw._raise_errors()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"{self!r}: timed out after {timeout} s waiting for {target!r}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._change.wait(), remaining)
        self.tw._raise_errors()
        return self

    async def press(self, digits: str) -> None:
        """The caller keys ``digits`` into the pending Gather (or ends a Record with a finishOnKey)."""
        if self.pending == "record":
            await self.tw._resume(self, _Input(digits=digits))
            return
        self._expect("gather", "press")
        assert self.gather is not None
        if "dtmf" not in (self.gather.get("input") or "dtmf").split():
            raise AssertionError(f"{self!r}: the Gather takes input={self.gather.get('input')!r}, not DTMF")
        await self.tw._resume(self, _Input(digits=digits))

    async def say(self, speech: str) -> None:
        """The caller speaks into the pending Gather (input must include speech)."""
        self._expect("gather", "say")
        assert self.gather is not None
        if "speech" not in (self.gather.get("input") or "dtmf").split():
            raise AssertionError(f"{self!r}: the Gather takes input={self.gather.get('input')!r}, not speech")
        await self.tw._resume(self, _Input(speech=speech))

    async def tick_wait(self) -> None:
        """One more iteration of the Enqueue waitUrl loop: a Gather of the wait document pending times
        out (the rest of the document runs), then the waitUrl is requested again."""
        if self.pending == "gather" and self.state == "queued":
            await self.tw.timeout(self)
        self._expect("enqueue-wait", "tick_wait")
        await self.tw._resume(self, None)

    async def hangup(self) -> None:
        """The caller hangs up."""
        await self.tw._hangup(self)

    def _expect(self, pending: str, what: str) -> None:
        self.tw._raise_errors()
        if self.pending != pending:
            raise AssertionError(f"{what}(): {self!r} is not waiting in a {pending} (pending={self.pending!r})")


# ------------------------------------------------------------------------------------------- the fake


class FakeTwilio:
    def __init__(self, account_sid: str = "AC" + "0123456789abcdef" * 2,
                 auth_token: str = "a1b2c3d4e5f6a7b8c9d0a1b2c3d4e5f6", *,
                 api_keys: dict[str, str] | None = None, settle_timeout: float = 5.0) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.api_keys = dict(api_keys or {})
        self.settle_timeout = settle_timeout
        self.validator = RequestValidator(auth_token)
        self.now = datetime.now(UTC).replace(microsecond=0)  # a virtual clock from the real time (advance() moves it)
        self.calls: list[FakeCall] = []
        self.conferences: dict[str, FakeConference] = {}
        self.queues: dict[str, FakeQueue] = {}
        self.recordings: list[Recording] = []
        self.deleted_recordings: list[str] = []  # recordings the app deleted (REST DELETE)
        self.log: list[Exchange] = []
        self.errors: list[str] = []
        self.base_url = ""
        self._ids = itertools.count(1)
        self._bg: set[asyncio.Task[Any]] = set()
        self._chains: dict[str, asyncio.Task[Any]] = {}
        self._change = asyncio.Event()
        self._http: httpx.AsyncClient | None = None
        self._serving: contextlib.AbstractAsyncContextManager[str] | None = None

    # -------------------------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> FakeTwilio:
        app = Starlette(routes=[Route("/{path:path}", self._rest, methods=["GET", "POST", "DELETE"])])
        self._serving = serve_app(app)
        self.base_url = await self._serving.__aenter__()
        # a fresh connection per request: a reused keep-alive one costs ~40 ms a request on loopback
        # (the request head and body go in two writes: Nagle + delayed ACK)
        self._http = httpx.AsyncClient(timeout=10.0, limits=httpx.Limits(max_keepalive_connections=0))
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                with contextlib.suppress(AssertionError):
                    await self.settle()
        finally:
            for call in self.calls:
                if call._task and not call._task.done():
                    call._task.cancel()
            for task in list(self._bg):
                task.cancel()
            await asyncio.gather(*(c._task for c in self.calls if c._task), *self._bg, return_exceptions=True)
            if self._http:
                await self._http.aclose()
            if self._serving is not None:
                await self._serving.__aexit__(None, None, None)
        if exc[0] is None:
            self._raise_errors()

    def client(self, username: str | None = None, password: str | None = None) -> Client:
        """A ``twilio.rest.Client`` whose requests reach this fake (use the ``*_async`` methods)."""
        return Client(username or self.account_sid, password or self.auth_token, self.account_sid,
                      http_client=rewrite_http_client(self.base_url))

    # -------------------------------------------------------------------------------- clock, errors

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def _error(self, message: str) -> None:
        self.errors.append(message)
        self._changed()

    def take_errors(self) -> list[str]:
        errors, self.errors = self.errors, []
        return errors

    def _raise_errors(self) -> None:
        if self.errors:
            raise AssertionError("FakeTwilio: " + "; ".join(self.errors))

    def _changed(self) -> None:
        ev, self._change = self._change, asyncio.Event()
        ev.set()

    def _sid(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):032x}"

    # -------------------------------------------------------------------------------- signing, posting

    def sign(self, url: str, params: dict[str, str] | None = None, auth_token: str | None = None) -> str:
        validator = RequestValidator(auth_token) if auth_token else self.validator
        return validator.compute_signature(url, params or {})

    async def signed_post(self, url: str, params: dict[str, str], *, signature: str | None = None,
                          auth_token: str | None = None, headers: dict[str, str] | None = None) -> httpx.Response:
        """POST ``params`` form-encoded to ``url`` with Twilio's signature (or the ``signature`` given)."""
        sig = signature if signature is not None else self.sign(url, params, auth_token)
        hdrs = {"X-Twilio-Signature": sig, "User-Agent": "TwilioProxy/1.1", **(headers or {})}
        assert self._http is not None
        r = await self._http.post(url, data=params, headers=hdrs)
        self.log.append(Exchange("app", "POST", url, dict(params), hdrs, r.status_code, r.text, "signed_post",
                                 pairs=list(params.items())))
        return r

    @property
    def requests_to_app(self) -> list[Exchange]:
        return [e for e in self.log if e.kind == "app"]

    @property
    def rest_requests(self) -> list[Exchange]:
        return [e for e in self.log if e.kind == "rest"]

    def callbacks(self, purpose: str) -> list[dict[str, str]]:
        """The params of every request to the app for ``purpose`` (call-status, conference-status,
        recording-status, enqueue-action, enqueue-wait, gather-action, dial-action, record-action, voice...)."""
        return [e.params for e in self.log if e.kind == "app" and e.purpose == purpose]

    async def _to_app(self, url: str, method: str, params: dict[str, str], purpose: str,
                      call: FakeCall | None = None) -> Exchange:
        assert self._http is not None
        method = (method or "POST").upper()
        headers = {"User-Agent": "TwilioProxy/1.1", "I-Twilio-Idempotency-Token": self._sid("")[-32:]}
        if method == "GET":
            full = url + ("&" if "?" in url else "?") + urlencode(params)
            headers["X-Twilio-Signature"] = self.sign(full, {})
            coro = self._http.get(full, headers=headers)
        else:
            full = url
            headers["X-Twilio-Signature"] = self.sign(url, params)
            coro = self._http.post(url, data=params, headers=headers)
        try:
            r = await coro
            status, body, ctype = r.status_code, r.text, r.headers.get("content-type", "")
        except httpx.HTTPError as e:
            status, body, ctype = 599, repr(e), ""
        ex = Exchange("app", method, full, dict(params), headers, status, body, purpose,
                      call.sid if call else None, pairs=list(params.items()), content_type=ctype)
        self.log.append(ex)
        return ex

    def _emit(self, key: str, url: str | None, method: str, params: dict[str, str], purpose: str,
              call: FakeCall | None = None) -> None:
        """Deliver a callback in the background, in order with the earlier ones for ``key``."""
        if not url:
            return
        previous = self._chains.get(key)

        async def deliver() -> None:
            if previous is not None:
                with contextlib.suppress(BaseException):
                    await previous
            ex = await self._to_app(url, method, params, purpose, call)
            if ex.status >= 400:
                self._error(f"{purpose} callback to {url} answered {ex.status}: {ex.body[:200]}")

        self._chains[key] = self._spawn(deliver())

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._bg.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._bg.discard(t)
            if not t.cancelled() and t.exception() is not None:
                self._error(f"fake task failed: {t.exception()!r}")
            self._changed()

        task.add_done_callback(done)
        return task

    async def settle(self, timeout: float | None = None) -> None:
        """Wait until every walker waits on the caller (or ended) and every callback was delivered."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout or self.settle_timeout)
        while True:
            busy = [t for t in self._bg if not t.done()]
            walking = [c for c in self.calls if not c._idle.is_set()]
            if not busy and not walking:
                break
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"FakeTwilio did not settle: tasks={len(busy)} walking={walking}")
            waits = [asyncio.ensure_future(c._idle.wait()) for c in walking] + busy
            done, pending = await asyncio.wait(waits, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            for w in pending:
                if w not in busy:
                    w.cancel()
        self._raise_errors()

    # -------------------------------------------------------------------------------- call params

    def _params(self, call: FakeCall, **extra: str) -> dict[str, str]:
        p = {"AccountSid": self.account_sid, "ApiVersion": API_VERSION, "CallSid": call.sid,
             "CallStatus": call.status, "Direction": call.direction, "From": call.from_, "To": call.to,
             "Caller": call.from_, "Called": call.to}
        if call.parent is not None:
            p["ParentCallSid"] = call.parent.sid
        if call.answered_by:
            p["AnsweredBy"] = call.answered_by
        p.update({k: v for k, v in extra.items() if v is not None})
        return p

    def _call_event(self, call: FakeCall, event: str) -> None:
        status = {"initiated": "initiated", "ringing": "ringing", "answered": "in-progress"}.get(event, call.status)
        if event not in call.status_callback_events or not call.status_callback:
            return
        params = self._params(call, CallStatus=status, SequenceNumber=str(next(call._seq)),
                              Timestamp=_rfc2822(self.now), CallbackSource="call-progress-events")
        if event == "completed":
            start = call.answered_at or call.ended_at or self.now
            params["CallDuration"] = str(int(((call.ended_at or self.now) - start).total_seconds()))
            params["Duration"] = str(max(1, -(-int(params["CallDuration"]) // 60)))
            params["SipResponseCode"] = {"completed": "200", "busy": "486", "no-answer": "487",
                                         "canceled": "487", "failed": "500"}.get(call.status, "200")
        call.status_callbacks.append(params)
        self._emit(f"call:{call.sid}", call.status_callback, call.status_callback_method, params,
                   "call-status", call)

    def _answer_call(self, call: FakeCall) -> None:
        if call.answered_at is None:
            call.answered_at = self.now
            call.status = "in-progress"
            if call.state == "ringing":
                call.state = "in-progress"
            self._call_event(call, "answered")
            call._changed()

    # -------------------------------------------------------------------------------- test API: calls

    async def incoming_call(self, from_: str, to: str, url: str, *, method: str = "POST",
                            status_callback: str | None = None, status_callback_event: str | None = None,
                            **extra: str) -> FakeCall:
        """A caller dials the app's number: POST the voice webhook (CallStatus=ringing) and walk the TwiML."""
        call = FakeCall(self, self._sid("CA"), from_=from_, to=to, direction="inbound")
        call.status_callback = status_callback
        if status_callback_event:
            call.status_callback_events = set(status_callback_event.split())
        call._claimed = True
        self.calls.append(call)
        self._start_walker(call, Step(url, method, dict(extra), "voice"))
        await self.settle()
        return call

    async def outbound_call(self, to: str | None = None, *, direction: str | None = None,
                            timeout: float = 5.0) -> FakeCall:
        """The next leg the app (or a Dial) created and no test claimed yet, optionally to ``to``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for c in self.calls:
                if (not c._claimed and c.direction != "inbound" and (to is None or c.to == to)
                        and (direction is None or c.direction == direction)):
                    c._claimed = True
                    return c
            self._raise_errors()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"no outbound call to {to!r} within {timeout} s; calls: {self.calls}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._change.wait(), remaining)

    def call(self, sid: str) -> FakeCall:
        for c in self.calls:
            if c.sid == sid:
                return c
        raise KeyError(sid)

    def conference(self, name_or_sid: str) -> FakeConference:
        for conf in self.conferences.values():
            if name_or_sid in (conf.sid, conf.friendly_name):
                return conf
        raise KeyError(name_or_sid)

    async def answer(self, leg: FakeCall, *, answered_by: str | None = None) -> None:
        """The callee picks up a ringing leg (REST-created call, Dial leg or conference participant)."""
        self._raise_errors()
        if leg.state != "ringing":
            raise AssertionError(f"answer(): {leg!r} is not ringing")
        if leg.machine_detection:
            leg.answered_by = answered_by or "human"
        self._answer_call(leg)
        if leg.record:
            self._new_recording(leg, None, "OutboundAPI", leg.recording_status_callback, None, None, None)
        if leg._join is not None:
            spec, leg._join = leg._join, None
            conf = spec.pop("conference")
            self._join_conference(conf, Participant(leg, **spec))
        elif leg.parent is not None and leg.direction == "outbound-dial":
            leg.state = "bridged"
            if leg.parent._wake and not leg.parent._wake.done():
                leg.parent._idle.clear()
                leg.parent._wake.set_result(("answered", leg))
        elif leg.url or leg.twiml:
            step = Step(leg.url, leg.method, {}, "voice", twiml=leg.twiml)
            self._start_walker(leg, step)
        leg._changed()
        await self.settle()

    async def no_answer(self, leg: FakeCall) -> None:
        await self._fail_leg(leg, "no-answer")

    async def busy(self, leg: FakeCall) -> None:
        await self._fail_leg(leg, "busy")

    async def _fail_leg(self, leg: FakeCall, status: str) -> None:
        if leg.state != "ringing":
            raise AssertionError(f"{status}: {leg!r} is not ringing")
        leg._join = None
        await self._finalize(leg, status)
        await self.settle()

    async def timeout(self, call: FakeCall) -> None:
        """The pending Gather (or Record) hears nothing until its timeout."""
        if call.pending not in ("gather", "record"):
            raise AssertionError(f"timeout(): {call!r} waits in no Gather/Record")
        await self._resume(call, _TIMEOUT)

    async def _resume(self, call: FakeCall, value: Any) -> None:
        assert call._wake is not None and not call._wake.done()
        call._idle.clear()
        call._wake.set_result(value)
        await self.settle()

    async def _hangup(self, call: FakeCall) -> None:
        if call.ended:
            raise AssertionError(f"hangup(): {call!r} has already ended")
        self._interrupt(call, _Hangup())
        await self.settle()

    def _interrupt(self, call: FakeCall, intr: _Interrupt) -> None:
        """Hang up or redirect a call, whatever its walker is doing (sync: REST handlers call it)."""
        if call.ended:
            return
        if call._task is not None and not call._task.done():
            call._interrupt = intr
            call._idle.clear()
            if call._wake is not None and not call._wake.done():
                call._wake.set_result(intr)
            return
        if isinstance(intr, _Hangup):
            if call.state == "ringing":
                self._spawn(self._finalize(call, "canceled"))
            else:
                self._spawn(self._finalize(call, "completed"))
        elif isinstance(intr, _Redirect):
            if call.state == "ringing":  # not answered yet: the new URL is used on answer
                call.url, call.twiml = intr.step.url, intr.step.twiml
                return
            self._start_walker(call, intr.step)

    # -------------------------------------------------------------------------------- the walker

    def _start_walker(self, call: FakeCall, step: Step) -> None:
        call._idle.clear()
        call._task = asyncio.get_running_loop().create_task(self._walk(call, step))

    async def _walk(self, call: FakeCall, step: Step | None) -> None:
        try:
            await self._leave_all(call, "redirected")
            while step is not None and not call.ended:
                try:
                    root, doc_url = await self._load(call, step)
                    step = await self._run(call, list(root), doc_url, "call")
                    if step is _LEAVE:
                        step = None
                except _Redirect as r:
                    call._interrupt = None
                    await self._leave_all(call, "redirected")
                    step = r.step
            if not call.ended:
                await self._finalize(call, "completed")
        except _Hangup:
            call._interrupt = None
            await self._finalize(call, "completed")
        except _End:
            pass
        except Exception as e:  # a bug in the fake or an unexpected answer: fail loudly
            self._error(f"walker of {call.sid} crashed: {e!r}")
            await self._finalize(call, "failed")
        finally:
            call.pending = None
            call._idle.set()
            call._changed()

    def _check(self, call: FakeCall) -> None:
        intr = call._interrupt
        if intr is not None:
            call._interrupt = None
            raise intr

    async def _block(self, call: FakeCall, kind: str, fut: asyncio.Future[Any] | None = None) -> Any:
        self._check(call)
        call.pending = kind
        call._wake = fut or asyncio.get_running_loop().create_future()
        call._idle.set()
        call._changed()
        try:
            value = await call._wake
        finally:
            call.pending = None
            call._wake = None
            call._idle.clear()
        if isinstance(value, _Interrupt):
            call._interrupt = None
            raise value
        return value

    async def _load(self, call: FakeCall, step: Step) -> tuple[ET.Element, str]:
        if step.twiml is not None:
            doc_url, text, ex = call._doc_url or "", step.twiml, None
        else:
            assert step.url
            params = self._params(call, **step.params)
            ex = await self._to_app(step.url, step.method, params, step.purpose, call)
            doc_url, text = step.url, ex.body
            self._check(call)
            if ex.status >= 300:
                await self._app_error(call, f"{step.purpose} {step.url} answered HTTP {ex.status}: {text[:200]}")
        try:
            root = ET.fromstring(text)
        except ET.ParseError as e:
            await self._app_error(call, f"{step.purpose} {step.url}: not XML ({e}): {text[:200]!r}")
        if root.tag != "Response":
            await self._app_error(call, f"{step.purpose} {step.url}: root element <{root.tag}>, not <Response>")
        if ex is not None:
            ex.twiml = root
        call._doc_url = doc_url
        return root, doc_url

    async def _app_error(self, call: FakeCall, message: str) -> None:
        self._error(message)
        call.heard.append(Heard("say", text="An application error has occurred."))
        await self._finalize(call, "completed" if call.answered_at else "failed")
        raise _End()

    async def _run(self, call: FakeCall, verbs: list[ET.Element], doc_url: str, context: str) -> Any:
        """Run verbs; return a Step to fetch next, _LEAVE (a Leave in a wait context), or None at the end."""
        for verb in verbs:
            self._check(call)
            if call.ended:
                raise _End()
            tag = verb.tag
            if tag == "Reject":
                if call.answered_at is not None or context != "call":
                    self._error(f"<Reject> after the call was answered ({doc_url})")
                await self._finalize(call, "busy" if verb.get("reason") == "busy" else "no-answer")
                raise _End()
            allowed = {"call": None, "wait": {"Play", "Say", "Pause", "Hangup", "Redirect", "Leave", "Gather"},
                       "hold": {"Play", "Say", "Pause", "Redirect"}}.get(context)
            if allowed is not None and tag not in allowed:
                self._error(f"<{tag}> is not allowed in a {context} document ({doc_url})")
                raise _End()
            handler = getattr(self, f"_verb_{tag}", None)
            if handler is None:
                self._error(f"unknown TwiML verb <{tag}> in {doc_url}")
                await self._finalize(call, "failed")
                raise _End()
            if context == "call":
                self._answer_call(call)
            result = await handler(call, verb, doc_url, context)
            if result is not None:
                return result
        return None

    def _heard(self, call: FakeCall, h: Heard) -> None:
        call.heard.append(h)
        call._changed()

    async def _verb_Say(self, call: FakeCall, verb: ET.Element, doc_url: str, context: str) -> None:  # noqa: N802
        self._heard(call, Heard("say", text=(verb.text or "").strip(), language=verb.get("language"),
                                voice=verb.get("voice"), loop=int(verb.get("loop") or 1), context=context))

    async def _verb_Play(self, call: FakeCall, verb: ET.Element, doc_url: str, context: str) -> None:  # noqa: N802
        if verb.get("digits"):
            call.dtmf_sent.append(verb.get("digits") or "")
            self._heard(call, Heard("dtmf", digits=verb.get("digits"), context=context))
        else:
            url = urljoin(doc_url, (verb.text or "").strip())
            self._heard(call, Heard("play", url=url, loop=int(verb.get("loop") or 1), context=context))

    async def _verb_Pause(self, call: FakeCall, verb: ET.Element, doc_url: str, context: str) -> None:  # noqa: N802
        length = float(verb.get("length") or 1)
        self.advance(length)
        self._heard(call, Heard("pause", length=length, context=context))

    async def _verb_Redirect(self, call: FakeCall, verb: ET.Element, doc_url: str, context: str) -> Step:  # noqa: N802
        return Step(urljoin(doc_url, (verb.text or "").strip()), verb.get("method") or "POST", {},
                    "redirect" if context == "call" else f"{context}-redirect")

    async def _verb_Hangup(self, call: FakeCall, verb: ET.Element, doc_url: str, context: str) -> None:  # noqa: N802
        await self._finalize(call, "completed")
        raise _End()

    async def _verb_Leave(self, call: FakeCall, verb: ET.Element, doc_url: str, context: str) -> Any:  # noqa: N802
        if context != "wait":
            self._error(f"<Leave> outside an Enqueue waitUrl ({doc_url})")
            raise _End()
        return _LEAVE

    async def _verb_Gather(self, call: FakeCall, verb: ET.Element, doc_url: str, context: str) -> Any:  # noqa: N802
        for child in verb:
            if child.tag not in ("Say", "Play", "Pause"):
                self._error(f"<{child.tag}> cannot be nested in <Gather> ({doc_url})")
                raise _End()
            await getattr(self, f"_verb_{child.tag}")(call, child, doc_url, "gather")
        action = urljoin(doc_url, verb.get("action") or "") if verb.get("action") else doc_url
        method = verb.get("method") or "POST"
        call.gather = verb
        try:
            got = await self._block(call, "gather")
        finally:
            call.gather = None
        purpose = "gather-action" if context == "call" else f"{context}-gather-action"
        if got is _TIMEOUT:
            self.advance(float(verb.get("timeout") or 5))
            if _bool(verb.get("actionOnEmptyResult"), False):
                return Step(action, method, {"Digits": ""}, purpose)
            return None
        params: dict[str, str] = {}
        if got.digits is not None:
            digits, finish = got.digits, verb.get("finishOnKey", "#")
            if finish and finish in digits:
                digits = digits[: digits.index(finish)]
                params["FinishedOnKey"] = finish
            if verb.get("numDigits"):
                digits = digits[: int(verb.get("numDigits") or 0)]
            if not digits and not _bool(verb.get("actionOnEmptyResult"), False):
                return None
            params["Digits"] = digits
        else:
            params["SpeechResult"] = got.speech or ""
            params["Confidence"] = "0.9"
        return Step(action, method, params, purpose)

    async def _verb_Record(self, call: FakeCall, verb: ET.Element, doc_url: str, context: str) -> Any:  # noqa: N802
        if _bool(verb.get("playBeep"), True):
            self._heard(call, Heard("beep", context=context))
        rec = self._new_recording(call, None, "RecordVerb", verb.get("recordingStatusCallback"),
                                  verb.get("recordingStatusCallbackMethod"),
                                  verb.get("recordingStatusCallbackEvent"), doc_url)
        action = urljoin(doc_url, verb.get("action") or "") if verb.get("action") else doc_url
        try:
            got = await self._block(call, "record")
        except _Hangup:
            self._complete_recording(rec)
            params = self._params(call, **self._rec_params(rec), Digits="hangup")
            self._emit(f"call:{call.sid}", action, verb.get("method") or "POST", params, "record-action", call)
            raise
        digits = "" if got is _TIMEOUT else (got.digits or "")
        if got is _TIMEOUT:
            self.advance(float(verb.get("timeout") or 5))
        self._complete_recording(rec)
        return Step(action, verb.get("method") or "POST", {**self._rec_params(rec), "Digits": digits},
                    "record-action")

    async def _verb_Enqueue(self, call: FakeCall, verb: ET.Element, doc_url: str, context: str) -> Any:  # noqa: N802
        name = (verb.text or "").strip()
        queue = self.queues.get(name)
        if queue is None:
            queue = self.queues[name] = FakeQueue(self._sid("QU"), name)
        queue.members.append(call)
        call.queue = name
        entered = self.now
        action = urljoin(doc_url, verb.get("action") or "") if verb.get("action") else None
        call._enqueue = (queue, action, verb.get("method") or "POST", entered)
        call._set_state("queued")
        wait_url = urljoin(doc_url, verb.get("waitUrl") or "") if verb.get("waitUrl") else None
        result = None
        try:
            while result is None:
                if wait_url:
                    step: Any = Step(wait_url, verb.get("waitUrlMethod") or "POST", {}, "enqueue-wait")
                    while isinstance(step, Step):
                        step.params.update(self._queue_params(call, queue, entered))
                        root, url = await self._load(call, step)
                        step = await self._run(call, list(root), url, "wait")
                        if step is _LEAVE:
                            result = "leave"
                else:
                    self._heard(call, Heard("play", url=DEFAULT_HOLD_MUSIC, context="wait"))
                if result is None:
                    await self._block(call, "enqueue-wait")
        except _Interrupt as intr:
            self._leave_queue(call, "hangup" if isinstance(intr, _Hangup) else "redirected")
            raise
        self._leave_queue(call, None)
        call._set_state("in-progress")
        if action:
            return Step(action, verb.get("method") or "POST",
                        {"QueueResult": result, "QueueSid": queue.sid,
                         "QueueTime": str(int((self.now - entered).total_seconds()))}, "enqueue-action")
        return None

    def _queue_params(self, call: FakeCall, queue: FakeQueue, entered: datetime) -> dict[str, str]:
        return {"QueueSid": queue.sid, "QueuePosition": str(queue.members.index(call) + 1),
                "QueueTime": str(int((self.now - entered).total_seconds())), "AvgQueueTime": "0",
                "CurrentQueueSize": str(len(queue.members)), "MaxQueueSize": "1000"}

    def _leave_queue(self, call: FakeCall, result: str | None) -> None:
        """Take the call out of its queue; ``result`` posts the Enqueue action now (response ignored)."""
        info = call._enqueue
        if call.queue is None or info is None:
            return
        queue, action, method, entered = info
        if call in queue.members:
            queue.members.remove(call)
        call.queue = None
        call._enqueue = None
        if result and action:
            self._emit(f"call:{call.sid}", action, method,
                       self._params(call, QueueResult=result, QueueSid=queue.sid,
                                    QueueTime=str(int((self.now - entered).total_seconds()))),
                       "enqueue-action", call)
        call._changed()

    async def _leave_all(self, call: FakeCall, reason: str) -> None:
        self._leave_queue(call, reason)
        if call.conference:
            self._leave_conference(call, reason)
        for leg in list(call.legs):
            if not leg.ended:
                await self._finalize(leg, "completed" if leg.answered_at else "canceled")

    async def _verb_Dial(self, call: FakeCall, verb: ET.Element, doc_url: str, context: str) -> Any:  # noqa: N802
        action = urljoin(doc_url, verb.get("action") or "") if verb.get("action") else None
        method = verb.get("method") or "POST"
        nouns = list(verb) or [ET.Element("Number")]
        if not list(verb):
            nouns[0].text = verb.text
        conf = [n for n in nouns if n.tag == "Conference"]
        if conf:
            return await self._dial_conference(call, verb, conf[0], doc_url, action, method)
        legs = []
        for noun in nouns:
            if noun.tag not in ("Number", "Client", "Sip"):
                self._error(f"<Dial><{noun.tag}> is not supported by the fake ({doc_url})")
                raise _End()
            target = (noun.text or "").strip()
            if noun.tag == "Client" and not target.startswith("client:"):
                ident = noun.find("Identity")
                target = "client:" + ((ident.text or "") if ident is not None else target).strip()
            leg = FakeCall(self, self._sid("CA"), from_=verb.get("callerId") or call.from_, to=target,
                           direction="outbound-dial", parent=call)
            leg.status_callback = urljoin(doc_url, noun.get("statusCallback") or "") or None
            leg.status_callback_method = noun.get("statusCallbackMethod") or "POST"
            if noun.get("statusCallbackEvent"):
                leg.status_callback_events = set((noun.get("statusCallbackEvent") or "").split())
            call.legs.append(leg)
            self.calls.append(leg)
            legs.append(leg)
            self._call_event(leg, "initiated")
            self._call_event(leg, "ringing")
        call._set_state("dialing")
        fut = asyncio.get_running_loop().create_future()
        failures: list[str] = []

        def on_end(leg: FakeCall) -> None:
            call._idle.clear()
            if leg.state in ("busy", "no-answer", "failed", "canceled"):
                failures.append(leg.state)
                if len(failures) == len(legs) and not fut.done():
                    fut.set_result((leg.state, leg))
            elif not fut.done():
                fut.set_result(("completed", leg))

        for leg in legs:
            leg._on_end.append(on_end)
        outcome, winner = await self._block(call, "dial", fut)
        record = verb.get("record") or ""
        rec = None
        if outcome == "answered":
            for other in legs:
                if other is not winner and not other.ended:
                    await self._finalize(other, "canceled")
            call._set_state("bridged")
            if record.startswith("record-from"):
                rec = self._new_recording(call, None, "DialVerb", verb.get("recordingStatusCallback"),
                                          verb.get("recordingStatusCallbackMethod"),
                                          verb.get("recordingStatusCallbackEvent"), doc_url)
            bridged_at = self.now
            done = asyncio.get_running_loop().create_future()

            def on_bridge_end(leg: FakeCall) -> None:
                if not done.done():
                    call._idle.clear()
                    done.set_result(("completed", leg))

            winner._on_end.append(on_bridge_end)
            try:
                outcome, _ = await self._block(call, "bridged", done)
            except _Interrupt:
                if not winner.ended:
                    await self._finalize(winner, "completed")
                raise
            duration = str(int((self.now - bridged_at).total_seconds()))
        else:
            duration = "0"
        if rec is not None:
            self._complete_recording(rec)
        call._set_state("in-progress")
        if action:
            params = {"DialCallStatus": outcome, "DialCallSid": winner.sid, "DialCallDuration": duration,
                      "DialBridged": "true" if duration != "0" or outcome == "completed" else "false"}
            if rec is not None:
                params.update(self._rec_params(rec))
            return Step(action, method, params, "dial-action")
        return None

    async def _dial_conference(self, call: FakeCall, dial: ET.Element, noun: ET.Element, doc_url: str,
                               action: str | None, method: str) -> Any:
        name = (noun.text or "").strip()
        conf = self._get_or_create_conference(name)
        if conf.status_callback is None and noun.get("statusCallback"):
            conf.status_callback = urljoin(doc_url, noun.get("statusCallback") or "")
            conf.status_callback_method = noun.get("statusCallbackMethod") or "POST"
            conf.status_callback_events = set((noun.get("statusCallbackEvent") or "start end").split())
            bad = conf.status_callback_events - CONFERENCE_EVENTS
            if bad:
                self._error(f"unknown Conference statusCallbackEvent {sorted(bad)} ({doc_url})")
        if noun.get("record") == "record-from-start":
            conf.record = True
            if noun.get("recordingStatusCallback"):
                conf.recording_status_callback = urljoin(doc_url, noun.get("recordingStatusCallback") or "")
                conf.recording_status_callback_method = noun.get("recordingStatusCallbackMethod") or "POST"
        fut = asyncio.get_running_loop().create_future()
        p = Participant(call, muted=_bool(noun.get("muted"), False), beep=noun.get("beep") or "true",
                        start_conference_on_enter=_bool(noun.get("startConferenceOnEnter"), True),
                        end_conference_on_exit=_bool(noun.get("endConferenceOnExit"), False),
                        coaching=bool(noun.get("coach")), call_sid_to_coach=noun.get("coach"),
                        label=noun.get("participantLabel"), wake=fut)
        self._join_conference(conf, p)
        if conf.status == "init":
            wait_url = noun.get("waitUrl")
            if wait_url is None:
                self._heard(call, Heard("play", url=DEFAULT_HOLD_MUSIC, context="conference-wait"))
            elif wait_url:
                url = urljoin(doc_url, wait_url)
                if re.search(r"\.(mp3|wav)$", url):
                    self._heard(call, Heard("play", url=url, context="conference-wait"))
                else:
                    root, u = await self._load(call, Step(url, noun.get("waitMethod") or "POST", {},
                                                          "conference-wait"))
                    await self._run(call, list(root), u, "hold")
        try:
            await self._block(call, "conference", fut)
        except _Interrupt:
            self._leave_conference(call, "hangup")
            raise
        call._set_state("in-progress")
        if action:
            return Step(action, method, {}, "dial-action")
        return None

    # -------------------------------------------------------------------------------- conferences

    def _get_or_create_conference(self, name: str) -> FakeConference:
        for conf in self.conferences.values():
            if conf.friendly_name == name and conf.status != "completed":
                return conf
        conf = FakeConference(self._sid("CF"), name, self.now)
        self.conferences[conf.sid] = conf
        return conf

    def _conf_event(self, conf: FakeConference, event: str, call: FakeCall | None = None,
                    **extra: str) -> None:
        conf.events.append((event, call.sid if call else None))
        short = {"conference-start": "start", "conference-end": "end", "participant-join": "join",
                 "participant-leave": "leave", "participant-mute": "mute", "participant-unmute": "mute",
                 "participant-hold": "hold", "participant-unhold": "hold",
                 "participant-modify": "modify"}.get(event, event)
        if not conf.status_callback or short not in conf.status_callback_events:
            return
        params = {"AccountSid": self.account_sid, "ConferenceSid": conf.sid, "FriendlyName": conf.friendly_name,
                  "StatusCallbackEvent": event, "SequenceNumber": str(next(conf.seq)),
                  "Timestamp": _rfc2822(self.now)}
        if call is not None:
            p = conf.participants.get(call.sid)
            params["CallSid"] = call.sid
            if p is not None:
                params.update({"Muted": str(p.muted).lower(), "Hold": str(p.hold).lower(),
                               "Coaching": str(p.coaching).lower(),
                               "EndConferenceOnExit": str(p.end_conference_on_exit).lower(),
                               "StartConferenceOnEnter": str(p.start_conference_on_enter).lower()})
                if p.label:
                    params["ParticipantLabel"] = p.label
                if p.call_sid_to_coach:
                    params["CallSidToCoach"] = p.call_sid_to_coach
        params.update(extra)
        self._emit(f"conf:{conf.sid}", conf.status_callback, conf.status_callback_method, params,
                   "conference-status")

    def _join_conference(self, conf: FakeConference, p: Participant) -> None:
        conf.participants[p.call.sid] = p
        p.call.conference = conf.friendly_name
        p.call._set_state("in-conference")
        self._conf_event(conf, "participant-join", p.call)
        if conf.status == "init" and p.start_conference_on_enter:
            conf.status = "in-progress"
            self._conf_event(conf, "conference-start")
            if conf.record:
                rec = self._new_recording(None, conf, "Conference", conf.recording_status_callback,
                                          conf.recording_status_callback_method, None, None)
                conf.recordings.append(rec)

    def _leave_conference(self, call: FakeCall, reason: str) -> None:
        """Take the call out of its conference (sync); end the conference if it must end."""
        conf = next((c for c in self.conferences.values() if call.sid in c.participants), None)
        call.conference = None
        if conf is None:
            return
        p = conf.participants[call.sid]
        self._conf_event(conf, "participant-leave", call)
        del conf.participants[call.sid]
        p.status = "complete"
        if p.end_conference_on_exit:
            self._end_conference(conf, "participant-with-end-conference-on-exit-left", call.sid)
        elif not conf.participants:
            self._end_conference(conf, "last-participant-left", call.sid)
        call._changed()

    def _end_conference(self, conf: FakeConference, reason: str, ending_sid: str | None) -> None:
        if conf.status == "completed":
            return
        for sid, p in list(conf.participants.items()):
            self._conf_event(conf, "participant-leave", p.call)
            del conf.participants[sid]
            p.call.conference = None
            p.status = "complete"
            if p.wake is not None and not p.wake.done():
                p.call._idle.clear()
                p.wake.set_result("conference-ended")
            elif not p.call.ended:
                self._spawn(self._finalize(p.call, "completed"))
        conf.status = "completed"
        conf.ended_reason = reason
        extra = {"ReasonConferenceEnded": reason, "Reason": reason}
        if ending_sid:
            extra["CallSidEndingConference"] = ending_sid
        self._conf_event(conf, "conference-end", **extra)
        for rec in conf.recordings:
            self._complete_recording(rec)
        self._changed()

    async def _play_hold(self, call: FakeCall, url: str, method: str) -> None:
        if re.search(r"\.(mp3|wav)$", url):
            self._heard(call, Heard("play", url=url, context="hold"))
            return
        params = self._params(call)
        ex = await self._to_app(url, method, params, "hold", call)
        if ex.status >= 300:
            self._error(f"hold URL {url} answered HTTP {ex.status}")
            return
        root = ET.fromstring(ex.body)
        ex.twiml = root
        for verb in root:
            if verb.tag not in ("Play", "Say", "Pause"):
                self._error(f"<{verb.tag}> in a hold document ({url})")
                return
            await getattr(self, f"_verb_{verb.tag}")(call, verb, url, "hold")

    # -------------------------------------------------------------------------------- recordings

    def _new_recording(self, call: FakeCall | None, conf: FakeConference | None, source: str,
                       callback: str | None, method: str | None, events: str | None,
                       doc_url: str | None) -> Recording:
        sid = self._sid("RE")
        if callback and doc_url:
            callback = urljoin(doc_url, callback)
        rec = Recording(sid, call.sid if call else None, conf.sid if conf else None, source, self.now,
                        status_callback=callback or None, status_callback_method=method or "POST",
                        url=f"{self.base_url}/{API_VERSION}/Accounts/{self.account_sid}/Recordings/{sid}")
        if events:
            rec.status_callback_events = set(events.replace(",", " ").split())
        rec.history.append(("in-progress", 0.0))
        self.recordings.append(rec)
        if call is not None:
            call.recordings.append(rec)
            call._changed()
        self._rec_event(rec, "in-progress")
        return rec

    def _rec_params(self, rec: Recording) -> dict[str, str]:
        return {"RecordingSid": rec.sid, "RecordingUrl": rec.url,
                "RecordingDuration": str(rec.duration if rec.duration is not None else -1)}

    def _rec_event(self, rec: Recording, status: str) -> None:
        if not rec.status_callback or status not in rec.status_callback_events:
            return
        params = {"AccountSid": self.account_sid, "CallSid": rec.call_sid or "", "RecordingSid": rec.sid,
                  "RecordingUrl": rec.url, "RecordingStatus": status,
                  "RecordingDuration": str(rec.duration if rec.duration is not None else -1),
                  "RecordingChannels": str(rec.channels), "RecordingStartTime": _rfc2822(rec.started_at),
                  "RecordingSource": rec.source, "RecordingTrack": rec.track, "ErrorCode": "0"}
        if rec.conference_sid:
            params["ConferenceSid"] = rec.conference_sid
        self._emit(f"rec:{rec.sid}", rec.status_callback, rec.status_callback_method, params, "recording-status")

    def _set_recording_status(self, rec: Recording, status: str, behavior: str = "silence") -> None:
        offset = rec._offset(self.now)
        if status == "paused" and rec.status == "in-progress":
            rec.pauses.append([offset, None, behavior])
        elif status == "in-progress" and rec.status == "paused":
            rec.pauses[-1][1] = offset
        elif status == "stopped":
            self._complete_recording(rec)
            return
        rec.status = status
        rec.history.append((status, offset))

    def _complete_recording(self, rec: Recording) -> None:
        if rec.status in ("completed", "stopped", "absent"):
            return
        offset = rec._offset(self.now)
        if rec.status == "paused":
            rec.pauses[-1][1] = offset
        rec.ended_at = self.now
        rec.status = "completed"
        rec.history.append(("completed", offset))
        self._rec_event(rec, "completed")

    # -------------------------------------------------------------------------------- ending calls

    async def _finalize(self, call: FakeCall, status: str) -> None:
        if call.ended:
            return
        call.status = status
        call.ended_at = self.now
        call.pending = None
        self._leave_queue(call, "hangup")
        if call.conference:
            self._leave_conference(call, "hangup")
        call._join = None
        for rec in call.recordings:
            self._complete_recording(rec)
        call.state = status
        for leg in call.legs:
            if not leg.ended:
                await self._finalize(leg, "completed" if leg.answered_at else "canceled")
        self._call_event(call, "completed")
        for cb in call._on_end:
            cb(call)
        call._changed()

    # -------------------------------------------------------------------------------- REST API

    def _err(self, status: int, code: int, message: str) -> JSONResponse:
        return JSONResponse({"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
                             "status": status}, status_code=status)

    def _authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        if user == self.account_sid:
            return password == self.auth_token
        return user in self.api_keys and self.api_keys[user] == password

    async def _rest(self, request: Request) -> Response:
        body = (await request.body()).decode()
        pairs = parse_qsl(body, keep_blank_values=True) + parse_qsl(request.url.query, keep_blank_values=True)
        form = _Form(pairs)
        try:
            response = await self._dispatch(request, form)
        except Exception as e:
            self._error(f"REST {request.method} {request.url.path} crashed: {e!r}")
            response = self._err(500, 20500, "Internal Server Error")
        self.log.append(Exchange("rest", request.method, str(request.url), form.dict(), dict(request.headers),
                                 response.status_code, bytes(response.body).decode(errors="replace"),
                                 request.url.path, pairs=pairs))
        return response

    async def _dispatch(self, request: Request, form: _Form) -> Response:
        path = request.url.path
        m = re.fullmatch(rf"/{API_VERSION}/Accounts/(AC\w+)/Recordings/(RE\w+)\.(wav|mp3)", path)
        if m and request.method == "GET":
            rec = next((r for r in self.recordings if r.sid == m.group(2)), None)
            if rec is None:
                return self._err(404, 20404, "The requested resource was not found")
            return Response(_wav_bytes() if m.group(3) == "wav" else b"ID3\x03\x00\x00\x00\x00\x00\x00",
                            media_type="audio/x-wav" if m.group(3) == "wav" else "audio/mpeg")
        if not self._authorized(request):
            return self._err(401, 20003, "Authenticate")
        m = re.fullmatch(rf"/{API_VERSION}/Accounts/(\w+)(/.*)?\.json", path)
        if not m:
            return self._err(404, 20404, f"The requested resource {path} was not found")
        if m.group(1) != self.account_sid:
            return self._err(404, 20404, f"The requested resource {path} was not found")
        rest = m.group(2) or ""
        method = request.method
        for pattern, handler in (
            (r"/Calls", self._calls),
            (r"/Calls/(CA\w+)", self._call_instance),
            (r"/Calls/(CA\w+)/Recordings", self._call_recordings),
            (r"/Calls/(CA\w+)/Recordings/([\w.]+)", self._recording_instance),
            (r"/Conferences", self._conferences),
            (r"/Conferences/([^/]+)", self._conference_instance),
            (r"/Conferences/([^/]+)/Recordings/([\w.]+)", self._conf_recording_instance),
            (r"/Conferences/([^/]+)/Participants", self._participants),
            (r"/Conferences/([^/]+)/Participants/([^/]+)", self._participant_instance),
            (r"/Recordings/(RE\w+)", self._recording_fetch),
        ):
            mm = re.fullmatch(pattern, rest)
            if mm:
                return await handler(method, form, *mm.groups())
        return self._err(404, 20404, f"The requested resource {path} was not found")

    def _uri(self, tail: str) -> str:
        return f"/{API_VERSION}/Accounts/{self.account_sid}{tail}.json"

    def _call_json(self, call: FakeCall) -> dict[str, Any]:
        duration = None
        if call.ended_at is not None:
            duration = str(int((call.ended_at - (call.answered_at or call.ended_at)).total_seconds()))
        return {"sid": call.sid, "account_sid": self.account_sid, "parent_call_sid": call.parent.sid if call.parent else None,
                "to": call.to, "to_formatted": call.to, "from": call.from_, "from_formatted": call.from_,
                "status": call.status, "direction": call.direction, "api_version": API_VERSION,
                "date_created": _rfc2822(call.created_at), "date_updated": _rfc2822(self.now),
                "start_time": _rfc2822(call.answered_at) if call.answered_at else None,
                "end_time": _rfc2822(call.ended_at) if call.ended_at else None, "duration": duration,
                "price": None, "price_unit": "USD", "answered_by": call.answered_by, "caller_name": None,
                "forwarded_from": None, "group_sid": None, "phone_number_sid": None, "queue_time": "0",
                "trunk_sid": None, "uri": self._uri(f"/Calls/{call.sid}"),
                "subresource_uris": {"recordings": self._uri(f"/Calls/{call.sid}/Recordings"),
                                     "notifications": self._uri(f"/Calls/{call.sid}/Notifications")}}

    def _page(self, key: str, items: list[dict[str, Any]], tail: str) -> JSONResponse:
        uri = self._uri(tail)
        return JSONResponse({key: items, "first_page_uri": uri + "?PageSize=50&Page=0", "next_page_uri": None,
                             "previous_page_uri": None, "page": 0, "page_size": 50, "start": 0,
                             "end": max(0, len(items) - 1), "uri": uri})

    def _find_call(self, sid: str) -> FakeCall | None:
        return next((c for c in self.calls if c.sid == sid), None)

    async def _calls(self, method: str, form: _Form) -> Response:
        if method == "GET":
            items = [self._call_json(c) for c in self.calls
                     if (not form.get("Status") or c.status == form.get("Status"))
                     and (not form.get("To") or c.to == form.get("To"))]
            return self._page("calls", items, "/Calls")
        if method != "POST":
            return self._err(405, 20004, "Method not allowed")
        to, from_ = form.get("To"), form.get("From")
        if not to:
            return self._err(400, 21201, "No 'To' number is specified")
        if not from_:
            return self._err(400, 21213, "No 'From' number is specified")
        if not form.get("Url") and not form.get("Twiml") and not form.get("ApplicationSid"):
            return self._err(400, 21205, "Url parameter is required.")
        call = FakeCall(self, self._sid("CA"), from_=from_, to=to, direction="outbound-api")
        call.status = call.state = "queued"
        call.url, call.method, call.twiml = form.get("Url"), form.get("Method") or "POST", form.get("Twiml")
        call.status_callback = form.get("StatusCallback")
        call.status_callback_method = form.get("StatusCallbackMethod") or "POST"
        events = form.getlist("StatusCallbackEvent")
        if events:
            call.status_callback_events = {e for ev in events for e in ev.split()}
        call.machine_detection = form.get("MachineDetection")
        call.record = _bool(form.get("Record"), False)
        call.recording_status_callback = form.get("RecordingStatusCallback")
        self.calls.append(call)
        body = self._call_json(call)
        call.status = "initiated"
        self._call_event(call, "initiated")
        call.status = call.state = "ringing"
        self._call_event(call, "ringing")
        call._changed()
        return JSONResponse(body, status_code=201)

    async def _call_instance(self, method: str, form: _Form, sid: str) -> Response:
        call = self._find_call(sid)
        if call is None:
            return self._err(404, 20404, f"The requested resource /Calls/{sid}.json was not found")
        if method == "POST":
            status = form.get("Status")
            if status in ("completed", "canceled"):
                if status == "canceled" and call.state != "ringing" and call.status not in ("queued", "ringing"):
                    return JSONResponse(self._call_json(call))  # Twilio ignores cancel of an answered call
                if call.ended:
                    return self._err(400, 21220, "Call is not in-progress. Cannot redirect.")
                if call.state == "ringing" and status == "canceled":
                    self._spawn(self._finalize(call, "canceled"))
                else:
                    self._interrupt(call, _Hangup())
            elif form.get("Url") or form.get("Twiml"):
                if call.ended:
                    return self._err(400, 21220, "Call is not in-progress. Cannot redirect.")
                step = Step(form.get("Url"), form.get("Method") or "POST", {}, "redirect", twiml=form.get("Twiml"))
                self._interrupt(call, _Redirect(step))
            if form.get("StatusCallback"):
                call.status_callback = form.get("StatusCallback")
        elif method == "DELETE":
            self.calls.remove(call)
            return Response(status_code=204)
        return JSONResponse(self._call_json(call))

    def _rec_json(self, rec: Recording) -> dict[str, Any]:
        tail = f"/Calls/{rec.call_sid}/Recordings/{rec.sid}" if rec.call_sid else f"/Recordings/{rec.sid}"
        return {"sid": rec.sid, "account_sid": self.account_sid, "call_sid": rec.call_sid,
                "conference_sid": rec.conference_sid, "api_version": API_VERSION,
                "date_created": _rfc2822(rec.started_at), "date_updated": _rfc2822(self.now),
                "start_time": _rfc2822(rec.started_at), "duration": str(rec.duration) if rec.duration is not None else None,
                "status": rec.status, "channels": rec.channels, "source": rec.source, "track": rec.track,
                "error_code": None, "price": None, "price_unit": "USD", "encryption_details": None,
                "uri": self._uri(tail)}

    async def _call_recordings(self, method: str, form: _Form, sid: str) -> Response:
        call = self._find_call(sid)
        if call is None:
            return self._err(404, 20404, f"The requested resource /Calls/{sid}.json was not found")
        if method == "GET":
            return self._page("recordings", [self._rec_json(r) for r in call.recordings], f"/Calls/{sid}/Recordings")
        if call.ended or call.answered_at is None:
            return self._err(400, 21220, "Requested resource is not eligible for recording")
        events = " ".join(form.getlist("RecordingStatusCallbackEvent")) or None
        rec = self._new_recording(call, None, "StartCallRecordingAPI", form.get("RecordingStatusCallback"),
                                  form.get("RecordingStatusCallbackMethod"), events, None)
        rec.channels = 2 if form.get("RecordingChannels") == "dual" else 1
        rec.track = form.get("RecordingTrack") or "both"
        return JSONResponse(self._rec_json(rec), status_code=201)

    async def _recording_instance(self, method: str, form: _Form, call_sid: str, rec_sid: str) -> Response:
        call = self._find_call(call_sid)
        recs = call.recordings if call else []
        if rec_sid == "Twilio.CURRENT":
            rec = next((r for r in reversed(recs) if r.status in ("in-progress", "paused")), None)
        else:
            rec = next((r for r in recs if r.sid == rec_sid), None)
        return await self._update_recording(method, form, rec)

    async def _conf_recording_instance(self, method: str, form: _Form, cf: str, rec_sid: str) -> Response:
        conf = self._conf_by_path(cf)
        recs = conf.recordings if conf else []
        if rec_sid == "Twilio.CURRENT":
            rec = next((r for r in reversed(recs) if r.status in ("in-progress", "paused")), None)
        else:
            rec = next((r for r in recs if r.sid == rec_sid), None)
        return await self._update_recording(method, form, rec)

    async def _update_recording(self, method: str, form: _Form, rec: Recording | None) -> Response:
        if rec is None:
            return self._err(404, 20404, "The requested resource was not found")
        if method == "POST":
            status = form.get("Status")
            if status not in ("paused", "in-progress", "stopped"):
                return self._err(400, 21220, f"Invalid Status {status!r}")
            if rec.status in ("completed", "stopped"):
                return self._err(400, 21220, "Recording is not in-progress")
            self._set_recording_status(rec, status, form.get("PauseBehavior") or "silence")
        elif method == "DELETE":
            self.recordings.remove(rec)
            return Response(status_code=204)
        return JSONResponse(self._rec_json(rec))

    async def _recording_fetch(self, method: str, form: _Form, sid: str) -> Response:
        rec = next((r for r in self.recordings if r.sid == sid), None)
        if rec is None:
            return self._err(404, 20404, "The requested resource was not found")
        if method == "DELETE":
            self.recordings.remove(rec)
            self.deleted_recordings.append(rec.sid)
            return Response(status_code=204)
        return JSONResponse(self._rec_json(rec))

    def _conf_json(self, conf: FakeConference) -> dict[str, Any]:
        return {"sid": conf.sid, "account_sid": self.account_sid, "friendly_name": conf.friendly_name,
                "status": conf.status, "region": "us1", "api_version": API_VERSION,
                "date_created": _rfc2822(conf.created_at), "date_updated": _rfc2822(self.now),
                "reason_conference_ended": conf.ended_reason, "call_sid_ending_conference": None,
                "uri": self._uri(f"/Conferences/{conf.sid}"),
                "subresource_uris": {"participants": self._uri(f"/Conferences/{conf.sid}/Participants"),
                                     "recordings": self._uri(f"/Conferences/{conf.sid}/Recordings")}}

    def _conf_by_path(self, cf: str) -> FakeConference | None:
        if cf in self.conferences:
            return self.conferences[cf]
        return next((c for c in self.conferences.values() if c.friendly_name == cf and c.status != "completed"), None)

    async def _conferences(self, method: str, form: _Form) -> Response:
        items = [self._conf_json(c) for c in self.conferences.values()
                 if (not form.get("FriendlyName") or c.friendly_name == form.get("FriendlyName"))
                 and (not form.get("Status") or c.status == form.get("Status"))]
        return self._page("conferences", items, "/Conferences")

    async def _conference_instance(self, method: str, form: _Form, cf: str) -> Response:
        conf = self._conf_by_path(cf)
        if conf is None:
            return self._err(404, 20404, f"The requested resource /Conferences/{cf}.json was not found")
        if method == "POST" and form.get("Status") == "completed":
            self._end_conference(conf, "conference-ended-via-api", None)
        return JSONResponse(self._conf_json(conf))

    def _part_json(self, conf: FakeConference, p: Participant) -> dict[str, Any]:
        return {"account_sid": self.account_sid, "call_sid": p.call.sid, "conference_sid": conf.sid,
                "label": p.label, "call_sid_to_coach": p.call_sid_to_coach, "coaching": p.coaching,
                "muted": p.muted, "hold": p.hold, "status": p.status,
                "start_conference_on_enter": p.start_conference_on_enter,
                "end_conference_on_exit": p.end_conference_on_exit, "queue_time": None,
                "date_created": _rfc2822(p.call.created_at), "date_updated": _rfc2822(self.now),
                "uri": self._uri(f"/Conferences/{conf.sid}/Participants/{p.call.sid}")}

    async def _participants(self, method: str, form: _Form, cf: str) -> Response:
        conf = self._conf_by_path(cf)
        if method == "GET":
            if conf is None:
                return self._err(404, 20404, "The requested resource was not found")
            return self._page("participants", [self._part_json(conf, p) for p in conf.participants.values()],
                              f"/Conferences/{conf.sid}/Participants")
        if conf is None:  # Twilio creates the conference when adding to a friendly name
            if cf.startswith("CF"):
                return self._err(404, 20404, "The requested resource was not found")
            conf = self._get_or_create_conference(cf)
        to, from_ = form.get("To"), form.get("From")
        if not to or not from_:
            return self._err(400, 21201, "To and From are required")
        coach = form.get("CallSidToCoach")
        if _bool(form.get("Coaching"), False) and not coach:
            return self._err(400, 20001, "CallSidToCoach is required when Coaching is true")
        if conf.status_callback is None and form.get("ConferenceStatusCallback"):
            conf.status_callback = form.get("ConferenceStatusCallback")
            conf.status_callback_method = form.get("ConferenceStatusCallbackMethod") or "POST"
            events = form.getlist("ConferenceStatusCallbackEvent")
            conf.status_callback_events = {e for ev in events for e in ev.split()} or {"start", "end"}
        leg = FakeCall(self, self._sid("CA"), from_=from_, to=to, direction="outbound-api")
        leg.status_callback = form.get("StatusCallback")
        events = form.getlist("StatusCallbackEvent")
        if events:
            leg.status_callback_events = {e for ev in events for e in ev.split()}
        leg._join = {"conference": conf, "muted": _bool(form.get("Muted"), False),
                     "coaching": _bool(form.get("Coaching"), bool(coach)), "call_sid_to_coach": coach,
                     "beep": form.get("Beep") or "true", "label": form.get("Label"),
                     "start_conference_on_enter": _bool(form.get("StartConferenceOnEnter"), True),
                     "end_conference_on_exit": _bool(form.get("EndConferenceOnExit"), False)}
        self.calls.append(leg)
        self._call_event(leg, "initiated")
        self._call_event(leg, "ringing")
        leg._changed()
        spec = {k: v for k, v in leg._join.items() if k != "conference"}
        return JSONResponse(self._part_json(conf, Participant(leg, status="queued", **spec)), status_code=201)

    async def _participant_instance(self, method: str, form: _Form, cf: str, who: str) -> Response:
        conf = self._conf_by_path(cf)
        p = None
        if conf is not None:
            p = conf.participants.get(who) or next((x for x in conf.participants.values() if x.label == who), None)
        if conf is None or p is None:
            return self._err(404, 20404, f"The requested resource /Participants/{who}.json was not found")
        if method == "DELETE":
            self._leave_conference(p.call, "kicked")
            if p.wake is not None and not p.wake.done():
                p.call._idle.clear()
                p.wake.set_result("kicked")
            elif not p.call.ended:
                self._spawn(self._finalize(p.call, "completed"))
            return Response(status_code=204)
        if method == "POST":
            if "Hold" in form:
                hold = _bool(form.get("Hold"), False)
                if hold != p.hold:
                    p.hold = hold
                    self._conf_event(conf, "participant-hold" if hold else "participant-unhold", p.call)
                    if hold:
                        p.hold_url = form.get("HoldUrl") or DEFAULT_HOLD_MUSIC
                        self._spawn(self._play_hold(p.call, p.hold_url, form.get("HoldMethod") or "GET"))
            if "Muted" in form:
                muted = _bool(form.get("Muted"), False)
                if muted != p.muted:
                    p.muted = muted
                    self._conf_event(conf, "participant-mute" if muted else "participant-unmute", p.call)
            if "Coaching" in form or "CallSidToCoach" in form:
                p.coaching = _bool(form.get("Coaching"), p.coaching)
                p.call_sid_to_coach = form.get("CallSidToCoach") or (p.call_sid_to_coach if p.coaching else None)
                self._conf_event(conf, "participant-modify", p.call)
            p.call._changed()
        return JSONResponse(self._part_json(conf, p))


def _wav_bytes(seconds: float = 0.1, rate: int = 8000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x00" * int(seconds * rate))
    return buf.getvalue()


__all__ = ["API_VERSION", "serve_app", "Exchange", "FakeCall", "FakeConference", "FakeQueue", "FakeTwilio", "Heard",
           "Participant", "Recording", "RewritingAsyncHttpClient", "RewritingHttpClient", "rewrite_http_client"]
