"""The flow builder in real headless Chromium: an admin creates a flow and builds a menu that sends
callers to two queues by clicking (type select, add option, add node, target selects), saves it, and sees
version 1 and the outline. No JSON typed anywhere."""

from __future__ import annotations

from tests.browser.conftest import SCREENSHOTS
from tests.browser.test_desk_live import WAIT, open_desk
from tests.conftest import seed_basics


async def test_build_a_menu_to_two_queues_by_clicking(sqlite_server, browser) -> None:
    ids = await seed_basics(sqlite_server.services)
    page = await open_desk(browser, sqlite_server, "admin@example.com")
    await page.goto(sqlite_server.url + "/admin/flows")
    await page.fill("#fl-name", "Main line")
    await page.fill("#fl-locales", "en, es")
    await page.click("#new-flow button.primary")
    await page.wait_for_selector('[name="n0.text.es"]', timeout=WAIT)

    # The greeting becomes the menu: the card redraws with a prompt and an option row
    await page.fill('[name="n0.text.en"]', "Sales press 1, billing press 2.")
    await page.select_option('[name="n0.type"]', "menu")
    await page.wait_for_selector('[name="n0.o0.key"]', timeout=WAIT)
    assert await page.input_value('[name="n0.prompt.en"]') == "Sales press 1, billing press 2."
    await page.fill('[name="n0.prompt.es"]', "Ventas 1, facturación 2.")
    await page.fill('[name="n0.o0.label.en"]', "Sales")
    await page.fill('[name="n0.o0.label.es"]', "Ventas")
    await page.click('button[value="add_option:0"]')
    await page.wait_for_selector('[name="n0.o1.key"]', timeout=WAIT)
    assert await page.input_value('[name="n0.o1.key"]') == "2"
    await page.fill('[name="n0.o1.label.en"]', "Billing")
    await page.fill('[name="n0.o1.label.es"]', "Facturación")

    for nid in ("sales", "billing"):
        await page.select_option("#flow-new-type", "queue")
        await page.fill("#flow-new-id", nid)
        await page.click("#flow-add-node")
        await page.wait_for_selector(f"#node-{nid}", timeout=WAIT)
    await page.select_option('[name="n2.queue_id"]', str(ids["billing"]))
    await page.select_option('[name="n0.o0.next"]', "sales")
    await page.select_option('[name="n0.o1.next"]', "billing")

    # Saved without a way out of "no match": refused, the reason on the menu's card
    await page.click("#flow-save")
    await page.locator("#node-welcome .flow-problems", has_text="no_match").wait_for(timeout=WAIT)
    assert await page.input_value('[name="n0.o1.label.es"]') == "Facturación"  # nothing typed was lost
    await page.select_option('[name="n0.no_match"]', "welcome")
    await page.click("#flow-save")
    await page.locator(".ok", has_text="Version 1 saved").wait_for(timeout=WAIT)

    assert "version 1 is live" in await page.inner_text(".admin-head")
    assert "v1" in await page.inner_text("#flow-versions")
    outline = await page.inner_text("#flow-outline")
    assert "1. welcome: menu 'Sales press 1, billing press 2.'" in outline
    assert "1 Sales → 2. sales: queue general" in outline
    assert "2 Billing → 3. billing: queue billing" in outline
    assert "no match → ↩ back to 1. welcome" in outline
    assert page.errors == []  # type: ignore[attr-defined]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / "ivr-builder.png"), full_page=False)
    await page.context.close()
