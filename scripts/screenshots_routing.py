"""Screenshots of routing in the desk: docs/screenshots/desk-queue.png (the Queue view, a wrap-up) and
admin-live.png (the live view with a day of sample outcomes). Reuses scripts/screenshots.py:
`.venv/bin/python scripts/screenshots_routing.py`."""
import asyncio, socket, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import screenshots as shots  # noqa: E402
import uvicorn  # noqa: E402
from sqlalchemy import select  # noqa: E402

from threadline.actions import conversations as conv_actions  # noqa: E402
from threadline.actions import messages as message_actions  # noqa: E402
from threadline.config import Settings  # noqa: E402
from threadline.db.migrate import upgrade  # noqa: E402
from threadline.db.models import RoutingTaskRow  # noqa: E402
from threadline.db.repos import channels as channels_repo  # noqa: E402
from threadline.db.repos import users as users_repo  # noqa: E402
from threadline.demo import DEMO_PASSWORD, seed  # noqa: E402
from threadline.domain.contacts import normalise_identity  # noqa: E402
from threadline.domain.messages import InboundMessage, Sender  # noqa: E402
from threadline.web.app import create_app  # noqa: E402

WAITING = [
    ("Elena Petrova", "elena@example.bg", "Where is my refund? It has been two weeks.", "urgent"),
    ("Marcus Lee", "marcus.lee@example.com", "Can I change the delivery address of order #5521?", None),
    ("Sofia Costa", "sofia@example.pt", "The discount code SPRING24 does not work at checkout.", None),
    ("Daniel Okafor", "daniel.o@example.ng", "Do you ship to Lagos?", "high"),
]


async def main() -> None:
    from playwright.async_api import async_playwright

    tmp = Path(tempfile.mkdtemp(prefix="tl-shot-queue-"))
    url = f"sqlite+aiosqlite:///{tmp / 'threadline.db'}"
    await asyncio.to_thread(upgrade, url)
    sock = socket.socket(); sock.bind(("127.0.0.1", 0)); port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    settings = Settings(database_url=url, data_dir=tmp, secret_key="screenshots-secret-key-0123456789",
                        public_base_url=base, log_level="warning")
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws="websockets-sansio"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.05)
    try:
        services = app.state.services
        await seed(services)
        showcase = await shots.enrich(services)
        from threadline.actions import routing as routing_actions
        from threadline.actions import users as user_actions
        from threadline.actions.permissions import Actor
        from threadline.domain.users import Role
        async with services.db.transaction(write=True) as s:  # two colleagues on, one slot each
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
                msg = await message_actions.receive_inbound(s, channel, InboundMessage(
                    provider_id=f"q-{i}", sender=Sender(identities=(normalise_identity("email", email),), name=name),
                    text=text))
                if prio:
                    await conv_actions.update_conversation(s, None, msg.conversation_id, priority=prio)
                if name.startswith("Daniel"):
                    await conv_actions.update_conversation(s, None, msg.conversation_id, queue_id=queues["billing"])
                await asyncio.sleep(0.7)
        await asyncio.sleep(4)  # the router enqueues, then writes positions and wait estimates
        now = time.time()
        async with services.db.transaction(write=True) as s:  # Alice is wrapping up a resolved conversation
            s.add(RoutingTaskRow(conversation_id=showcase, queue_id=queues["general"], channel="messaging",
                                 status="wrapping", agent_id=alice.id, enqueued_at=now - 400, updated_at=now, note="",
                                 task={"id": showcase, "channel": "messaging", "queue_id": queues["general"],
                                       "enqueued_at": now - 400, "status": "wrapping", "agent_id": alice.id,
                                       "wrap_until": now + 45}) if (await s.get(RoutingTaskRow, showcase)) is None
                  else await s.get(RoutingTaskRow, showcase))
        from threadline.db.repos import routing as routing_repo
        import random
        rnd = random.Random(7)
        rows = []
        for qname, n, slow in (("general", 38, 0.25), ("billing", 14, 0.05), ("soporte-es", 9, 0.4)):
            for k in range(n):
                w = rnd.uniform(60, 240) if rnd.random() < slow else rnd.uniform(3, 50)
                at = now - rnd.uniform(600, 20000)
                rows.append({"conversation_id": showcase, "queue_id": queues[qname], "channel": "messaging",
                             "agent_id": alice.id, "kind": "answered", "enqueued_at": at - w, "at": at,
                             "wait_seconds": w, "handle_seconds": None, "within_target": w <= 60})
                rows.append({"conversation_id": showcase, "queue_id": queues[qname], "channel": "messaging",
                             "agent_id": alice.id, "kind": "handled", "enqueued_at": None, "at": at + 300,
                             "wait_seconds": None, "handle_seconds": rnd.uniform(240, 720), "within_target": None})
        async with services.db.transaction(write=True) as s:
            await routing_repo.insert_outcomes(s, rows)
        async with services.db.transaction(write=False) as s:
            for r in (await s.execute(select(RoutingTaskRow))).scalars():
                print(r.conversation_id, r.queue_id, r.status, r.position, r.ewt_seconds, repr(r.note))
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=shots.CHROMIUM, headless=True,
                                               args=["--no-sandbox", "--disable-gpu"])
            page = await browser.new_page(viewport={"width": 1480, "height": 900}, device_scale_factor=1)
            await page.goto(base + "/login")
            await page.fill("#email", "alice@demo.threadline.dev")
            await page.fill("#password", DEMO_PASSWORD)
            await page.click("button[type=submit]")
            await page.wait_for_url(base + "/")
            await page.goto(base + "/?view=waiting")
            await page.wait_for_selector("#list .qrow")
            await page.click("#list .qrow:nth-of-type(1) a.qrow-link")
            await page.wait_for_selector("#timeline .msg")
            await page.wait_for_timeout(1500)
            await page.screenshot(path=str(shots.OUT / "desk-queue.png"))
            await page.keyboard.press("?")
            await page.screenshot(path=str(tmp / "desk-help.png"))
            await page.keyboard.press("Escape")
            await page.context.clear_cookies()
            await page.goto(base + "/login")
            await page.fill("#email", "supervisor@demo.threadline.dev")
            await page.fill("#password", DEMO_PASSWORD)
            await page.click("button[type=submit]")
            await page.wait_for_url(base + "/")
            await page.set_viewport_size({"width": 1300, "height": 850})
            await page.goto(base + "/admin/live")
            await page.wait_for_function("document.body.dataset.live === 'on'")
            await page.wait_for_timeout(1200)
            await page.screenshot(path=str(shots.OUT / "admin-live.png"))
            await browser.close()
        print("extra in", tmp)
    finally:
        server.should_exit = True
        await task


asyncio.run(main())
