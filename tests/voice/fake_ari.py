"""A loopback fake of Asterisk's ARI for tests.

``FakeAri`` serves the REST subset a contact center uses (answer, play, moh, record, snoop, hangup,
originate, bridges, playbacks) under ``/ari`` with basic auth, and the events websocket
``/ari/events?app=NAME&api_key=user:pass``. Every REST command is recorded (``fake.commands``) and can be
awaited (``await fake.command("POST", "/channels/c1/moh")``). Events are pushed by the test, shaped like the
ARI docs (``type``, ``application``, ``timestamp``, ``channel{id, name, state, caller{name, number},
connected, dialplan{context, exten, priority}}``). The one thing the fake does on its own is what a media
server does at once: a ``play`` is followed by ``PlaybackStarted`` and ``PlaybackFinished`` (unless
``auto_finish`` is off).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import itertools
import json
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from tests.voice.fake_twilio import serve_app

TIMEOUT = 10.0


@dataclass
class Command:
    method: str
    path: str  # under /ari
    params: dict[str, str]

    def __repr__(self) -> str:
        return f"{self.method} {self.path} {self.params}"


@dataclass
class FakeAri:
    username: str = "threadline"
    password: str = "ari-secret"
    app: str = "threadline"
    auto_finish: bool = True
    commands: list[Command] = field(default_factory=list)
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)
    bridges: dict[str, list[str]] = field(default_factory=dict)
    base_url: str = ""

    def __post_init__(self) -> None:
        self._changed = asyncio.Condition()
        self._sockets: list[asyncio.Queue[str | None]] = []
        self._ids = itertools.count(1)
        self._clock = datetime.now(UTC)
        self._serving: Any = None
        self.refused = 0  # requests with bad credentials

    # --- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> FakeAri:
        self._serving = serve_app(self.asgi())
        self.base_url = await self._serving.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for q in self._sockets:
            q.put_nowait(None)
        await self._serving.__aexit__(None, None, None)

    def asgi(self) -> Starlette:
        r = "/ari"
        return Starlette(routes=[
            WebSocketRoute(f"{r}/events", self._events),
            Route(f"{r}/channels", self._originate, methods=["POST"]),
            Route(f"{r}/channels/{{cid}}", self._hangup, methods=["DELETE"]),
            Route(f"{r}/channels/{{cid}}/{{op}}", self._channel_op, methods=["POST", "DELETE"]),
            Route(f"{r}/channels/{{cid}}/play/{{pid}}", self._play, methods=["POST"]),
            Route(f"{r}/bridges", self._bridge, methods=["POST"]),
            Route(f"{r}/bridges/{{bid}}", self._bridge, methods=["POST", "DELETE"]),
            Route(f"{r}/bridges/{{bid}}/{{op}}", self._bridge_op, methods=["POST", "DELETE"]),
            Route(f"{r}/playbacks/{{pid}}", self._stop_playback, methods=["DELETE"]),
            Route(f"{r}/recordings/stored/{{name}}/file", self._stored, methods=["GET"]),
            Route(f"{r}/recordings/live/{{name}}/{{op}}", self._live_recording, methods=["POST", "DELETE"]),
        ])

    # --- what the app did -----------------------------------------------------------------------

    async def _record(self, request: Request) -> Command | Response:
        auth = request.headers.get("authorization", "")
        expected = "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        if auth != expected:
            self.refused += 1
            return JSONResponse({"message": "Authentication required"}, status_code=401)
        cmd = Command(request.method, request.url.path.removeprefix("/ari"), dict(request.query_params))
        async with self._changed:
            self.commands.append(cmd)
            self._changed.notify_all()
        return cmd

    async def wait_for(self, pred: Callable[[list[Command]], Any], timeout: float = TIMEOUT) -> Any:
        """Wait until ``pred(commands)`` is truthy (woken by each command); its value."""
        async with asyncio.timeout(timeout), self._changed:
            while not (found := pred(self.commands)):
                await self._changed.wait()
            return found

    async def command(self, method: str, path: str, timeout: float = TIMEOUT, **params: str) -> Command:
        """The first recorded command with this method and path (and these params), awaited."""
        def match(cmds: list[Command]) -> Command | None:
            return next((c for c in cmds if c.method == method and c.path == path
                         and all(c.params.get(k) == v for k, v in params.items())), None)
        return await self.wait_for(match, timeout)

    def count(self, method: str, path: str) -> int:
        return sum(c.method == method and c.path == path for c in self.commands)

    # --- REST -----------------------------------------------------------------------------------

    async def _channel_op(self, request: Request) -> Response:
        cmd = await self._record(request)
        if isinstance(cmd, Response):
            return cmd
        cid, op = request.path_params["cid"], request.path_params["op"]
        if cid not in self.channels:
            return JSONResponse({"message": "Channel not found"}, status_code=404)
        if op == "answer":
            self.channels[cid]["state"] = "Up"
            await self.push("ChannelStateChange", channel=self.channels[cid])
            return Response(status_code=204)
        if op == "play":
            return await self._playing(cid, f"tl-fake-pb-{next(self._ids)}", cmd.params)
        if op == "record":
            name = cmd.params.get("name", "")
            return JSONResponse({"name": name, "format": cmd.params.get("format", "wav"), "state": "queued",
                                 "target_uri": f"channel:{cid}"}, status_code=201)
        if op == "snoop":
            sid = cmd.params.get("snoopId") or f"snoop-{next(self._ids)}"
            self.channels[sid] = self.channel(sid, number="", name=f"Snoop/{cid}")
            return JSONResponse(self.channels[sid])
        return Response(status_code=204)  # moh, DELETE moh, …

    async def _play(self, request: Request) -> Response:
        cmd = await self._record(request)
        if isinstance(cmd, Response):
            return cmd
        cid = request.path_params["cid"]
        if cid not in self.channels:
            return JSONResponse({"message": "Channel not found"}, status_code=404)
        cmd.path = f"/channels/{cid}/play"  # one path to match, the id is a param
        cmd.params["playbackId"] = request.path_params["pid"]
        return await self._playing(cid, request.path_params["pid"], cmd.params)

    async def _playing(self, cid: str, pid: str, params: dict[str, str]) -> Response:
        playback = {"id": pid, "media_uri": params.get("media", ""), "target_uri": f"channel:{cid}",
                    "language": params.get("lang", "en"), "state": "playing"}
        if self.auto_finish:
            await self.push("PlaybackStarted", playback=playback)
            await self.push("PlaybackFinished", playback={**playback, "state": "done"})
        return JSONResponse(playback, status_code=201)

    async def _live_recording(self, request: Request) -> Response:
        cmd = await self._record(request)
        return cmd if isinstance(cmd, Response) else Response(status_code=204)

    async def _stored(self, request: Request) -> Response:
        """A stored recording's file: one second of an 8 kHz WAV (what ``record`` would have written)."""
        cmd = await self._record(request)
        if isinstance(cmd, Response):
            return cmd
        out = io.BytesIO()
        with wave.open(out, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(b"\x10\x00" * 8000)
        return Response(out.getvalue(), media_type="audio/wav")

    async def _stop_playback(self, request: Request) -> Response:
        cmd = await self._record(request)
        return cmd if isinstance(cmd, Response) else Response(status_code=204)

    async def _hangup(self, request: Request) -> Response:
        cmd = await self._record(request)
        if isinstance(cmd, Response):
            return cmd
        cid = request.path_params["cid"]
        if cid not in self.channels:
            return JSONResponse({"message": "Channel not found"}, status_code=404)
        await self.hangup(cid, by_app=True)
        return Response(status_code=204)

    async def _originate(self, request: Request) -> Response:
        cmd = await self._record(request)
        if isinstance(cmd, Response):
            return cmd
        cid = cmd.params.get("channelId") or f"fake-{next(self._ids)}"
        self.channels[cid] = self.channel(cid, number="", name=f"{cmd.params.get('endpoint', 'PJSIP/x')}-0001",
                                          state="Down", app_args=cmd.params.get("appArgs", ""))
        return JSONResponse(self.channels[cid])

    async def _bridge(self, request: Request) -> Response:
        cmd = await self._record(request)
        if isinstance(cmd, Response):
            return cmd
        bid = request.path_params.get("bid") or cmd.params.get("bridgeId") or f"bridge-{next(self._ids)}"
        if request.method == "DELETE":
            self.bridges.pop(bid, None)
            return Response(status_code=204)
        self.bridges.setdefault(bid, [])
        return JSONResponse({"id": bid, "bridge_type": cmd.params.get("type", "mixing"), "channels": self.bridges[bid]})

    async def _bridge_op(self, request: Request) -> Response:
        cmd = await self._record(request)
        if isinstance(cmd, Response):
            return cmd
        bid, op = request.path_params["bid"], request.path_params["op"]
        if bid not in self.bridges:
            return JSONResponse({"message": "Bridge not found"}, status_code=404)
        if op == "addChannel":
            for cid in cmd.params.get("channel", "").split(","):
                if cid not in self.channels:
                    return JSONResponse({"message": "Channel not found"}, status_code=400)
                self.bridges[bid].append(cid)
                await self.push("ChannelEnteredBridge", channel=self.channels[cid],
                                bridge={"id": bid, "channels": self.bridges[bid]})
        return Response(status_code=204)

    # --- events ---------------------------------------------------------------------------------

    async def _events(self, ws: WebSocket) -> None:
        key = f"{self.username}:{self.password}"
        if ws.query_params.get("app") != self.app or ws.query_params.get("api_key") != key:
            self.refused += 1
            await ws.close(code=1008)
            return
        await ws.accept()
        q: asyncio.Queue[str | None] = asyncio.Queue()
        self._sockets.append(q)
        async with self._changed:
            self._changed.notify_all()
        try:
            while (item := await q.get()) is not None:
                await ws.send_text(item)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            self._sockets.remove(q)
            with contextlib.suppress(Exception):
                await ws.close()

    @property
    def sockets(self) -> int:
        return len(self._sockets)

    async def connected(self, timeout: float = TIMEOUT) -> None:
        """Wait until the app's events socket is open."""
        async with asyncio.timeout(timeout), self._changed:
            while not self._sockets:
                await self._changed.wait()

    def advance(self, seconds: float) -> None:
        self._clock += timedelta(seconds=seconds)

    def timestamp(self) -> str:
        self._clock += timedelta(milliseconds=1)
        return self._clock.strftime("%Y-%m-%dT%H:%M:%S.") + f"{self._clock.microsecond // 1000:03d}+0000"

    def channel(self, cid: str, *, number: str, name: str = "", state: str = "Ring", exten: str = "200",
                app_args: str = "") -> dict[str, Any]:
        return {"id": cid, "name": name or f"PJSIP/trunk-{cid}", "state": state,
                "caller": {"name": "", "number": number}, "connected": {"name": "", "number": ""},
                "accountcode": "", "dialplan": {"context": "from-trunk", "exten": exten, "priority": 1},
                "creationtime": self.timestamp(), "language": "en", "_app_args": app_args}

    async def push(self, type_: str, **body: Any) -> dict[str, Any]:
        """Send one event to every connected socket (``channel`` without the fake's private keys)."""
        event: dict[str, Any] = {"type": type_, "application": self.app, "timestamp": self.timestamp()}
        for k, v in body.items():
            event[k] = {kk: vv for kk, vv in v.items() if not kk.startswith("_")} if isinstance(v, dict) else v
        await self.send(event)
        return event

    async def send(self, event: dict[str, Any]) -> None:
        raw = json.dumps(event)
        for q in list(self._sockets):
            q.put_nowait(raw)

    # --- the phone network ----------------------------------------------------------------------

    async def incoming(self, cid: str, number: str, *, exten: str = "200") -> dict[str, Any]:
        """A caller's channel enters the app (the dialplan's ``Stasis(threadline)``)."""
        self.channels[cid] = self.channel(cid, number=number, exten=exten)
        return await self.push("StasisStart", args=[], channel=self.channels[cid])

    async def dtmf(self, cid: str, digit: str) -> dict[str, Any]:
        ch = self.channels.get(cid) or self.channel(cid, number="")
        return await self.push("ChannelDtmfReceived", digit=digit, duration_ms=120, channel=ch)

    async def answer_originated(self, cid: str) -> dict[str, Any]:
        """The originated channel was answered: it enters the app with its appArgs."""
        ch = self.channels[cid]
        ch["state"] = "Up"
        args = [a for a in ch.get("_app_args", "").split(",") if a]
        return await self.push("StasisStart", args=args, channel=ch)

    async def hangup(self, cid: str, *, by_app: bool = False, cause: int = 16,
                     cause_txt: str = "Normal Clearing") -> None:
        """The channel hangs up: ChannelHangupRequest (unless the app asked), StasisEnd, ChannelDestroyed."""
        ch = self.channels.get(cid)
        if ch is None:
            return
        if not by_app:
            await self.push("ChannelHangupRequest", cause=cause, channel=ch)
        await self.push("StasisEnd", channel=ch)
        await self.push("ChannelDestroyed", cause=cause, cause_txt=cause_txt, channel={**ch, "state": "Down"})
        self.channels.pop(cid, None)
        for members in self.bridges.values():
            if cid in members:
                members.remove(cid)
