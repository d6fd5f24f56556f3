"""Calls in the desk, in real headless Chromium against FakeTwilio: the agent on a call sees the call bar
and puts the caller on hold from it; after the call, the wrap-up form saves a disposition into the
timeline. The softphone: a token from Threadline, the vendored SDK's Device (replaced by a stub that
rings, as Twilio would, through Playwright's routing) and accept / hang up."""

from __future__ import annotations

import httpx
import websockets

from tests.browser.conftest import SCREENSHOTS
from tests.browser.test_desk_live import WAIT, open_desk
from tests.conftest import seed_basics
from tests.routing.test_api import token_for
from tests.voice.fake_twilio import FakeTwilio
from tests.voice.test_twilio_calls import NUMBER, SID, TOKEN, connected_call, voice_channel

STUB_SDK = """
window.Twilio = { Device: function (token, opts) {
  var handlers = {}; var self = this; window.__tl = { token: token, accepted: false, hung: false, digits: "" };
  this.on = function (name, fn) { handlers[name] = fn; };
  this.register = function () { setTimeout(function () {
    var call = { parameters: { From: "+34600111222" }, h: {},
      on: function (n, fn) { this.h[n] = fn; }, accept: function () { window.__tl.accepted = true; },
      reject: function () {}, mute: function () {}, isMuted: function () { return false; },
      sendDigits: function (d) { window.__tl.digits += d; },
      disconnect: function () { window.__tl.hung = true; if (this.h.disconnect) this.h.disconnect(); } };
    handlers.incoming(call);
  }, 50); };
  this.updateToken = function () {};
} };
"""


async def test_the_call_bar_holds_the_caller_and_the_wrap_up_saves_a_disposition(sqlite_server, browser) -> None:
    server = sqlite_server
    ids = await seed_basics(server.services)
    token = await token_for(server, "alice@example.com")
    async with FakeTwilio(account_sid=SID, auth_token=TOKEN) as tw, \
            httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as alice, \
            websockets.connect(f"{server.ws_url}/api/v1/stream?token={token}") as ws:
        call, row = await connected_call(server, ids, tw, alice, ws)
        page = await open_desk(browser, server, "alice@example.com", path=f"/conversations/{row.conversation_id}")
        bar = page.locator("#call-bar")
        await bar.get_by_text("On the call").wait_for(timeout=WAIT)
        await bar.get_by_role("button", name="Hold").click()
        conf = tw.conference(call.conference)
        await call.wait_for(lambda c: conf.participants[c.sid].hold)
        await bar.get_by_role("button", name="Resume").wait_for(timeout=WAIT)  # redrawn on call.changed
        await bar.get_by_role("button", name="Transfer…").click()
        await bar.locator(".call-transfer").wait_for(timeout=WAIT)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SCREENSHOTS / "voice-call-bar.png"))
        await call.hangup()
        await page.locator("#call-bar .call-wrapup").wait_for(timeout=WAIT)
        await page.fill("#call-bar .call-wrapup input[aria-label=Disposition]", "order-status")
        await page.fill("#call-bar .call-wrapup input[aria-label=Notes]", "parcel found")
        await page.click("#call-bar .call-wrapup button[type=submit]")
        await page.locator("#timeline li", has_text="Call disposition: order-status — parcel found").wait_for(timeout=WAIT)
        await page.locator("#call-bar").wait_for(state="hidden", timeout=WAIT)
        assert page.errors == []  # type: ignore[attr-defined]


async def test_the_wrap_up_offers_the_queues_codes_and_the_bar_says_sensitive_actions_are_locked(sqlite_server,
                                                                                                   browser) -> None:
    from threadline.actions import users as user_actions

    server = sqlite_server
    ids = await seed_basics(server.services)
    async with server.services.db.transaction() as s:
        await user_actions.update_queue(s, ids["general"], settings={"voice": {
            "dispositions": ["resolved", "order-status", "escalated"], "verified_for_sensitive": True}})
    token = await token_for(server, "alice@example.com")
    async with FakeTwilio(account_sid=SID, auth_token=TOKEN) as tw, \
            httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as alice, \
            websockets.connect(f"{server.ws_url}/api/v1/stream?token={token}") as ws:
        call, row = await connected_call(server, ids, tw, alice, ws)
        page = await open_desk(browser, server, "alice@example.com", path=f"/conversations/{row.conversation_id}")
        bar = page.locator("#call-bar")
        await bar.get_by_text("On the call").wait_for(timeout=WAIT)
        await bar.get_by_text("Sensitive actions locked until verified").wait_for(timeout=WAIT)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SCREENSHOTS / "voice-call-bar-locked.png"))
        await call.hangup()
        select = page.locator("#call-bar .call-wrapup select[aria-label=Disposition]")
        await select.wait_for(timeout=WAIT)
        assert await page.locator("#call-bar .call-wrapup input[aria-label=Disposition]").count() == 0
        options = await select.locator("option").all_inner_texts()
        assert options == ["Disposition…", "resolved", "order-status", "escalated"]
        await select.select_option("order-status")
        await page.fill("#call-bar .call-wrapup input[aria-label=Notes]", "parcel found")
        await page.screenshot(path=str(SCREENSHOTS / "voice-wrap-up-codes.png"))
        await page.click("#call-bar .call-wrapup button[type=submit]")
        await page.locator("#timeline li", has_text="Call disposition: order-status — parcel found").wait_for(timeout=WAIT)
        await page.locator("#call-bar").wait_for(state="hidden", timeout=WAIT)
        assert page.errors == []  # type: ignore[attr-defined]


async def test_the_softphone_rings_in_the_desk_and_takes_the_call(sqlite_server, browser) -> None:
    server = sqlite_server
    ids = await seed_basics(server.services)
    async with FakeTwilio(account_sid=SID, auth_token=TOKEN) as tw:
        await voice_channel(server, ids, tw, api_key_sid="SK" + "b2" * 16, api_key_secret="api-key-secret-0123456789abcdefghijkl")
        context_page = await open_desk(browser, server, "alice@example.com", path="/")
        page = context_page
        await page.context.route("**/static/desk/vendor/twilio-voice-*.min.js",
                                 lambda route: route.fulfill(body=STUB_SDK, content_type="text/javascript"))
        await page.reload()
        phone = page.locator("#softphone")
        await phone.get_by_text("Incoming call · +34600111222").wait_for(timeout=WAIT)
        token = await page.evaluate("window.__tl.token")
        assert token.count(".") == 2  # a JWT minted by Threadline for agent-{id}
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SCREENSHOTS / "voice-softphone.png"))
        await phone.get_by_role("button", name="Accept").click()
        assert await page.evaluate("window.__tl.accepted") is True
        await phone.get_by_role("button", name="5").click()
        await phone.get_by_role("button", name="Hang up").click()
        assert await page.evaluate("window.__tl.digits") == "5" and await page.evaluate("window.__tl.hung")
        await phone.wait_for(state="hidden", timeout=WAIT)
        async with httpx.AsyncClient(base_url=server.url) as c:
            assert (await c.post("/api/v1/voice/token")).status_code == 401  # nobody signed in
        assert NUMBER and page.errors == []  # type: ignore[attr-defined]


async def test_a_supervisor_sees_the_call_in_the_live_view_and_whispers_to_the_agent(sqlite_server, browser) -> None:
    server = sqlite_server
    ids = await seed_basics(server.services)
    token = await token_for(server, "alice@example.com")
    async with FakeTwilio(account_sid=SID, auth_token=TOKEN) as tw, \
            httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as alice, \
            websockets.connect(f"{server.ws_url}/api/v1/stream?token={token}") as ws:
        call, row = await connected_call(server, ids, tw, alice, ws)
        page = await open_desk(browser, server, "sup@example.com", path="/admin/live")
        calls = page.locator("#live-calls")
        await calls.get_by_text("+34600111222").wait_for(timeout=WAIT)
        assert "Alice" in await calls.inner_text()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SCREENSHOTS / "voice-live-view.png"), full_page=True)
        await calls.get_by_role("button", name="Whisper").click()
        leg = await tw.outbound_call(to=f"client:agent-{ids['sup']}")
        await tw.answer(leg)
        conf = tw.conference(call.conference)
        await call.wait_for(lambda c: any(p.label == f"supervisor-{ids['sup']}" and p.coaching
                                          for p in conf.participants.values()))
        await call.hangup()
        await calls.get_by_text("Calls in progress (0)").wait_for(timeout=WAIT)
        assert page.errors == []  # type: ignore[attr-defined]
