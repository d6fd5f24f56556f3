"""A PBX call in the desk, in real headless Chromium: the PBX says Alice answered; her desk pops the
caller (unverified), opens their conversation, and the timeline shows the call as it ends."""

from __future__ import annotations

import httpx

from tests.browser.test_desk_live import WAIT, open_desk
from tests.conftest import seed_basics
from threadline.actions import channels as channel_actions

TOKEN = "pbx-token-0123456789abcdefghij"


async def test_the_answering_agent_gets_a_screen_pop_and_the_call_in_the_timeline(sqlite_server, browser) -> None:
    ids = await seed_basics(sqlite_server.services)
    async with sqlite_server.services.db.transaction() as s:
        row = await channel_actions.create_channel(s, sqlite_server.services.box, kind="pbx", name="PBX",
                                                   default_queue_id=ids["general"], config={"token": TOKEN})
    page = await open_desk(browser, sqlite_server, "alice@example.com", path="/")
    hook = f"{sqlite_server.url}/hooks/{row.key}/cti"
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as pbx:
        for event in ({"event": "newCall", "callId": "c-1", "from": "+39 06 1234 5678", "to": "200"},
                      {"event": "answer", "callId": "c-1", "user": "alice@example.com"}):
            assert (await pbx.post(hook, json={"direction": "in", **event})).status_code == 200
        pop = page.locator("#call-pop")
        await pop.wait_for(timeout=WAIT)
        assert "+390612345678" in await pop.inner_text() and "unverified" in await pop.inner_text()
        await page.wait_for_url("**/conversations/*", timeout=WAIT)  # nothing was open: the pop opened it
        await page.locator("#timeline .msg", has_text="Incoming call from +390612345678").wait_for(timeout=WAIT)
        assert (await pbx.post(hook, json={"event": "hangup", "callId": "c-1", "direction": "in",
                                           "cause": "normalClearing"})).status_code == 200
        await page.locator("#timeline .msg", has_text="answered by Alice").wait_for(timeout=WAIT)
        await page.locator("#call-pop").wait_for(state="detached", timeout=WAIT)
    assert page.errors == []  # type: ignore[attr-defined]
