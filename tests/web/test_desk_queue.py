"""The desk's routing pieces over HTTP: the Queue view (what waits in my queues; supervisors: all),
taking a conversation by hand (refusals come back with the reason), the wrap-up indicator and its
Ready button, and the supervisors' live board."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from sqlalchemy import select
from tests.conftest import make_server, seed_basics
from tests.routing.helpers import arrive
from tests.web.test_desk_pages import XSS, inbound, page_login

from threadline.actions import conversations as conv_actions
from threadline.actions import routing as routing_actions
from threadline.actions.permissions import Actor
from threadline.db.models import OutboxEventRow, RoutingTaskRow
from threadline.db.types import utcnow
from threadline.domain.routing.records import instant
from threadline.domain.users import Role

HX_LIST = {"HX-Request": "true", "HX-Target": "list"}


async def wait_for(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 10.0) -> Any:
    """Poll until ``check`` returns something truthy (the router works in rounds)."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def task_rows(services) -> dict[int, RoutingTaskRow]:  # type: ignore[no-untyped-def]
    async with services.db.transaction(write=False) as s:
        return {r.conversation_id: r for r in (await s.execute(select(RoutingTaskRow))).scalars()}


def waiting_in(services, wanted: dict[int, int]) -> Callable[[], Awaitable[bool]]:  # type: ignore[no-untyped-def]
    async def check() -> bool:
        rows = await task_rows(services)
        return all(c in rows and rows[c].queue_id == q and rows[c].status == "waiting" for c, q in wanted.items())
    return check


def row_ids(html: str) -> set[int]:
    return {int(m) for m in re.findall(r'id="row-(\d+)"', html)}


def count_for(html: str, key: str) -> int:
    m = re.search(rf'data-count-for="{key}"[^>]*>.*?<span class="count">(\d+)</span>', html, re.S)
    assert m, f"no {key} count in the nav"
    return int(m.group(1))


async def test_the_queue_view_shows_my_queues_and_take_assigns_or_says_why_not(server) -> None:
    ids = await seed_basics(server.services)
    services = server.services
    first = await inbound(services, ids["channel"], "hello", name="Eve " + XSS)  # nobody is available: both wait
    second = await arrive(services, ids["channel"])
    async with services.db.transaction() as s:
        await conv_actions.update_conversation(s, None, second, queue_id=ids["billing"])
    await wait_for(waiting_in(services, {first: ids["general"], second: ids["billing"]}), "tasks in queues")

    async with httpx.AsyncClient(base_url=server.url) as alice, httpx.AsyncClient(base_url=server.url) as bob, \
            httpx.AsyncClient(base_url=server.url) as sup:
        alice_csrf = await page_login(alice, "alice@example.com")
        bob_csrf = await page_login(bob, "bob@example.com")
        await page_login(sup, "sup@example.com")

        # an agent sees only the tasks of the queues they serve, with the nav count
        page = await alice.get("/?view=waiting")
        assert page.status_code == 200
        assert row_ids(page.text) == {first}
        assert f'id="take-{first}"' in page.text and f'hx-post="/desk/queue/{first}/take"' in page.text
        assert count_for(page.text, "waiting") == 1
        assert "data-since=" in page.text
        assert "<script>alert" not in page.text and "Eve &lt;script&gt;alert" in page.text  # names are text
        assert 'id="help"' in page.text and "<kbd>q</kbd>" in page.text  # the shortcut is in the help
        partial = await bob.get("/?view=waiting", headers=HX_LIST)
        assert "<html" not in partial.text and row_ids(partial.text) == {second}
        # supervisors see every queue, and may narrow it to one
        assert row_ids((await sup.get("/?view=waiting", headers=HX_LIST)).text) == {first, second}
        narrowed = await sup.get(f"/?view=waiting&queue={ids['billing']}", headers=HX_LIST)
        assert row_ids(narrowed.text) == {second}
        # an agent asking for a queue they do not serve still gets only their own
        assert row_ids((await alice.get(f"/?view=waiting&queue={ids['billing']}", headers=HX_LIST)).text) == {first}

        # taking needs the CSRF token, a queue I serve, a task still waiting
        assert (await alice.post(f"/desk/queue/{first}/take")).status_code == 403
        refused = await bob.post(f"/desk/queue/{first}/take", headers={"X-CSRF-Token": bob_csrf})
        assert refused.status_code == 403
        assert "do not serve the queue" in refused.json()["detail"]
        took = await alice.post(f"/desk/queue/{first}/take", headers={"X-CSRF-Token": alice_csrf,
                                                                       "HX-Current-URL": f"{server.url}/?view=waiting"})
        assert took.status_code == 204, took.text
        location = json.loads(took.headers["HX-Location"])
        assert location == {"path": f"/conversations/{first}?view=waiting", "target": "#pane"}
        assert json.loads(took.headers["HX-Trigger"])["desk:changed"]["conversation_id"] == first
        conv = (await alice.get(f"/api/v1/conversations/{first}")).json()
        assert conv["assignee_id"] == ids["alice"]
        again = await alice.post(f"/desk/queue/{first}/take", headers={"X-CSRF-Token": alice_csrf})
        # "already assigned" (409); once the router has dealt with the assignment the task may be gone (404)
        assert again.status_code in (404, 409) and str(first) in again.json()["detail"]
        assert first not in row_ids((await alice.get("/?view=waiting", headers=HX_LIST)).text)
        # the opened conversation (what HX-Location loads into the pane) is assigned to her
        pane = await alice.get(location["path"], headers={"HX-Request": "true", "HX-Target": "pane"})
        assert f'data-id="{first}"' in pane.text and 'id="act-assign-me"' not in pane.text

        missing = await alice.post("/desk/queue/999999/take", headers={"X-CSRF-Token": alice_csrf})
        assert missing.status_code == 404 and "not waiting in a queue" in missing.json()["detail"]
        bad = await alice.post("/desk/queue/abc/take", headers={"X-CSRF-Token": alice_csrf})
        assert bad.status_code == 422


async def test_take_without_a_free_slot_is_refused_with_the_reason(sqlite_server) -> None:
    ids = await seed_basics(sqlite_server.services)
    services = sqlite_server.services
    async with services.db.transaction() as s:
        await routing_actions.set_agent_profile(s, Actor(ids["sup"], Role.SUPERVISOR), ids["alice"],
                                                capacity={"messaging": 1})
    one, two = await arrive(services, ids["channel"]), await arrive(services, ids["channel"])
    await wait_for(waiting_in(services, {one: ids["general"], two: ids["general"]}), "two waiting tasks")
    async with httpx.AsyncClient(base_url=sqlite_server.url) as alice:
        h = {"X-CSRF-Token": await page_login(alice, "alice@example.com")}
        assert (await alice.post(f"/desk/queue/{one}/take", headers=h)).status_code == 204
        full = await alice.post(f"/desk/queue/{two}/take", headers=h)
        assert full.status_code == 409 and "no free messaging slot (1 of 1 in use)" in full.json()["detail"]
        assert two in row_ids((await alice.get("/?view=waiting", headers=HX_LIST)).text)


async def wrapping_row(services, conversation_id: int, queue_id: int, agent_id: int, until: float) -> None:  # type: ignore[no-untyped-def]
    """What the router leaves after a resolution: the task in wrap-up, its end in the task JSON."""
    now = time.time()
    async with services.db.transaction() as s:
        s.add(RoutingTaskRow(conversation_id=conversation_id, queue_id=queue_id, channel="messaging", status="wrapping",
                             agent_id=agent_id, enqueued_at=instant(now - 300), updated_at=instant(now), note="",
                             task={"id": conversation_id, "channel": "messaging", "queue_id": queue_id,
                                   "enqueued_at": now - 300, "status": "wrapping", "agent_id": agent_id,
                                   "accepted_at": now - 200, "wrap_until": until}))


async def test_wrap_up_shows_on_the_desk_and_ready_ends_it(sqlite_url, tmp_path) -> None:
    # no workers: the task row is written by the test, as the router would have left it
    async with await make_server(sqlite_url, tmp_path, run_workers=False) as server:
        ids = await seed_basics(server.services)
        conv = await inbound(server.services, ids["channel"], "thanks", name="Wanda " + XSS)
        other = await arrive(server.services, ids["channel"], who="still-talking")
        until = time.time() + 90
        await wrapping_row(server.services, conv, ids["general"], ids["alice"], until)
        async with server.services.db.transaction() as s:
            s.add(RoutingTaskRow(conversation_id=other, queue_id=ids["general"], channel="messaging",
                                 status="assigned", agent_id=ids["alice"], enqueued_at=utcnow(),
                                 updated_at=utcnow(), note="", task={"id": other}))
        async with httpx.AsyncClient(base_url=server.url) as alice, httpx.AsyncClient(base_url=server.url) as bob:
            csrf = await page_login(alice, "alice@example.com")
            bob_csrf = await page_login(bob, "bob@example.com")
            asked = time.time()
            page = await alice.get("/")
            answered = time.time()
            banner = re.search(r'<div class="wrapup" data-conversation="(\d+)" data-until="([\d.]+)">(.*?)</div>',
                               page.text, re.S)
            assert banner and int(banner.group(1)) == conv
            assert abs(float(banner.group(2)) - until) < 0.01  # the end itself, not a countdown from the page load
            assert "Wrap-up" in banner.group(3) and "Wanda &lt;script&gt;alert" in banner.group(3)
            assert "<script>alert" not in page.text
            count = re.search(r'class="wrapup-count">(\d+):(\d\d)<', banner.group(3))
            assert count, banner.group(3)
            left = int(count.group(1)) * 60 + int(count.group(2))  # rendered while the request was served
            assert int(until - answered) - 1 <= left <= int(until - asked) + 1
            assert f'hx-post="/desk/wrap-ups/{conv}/ready"' in banner.group(3)
            assert 'class="wrapup"' not in (await bob.get("/")).text
            # the partial live.js refetches on routing.wrap_up
            assert f'data-conversation="{conv}"' in (await alice.get("/desk/p/wrapups")).text

            # only the agent (or a supervisor) ends it; a conversation not in wrap-up says so
            assert (await alice.post(f"/desk/wrap-ups/{conv}/ready")).status_code == 403  # no CSRF token
            nobody = await bob.post(f"/desk/wrap-ups/{conv}/ready", headers={"X-CSRF-Token": bob_csrf})
            assert nobody.status_code == 404 and "not in wrap-up" in nobody.json()["detail"]
            busy = await alice.post(f"/desk/wrap-ups/{other}/ready", headers={"X-CSRF-Token": csrf})
            assert busy.status_code == 409 and "assigned" in busy.json()["detail"]

            ready = await alice.post(f"/desk/wrap-ups/{conv}/ready", headers={"X-CSRF-Token": csrf})
            assert ready.status_code == 204, ready.text
            assert json.loads(ready.headers["HX-Trigger"])["desk:wrapup-ended"] == {"conversation_id": conv}
            rows = await task_rows(server.services)
            assert rows[conv].wrap_ended_at is not None  # the router frees the slot on its next round
            async with server.services.db.transaction(write=False) as s:
                asked = (await s.execute(select(OutboxEventRow).where(
                    OutboxEventRow.name == "routing.wrap_up_end_requested"))).scalars().all()
            assert [(e.payload["conversation_id"], e.payload["agent_id"]) for e in asked] == [(conv, ids["alice"])]
            # a reload no longer shows it (it ended now, whatever the router has done yet)
            assert 'class="wrapup"' not in (await alice.get("/")).text
            assert 'class="wrapup"' not in (await alice.get("/desk/p/wrapups")).text


async def test_the_live_board_follows_the_stream_and_is_for_supervisors(sqlite_server) -> None:
    ids = await seed_basics(sqlite_server.services)
    conv = await arrive(sqlite_server.services, ids["channel"])
    await wait_for(waiting_in(sqlite_server.services, {conv: ids["general"]}), "a waiting task")
    async with httpx.AsyncClient(base_url=sqlite_server.url) as sup:
        await page_login(sup, "sup@example.com")
        page = await sup.get("/admin/live")
        assert page.status_code == 200
        assert "/static/desk/admin_live.js" in page.text and 'data-board-url="/admin/live/board"' in page.text
        assert "every 2s" not in page.text  # no more polling by htmx
        assert 'class="live-state' in page.text and 'id="toasts"' in page.text
        board = (await sup.get("/admin/live/board")).text
        assert f'<tr data-queue="{ids["general"]}" data-name="general"' in board  # the queue row partial
        assert f'data-conversation="{conv}"' in board and "data-since=" in board and "data-now=" in board
        script = await sup.get("/static/desk/admin_live.js")
        assert script.status_code == 200 and "tlStream.on(" in script.text
        assert "/static/desk/stream.js" in page.text  # the tab's one socket (stream.js)
        stream = await sup.get("/static/desk/stream.js")
        assert stream.status_code == 200 and "/api/v1/stream" in stream.text
    async with httpx.AsyncClient(base_url=sqlite_server.url) as agent:
        await page_login(agent, "alice@example.com")
        assert (await agent.get("/admin/live")).status_code == 403
        assert (await agent.get("/admin/live/board")).status_code == 403


async def test_the_queue_view_shows_tasks_that_overflowed_out_of_my_queues(sqlite_url, tmp_path) -> None:
    # no workers: the task rows are written by the test, as the router leaves them after an overflow
    async with await make_server(sqlite_url, tmp_path, run_workers=False) as server:
        ids = await seed_basics(server.services)
        general, billing = ids["general"], ids["billing"]
        moved = await inbound(server.services, ids["channel"], "overflowed", email="o@example.com", name="Olga")
        theirs = await inbound(server.services, ids["channel"], "billing's own", email="b@example.com")
        mine = await inbound(server.services, ids["channel"], "general's own", email="g@example.com")
        now = time.time()
        async with server.services.db.transaction() as s:
            for conv, queue, origin, age in ((moved, billing, general, 300), (theirs, billing, billing, 200),
                                             (mine, general, general, 100)):
                s.add(RoutingTaskRow(conversation_id=conv, queue_id=queue, channel="messaging", status="waiting",
                                     agent_id=None, enqueued_at=instant(now - age), updated_at=instant(now), note="",
                                     task={"id": conv, "channel": "messaging", "queue_id": queue,
                                           "origin_queue_id": origin, "enqueued_at": now - age,
                                           "status": "waiting"}))
        async with httpx.AsyncClient(base_url=server.url) as alice, \
                httpx.AsyncClient(base_url=server.url) as bob, httpx.AsyncClient(base_url=server.url) as sup:
            alice_csrf = await page_login(alice, "alice@example.com")
            await page_login(bob, "bob@example.com")
            await page_login(sup, "sup@example.com")
            # Alice serves general: its own task, and the one that overflowed out of it into billing
            page = await alice.get("/?view=waiting")
            assert row_ids(page.text) == {moved, mine} and count_for(page.text, "waiting") == 2
            row = re.search(rf'id="row-{moved}".*?</button>', page.text, re.S)
            assert row and "from general" in row.group(0) and "billing" in row.group(0)
            assert "from " not in re.search(rf'id="row-{mine}".*?</button>', page.text, re.S).group(0)  # type: ignore[union-attr]
            # narrowed to general: still both (one waits there, one came from there)
            assert row_ids((await alice.get(f"/?view=waiting&queue={general}", headers=HX_LIST)).text) == {moved, mine}
            # Bob serves billing (where both billing tasks wait); supervisors see everything, by current queue
            bob_page = await bob.get("/?view=waiting")
            assert row_ids(bob_page.text) == {moved, theirs} and count_for(bob_page.text, "waiting") == 2
            assert row_ids((await sup.get("/?view=waiting", headers=HX_LIST)).text) == {moved, theirs, mine}
            assert row_ids((await sup.get(f"/?view=waiting&queue={general}", headers=HX_LIST)).text) == {mine}
            # and what the view offers, pick_task allows
            took = await alice.post(f"/desk/queue/{moved}/take", headers={"X-CSRF-Token": alice_csrf})
            assert took.status_code == 204, took.text
            assert (await alice.get(f"/api/v1/conversations/{moved}")).json()["assignee_id"] == ids["alice"]
            assert moved not in row_ids((await alice.get("/?view=waiting", headers=HX_LIST)).text)
