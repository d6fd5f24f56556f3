"""The agent desk in a real browser: log in, see the inbox."""

from __future__ import annotations

from tests.conftest import PASSWORD, seed_basics


async def test_an_agent_logs_in_and_sees_the_inbox(sqlite_server, browser) -> None:
    await seed_basics(sqlite_server.services)
    page = await browser.new_page()
    await page.goto(sqlite_server.url + "/login")
    await page.fill("input[name=email]", "alice@example.com")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(sqlite_server.url + "/")
    assert "Alice" in await page.content()
