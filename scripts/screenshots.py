"""Take the desk screenshots in docs/screenshots/ (desk-inbox.png, desk-conversation.png, admin-channels.png).

    .venv/bin/python scripts/screenshots.py

Starts Threadline on a throw-away SQLite database with the demo workspace plus a few extra
conversations, then drives Debian's Chromium (/usr/bin/chromium) through Playwright.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import uvicorn

from threadline.actions import channels as channel_actions
from threadline.actions import conversations as conv_actions
from threadline.actions import inbound as inbound_actions
from threadline.actions import outbound as outbound_actions
from threadline.actions.permissions import Actor
from threadline.config import Settings
from threadline.db.migrate import upgrade
from threadline.db.repos import channels as channels_repo
from threadline.db.repos import conversations as conv_repo
from threadline.db.repos import users as users_repo
from threadline.demo import DEMO_PASSWORD, seed
from threadline.domain.contacts import normalise_identity
from threadline.domain.messages import InboundMessage, Sender
from threadline.domain.users import Role
from threadline.web.app import create_app

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "screenshots"
CHROMIUM = os.environ.get("THREADLINE_TEST_CHROMIUM", "/usr/bin/chromium")
EXTRA = [
    ("Priya Natarajan", "priya@example.in", "Can I change the billing email on my account? The invoices go to my old job."),
    ("Tom Becker", "tom.becker@example.de", "The app crashes when I upload a PDF bigger than 5 MB."),
    ("Aiko Tanaka", "aiko@example.jp", "Thanks, the refund arrived!"),
    ("Noah Williams", "noah@example.com", "<script>alert('hi')</script> is this shown as text?"),
]


async def enrich(services) -> int:  # type: ignore[no-untyped-def]
    """A few more conversations, a reply, a note and canned responses; returns the showcase conversation."""
    async with services.db.transaction(write=True) as s:
        admin = await users_repo.get_user_by_email(s, "admin@demo.threadline.dev")
        alice = await users_repo.get_user_by_email(s, "alice@demo.threadline.dev")
        assert admin and alice
        channels = await channels_repo.list_channels(s)
        channel = next(c for c in channels if c.kind == "api")
        if not any(c.kind == "webchat" for c in channels):
            await channel_actions.create_channel(s, services.box, kind="webchat", name="Website chat",
                                                 config={"allowed_origins": ["https://shop.example.com"]},
                                                 default_queue_id=channel.default_queue_id)
        a_alice = Actor(user_id=alice.id, role=Role.SUPERVISOR, name=alice.name)
        # Priya had an earlier conversation, resolved and rated: the sidebar shows history and CSAT
        old = await inbound_actions.receive_inbound(s, channel, InboundMessage(
            provider_id="shot-old", sender=Sender(identities=(normalise_identity("email", EXTRA[0][1]),),
                                                  name=EXTRA[0][0]), text="How do I download last year's invoices?"))
        assert old is not None
        await outbound_actions.send_reply(s, a_alice, old.conversation_id, "Under Billing > History > Export.")
        await conv_actions.update_conversation(s, a_alice, old.conversation_id, status="resolved")
        from threadline.actions import csat as csat_actions

        await csat_actions.submit_csat(s, conversation_id=old.conversation_id, contact_id=(await conv_repo.get_conversation(s, old.conversation_id)).contact_id,
                                       rating=5, comment="Quick and clear, thanks!")
        first = None
        for i, (name, email, text) in enumerate(EXTRA):
            msg = await inbound_actions.receive_inbound(s, channel, InboundMessage(
                provider_id=f"shot-{i}", sender=Sender(identities=(normalise_identity("email", email),), name=name),
                text=text))
            assert msg is not None
            first = first or msg.conversation_id
        assert first is not None
        await conv_actions.update_conversation(s, a_alice, first, assignee_id=alice.id, labels=["account"],
                                               priority="high")
        await conv_actions.add_note(s, a_alice, first, "Checked: the old address bounces. Billing can change it.")
        await outbound_actions.send_reply(s, a_alice, first, "Hi Priya! Yes - I can update it for you. "
                                          "Which address should the invoices go to?")
    async with services.db.transaction(write=True) as s:
        await inbound_actions.receive_inbound(s, channel, InboundMessage(
            provider_id="shot-follow", sender=Sender(identities=(normalise_identity("email", EXTRA[0][1]),),
                                                     name=EXTRA[0][0]), text="priya.n@newmail.example, thank you!"))
    return first


@contextlib.asynccontextmanager
async def serving(**settings: Any) -> AsyncIterator[tuple[Any, str, Path]]:
    """Threadline on a throw-away SQLite database, migrated and seeded with the demo workspace:
    yields (services, base URL, temporary directory)."""
    tmp = Path(tempfile.mkdtemp(prefix="tl-shots-"))
    url = f"sqlite+aiosqlite:///{tmp / 'threadline.db'}"
    await asyncio.to_thread(upgrade, url)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    app = create_app(Settings(database_url=url, data_dir=tmp, secret_key="screenshots-secret-key-0123456789",
                              public_base_url=base, log_level="warning", **settings))  # type: ignore[call-arg]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws="websockets-sansio"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event
        await asyncio.sleep(0.05)
    try:
        await seed(app.state.services)
        yield app.state.services, base, tmp
    finally:
        server.should_exit = True
        await task


async def login(page: Any, base: str, email: str) -> None:
    """Log in on the desk's login page as a demo user (logging out whoever was in)."""
    await page.context.clear_cookies()
    await page.goto(base + "/login")
    await page.fill("#email", email)
    await page.fill("#password", DEMO_PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(base + "/")


async def main() -> None:
    from playwright.async_api import async_playwright

    async with serving() as (services, base, tmp):
        showcase = await enrich(services)
        OUT.mkdir(parents=True, exist_ok=True)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                               args=["--no-sandbox", "--disable-gpu"])
            page = await browser.new_page(viewport={"width": 1480, "height": 900}, device_scale_factor=1)
            await page.goto(base + "/login")
            await page.screenshot(path=str(tmp / "login.png"))
            await login(page, base, "alice@demo.threadline.dev")
            await page.goto(base + "/?view=all")
            await page.wait_for_selector("#list .row")
            await page.screenshot(path=str(OUT / "desk-inbox.png"))
            await page.click(f"#row-{showcase}")
            await page.wait_for_selector("#timeline .msg")
            await page.wait_for_timeout(300)
            await page.screenshot(path=str(OUT / "desk-conversation.png"))
            await page.click("summary:has-text('Transfer')")
            await page.screenshot(path=str(tmp / "desk-transfer.png"))
            await page.keyboard.press("Escape")
            await page.click("#composer-text")
            await page.keyboard.type("/")
            await page.screenshot(path=str(tmp / "desk-canned.png"))
            await page.keyboard.press("Escape")
            await page.keyboard.press("Escape")
            await page.keyboard.press("?")
            await page.screenshot(path=str(tmp / "desk-help.png"))
            await page.keyboard.press("Escape")
            await login(page, base, "admin@demo.threadline.dev")
            await page.goto(base + "/admin/channels?kind=webchat")
            await page.screenshot(path=str(OUT / "admin-channels.png"), full_page=True)
            for extra in ("users", "canned"):
                await page.goto(base + f"/admin/{extra}")
                await page.screenshot(path=str(tmp / f"admin-{extra}.png"), full_page=True)
            await browser.close()
        print(f"screenshots in {OUT} (extra admin pages in {tmp})")


if __name__ == "__main__":
    asyncio.run(main())
