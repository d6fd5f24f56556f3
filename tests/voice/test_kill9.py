"""A phone call survives ``kill -9`` of the server. ``threadline serve`` runs as its own process on a SQLite
file; FakeTwilio puts a caller through the IVR into the queue; the process is killed with SIGKILL and
started again; the caller's next wait request is answered with their place, Alice comes online, routing
offers her the call (it was never lost), she accepts, and Threadline bridges the caller and her softphone
and logs the call as answered by her."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import websockets

from tests.conftest import PASSWORD, make_settings, seed_basics
from tests.routing.test_api import next_event
from tests.voice.fake_twilio import FakeTwilio
from threadline.actions import channels as channel_actions
from threadline.db.migrate import upgrade
from threadline.services import Services

SID = "AC" + "b2" * 16
TOKEN = "twilio-auth-token-kill9-0123456789"
NUMBER = "+15005550006"
CALLER = "+34600999888"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _serve(env: dict[str, str], port: int) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "threadline.cli", "serve", "--port", str(port),
                                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    async with httpx.AsyncClient() as c, asyncio.timeout(30):
        while True:
            try:
                if (await c.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    return proc
            except httpx.TransportError:
                pass
            assert proc.returncode is None, "the server did not start"
            await asyncio.sleep(0.1)


async def test_a_queued_call_survives_kill_9_and_is_answered_after_the_restart(tmp_path: Path) -> None:
    port = _port()
    base = f"http://127.0.0.1:{port}"
    url = f"sqlite+aiosqlite:///{tmp_path / 'threadline.db'}"
    settings = make_settings(url, tmp_path, public_base_url=base, run_workers=False)
    await asyncio.to_thread(upgrade, url)
    async with FakeTwilio(account_sid=SID, auth_token=TOKEN) as tw:
        services = Services.build(settings)
        await services.start()
        try:
            ids = await seed_basics(services)
            async with services.db.transaction() as s:
                row = await channel_actions.create_channel(
                    s, services.box, kind="twilio_voice", name="Phone", default_queue_id=ids["general"],
                    config={"account_sid": SID, "auth_token": TOKEN, "phone_number": NUMBER,
                            "api_base_url": tw.base_url, "callback_key": None})
                key = row.key
        finally:
            await services.stop()
        env = {**os.environ, "THREADLINE_DATABASE_URL": url, "THREADLINE_DATA_DIR": str(tmp_path / "data"),
               "THREADLINE_SECRET_KEY": settings.secret_key or "", "THREADLINE_PUBLIC_BASE_URL": base,
               "THREADLINE_CHANNELS_ALLOW_PRIVATE": "true", "THREADLINE_LOG_LEVEL": "warning"}
        proc = await _serve(env, port)
        try:
            call = await tw.incoming_call(from_=CALLER, to=NUMBER, url=f"{base}/hooks/{key}/voice")
            await call.wait_for("queued")
            proc.send_signal(signal.SIGKILL)  # mid-call: the caller is waiting in the queue
            await proc.wait()
            proc = await _serve(env, port)

            await call.tick_wait()  # Twilio asks the wait URL again: the restarted server knows the caller
            assert any("number 1" in s for s in call.said), call.said
            async with httpx.AsyncClient(base_url=base) as alice:
                r = await alice.post("/api/v1/auth/login", json={"email": "alice@example.com", "password": PASSWORD})
                alice.headers["X-CSRF-Token"] = r.json()["csrf_token"]
                token = (await alice.post("/api/v1/tokens", json={"name": "t"})).json()["token"]
                async with websockets.connect(f"{base.replace('http', 'ws')}/api/v1/stream?token={token}") as ws:
                    assert json.loads(await ws.recv())["name"] == "stream.ready"
                    assert (await alice.put("/api/v1/me/presence", json={"status": "available"})).status_code == 200
                    offer = (await next_event(ws, "routing.offer"))["data"]
                    assert (await alice.post(f"/api/v1/routing/offers/{offer['offer_id']}/accept")).status_code == 200
                    leg = await tw.outbound_call(to=f"client:agent-{ids['alice']}")  # the softphone rings
                    await tw.answer(leg)
                    await call.wait_for("in-conference")
                    await next_event(ws, "call.changed", lambda e: e["data"]["state"] == "connected")
                    await call.hangup()
                    ended = await next_event(ws, "call.changed", lambda e: e["data"]["state"] == "ended")
                    assert ended["data"]["end_cause"] == "completed" and ended["data"]["agent_id"] == ids["alice"]
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGKILL)
                await proc.wait()
