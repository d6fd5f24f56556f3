"""Snooze that wakes (issue 12 item 13), over real HTTP and the real websocket stream: a conversation
snoozed for two seconds opens again on time with an activity line and a ``conversation.updated`` on
the stream, on SQLite and PostgreSQL, also when the server that snoozed it is stopped and a new one
starts after the due time; snoozing again moves the wake-up, reopening cancels it. The desk's Open view
and its counts leave snoozed conversations out until they wake."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import websockets
from sqlalchemy import select
from tests.conftest import login, make_server, seed_basics
from tests.web.test_desk_pages import inbound, page_login
from tests.web.test_desk_queue import count_for
from tests.web.test_hooks_and_stream import next_event, token_for

from threadline.actions.conversations import WAKE, WOKEN
from threadline.db.models import ScheduledJobRow


def later(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def reopened(ws, conv_id: int, timeout: float = 10.0) -> tuple[dict, list[dict]]:  # type: ignore[no-untyped-def]
    """The ``conversation.updated`` that opens ``conv_id`` again, and the events before it."""
    seen: list[dict] = []
    async with asyncio.timeout(timeout):
        while True:
            msg = json.loads(await ws.recv())
            seen.append(msg)
            if msg["name"] == "conversation.updated" and msg["data"]["conversation"]["id"] == conv_id \
                    and msg["data"]["conversation"]["status"] == "open":
                return msg, seen


async def wake_jobs(server) -> list[ScheduledJobRow]:  # type: ignore[no-untyped-def]
    async with server.services.db.transaction(write=False) as s:
        return list((await s.execute(select(ScheduledJobRow).where(ScheduledJobRow.kind == WAKE))).scalars())


async def test_a_snoozed_conversation_wakes_on_time_with_an_event_on_the_stream(server) -> None:
    ids = await seed_basics(server.services)
    conv_id = await inbound(server.services, ids["channel"], "call me back in a moment")
    other = await inbound(server.services, ids["channel"], "and this one", email="other@example.com")
    alice = await token_for(server, "alice@example.com")
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {alice}"}) as c, \
            websockets.connect(f"{server.ws_url}/api/v1/stream?token={alice}") as ws:
        assert json.loads(await ws.recv())["name"] == "stream.ready"
        # snoozing again moves the wake-up; reopening by hand cancels it
        r = await c.patch(f"/api/v1/conversations/{other}", json={"status": "snoozed", "snoozed_until":
                                                                   later(3600).isoformat()})
        assert r.status_code == 200
        assert [j.key for j in await wake_jobs(server)] == [str(other)]
        assert (await c.patch(f"/api/v1/conversations/{other}", json={"status": "open"})).status_code == 200
        assert await wake_jobs(server) == []

        due = later(2)
        r = await c.patch(f"/api/v1/conversations/{conv_id}", json={"status": "snoozed", "snoozed_until":
                                                                     later(7200).isoformat()})
        assert r.status_code == 200
        r = await c.patch(f"/api/v1/conversations/{conv_id}", json={"status": "snoozed",
                                                                     "snoozed_until": due.isoformat()})
        assert r.status_code == 200 and r.json()["status"] == "snoozed"
        [job] = await wake_jobs(server)
        assert job.key == str(conv_id) and abs((job.due_at - due).total_seconds()) < 0.001

        event, before = await reopened(ws, conv_id)
        assert datetime.now(UTC) >= due
        conv = event["data"]["conversation"]
        assert conv["snoozed_until"] is None and event["data"]["changes"] == ["status"]
        assert any(m["name"] == "message.created" and m["data"]["message"]["text"] == WOKEN
                   and m["data"]["message"]["conversation_id"] == conv_id for m in before)
        got = (await c.get(f"/api/v1/conversations/{conv_id}")).json()
        assert got["status"] == "open" and got["snoozed_until"] is None
        timeline = (await c.get(f"/api/v1/conversations/{conv_id}/messages")).json()["items"]
        assert timeline[-1]["direction"] == "activity" and timeline[-1]["text"] == WOKEN
        assert await wake_jobs(server) == []
        # the Open view lists it again
        desk = httpx.AsyncClient(base_url=server.url)
        async with desk:
            await login(desk, "alice@example.com")
            page = await desk.get("/?view=all")
            assert f'id="row-{conv_id}"' in page.text


async def test_a_customer_message_wakes_it_first_and_the_timer_then_finds_nothing(sqlite_server) -> None:
    server = sqlite_server
    ids = await seed_basics(server.services)
    conv_id = await inbound(server.services, ids["channel"], "hello")
    async with httpx.AsyncClient(base_url=server.url) as c:
        await login(c, "alice@example.com")
        due = later(1.5)
        r = await c.patch(f"/api/v1/conversations/{conv_id}", json={"status": "snoozed", "snoozed_until": due.isoformat()})
        assert r.status_code == 200
        assert await inbound(server.services, ids["channel"], "actually, one more thing") == conv_id
        assert (await c.get(f"/api/v1/conversations/{conv_id}")).json()["status"] == "open"
        outcomes: asyncio.Queue = asyncio.Queue()
        assert server.services.timers is not None
        server.services.timers.listeners.append(lambda job, outcome: outcomes.put_nowait((job.kind, outcome)))
        async with asyncio.timeout(10):
            while (kind := await outcomes.get()) != (WAKE, "done"):
                assert kind[0] != WAKE, kind
        timeline = (await c.get(f"/api/v1/conversations/{conv_id}/messages")).json()["items"]
        assert WOKEN not in [m["text"] for m in timeline]  # it was already open: nothing to wake


async def test_a_snooze_wakes_after_a_restart(db_url: str, tmp_path: Path) -> None:
    async with await make_server(db_url, tmp_path) as first:
        ids = await seed_basics(first.services)
        conv_id = await inbound(first.services, ids["channel"], "ping me after the weekend")
        alice = await token_for(first, "alice@example.com")
        due = later(4)
        async with httpx.AsyncClient(base_url=first.url, headers={"Authorization": f"Bearer {alice}"}) as c, \
                websockets.connect(f"{first.ws_url}/api/v1/stream?token={alice}") as ws:
            assert json.loads(await ws.recv())["name"] == "stream.ready"
            r = await c.patch(f"/api/v1/conversations/{conv_id}", json={"status": "snoozed",
                                                                         "snoozed_until": due.isoformat()})
            assert r.status_code == 200
            seen = await next_event(ws, "conversation.updated")
            assert seen["data"]["conversation"]["status"] == "snoozed"
            last_seq = seen["seq"]
    # the server is gone before the snooze ends (else this would not test a restart)
    assert datetime.now(UTC) < due, "the first server took too long to stop"
    await asyncio.sleep((due - datetime.now(UTC)).total_seconds() + 0.2)  # nobody runs while it falls due

    async with await make_server(db_url, tmp_path) as second:
        async with httpx.AsyncClient(base_url=second.url, headers={"Authorization": f"Bearer {alice}"}) as c, \
                websockets.connect(f"{second.ws_url}/api/v1/stream?token={alice}&after={last_seq}") as ws:
            assert json.loads(await ws.recv())["name"] == "stream.ready"
            event, _ = await reopened(ws, conv_id)
            assert event["seq"] > last_seq
            got = (await c.get(f"/api/v1/conversations/{conv_id}")).json()
            assert got["status"] == "open" and got["snoozed_until"] is None
            assert datetime.fromisoformat(got["updated_at"]) >= due


async def test_the_open_view_and_its_counts_leave_snoozed_conversations_out(server) -> None:
    ids = await seed_basics(server.services)
    awake = await inbound(server.services, ids["channel"], "still waiting", email="awake@example.com")
    sleepy = await inbound(server.services, ids["channel"], "call me next week", email="sleepy@example.com")
    async with httpx.AsyncClient(base_url=server.url) as c:
        h = {"X-CSRF-Token": await page_login(c, "alice@example.com")}
        for conv_id in (awake, sleepy):
            assert (await c.post(f"/desk/conversations/{conv_id}/update", data={"assign": "me"},
                                 headers=h)).status_code == 204
        before = await c.get("/desk/p/counts?view=all")
        assert count_for(before.text, "all") == count_for(before.text, "mine") == 2
        r = await c.post(f"/desk/conversations/{sleepy}/update", data={"status": "snoozed", "snooze": "1h"}, headers=h)
        assert r.status_code == 204
        for view in ("all", "mine"):
            page = await c.get(f"/?view={view}")
            assert f'id="row-{awake}"' in page.text and f'id="row-{sleepy}"' not in page.text
            assert count_for(page.text, view) == 1
        counts = (await c.get("/desk/p/counts?view=all")).text
        assert count_for(counts, "all") == count_for(counts, "mine") == 1
        assert re.search(rf'queue={ids["general"]}".*?<span class="count">1</span>', counts, re.S)
        snoozed = await c.get("/?view=all&status=snoozed", headers={"HX-Request": "true", "HX-Target": "list"})
        assert f'id="row-{sleepy}"' in snoozed.text and f'id="row-{awake}"' not in snoozed.text
