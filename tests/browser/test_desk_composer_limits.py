"""The composer says a channel's limits before sending: SMS segments, and refusals such as an opt-out."""

from __future__ import annotations

from tests.browser.test_desk_live import WAIT, open_desk
from tests.channels.harness import twilio_config
from tests.conftest import seed_basics
from threadline.actions import channels as channel_actions
from threadline.actions import inbound as inbound_actions
from threadline.domain.contacts import normalise_identity
from threadline.domain.messages import InboundMessage, Sender
from threadline.domain.messaging import Consent


async def test_the_composer_counts_sms_segments_and_warns_before_sending_to_an_opted_out_number(
        sqlite_server, browser) -> None:
    svc = sqlite_server.services
    ids = await seed_basics(svc)
    phone = normalise_identity("phone", "+14155550100")
    async with svc.db.transaction() as s:
        sms = await channel_actions.create_channel(s, svc.box, kind="twilio", name="SMS line", config=twilio_config(),
                                                   default_queue_id=ids["general"])
        msg = await inbound_actions.receive_inbound(s, sms, InboundMessage("SM1", Sender((phone,), "Tom"), "hello?"))
    page = await open_desk(browser, sqlite_server, "alice@example.com", f"/conversations/{msg.conversation_id}")
    await page.fill("#composer-text", "x" * 170)  # more than one GSM-7 segment
    await page.wait_for_function(
        "() => document.getElementById('composer-limits').textContent.includes('2 SMS')", timeout=WAIT)
    assert "170/" in await page.text_content("#composer-limits")
    # The customer texts STOP: the composer says so before the agent sends anything.
    async with svc.db.transaction() as s:
        # what the Twilio adapter makes of a "STOP" text (tests/channels cover the parsing itself)
        await inbound_actions.receive_inbound(s, sms, InboundMessage("SM2", Sender((phone,), "Tom"), "STOP",
                                                                     consent=Consent.OPT_OUT))
    await page.fill("#composer-text", "one more thing")
    await page.wait_for_function(
        "() => document.getElementById('composer-limits').classList.contains('bad')", timeout=WAIT)
    assert "opted out" in (await page.text_content("#composer-limits")).lower()
    assert page.errors == []  # type: ignore[attr-defined]
