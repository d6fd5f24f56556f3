"""Issue 12, item 3: a saved channel secret is only ever sent to the host it was saved for, and channel
settings may not point at private addresses (the outgoing webhooks' SSRF rule)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.channels.harness import TELEGRAM_TOKEN, TWILIO_TOKEN, telegram_config, twilio_config
from tests.conftest import login, make_server, run_server, seed_basics


@contextlib.asynccontextmanager
async def listener() -> AsyncIterator[tuple[str, list[str]]]:
    """An HTTP server on loopback that records everything it is sent (a provider, or an attacker)."""
    seen: list[str] = []

    async def anything(request: Request) -> JSONResponse:
        seen.append(f"{request.method} {request.url.path} {dict(request.headers)} {(await request.body())!r}")
        if "getMe" in request.url.path:
            return JSONResponse({"ok": True, "result": {"username": "acme_bot", "first_name": "Acme"}})
        return JSONResponse({"friendly_name": "Acme", "status": "active", "incoming_phone_numbers": [{"sid": "PN1"}]})

    async with run_server(Starlette(routes=[Route("/{path:path}", anything, methods=["GET", "POST"])])) as live:
        yield live.url, seen


async def test_a_masked_secret_never_goes_to_another_host(tmp_path: Path, sqlite_url: str) -> None:
    async with listener() as (provider, provider_saw), listener() as (attacker, attacker_saw), \
            await make_server(sqlite_url, tmp_path) as server:
        await seed_basics(server.services)
        async with httpx.AsyncClient(base_url=server.url) as admin:
            await login(admin, "admin@example.com")
            tw = await admin.post("/api/v1/channels", json={"kind": "twilio", "name": "SMS",
                                                           "config": twilio_config(provider)})
            tg = await admin.post("/api/v1/channels", json={"kind": "telegram", "name": "Bot",
                                                           "config": telegram_config(provider)})
            assert tw.status_code == 201 and tg.status_code == 201, (tw.text, tg.text)
            masked_tw = {**tw.json()["config"], "api_base_url": attacker}
            masked_tg = {**tg.json()["config"], "api_base_url": attacker}
            assert masked_tw["auth_token"] == "********" and masked_tg["bot_token"] == "********"
            # The attack of issue 12: test the saved channel against a host of the caller's choice.
            for kind, channel, config, secret in (("twilio", tw, masked_tw, "auth_token"),
                                                  ("telegram", tg, masked_tg, "bot_token")):
                r = await admin.post("/api/v1/channels/test", json={"kind": kind, "channel_id": channel.json()["id"],
                                                                     "config": config})
                assert r.status_code == 422, r.text
                assert r.json()["field"] == f"config.{secret}" and "again" in r.json()["detail"]
                # Saving it so is refused the same way.
                saved = await admin.patch(f"/api/v1/channels/{channel.json()['id']}", json={"config": config})
                assert saved.status_code == 422 and saved.json()["field"] == f"config.{secret}"
            assert attacker_saw == []
            # With the saved host, the masked secret is used; with a new host, one the admin types again.
            same = await admin.post("/api/v1/channels/test", json={"kind": "telegram", "channel_id": tg.json()["id"],
                                                                    "config": tg.json()["config"]})
            assert same.json()["ok"] is True, same.text
            assert any(TELEGRAM_TOKEN in line for line in provider_saw)
            half = await admin.post("/api/v1/channels/test", json={  # the secret token goes there too (setWebhook)
                "kind": "telegram", "channel_id": tg.json()["id"], "config": {**masked_tg, "bot_token": "111:" + "b" * 30}})
            assert half.status_code == 422 and half.json()["field"] == "config.secret_token"
            retyped = await admin.post("/api/v1/channels/test", json={
                "kind": "telegram", "channel_id": tg.json()["id"],
                "config": {**masked_tg, "bot_token": "111:" + "b" * 30, "secret_token": "another-secret-0123456"}})
            assert retyped.json()["ok"] is True, retyped.text
            assert not any(TELEGRAM_TOKEN in line or TWILIO_TOKEN in line for line in attacker_saw)
            moved = await admin.patch(f"/api/v1/channels/{tw.json()['id']}", json={"config": {
                "api_base_url": attacker, "auth_token": "f" * 32}})
            assert moved.status_code == 200, moved.text


async def test_channel_settings_may_not_reach_private_addresses(tmp_path: Path, sqlite_url: str) -> None:
    async with listener() as (inside, inside_saw), \
            await make_server(sqlite_url, tmp_path, channels_allow_private=False) as server:
        await seed_basics(server.services)
        port = inside.rsplit(":", 1)[1]
        async with httpx.AsyncClient(base_url=server.url) as admin:
            await login(admin, "admin@example.com")
            for url in (inside, f"http://localhost:{port}", "http://169.254.169.254", "http://[::1]:9"):
                r = await admin.post("/api/v1/channels/test", json={"kind": "twilio", "config": twilio_config(url)})
                assert r.status_code == 422, (url, r.text)
                assert r.json()["field"] == "config.api_base_url"
                assert "THREADLINE_CHANNELS_ALLOW_PRIVATE" in r.json()["detail"]
            created = await admin.post("/api/v1/channels", json={"kind": "telegram", "name": "Bot",
                                                                "config": telegram_config(inside)})
            assert created.status_code == 422, created.text
            mail = await admin.post("/api/v1/channels/test", json={"kind": "email", "config": {
                "address": "support@acme.test", "smtp_host": "127.0.0.1", "smtp_port": 25}})
            assert mail.status_code == 422 and mail.json()["field"] == "config.smtp_host"
            # The admin page's "Test connection" and "Create" obey the same rule.
            csrf = (await admin.get("/api/v1/me")).json()["csrf_token"]
            form = {"csrf_token": csrf, "kind": "telegram", "name": "Bot", "config.bot_token": TELEGRAM_TOKEN,
                    "config.secret_token": "tg-secret-token-0123456789", "config.api_base_url": inside}
            tested = await admin.post("/admin/channels/test", data=form)
            assert "THREADLINE_CHANNELS_ALLOW_PRIVATE" in tested.text
            page = await admin.post("/admin/channels", data=form)
            assert page.status_code == 303 and "error=" in page.headers["location"]
            assert [c["kind"] for c in (await admin.get("/api/v1/channels")).json()] == ["api"]  # seed's only
        assert inside_saw == []
