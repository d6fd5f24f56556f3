"""Verification by code in the widget (issue 12 item 12), in headless Chromium against a real server:
the visitor who typed an e-mail in the pre-chat form confirms it with the code mailed to it (caught by a
real SMTP sink), in the widget's language; a wrong code is refused in words, the right one confirms it."""

from __future__ import annotations

import asyncio
import re

from tests.browser.test_widget_chat import W, agent, host_site
from tests.channels.email.helpers import Sink
from tests.channels.email.test_smtp_flow import email_channel
from tests.conftest import seed_basics
from threadline.channels.webchat.verification import JOB

VERA = "vera@example.com"


async def test_a_visitor_confirms_their_email_with_a_code_in_the_widget(sqlite_server, browser) -> None:
    server = sqlite_server
    ids = await seed_basics(server.services)
    sink = Sink()
    async with sink.running():
        await email_channel(server.services, ids["general"], sink.port)
        sup = await agent(server)
        await sup.aclose()
        outcomes: asyncio.Queue[str] = asyncio.Queue()  # the mail leaves before the job commits its hash
        server.services.timers.listeners.append(
            lambda job, outcome: outcomes.put_nowait(outcome) if job.kind == JOB else None)
        async with host_site(server, ids) as (url, _key):
            context = await browser.new_context(locale="es-ES")
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(url)
            await page.click(f"{W} .tl-bubble")
            await page.fill(f"{W} input[name=name]", "Vera")
            await page.fill(f"{W} input[name=email]", VERA)
            await page.click(f"{W} .tl-prechat button[type=submit]")
            await page.fill(f"{W} textarea", "Hola, ¿dónde está mi pedido?")
            await page.keyboard.press("Enter")
            await page.locator(f"{W} .tl-msg >> text=dónde está mi pedido").wait_for()

            await page.click(f"{W} .tl-verify >> text=Confirma tu correo con un código")
            _, rcpts, mail = await sink.next()
            assert rcpts == [VERA] and mail["Subject"] == "Tu código de confirmación"
            code = re.search(r"\b(\d{6})\b", mail.get_body(("plain",)).get_content()).group(1)  # type: ignore[union-attr]
            assert await asyncio.wait_for(outcomes.get(), 10) == "done"
            await page.locator(f"{W} .tl-verify >> text=Hemos enviado un código de 6 cifras a {VERA}.").wait_for()
            wrong = f"{(int(code) + 1) % 1_000_000:06d}"
            await page.fill(f"{W} .tl-verify input[name=code]", wrong)
            await page.click(f"{W} .tl-verify button[type=submit]")
            await page.locator(f"{W} .tl-verify >> text=El código no es correcto. Inténtalo de nuevo.").wait_for()
            await page.fill(f"{W} .tl-verify input[name=code]", code)
            await page.click(f"{W} .tl-verify button[type=submit]")
            await page.locator(f"{W} .tl-sys >> text=¡Gracias! {VERA} está confirmado.").wait_for()
            assert await page.locator(f"{W} .tl-verify").count() == 0
            assert errors == []
            await context.close()
