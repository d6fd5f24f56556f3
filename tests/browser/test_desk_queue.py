"""Routing on the desk in headless Chromium, with the routing worker running in the server: an agent
takes a waiting conversation from the Queue view (by click and by keyboard; a refusal is a toast),
and the supervisors' live view redraws from the stream when a conversation starts waiting."""

from __future__ import annotations

from tests.browser.test_desk_live import WAIT, open_desk
from tests.conftest import seed_basics
from tests.routing.helpers import arrive
from tests.web.test_desk_queue import task_rows, wait_for, waiting_in
from threadline.actions import routing as routing_actions
from threadline.actions.events import emit
from threadline.actions.permissions import Actor
from threadline.domain.events import Audience
from threadline.domain.routing.events import SlaAlert
from threadline.domain.users import Role


async def test_an_agent_takes_a_waiting_conversation_from_the_queue_view(sqlite_server, browser) -> None:
    ids = await seed_basics(sqlite_server.services)
    services = sqlite_server.services
    async with services.db.transaction() as s:
        await routing_actions.set_agent_profile(s, Actor(ids["sup"], Role.SUPERVISOR), ids["alice"],
                                                capacity={"messaging": 2})
    first = await arrive(services, ids["channel"])  # alice is offline: it waits in her queue
    await wait_for(waiting_in(services, {first: ids["general"]}), "a waiting task")

    async def placed() -> bool:  # the router writes positions and wait estimates every few seconds
        return (await task_rows(services))[first].position == 1
    await wait_for(placed, "its position in the queue")

    page = await open_desk(browser, sqlite_server, "alice@example.com", "/?view=waiting")
    await page.evaluate("window.__marker = 1")  # survives only if the page never reloads
    row = page.locator(f"#row-{first}")
    await row.wait_for(timeout=WAIT)
    assert "Customer" in await row.inner_text()
    assert (await page.inner_text("#list .qpos")).strip().endswith("1")
    waited = row.locator("time[data-since]")
    before = await waited.inner_text()
    await page.wait_for_function(  # the wait ticks in the browser
        "([el, t]) => el.textContent !== t", arg=[await waited.element_handle(), before], timeout=WAIT)

    # a conversation arriving while the view is open shows up without a reload
    second = await arrive(services, ids["channel"])
    await page.locator(f"#row-{second}").wait_for(timeout=WAIT)
    await page.wait_for_function(
        "() => document.querySelector('[data-count-for=waiting] .count').textContent.trim() === '2'", timeout=WAIT)

    await page.click(f"#take-{first}")
    await page.locator(f"#conversation[data-id='{first}']").wait_for(timeout=WAIT)
    await page.locator("#assignee", has_text="Alice").wait_for(timeout=WAIT)
    assert page.url.endswith(f"/conversations/{first}?view=waiting")
    await page.locator(f"#row-{first}").wait_for(state="detached", timeout=WAIT)
    await page.locator(".toast", has_text=f"#{first} is yours").wait_for(timeout=WAIT)

    # the keyboard: t takes the next one waiting
    await page.keyboard.press("t")
    await page.locator(f"#conversation[data-id='{second}']").wait_for(timeout=WAIT)
    await page.locator("#assignee", has_text="Alice").wait_for(timeout=WAIT)

    # both of her messaging slots are busy now: taking a third is refused, with the reason as a toast
    third = await arrive(services, ids["channel"])
    await page.locator(f"#take-{third}").wait_for(timeout=WAIT)
    await page.click(f"#take-{third}")
    await page.locator(".toast.error", has_text="no free messaging slot (2 of 2 in use)").wait_for(timeout=WAIT)
    assert await page.locator(f"#row-{third}").count() == 1
    assert await page.evaluate("window.__marker") == 1
    assert page.errors == []  # type: ignore[attr-defined]


async def test_the_live_view_redraws_from_the_stream_and_flashes_sla_alerts(sqlite_server, browser) -> None:
    ids = await seed_basics(sqlite_server.services)
    services = sqlite_server.services
    page = await open_desk(browser, sqlite_server, "sup@example.com", "/admin/live")
    await page.evaluate("window.__marker = 1")
    queue_row = page.locator(f"#board-queues tr[data-queue='{ids['general']}']")
    assert (await queue_row.locator(".q-waiting").inner_text()).strip() == "0"
    await page.locator("#board-waiting", has_text="Nobody is waiting").wait_for(timeout=WAIT)

    conv = await arrive(services, ids["channel"])
    # well before the 15 s fallback poll: the stream (conversation.created, routing.state) redraws it
    await page.locator(f"#board-waiting tr[data-conversation='{conv}']").wait_for(timeout=WAIT)
    await page.wait_for_function(
        f"() => document.querySelector(\"#board-queues tr[data-queue='{ids['general']}'] .q-waiting\").textContent.trim() === '1'",
        timeout=WAIT)
    assert await page.locator("body[data-live=on] .live-state .live-on").is_visible()

    # an SLA alert (as the router sends it) flashes as a toast and marks the conversation's and queue's rows
    async with services.db.transaction() as s:
        emit(s, SlaAlert(conversation_id=conv, queue_id=ids["general"], state="breached", waited_seconds=75,
                         threshold_seconds=60), Audience(queues=[ids["general"]]))
    await page.locator(".toast.sla-toast.error", has_text=f"SLA breached: conversation #{conv} in general").wait_for(
        timeout=WAIT)
    await page.locator(f"#board-waiting tr[data-conversation='{conv}'].sla-breached").wait_for(timeout=WAIT)
    await page.locator(f"#board-queues tr[data-queue='{ids['general']}'].sla-breached").wait_for(timeout=WAIT)
    assert await page.evaluate("window.__marker") == 1
    assert page.errors == []  # type: ignore[attr-defined]


async def test_the_wrap_up_counts_down_and_ready_ends_it(sqlite_server, browser) -> None:
    import time

    from tests.web.test_desk_pages import inbound
    from tests.web.test_desk_queue import wrapping_row
    from threadline.actions import channels as channel_actions
    from threadline.db.models import RoutingTaskRow
    from threadline.domain.routing.events import WrapUp

    ids = await seed_basics(sqlite_server.services)
    services = sqlite_server.services
    async with services.db.transaction() as s:  # conversations no queue routes: the router leaves them alone
        quiet = await channel_actions.create_channel(s, services.box, kind="api", name="Direct",
                                                     config={"secret": "s3cret-s3cret-s3cret", "webhook_url": None})
    done = await inbound(services, quiet.id, "thanks!", email="wanda@example.com", name="Wanda Wrap")
    wrap_until = time.time() + 90
    await wrapping_row(services, done, ids["general"], ids["alice"], wrap_until)

    page = await open_desk(browser, sqlite_server, "alice@example.com", "/")
    banner = page.locator(f"#wrapups .wrapup[data-conversation='{done}']")
    assert "Wanda Wrap" in await banner.inner_text() and "Wrap-up" in await banner.inner_text()
    count = banner.locator(".wrapup-count")
    first = await count.inner_text()
    minutes, seconds = first.split(":")
    left = wrap_until - time.time()  # the time left when we read it, however slow the page was to load
    assert left - 3 <= int(minutes) * 60 + int(seconds) <= left + 3, (first, left)  # ticks once a second
    await page.wait_for_function("([el, t]) => el.textContent !== t",  # it counts down
                                 arg=[await count.element_handle(), first], timeout=WAIT)

    # a wrap-up that starts while the desk is open appears, and goes when its time is up
    short = await inbound(services, quiet.id, "bye", email="ulla@example.com", name="Ulla Until")
    until = time.time() + 2.5
    await wrapping_row(services, short, ids["general"], ids["alice"], until)
    async with services.db.transaction() as s:
        emit(s, WrapUp(conversation_id=short, agent_id=ids["alice"], queue_id=ids["general"], state="started",
                       until=until, at=time.time()), Audience(users=[ids["alice"]], supervisors=False))
    await page.locator("#wrapups .wrapup", has_text="Ulla Until").wait_for(timeout=WAIT)
    await page.locator("#wrapups .wrapup", has_text="Ulla Until").wait_for(state="detached", timeout=WAIT)

    # the router says one ended (e.g. a supervisor freed the slot): it goes at once
    third = await inbound(services, quiet.id, "ok", email="otto@example.com", name="Otto Over")
    await wrapping_row(services, third, ids["general"], ids["alice"], time.time() + 90)
    async with services.db.transaction() as s:
        emit(s, WrapUp(conversation_id=third, agent_id=ids["alice"], queue_id=ids["general"], state="started",
                       until=time.time() + 90, at=time.time()), Audience(users=[ids["alice"]], supervisors=False))
    await page.locator("#wrapups .wrapup", has_text="Otto Over").wait_for(timeout=WAIT)
    async with services.db.transaction() as s:
        await s.delete(await s.get(RoutingTaskRow, third))
        emit(s, WrapUp(conversation_id=third, agent_id=ids["alice"], queue_id=ids["general"], state="ended",
                       at=time.time(), ended_by="router"), Audience(users=[ids["alice"]], supervisors=False))
    await page.locator("#wrapups .wrapup", has_text="Otto Over").wait_for(state="detached", timeout=WAIT)

    # Ready: the agent is done early
    await banner.locator(".wrapup-ready").click()
    await banner.wait_for(state="detached", timeout=WAIT)
    await page.locator(".toast", has_text="Ready for the next conversation").wait_for(timeout=WAIT)
    async with services.db.transaction(write=False) as s:
        assert (await s.get(RoutingTaskRow, done)).wrap_ended_at is not None
    assert page.errors == []  # type: ignore[attr-defined]


async def test_resolving_starts_the_wrap_up_live_and_ready_frees_the_slot(sqlite_server, browser) -> None:
    from tests.routing.helpers import events

    ids = await seed_basics(sqlite_server.services)
    services = sqlite_server.services
    async with services.db.transaction() as s:  # after-contact work: 30 s once a conversation is resolved
        await routing_actions.set_queue_routing(s, Actor(ids["admin"], Role.ADMIN), ids["general"],
                                                {"wrap_up_seconds": 30})
    conv = await arrive(services, ids["channel"])
    await wait_for(waiting_in(services, {conv: ids["general"]}), "a waiting task")

    page = await open_desk(browser, sqlite_server, "alice@example.com", "/?view=waiting")
    await page.click(f"#take-{conv}")
    await page.locator(f"#conversation[data-id='{conv}'] #act-resolve").wait_for(timeout=WAIT)
    assert await page.locator("#wrapups .wrapup").count() == 0
    await page.keyboard.press("e")  # resolve: the router starts the wrap-up and tells the desk
    banner = page.locator(f"#wrapups .wrapup[data-conversation='{conv}']")
    await banner.wait_for(timeout=WAIT)
    assert "Customer" in await banner.inner_text()
    assert (await banner.locator(".wrapup-count").inner_text()) in ("0:30", "0:29", "0:28", "0:27")

    await banner.locator(".wrapup-ready").click()
    await banner.wait_for(state="detached", timeout=WAIT)

    async def ended() -> bool:
        return any(e["payload"]["state"] == "ended" and e["payload"]["ended_by"] == "agent"
                   for e in await events(services, "routing.wrap_up"))
    await wait_for(ended, "the router to end the wrap-up")
    assert await page.locator("#wrapups .wrapup").count() == 0
    assert page.errors == []  # type: ignore[attr-defined]
