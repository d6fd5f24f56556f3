"""Take the routing screenshots in docs/screenshots/: desk-queue.png (the Queue view, a wrap-up running)
and admin-live.png (the supervisors' live view, with a day of sample outcomes for today's figures).

    .venv/bin/python scripts/screenshots_routing.py

Reuses scripts/screenshots.py: the same throw-away server, demo workspace and Chromium.
"""

from __future__ import annotations

import asyncio
import random
import time

from screenshots import CHROMIUM, OUT, enrich, login, serving

from threadline.actions import conversations as conv_actions
from threadline.actions import inbound as inbound_actions
from threadline.actions import routing as routing_actions
from threadline.actions import users as user_actions
from threadline.actions.permissions import Actor
from threadline.db.models import RoutingTaskRow
from threadline.db.repos import channels as channels_repo
from threadline.db.repos import routing as routing_repo
from threadline.db.repos import users as users_repo
from threadline.domain.contacts import normalise_identity
from threadline.domain.messages import InboundMessage, Sender
from threadline.domain.routing.records import Outcome, instant
from threadline.domain.users import Role

WAITING = [
    ("Elena Petrova", "elena@example.bg", "Where is my refund? It has been two weeks.", "urgent"),
    ("Marcus Lee", "marcus.lee@example.com", "Can I change the delivery address of order #5521?", None),
    ("Sofia Costa", "sofia@example.pt", "The discount code SPRING24 does not work at checkout.", None),
    ("Daniel Okafor", "daniel.o@example.ng", "Do you ship to Lagos?", "high"),
]
# queue name, answered today, share answered after the 60 s target
SAMPLE_DAY = [("general", 38, 0.25), ("billing", 14, 0.05), ("soporte-es", 9, 0.4)]


async def stage(services, showcase: int) -> None:  # type: ignore[no-untyped-def]
    """Two colleagues on with one slot each, four customers waiting, Alice in wrap-up, a day of outcomes."""
    async with services.db.transaction(write=True) as s:
        sup = await users_repo.get_user_by_email(s, "supervisor@demo.threadline.dev")
        for email in ("carmen@demo.threadline.dev", "bruno@demo.threadline.dev"):
            u = await users_repo.get_user_by_email(s, email)
            await routing_actions.set_agent_profile(s, Actor(sup.id, Role.SUPERVISOR), u.id,
                                                    capacity={"messaging": 1})
            await user_actions.set_presence(s, u.id, "available")
    async with services.db.transaction(write=True) as s:
        channel = next(c for c in await channels_repo.list_channels(s) if c.kind == "api")
        queues = {q.name: q.id for q in await users_repo.list_queues(s)}
        alice = await users_repo.get_user_by_email(s, "alice@demo.threadline.dev")
    for i, (name, email, text, prio) in enumerate(WAITING):
        async with services.db.transaction(write=True) as s:
            msg = await inbound_actions.receive_inbound(s, channel, InboundMessage(
                provider_id=f"q-{i}", sender=Sender(identities=(normalise_identity("email", email),), name=name),
                text=text))
            if prio:
                await conv_actions.update_conversation(s, None, msg.conversation_id, priority=prio)
            if name.startswith("Daniel"):
                await conv_actions.update_conversation(s, None, msg.conversation_id, queue_id=queues["billing"])
        await asyncio.sleep(0.7)  # distinct waits on the screenshot
    await asyncio.sleep(4)  # the router enqueues, then writes positions and wait estimates
    now = time.time()
    async with services.db.transaction(write=True) as s:
        if await s.get(RoutingTaskRow, showcase) is None:  # Alice is wrapping up a resolved conversation
            s.add(RoutingTaskRow(conversation_id=showcase, queue_id=queues["general"], channel="messaging",
                                 status="wrapping", agent_id=alice.id, enqueued_at=now - 400, updated_at=now,
                                 note="", task={"id": showcase, "channel": "messaging", "queue_id": queues["general"],
                                                "enqueued_at": now - 400, "status": "wrapping",
                                                "agent_id": alice.id, "wrap_until": now + 45}))
        rnd = random.Random(7)
        rows = []
        for qname, answered, slow in SAMPLE_DAY:
            for _ in range(answered):
                wait = rnd.uniform(60, 240) if rnd.random() < slow else rnd.uniform(3, 50)
                at = now - rnd.uniform(600, 20000)
                rows.append(Outcome(showcase, queues[qname], "messaging", alice.id, "answered", instant(at),
                                    instant(at - wait), wait, within_target=wait <= 60))
                rows.append(Outcome(showcase, queues[qname], "messaging", alice.id, "handled", instant(at + 300),
                                    handle_seconds=rnd.uniform(240, 720)))
        await routing_repo.insert_outcomes(s, rows)


async def main() -> None:
    from playwright.async_api import async_playwright

    async with serving() as (services, base, _):
        await stage(services, await enrich(services))
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                               args=["--no-sandbox", "--disable-gpu"])
            page = await browser.new_page(viewport={"width": 1480, "height": 900}, device_scale_factor=1)
            await login(page, base, "alice@demo.threadline.dev")
            await page.goto(base + "/?view=waiting")
            await page.wait_for_selector("#list .qrow")
            await page.click("#list .qrow:nth-of-type(1) a.qrow-link")
            await page.wait_for_selector("#timeline .msg")
            await page.wait_for_timeout(1500)
            await page.screenshot(path=str(OUT / "desk-queue.png"))
            await login(page, base, "supervisor@demo.threadline.dev")
            await page.set_viewport_size({"width": 1300, "height": 850})
            await page.goto(base + "/admin/live")
            await page.wait_for_function("() => document.body.dataset.live === 'on'")  # a function: the CSP forbids eval
            await page.wait_for_timeout(1200)
            await page.screenshot(path=str(OUT / "admin-live.png"))
            await browser.close()
    print(f"screenshots in {OUT}")


if __name__ == "__main__":
    asyncio.run(main())
