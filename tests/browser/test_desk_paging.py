"""The desk's paged conversation list in real headless Chromium: scrolling to the end loads the next
page, j walks onto (and loads) the rows past the first page, and a live refresh keeps them."""

from __future__ import annotations

from tests.browser.test_desk_live import WAIT, open_desk
from tests.conftest import seed_basics
from tests.web.test_desk_pages import inbound
from tests.web.test_desk_paging import many_conversations


async def test_scrolling_and_j_load_the_next_page_and_live_refreshes_keep_it(sqlite_server, browser) -> None:
    ids = await seed_basics(sqlite_server.services)
    order = await many_conversations(sqlite_server.services, ids["channel"], 75)
    page = await open_desk(browser, sqlite_server, "sup@example.com")
    rows = page.locator("#list .row")
    assert await rows.count() == 60 and await page.locator("#list-more").count() == 1
    await page.evaluate("window.__marker = 1")  # survives only if the page never reloads

    # j on the last row of the first page loads the next one and opens its first row (the button is
    # made click-only first, so that scrolling to row 60 does not load the page before j does)
    await page.evaluate("""() => { const m = document.getElementById('list-more'), c = m.cloneNode(true);
                                   c.setAttribute('hx-trigger', 'click'); m.replaceWith(c); htmx.process(c); }""")
    await rows.nth(59).click()
    await page.wait_for_selector(f"#conversation[data-id='{order[59]}']", timeout=WAIT)
    assert await rows.count() == 60
    await page.locator("#timeline").click()  # keys go to the page, not to a field
    await page.keyboard.press("j")
    await page.wait_for_selector(f"#conversation[data-id='{order[60]}']", timeout=WAIT)
    await page.wait_for_function("() => document.querySelectorAll('#list .row').length === 75", timeout=WAIT)
    assert await page.locator("#list-more").count() == 0
    assert await page.locator(f"#row-{order[60]}.active").count() == 1
    await page.keyboard.press("k")
    await page.wait_for_selector(f"#conversation[data-id='{order[59]}']", timeout=WAIT)
    ids_shown = await page.eval_on_selector_all("#list .row", "rs => rs.map(r => Number(r.dataset.id))")
    assert ids_shown == order  # once each, in order
    assert await page.evaluate("window.__marker") == 1  # j opened the appended row in place

    # a fresh page: scrolling the list to its end loads the rest by itself
    await page.goto(sqlite_server.url + "/?view=all")
    await page.wait_for_function("() => document.body.dataset.live === 'on'", timeout=WAIT)
    assert await rows.count() == 60
    await page.locator("#list-more").scroll_into_view_if_needed()
    await page.wait_for_function("() => document.querySelectorAll('#list .row').length === 75", timeout=WAIT)

    # a customer writes: the live refresh puts them on top and keeps every row loaded so far
    newcomer = await inbound(sqlite_server.services, ids["channel"], "hello from the top", email="top@example.com")
    await page.locator(f"#list .row:first-child#row-{newcomer}").wait_for(timeout=WAIT)
    await page.wait_for_function("() => document.querySelectorAll('#list .row').length === 76", timeout=WAIT)
    assert page.errors == []  # type: ignore[attr-defined]
