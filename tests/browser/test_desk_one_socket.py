"""A desk tab opens ONE websocket (static/desk/stream.js, shared by live.js, offers.js and admin_live.js) and
every live feature still gets its events through it: new messages, the agent's presence, routing offers
(popup and its end), wrap-ups; on the supervisors' live view, the board redraw and the SLA toast."""

from __future__ import annotations

import time

from tests.browser.test_desk_live import WAIT
from tests.conftest import PASSWORD, seed_basics
from tests.routing.helpers import arrive
from tests.web.test_desk_pages import inbound
from tests.web.test_desk_queue import wrapping_row
from threadline.actions import channels as channel_actions
from threadline.actions import users as user_actions
from threadline.actions.events import emit
from threadline.domain.events import Audience
from threadline.domain.routing.events import OfferCreated, OfferEnded, SlaAlert, WrapUp


async def logged_in(browser, server, email: str):  # type: ignore[no-untyped-def]
    """A logged-in page that records every websocket it opens from now on (not those of the login page and
    of the desk it lands on)."""
    context = await browser.new_context(viewport={"width": 1440, "height": 900})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(server.url + "/login")
    await page.fill("#email", email)
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(server.url + "/")
    await page.wait_for_function("() => document.body.dataset.live === 'on'", timeout=WAIT)  # the desk's own
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    return page, sockets, errors


async def test_a_desk_tab_opens_one_websocket_and_still_gets_every_kind_of_live_update(sqlite_server, browser) -> None:
    ids = await seed_basics(sqlite_server.services)
    services, alice = sqlite_server.services, ids["alice"]
    async with services.db.transaction() as s:  # conversations no queue routes: the router leaves them alone
        quiet = await channel_actions.create_channel(s, services.box, kind="api", name="Direct",
                                                     config={"secret": "s3cret-s3cret-s3cret", "webhook_url": None})
    page, sockets, errors = await logged_in(browser, sqlite_server, "alice@example.com")
    await page.goto(sqlite_server.url + "/?view=all")
    await page.wait_for_function("() => document.body.dataset.live === 'on'", timeout=WAIT)

    # a new message: its conversation appears in the list (live.js)
    first = await inbound(services, ids["channel"], "Where is my order?", name="Olga Order")
    await page.locator(f"#row-{first}").wait_for(timeout=WAIT)
    conv = await inbound(services, quiet.id, "Anyone there?", email="olga@example.com", name="Olga Order")

    # presence changed elsewhere (another tab, the API): the desk follows (live.js)
    async with services.db.transaction() as s:
        await user_actions.set_presence(s, alice, "break", "Lunch")
    await page.wait_for_function("() => document.querySelector('.me .presence-dot').classList.contains('break')",
                                 timeout=WAIT)

    # a routing offer pops up, and goes when the router ends it (offers.js)
    now = time.time()
    async with services.db.transaction() as s:
        emit(s, OfferCreated(offer_id=9001, conversation_id=conv, agent_id=alice, queue_id=ids["general"],
                             channel="messaging", contact_name="Olga Order", waited_seconds=3, offered_at=now,
                             expires_at=now + 60), Audience(users=[alice], supervisors=False))
    popup = page.locator(".tl-offer", has_text="Olga Order")
    await popup.wait_for(timeout=WAIT)
    async with services.db.transaction() as s:
        emit(s, OfferEnded(offer_id=9001, conversation_id=conv, agent_id=alice, outcome="rescinded", at=time.time()),
             Audience(users=[alice], supervisors=False))
    await popup.wait_for(state="detached", timeout=WAIT)

    # a wrap-up starts: its banner appears (live.js, the wrap-ups partial)
    until = time.time() + 90
    await wrapping_row(services, conv, ids["general"], alice, until)
    async with services.db.transaction() as s:
        emit(s, WrapUp(conversation_id=conv, agent_id=alice, queue_id=ids["general"], state="started", until=until,
                       at=time.time()), Audience(users=[alice], supervisors=False))
    await page.locator(f"#wrapups .wrapup[data-conversation='{conv}']").wait_for(timeout=WAIT)

    assert len(sockets) == 1 and "/api/v1/stream" in sockets[0], sockets
    assert errors == []


async def test_the_supervisors_live_view_opens_one_websocket_too(sqlite_server, browser) -> None:
    ids = await seed_basics(sqlite_server.services)
    services = sqlite_server.services
    page, sockets, errors = await logged_in(browser, sqlite_server, "sup@example.com")
    await page.goto(sqlite_server.url + "/admin/live")
    await page.wait_for_function("() => document.body.dataset.live === 'on'", timeout=WAIT)
    conv = await arrive(services, ids["channel"])
    await page.locator(f"#board-waiting tr[data-conversation='{conv}']").wait_for(timeout=WAIT)  # redrawn
    async with services.db.transaction() as s:
        emit(s, SlaAlert(conversation_id=conv, queue_id=ids["general"], state="breached", waited_seconds=75,
                         threshold_seconds=60), Audience(queues=[ids["general"]]))
    await page.locator(".toast.sla-toast.error", has_text=f"SLA breached: conversation #{conv}").wait_for(timeout=WAIT)
    assert len(sockets) == 1 and "/api/v1/stream" in sockets[0], sockets
    assert errors == []
