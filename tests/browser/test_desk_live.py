"""The agent desk in real headless Chromium: live inbound, reply/note/resolve, two agents on one
conversation, keyboard shortcuts and canned responses, XSS shown as text, admin pages closed to agents."""

from __future__ import annotations

import base64

from tests.conftest import PASSWORD, seed_basics
from tests.web.test_desk_pages import inbound
from threadline.actions import canned as canned_actions
from threadline.actions.permissions import Actor
from threadline.db.repos import conversations as conv_repo
from threadline.domain.users import Role

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
WAIT = 10_000  # ms: generous (a loaded CI machine); live updates normally land well within a second


async def open_desk(browser, server, email: str, path: str = "/?view=all"):  # type: ignore[no-untyped-def]
    context = await browser.new_context(viewport={"width": 1440, "height": 900})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors  # type: ignore[attr-defined]
    await page.goto(server.url + "/login")
    await page.fill("#email", email)
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(server.url + "/")
    await page.goto(server.url + path)
    await page.wait_for_function("() => document.body.dataset.live === 'on'", timeout=WAIT)
    return page


async def test_inbound_appears_live_and_the_agent_replies_notes_and_resolves(sqlite_server, browser) -> None:
    ids = await seed_basics(sqlite_server.services)
    page = await open_desk(browser, sqlite_server, "alice@example.com")
    assert await page.locator("#list .row").count() == 0
    await page.evaluate("window.__marker = 1")  # survives only if the page never reloads
    conv_id = await inbound(sqlite_server.services, ids["channel"], "My parcel is lost", name="Maria Rossi")
    row = page.locator(f"#row-{conv_id}")
    await row.wait_for(timeout=WAIT)
    assert "My parcel is lost" in await row.inner_text()
    await page.wait_for_function(  # the view counts follow
        "() => document.querySelector('[data-count-for=all] .count').textContent.trim() === '1'", timeout=WAIT)

    await row.click()
    await page.wait_for_selector("#conversation #timeline .msg.in", timeout=WAIT)
    assert page.url.endswith(f"/conversations/{conv_id}?view=all&status=open")
    # the customer writes again while the conversation is open: it appears in place
    await inbound(sqlite_server.services, ids["channel"], "Tracking number TN-42", pid="second")
    await page.locator("#timeline .msg.in", has_text="TN-42").wait_for(timeout=WAIT)

    await page.fill("#composer-text", "Sorry to hear that, checking now.")
    await page.press("#composer-text", "Control+Enter")
    await page.locator("#timeline .msg.out", has_text="checking now").wait_for(timeout=WAIT)
    assert await page.input_value("#composer-text") == ""
    # the seeded API channel has no webhook: the sender fails the reply and the state changes in place
    await page.locator("#timeline .msg.out .delivery.st-failed", has_text="webhook").wait_for(timeout=WAIT)

    await page.click("label.tab.note")
    await page.fill("#composer-text", "Carrier claims it was delivered")
    await page.click("#composer-send")
    await page.locator("#timeline .msg.note", has_text="Carrier claims").wait_for(timeout=WAIT)

    # attachments: picked in the composer, stored, shown (images inline, served by the permission-checked URL)
    await page.click("label.tab:not(.note)")
    await page.set_input_files("#composer-files", files=[
        {"name": "receipt.png", "mimeType": "image/png", "buffer": PNG},
        {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"}])
    assert "receipt.png" in await page.inner_text("#file-names")
    await page.fill("#composer-text", "Here is the receipt")
    await page.click("#composer-send")
    img = page.locator("#timeline .msg.out img[alt='receipt.png']")
    await img.wait_for(timeout=WAIT)
    assert (await img.get_attribute("src")).startswith("/api/v1/attachments/")
    await page.locator("#timeline .msg.out a.file", has_text="notes.txt").wait_for(timeout=WAIT)
    await page.wait_for_function("() => document.querySelector('#timeline .msg.out img').naturalWidth === 1", timeout=WAIT)
    assert await page.inner_text("#file-names") == ""

    await page.click("#act-resolve")
    await page.locator("#timeline .activity", has_text="resolved the conversation").wait_for(timeout=WAIT)
    await page.locator("#act-resolve[data-reopen]").wait_for(timeout=WAIT)
    # the open list drops the resolved conversation, and the count follows
    await page.locator(f"#row-{conv_id}").wait_for(state="detached", timeout=WAIT)
    await page.wait_for_function(
        "() => document.querySelector('[data-count-for=all] .count').textContent.trim() === '0'", timeout=WAIT)

    await page.select_option("#presence", "break:Lunch")
    await page.wait_for_function("() => document.querySelector('.me .presence-dot').classList.contains('break')",
                                 timeout=WAIT)
    assert await page.evaluate("window.__marker") == 1
    assert page.errors == []  # type: ignore[attr-defined]


async def test_two_agents_on_one_conversation_see_each_others_changes(sqlite_server, browser) -> None:
    ids = await seed_basics(sqlite_server.services)
    conv_id = await inbound(sqlite_server.services, ids["channel"], "Can someone help?")
    path = f"/conversations/{conv_id}?view=all"
    alice = await open_desk(browser, sqlite_server, "alice@example.com", path)
    sup = await open_desk(browser, sqlite_server, "sup@example.com", path)
    await alice.evaluate("window.__marker = 'alice'")
    await sup.evaluate("window.__marker = 'sup'")

    await alice.fill("#composer-text", "On it!")
    await alice.press("#composer-text", "Control+Enter")
    await sup.locator("#timeline .msg.out", has_text="On it!").wait_for(timeout=WAIT)

    await sup.click("summary:has-text('Labels')")
    await sup.fill("#add-label", "escalated")
    await sup.press("#add-label", "Enter")
    await alice.locator("#conv-head .conv-sub .chip.label", has_text="escalated").wait_for(timeout=WAIT)
    await alice.locator("#timeline .msg", has_text="On it!").wait_for(timeout=WAIT)

    await sup.click("#act-resolve")
    await alice.locator("#act-resolve[data-reopen]").wait_for(timeout=WAIT)
    await alice.locator("#conv-head .pill.st-resolved").wait_for(timeout=WAIT)
    assert await alice.evaluate("window.__marker") == "alice"  # no reload happened
    assert await sup.evaluate("window.__marker") == "sup"
    # exactly one copy of each message on both pages (the action refresh and the stream both fire)
    assert await alice.locator("#timeline .msg.out").count() == 1
    assert await sup.locator("#timeline .msg.out").count() == 1


async def test_keyboard_shortcuts_and_canned_responses(sqlite_server, browser) -> None:
    ids = await seed_basics(sqlite_server.services)
    async with sqlite_server.services.db.transaction(write=True) as s:
        admin = Actor(user_id=ids["admin"], role=Role.ADMIN, name="Admin")
        await canned_actions.create_canned(s, admin, shortcut="hello", title="Greeting",
                                           text="Hi {{name}}, thanks for writing!")
    first = await inbound(sqlite_server.services, ids["channel"], "first", email="a@example.com", name="Ann Lee")
    second = await inbound(sqlite_server.services, ids["channel"], "second", email="b@example.com", name="Ben Ode")
    page = await open_desk(browser, sqlite_server, "alice@example.com")
    await page.locator(f"#row-{first}").wait_for(timeout=WAIT)

    await page.keyboard.press("j")  # newest first: Ben's conversation
    await page.wait_for_selector(f"#conversation[data-id='{second}']", timeout=WAIT)
    await page.keyboard.press("j")
    await page.wait_for_selector(f"#conversation[data-id='{first}']", timeout=WAIT)
    await page.keyboard.press("k")
    await page.wait_for_selector(f"#conversation[data-id='{second}']", timeout=WAIT)

    await page.keyboard.press("a")  # assign to me
    await page.locator("#conv-head #assignee", has_text="Alice").wait_for(timeout=WAIT)
    assert await page.locator("#act-assign-me").count() == 0

    await page.keyboard.press("n")  # note mode, composer focused
    assert await page.evaluate("document.activeElement.id") == "composer-text"
    assert await page.get_attribute("#composer", "data-mode") == "note"
    await page.keyboard.press("Escape")
    await page.keyboard.press("r")
    assert await page.get_attribute("#composer", "data-mode") == "reply"
    await page.keyboard.type("/hel")
    await page.locator("#canned-menu li", has_text="/hello").wait_for(timeout=WAIT)
    await page.keyboard.press("Tab")
    assert await page.input_value("#composer-text") == "Hi Ben, thanks for writing!"
    await page.keyboard.press("Escape")

    await page.keyboard.press("e")  # resolve
    await page.locator("#act-resolve[data-reopen]").wait_for(timeout=WAIT)
    await page.keyboard.press("e")  # and reopen
    await page.locator("#act-resolve:not([data-reopen])").wait_for(timeout=WAIT)

    await page.keyboard.press("?")
    await page.locator("#help[open]").wait_for(timeout=WAIT)
    await page.keyboard.press("Escape")
    await page.keyboard.press("/")
    assert await page.evaluate("document.activeElement.id") == "search"
    await page.keyboard.type("ann")
    await page.locator(f"#row-{second}").wait_for(state="detached", timeout=WAIT)
    # htmx pushes the URL just after it swaps the list: wait for it rather than race it
    await page.wait_for_function("() => location.search.includes('q=ann')", timeout=WAIT)


async def test_html_in_messages_is_shown_as_text(sqlite_server, browser) -> None:
    ids = await seed_basics(sqlite_server.services)
    payload = "<script>window.__pwned=1</script><img src=x onerror=\"window.__pwned=2\"><b>bold</b>"
    conv_id = await inbound(sqlite_server.services, ids["channel"], payload, name="<i>Eve</i>")
    page = await open_desk(browser, sqlite_server, "alice@example.com", f"/conversations/{conv_id}?view=all")
    bubble = page.locator("#timeline .msg.in .text")
    await bubble.wait_for(timeout=WAIT)
    assert await bubble.inner_text() == payload
    assert await page.locator("#timeline img[src=x], #timeline b, #list b").count() == 0
    assert "<i>Eve</i>" in await page.locator("#conv-head h2").inner_text()
    # and through the live path (HTMX partial appended by live.js)
    await inbound(sqlite_server.services, ids["channel"], payload + " again", name="<i>Eve</i>", pid="again")
    await page.locator("#timeline .msg.in .text", has_text="again").wait_for(timeout=WAIT)
    assert await page.evaluate("window.__pwned") is None


async def test_an_agent_cannot_open_admin_pages(sqlite_server, browser) -> None:
    await seed_basics(sqlite_server.services)
    page = await open_desk(browser, sqlite_server, "alice@example.com", "/")
    assert await page.locator("a[href='/admin']").count() == 0
    response = await page.goto(sqlite_server.url + "/admin/channels")
    assert response is not None and response.status == 403
    assert "Admins only" in await page.content()
    admin = await open_desk(browser, sqlite_server, "admin@example.com", "/")
    await admin.click("a[href='/admin']")
    await admin.wait_for_url(sqlite_server.url + "/admin/live")  # the admin home: live queues
    await admin.click("a[href='/admin/channels']")
    await admin.locator("h1", has_text="Channels").wait_for(timeout=WAIT)


async def test_typing_indicators_both_ways(sqlite_server, browser) -> None:
    from threadline.channels.webchat import actions as webchat_actions

    ids = await seed_basics(sqlite_server.services)
    conv_id = await inbound(sqlite_server.services, ids["channel"], "hello?")
    page = await open_desk(browser, sqlite_server, "alice@example.com", f"/conversations/{conv_id}?view=all")
    assert await page.get_attribute("#app", "data-typing") == "on"
    async with sqlite_server.services.db.transaction(write=True) as s:
        conv = await conv_repo.get_conversation(s, conv_id)
        await webchat_actions.visitor_typing(s, conv_id, conv.contact_id, True)
    await page.locator("#typing:not([hidden])").wait_for(timeout=WAIT)
    async with sqlite_server.services.db.transaction(write=True) as s:
        await webchat_actions.visitor_typing(s, conv_id, conv.contact_id, False)
    await page.locator("#typing[hidden]").wait_for(state="attached", timeout=WAIT)
    # the agent typing a reply tells the visitor (not while writing a note)
    async with page.expect_response(lambda r: r.url.endswith(f"/conversations/{conv_id}/typing")) as info:
        await page.click("#composer-text")
        await page.keyboard.type("Hel")
    response = await info.value
    assert response.status == 204 and response.request.post_data_json == {"typing": True}
