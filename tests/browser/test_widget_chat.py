"""The web chat widget in real headless Chromium, embedded with its snippet in a page of another site
(another origin), against a real Threadline server: a visitor writes, the agent side receives it, the
visitor sees their place in the queue while nobody has taken it, the agent's typing and reply show up
(and the queue notice goes), a reload keeps the history, a network drop loses and doubles nothing,
CSAT is recorded; HTML stays text; a foreign site is refused; attachments and floods are limited.
Screenshots of the widget go to docs/screenshots/widget-*.png."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import httpx
import websockets
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from tests.browser.conftest import SCREENSHOTS
from tests.conftest import PASSWORD, run_server, seed_basics
from threadline.actions import channels as channel_actions
from threadline.actions import users as user_actions

W = "#threadline-chat"  # the widget's host element; Playwright's CSS selectors pierce its open shadow root
PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Shop</title>
<style>body{{font:16px Georgia,serif;background:#faf6f0;margin:0;padding:40px}} h1{{color:#2b2118}}
/* hostile page CSS must not leak into the widget */ button,div,textarea{{all:unset!important}}</style></head>
<body><h1>Northwind Coffee</h1><p>Fresh roasted, delivered every week.</p>
<script src="{base}/widget.js" data-channel="{key}" async></script></body></html>"""


@contextlib.asynccontextmanager
async def host_site(server, ids: dict[str, int], **config: object) -> AsyncIterator[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """A customer's website on another origin embedding the snippet; yields (page URL, channel key)."""
    state: dict[str, str] = {}

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(PAGE.format(base=server.url, key=state["key"]))

    async with run_server(Starlette(routes=[Route("/", page)])) as site:
        cfg = {"allowed_origins": [site.url], "prechat_fields": ["name", "email", "topic"],
               "prechat_required": ["name"], "title": "Northwind Coffee", "colour": "#7c3aed",
               "greeting": "Hi there! Questions about an order or our coffee? We're here to help.",
               "topics": [{"label": "Orders & delivery", "queue_id": ids["general"]},
                          {"label": "Billing", "queue_id": ids["billing"]}], **config}
        async with server.services.db.transaction() as s:
            row = await channel_actions.create_channel(s, server.services.box, kind="webchat", name="Chat",
                                                       default_queue_id=ids["general"], config=cfg)
            await user_actions.set_presence(s, ids["alice"], "available")
        state["key"] = row.key
        yield site.url + "/", row.key


async def agent(server) -> httpx.AsyncClient:  # type: ignore[no-untyped-def]
    c = httpx.AsyncClient(base_url=server.url)
    r = await c.post("/api/v1/auth/login", json={"email": "alice@example.com", "password": PASSWORD})
    c.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    return c


async def next_event(ws, name: str, timeout: float = 10.0, **match: object) -> dict:  # type: ignore[no-untyped-def]
    """The next event of the agent's stream with this name whose data has these values (a.b for nested)."""
    async with asyncio.timeout(timeout):
        while True:
            msg = json.loads(await ws.recv())
            if msg["name"] != name:
                continue
            ok = True
            for path, want in match.items():
                value = msg["data"]
                for part in path.split("__"):
                    value = value.get(part) if isinstance(value, dict) else None
                ok = ok and value == want
            if ok:
                return msg


async def visitor_messages(alice: httpx.AsyncClient, conv_id: int) -> list[str]:
    items = (await alice.get(f"/api/v1/conversations/{conv_id}/messages")).json()["items"]
    return [m["text"] for m in items if m["direction"] == "in"]


async def test_a_visitor_and_an_agent_talk_live_through_drops_and_reloads(sqlite_server, browser) -> None:
    server = sqlite_server
    ids = await seed_basics(server.services)
    alice = await agent(server)
    token = (await alice.post("/api/v1/tokens", json={"name": "stream"})).json()["token"]
    async with host_site(server, ids) as (url, _key):
        context = await browser.new_context(viewport={"width": 1100, "height": 760}, locale="en-US")
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        await page.goto(url)
        await page.wait_for_selector(f"{W} .tl-bubble")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SCREENSHOTS / "widget-closed.png"))

        await page.click(f"{W} .tl-bubble")
        await page.fill(f"{W} input[name=name]", "Vera Visitor")
        await page.fill(f"{W} input[name=email]", "vera@example.com")
        await page.select_option(f"{W} select[name=topic]", "Orders & delivery")
        await page.click(f"{W} .tl-prechat button[type=submit]")
        async with server.services.db.transaction() as s:  # nobody can take it now: the chat waits in the queue
            await user_actions.set_presence(s, ids["alice"], "offline")
        hostile = "<b>bold?</b> <script>window.pwned=1</script> my order is late"
        stream = await websockets.connect(f"{server.ws_url}/api/v1/stream?token={token}")
        assert json.loads(await stream.recv())["name"] == "stream.ready"
        await page.fill(f"{W} textarea", hostile)
        await page.press(f"{W} textarea", "Enter")
        created = await next_event(stream, "message.created")  # the agent side has it
        assert created["data"]["message"]["text"] == hostile
        conv_id = created["data"]["message"]["conversation_id"]
        conv = (await alice.get(f"/api/v1/conversations/{conv_id}")).json()
        assert conv["queue_id"] == ids["general"] and conv["contact_name"] == "Vera Visitor"
        mine = page.locator(f"{W} .tl-me .tl-msg").last
        await mine.wait_for()
        assert await mine.text_content() == hostile  # shown as text, never as markup
        assert await page.locator(f"{W} .tl-me .tl-msg b").count() == 0
        assert await page.evaluate("window.pwned") is None

        # while it waits, the visitor sees their place in the queue (no estimate: nobody is available)
        wait = page.locator(f"{W} .tl-wait")
        await wait.filter(has_text="You're next in the queue").wait_for(state="visible")
        assert await page.locator(f"{W} [aria-live=polite] > .tl-wait").count() == 1  # announced politely
        assert "min" not in await wait.text_content()

        # the agent types, then replies: the visitor sees both, and the queue notice goes
        await alice.post(f"/api/v1/conversations/{conv_id}/typing", json={"typing": True})
        await page.wait_for_selector(f"{W} .tl-typing.tl-on")
        assert "Alice" in await page.locator(f"{W} .tl-typing").text_content()
        reply = (await alice.post(f"/api/v1/conversations/{conv_id}/messages",
                                  json={"text": "Sorry about that, Vera! Let me check your order."})).json()
        await page.wait_for_selector(f"{W} .tl-them .tl-msg >> text=Let me check your order")
        assert not await page.locator(f"{W} .tl-typing.tl-on").count()
        await wait.wait_for(state="hidden")
        async with server.services.db.transaction() as s:  # back at the desk (the widget shows "online" again)
            await user_actions.set_presence(s, ids["alice"], "available")
        await alice.post(f"/api/v1/conversations/{conv_id}/read", json={})
        await page.wait_for_selector(f"{W} .tl-me .tl-meta >> text=Seen")
        await page.screenshot(path=str(SCREENSHOTS / "widget-conversation.png"))

        # the panel is open and visible: the reply is marked read for the agent
        await next_event(stream, "message.status_changed", message_id=reply["id"], status="read")

        # a reload: the history is still there, in order, once
        await page.reload()
        await page.wait_for_selector(f"{W} .tl-them .tl-msg >> text=Let me check your order")
        texts = await page.locator(f"{W} .tl-body .tl-msg").all_text_contents()
        assert texts[1:] == [hostile, "Sorry about that, Vera! Let me check your order."]

        # a network drop: the agent answers and the visitor writes while offline; nothing lost or doubled
        await context.set_offline(True)
        await alice.post(f"/api/v1/conversations/{conv_id}/messages", json={"text": "Found it: it ships today."})
        await page.fill(f"{W} textarea", "Written while offline")
        await page.press(f"{W} textarea", "Enter")
        await page.wait_for_selector(f"{W} .tl-pending")
        await context.set_offline(False)
        await page.wait_for_selector(f"{W} .tl-them .tl-msg >> text=it ships today")
        await page.wait_for_selector(f"{W} .tl-pending", state="detached", timeout=20_000)
        await next_event(stream, "message.created", message__text="Written while offline")
        texts = await page.locator(f"{W} .tl-body .tl-msg").all_text_contents()
        assert texts.index("Found it: it ships today.") < texts.index("Written while offline")  # server order
        assert await page.locator(f"{W} .tl-msg >> text=it ships today").count() == 1
        assert await page.locator(f"{W} .tl-msg >> text=Written while offline").count() == 1
        assert (await visitor_messages(alice, conv_id)).count("Written while offline") == 1
        assert not await wait.is_visible()  # answered: the visitor's follow-up does not put them back in line

        # the agent resolves: the widget asks for a rating, which is recorded
        await alice.patch(f"/api/v1/conversations/{conv_id}", json={"status": "resolved"})
        await page.wait_for_selector(f"{W} .tl-csat")
        await page.click(f"{W} .tl-star[data-rating='4']")
        await page.fill(f"{W} .tl-csat textarea", "Fast and friendly")
        await page.screenshot(path=str(SCREENSHOTS / "widget-csat.png"))
        await page.click(f"{W} .tl-csat button[type=submit]")
        await page.wait_for_selector(f"{W} .tl-thanks")
        await next_event(stream, "csat.submitted", conversation_id=conv_id, rating=4)
        csat = (await alice.get(f"/api/v1/contacts/{conv['contact_id']}/csat")).json()["items"]
        assert [(c["rating"], c["comment"]) for c in csat] == [(4, "Fast and friendly")]
        assert errors == []
        await stream.close()
        await context.close()
    await alice.aclose()


async def test_a_site_not_in_the_allowed_origins_gets_no_widget(sqlite_server, browser) -> None:
    ids = await seed_basics(sqlite_server.services)
    async with host_site(sqlite_server, ids) as (url, _key):
        page = await browser.new_page()
        warnings: list[str] = []
        page.on("console", lambda m: warnings.append(m.text))
        # the same page under another host name is another origin, not in the channel's list
        async with page.expect_console_message(lambda m: "may not show this chat" in m.text):
            await page.goto(url.replace("127.0.0.1", "localhost"))
        assert await page.locator(W).count() == 0


async def test_attachments_are_limited_and_a_flood_is_throttled(sqlite_server, browser, tmp_path) -> None:
    ids = await seed_basics(sqlite_server.services)
    async with host_site(sqlite_server, ids, prechat_fields=[], max_attachment_bytes=2048,
                         messages_per_minute=4) as (url, _key):
        page = await browser.new_page(locale="it-IT")
        await page.goto(url)
        await page.click(f"{W} .tl-bubble")
        await page.wait_for_selector(f"{W} textarea[placeholder='Scrivi un messaggio…']")  # Italian browser
        notice = page.locator(f"{W} .tl-notice")
        file_input = page.locator(f"{W} input[type=file]")
        (tmp_path / "page.html").write_bytes(b"<h1>hi</h1>")
        await file_input.set_input_files(str(tmp_path / "page.html"))
        await notice.filter(has_text="Questo tipo di file").wait_for()
        (tmp_path / "big.png").write_bytes(b"\x89PNG" + b"0" * 5000)
        await file_input.set_input_files(str(tmp_path / "big.png"))
        await notice.filter(has_text="troppo grande").wait_for()
        (tmp_path / "ok.txt").write_bytes(b"order 1234")
        await file_input.set_input_files(str(tmp_path / "ok.txt"))
        await page.wait_for_selector(f"{W} .tl-me:not(.tl-pending) .tl-att >> text=ok.txt")

        for i in range(5):  # one upload + four texts: the limit is four messages a minute
            await page.fill(f"{W} textarea", f"message {i}")
            await page.press(f"{W} textarea", "Enter")
        await page.wait_for_selector(f"{W} .tl-failed")
        await notice.filter(has_text="too fast").wait_for()
        # another visitor is not affected
        other = await browser.new_page()
        await other.goto(url)
        await other.click(f"{W} .tl-bubble")
        await other.fill(f"{W} textarea", "hello from someone else")
        await other.press(f"{W} textarea", "Enter")
        await other.wait_for_selector(f"{W} .tl-me:not(.tl-pending):not(.tl-failed)")
