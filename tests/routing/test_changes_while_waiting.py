"""What happens to a waiting conversation while the routing worker runs inside the server, over real HTTP:
a priority change and a VIP flag from the CRM re-rank it at once, missed offers put the agent away with
the reason kept in the presence history, and an overflow out of a queue counts as transferred there."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any

import httpx
import websockets
from sqlalchemy import select

from tests.conftest import login, make_server, run_server, seed_basics
from tests.routing.helpers import arrive
from tests.routing.test_api import next_event, token_for
from threadline.actions import channels as channel_actions
from threadline.bus.base import Envelope
from threadline.db.models import PresenceLogRow
from threadline.services import Services

TIMEOUT = 15.0


def watch(services: Services, name: str, pred: Callable[[dict[str, Any]], bool] = lambda p: True) -> asyncio.Event:
    """An event set when an event with this name (and a payload matching ``pred``) is published."""
    seen = asyncio.Event()

    def on(env: Envelope) -> None:
        if env.name == name and pred(env.payload):
            seen.set()

    services.bus.subscribe(on)
    return seen


def queue_waiting(queue_id: int, n: int) -> Callable[[dict[str, Any]], bool]:
    return lambda p: any(q["queue_id"] == queue_id and q["waiting"] == n for q in p["queues"])


async def one_slot_for_alice(client: httpx.AsyncClient, ids: dict[str, int]) -> None:
    r = await client.put(f"/api/v1/routing/agents/{ids['alice']}", json={"capacity": {"messaging": 1}})
    assert r.status_code == 204, r.text


async def first_offer_when_alice_is_available(server: Any) -> int:
    """Alice (one slot) becomes available; the conversation of the first offer on her stream."""
    token = await token_for(server, "alice@example.com")
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as alice, \
            websockets.connect(f"{server.ws_url}/api/v1/stream?token={token}") as ws:
        assert json.loads(await ws.recv())["name"] == "stream.ready"
        assert (await alice.put("/api/v1/me/presence", json={"status": "available"})).status_code == 200
        return (await next_event(ws, "routing.offer"))["data"]["conversation_id"]


async def test_a_priority_change_on_a_waiting_conversation_moves_it_ahead_at_once(server) -> None:
    ids = await seed_basics(server.services)
    both_wait = watch(server.services, "routing.state", queue_waiting(ids["general"], 2))
    async with httpx.AsyncClient(base_url=server.url) as sup:
        await login(sup, "sup@example.com")
        await one_slot_for_alice(sup, ids)
        older = await arrive(server.services, ids["channel"])  # alice is offline: both wait, oldest first
        younger = await arrive(server.services, ids["channel"])
        await asyncio.wait_for(both_wait.wait(), TIMEOUT)
        r = await sup.patch(f"/api/v1/conversations/{younger}", json={"priority": "urgent"})
        assert r.status_code == 200, r.text
        assert await first_offer_when_alice_is_available(server) == younger
        task = (await sup.get(f"/api/v1/routing/tasks/{older}")).json()
        assert task["status"] == "waiting"


async def test_a_vip_flag_from_the_crm_after_the_task_waits_makes_it_jump_the_queue(tmp_path, sqlite_url) -> None:
    """The fake CRM answers the VIP's lookup only once both conversations wait in the queue."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    release = asyncio.Event()

    async def lookup(request: Request) -> JSONResponse:
        contact = json.loads(await request.body())["contact"]
        if not any(i["value"] == "vip-customer" for i in contact["identities"]):
            return JSONResponse({}, status_code=404)
        await release.wait()
        return JSONResponse({"attributes": {"vip": True, "tier": "gold"}})

    async with run_server(Starlette(routes=[Route("/lookup", lookup, methods=["POST"])])) as crm, \
            await make_server(sqlite_url, tmp_path, crm_lookup_url=crm.url + "/lookup",
                              crm_lookup_secret="crm-secret") as server:
        ids = await seed_basics(server.services)
        both_wait = watch(server.services, "routing.state", queue_waiting(ids["general"], 2))
        enriched = watch(server.services, "contact.updated", lambda p: p["contact"]["attributes"].get("vip") is True)
        async with httpx.AsyncClient(base_url=server.url) as sup:
            await login(sup, "sup@example.com")
            await one_slot_for_alice(sup, ids)
            await arrive(server.services, ids["channel"], who="regular-customer")
            vip = await arrive(server.services, ids["channel"], who="vip-customer")
            await asyncio.wait_for(both_wait.wait(), TIMEOUT)
            release.set()  # the CRM answers now: the contact becomes a VIP while its task waits
            await asyncio.wait_for(enriched.wait(), TIMEOUT)
            assert await first_offer_when_alice_is_available(server) == vip


async def test_missed_offers_put_the_agent_away_with_the_reason_in_the_presence_history(server) -> None:
    ids = await seed_basics(server.services)
    token = await token_for(server, "alice@example.com")
    async with httpx.AsyncClient(base_url=server.url) as admin, \
            httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as alice, \
            websockets.connect(f"{server.ws_url}/api/v1/stream?token={token}") as ws:
        await login(admin, "admin@example.com")
        assert (await admin.patch("/api/v1/routing/settings", json={"max_consecutive_no_answer": 1})).status_code == 200
        r = await admin.put(f"/api/v1/routing/queues/{ids['general']}/settings",
                            json={"routing": {"offer_timeout_seconds": 0.5}})
        assert r.status_code == 200, r.text
        assert json.loads(await ws.recv())["name"] == "stream.ready"
        assert (await alice.put("/api/v1/me/presence", json={"status": "available"})).status_code == 200
        await arrive(server.services, ids["channel"])
        await next_event(ws, "routing.offer")  # Alice lets it ring out
        away = (await next_event(ws, "user.presence_changed", lambda e: e["data"]["status"] == "away"))["data"]
        assert away["reason"] == "missed offers"
        me = (await admin.get(f"/api/v1/users/{ids['alice']}")).json()
        assert (me["presence"], me["presence_reason"]) == ("away", "missed offers")
    async with server.services.db.transaction(write=False) as s:
        history = (await s.execute(select(PresenceLogRow.status, PresenceLogRow.reason)
                                   .where(PresenceLogRow.user_id == ids["alice"])
                                   .order_by(PresenceLogRow.id))).all()
    assert [tuple(h) for h in history] == [("available", ""), ("away", "missed offers")]


async def test_a_conversation_that_overflows_out_of_a_queue_counts_as_transferred_there(server) -> None:
    services = server.services
    ids = await seed_basics(services)
    async with services.db.transaction() as s:
        billing_line = await channel_actions.create_channel(
            s, services.box, kind="api", name="Billing line", default_queue_id=ids["billing"],
            config={"secret": "s3cret-s3cret-s3cret", "webhook_url": None})
    overflowed = watch(services, "routing.state", queue_waiting(ids["general"], 1))
    async with httpx.AsyncClient(base_url=server.url) as sup:
        await login(sup, "admin@example.com")
        r = await sup.put(f"/api/v1/routing/queues/{ids['billing']}/settings",
                          json={"routing": {"steps": [{"after_seconds": 1, "overflow_to": ids["general"]}]}})
        assert r.status_code == 200, r.text
        await arrive(services, billing_line.id)  # nobody is available: after a second it overflows to general
        await asyncio.wait_for(overflowed.wait(), TIMEOUT)
        figures = {f["queue_id"]: f for f in (await sup.get("/api/v1/routing/figures")).json()}
        assert figures[ids["billing"]]["transferred"] == 1
        assert figures[ids["general"]]["transferred"] == 0
        board = (await sup.get("/admin/live/board")).text
        row = re.search(rf'<tr data-queue="{ids["billing"]}".*?</tr>', board, re.S)
        assert row is not None and re.search(r'class="q-transferred">1<', row.group(0))


async def test_figures_refuse_a_period_no_date_can_hold(sqlite_server) -> None:
    await seed_basics(sqlite_server.services)
    async with httpx.AsyncClient(base_url=sqlite_server.url) as sup:
        await login(sup, "sup@example.com")
        for params in ({"since": 1e20}, {"since": -1}, {"since": 0, "until": 1e300}):
            r = await sup.get("/api/v1/routing/figures", params=params)
            assert r.status_code == 422, (params, r.text)
        ok = await sup.get("/api/v1/routing/figures", params={"since": 0, "until": 253_402_300_799})
        assert ok.status_code == 200 and all(f["since"] == 0 for f in ok.json())
