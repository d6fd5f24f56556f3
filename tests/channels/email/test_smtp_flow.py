"""End to end on loopback, SQLite and PostgreSQL: Python's smtplib sends to the embedded receiver, the mail
reaches the agent's stream with its attachments downloadable; an agent's reply goes out through a real
SMTP sink with headers a mail client threads; the customer's answer joins the conversation again; a bounce
fails the reply and flags the address; unknown recipients and oversized mails are refused by SMTP."""

from __future__ import annotations

import asyncio
import json
import smtplib
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
import websockets
from sqlalchemy import func, select

from tests.channels.email.helpers import Sink, self_signed
from tests.conftest import make_server, seed_basics
from tests.web.test_hooks_and_stream import next_event, token_for
from threadline.actions import channels as channel_actions
from threadline.db.models import InboxItemRow, MessageRow

FIXTURES = Path(__file__).parent / "fixtures"


def send(port: int, raw: bytes, to: str = "support@acme.test", mail_from: str = "customer@example.org") -> dict:
    raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")  # on the wire, lines end with CRLF
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        return client.sendmail(mail_from, [to], raw)


async def next_inbound(ws) -> dict:  # type: ignore[no-untyped-def]
    """The next customer message on the stream (activity lines such as "resolved" are skipped)."""
    while True:
        msg = (await next_event(ws, "message.created"))["data"]["message"]
        if msg["direction"] == "in":
            return msg


async def email_channel(services, general: int, sink_port: int, **extra: object) -> int:  # type: ignore[no-untyped-def]
    async with services.db.transaction() as s:
        row = await channel_actions.create_channel(
            s, services.box, kind="email", name="Support mail", default_queue_id=general,
            config={"address": "support@acme.test", "from_name": "{agent} at Acme", "signature": "Acme Support",
                    "smtp_host": "127.0.0.1", "smtp_port": sink_port, "smtp_security": "none", **extra})
    return row.id


async def test_mail_in_by_smtp_reply_out_threaded_and_bounces(db_url: str, tmp_path: Path) -> None:
    sink = Sink()
    async with sink.running(), await make_server(db_url, tmp_path, smtp_port=0, smtp_host="127.0.0.1",
                                                 smtp_max_message_bytes=300_000) as server:
        svc = server.services
        port = svc.integrations["email"].runtime.smtp.port
        assert port
        ids = await seed_basics(svc)
        await email_channel(svc, ids["general"], sink.port)
        alice = await token_for(server, "alice@example.com")
        async with websockets.connect(f"{server.ws_url}/api/v1/stream?token={alice}") as ws, \
                httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {alice}"}) as c:
            assert json.loads(await ws.recv())["name"] == "stream.ready"
            # 1. a customer's mail with an inline image and a PDF
            assert await asyncio.to_thread(send, port, (FIXTURES / "inline_image.eml").read_bytes(),
                                           mail_from="ana@cliente.example") == {}
            event = await next_inbound(ws)
            assert event["text"] == "The error is in the picture."
            assert event["meta"]["email"]["subject"] == "Screenshot of the error"
            [pdf] = event["attachments"]  # the inline screenshot is part of the body, not an attachment
            [image] = event["meta"]["email"]["inline"]
            assert (image["name"], pdf["name"]) == ("image.png", "invoice.pdf")
            assert f'src="{image["url"]}"' in event["meta"]["email"]["html"]  # the cid: now points at the file
            got = await c.get(image["url"])
            assert got.status_code == 200 and got.content.startswith(b"\x89PNG")
            conv_id = event["conversation_id"]
            original = await c.get(f"/api/v1/messages/{event['id']}/original")
            assert original.status_code == 200 and original.headers["content-type"] == "message/rfc822"
            sent_raw = (FIXTURES / "inline_image.eml").read_bytes()
            assert original.content.replace(b"\r\n", b"\n") == sent_raw.replace(b"\r\n", b"\n")

            # 2. the agent replies: the mail is threaded under the customer's
            r = await c.post(f"/api/v1/conversations/{conv_id}/messages",
                             json={"text": "Restart the router.", "attachments": [pdf]})
            assert r.status_code == 201, r.text
            mail_from, rcpts, mail = await sink.next()
            assert mail_from == "support@acme.test" and rcpts == ["ana@cliente.example"]
            assert mail["From"] == "Alice at Acme <support@acme.test>"
            assert mail["To"] == "ana@cliente.example"
            assert mail["Subject"] == "Re: Screenshot of the error"
            assert mail["In-Reply-To"] == "<inline-0001@cliente.example>"
            assert mail["References"] == "<inline-0001@cliente.example>"
            assert mail["Reply-To"] == f"Alice at Acme <support+c{conv_id}@acme.test>"
            assert mail.get_content_type() == "multipart/mixed"
            body, attached = mail.iter_parts()
            assert body.get_content_type() == "multipart/alternative"
            assert [p.get_content_type() for p in body.iter_parts()] == ["text/plain", "text/html"]
            assert (attached.get_filename(), attached.get_content()) == ("invoice.pdf", (await c.get(pdf["url"])).content)
            reply_id = mail["Message-ID"]
            status = await next_event(ws, "message.status_changed")
            assert status["data"]["status"] == "sent"
            msgs = (await c.get(f"/api/v1/conversations/{conv_id}/messages")).json()["items"]
            assert msgs[-1]["provider_id"] == reply_id

            # 3. resolved; the customer answers the reply: the same conversation opens again
            r = await c.patch(f"/api/v1/conversations/{conv_id}", json={"status": "resolved"})
            assert r.status_code == 200, r.text
            answer = EmailMessage()
            answer["From"] = "Ana Lima <ana@cliente.example>"
            answer["To"] = f"support+c{conv_id}@acme.test"
            answer["Subject"] = "Re: Screenshot of the error"
            answer["Message-ID"] = "<answer-1@cliente.example>"
            answer["In-Reply-To"] = reply_id
            answer["References"] = f"<inline-0001@cliente.example> {reply_id}"
            answer.set_content("Still broken.\n\nOn Tue, Alice wrote:\n> Restart the router.\n")
            await asyncio.to_thread(send, port, answer.as_bytes(), to=f"support+c{conv_id}@acme.test",
                                    mail_from="ana@cliente.example")
            event = await next_inbound(ws)
            assert (event["conversation_id"], event["text"]) == (conv_id, "Still broken.")
            conv = (await c.get(f"/api/v1/conversations/{conv_id}")).json()
            assert conv["status"] == "open"

            # 4. the same mail again (the sender retried after a lost 250): stored once
            await asyncio.to_thread(send, port, answer.as_bytes(), mail_from="ana@cliente.example")

            # 5. a bounce of our reply: the reply is failed and the address flagged on the contact
            bounce = (FIXTURES / "bounce.eml").read_bytes().replace(b"<tl.3.17.cccccccccccc@acme.test>",
                                                                    reply_id.encode())
            await asyncio.to_thread(send, port, bounce, mail_from="")
            failed = await next_event(ws, "message.status_changed")
            assert failed["data"]["status"] == "failed" and "5.1.1" in failed["data"]["error"]
            contact = (await c.get(f"/api/v1/contacts/{conv['contact_id']}")).json()
            assert "5.1.1" in contact["attributes"]["undeliverable_addresses"]["ana@cliente.example"]

            # 6. an auto-reply is stored, marked, and never answered automatically
            ooo = (FIXTURES / "auto_reply.eml").read_bytes().replace(b"tom.baker@corp.example", b"ana@cliente.example")
            await asyncio.to_thread(send, port, ooo, mail_from="ana@cliente.example")
            event = await next_inbound(ws)
            assert event["meta"]["auto_reply"] is True
            assert sink.mails.empty()

        # 7. refused by SMTP: unknown recipient at RCPT, oversized at DATA; nothing stored for them
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            await asyncio.to_thread(send, port, b"From: a@b.example\r\n\r\nhi\r\n", to="nobody@acme.test")
        assert refused.value.recipients["nobody@acme.test"][0] == 550
        big = b"From: a@b.example\r\nSubject: big\r\n\r\n" + b"x" * 76 + (b"\r\n" + b"x" * 76) * 5000
        with pytest.raises(smtplib.SMTPResponseException) as too_big:
            await asyncio.to_thread(send, port, big)
        assert too_big.value.smtp_code == 552
        async with svc.db.transaction(write=False) as s:
            assert (await s.execute(select(func.count()).select_from(InboxItemRow))).scalar_one() == 4
            assert (await s.execute(select(func.count()).select_from(MessageRow)
                                    .where(MessageRow.direction == "in"))).scalar_one() == 3


async def test_a_mail_the_parser_cannot_take_is_kept_raw_with_its_error(sqlite_url: str, tmp_path: Path) -> None:
    async with await make_server(sqlite_url, tmp_path, smtp_port=0, smtp_host="127.0.0.1") as server:
        svc = server.services
        ids = await seed_basics(svc)
        await email_channel(svc, ids["general"], 9)
        raw = b"Subject: no sender at all\r\n\r\n\xff\xfe garbage\r\n"
        assert await asyncio.to_thread(send, svc.integrations["email"].runtime.smtp.port, raw, mail_from="") == {}
        await svc.inbox.sweep()  # a retry fails the same way and records why
        async with svc.db.transaction(write=False) as s:
            [item] = (await s.execute(select(InboxItemRow))).scalars().all()
            assert (await s.execute(select(func.count()).select_from(MessageRow))).scalar_one() == 0
        assert item.body == raw and item.processed_at is None and item.error


async def test_starttls_is_offered_with_a_certificate_and_can_be_required(sqlite_url: str, tmp_path: Path) -> None:
    import ssl

    cert, key = await asyncio.to_thread(self_signed, tmp_path)
    async with await make_server(sqlite_url, tmp_path, smtp_port=0, smtp_host="127.0.0.1", smtp_tls_cert=cert,
                                 smtp_tls_key=key, smtp_require_starttls=True) as server:
        svc = server.services
        ids = await seed_basics(svc)
        await email_channel(svc, ids["general"], 9)
        port = svc.integrations["email"].runtime.smtp.port

        def plain() -> None:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
                c.sendmail("a@b.example", ["support@acme.test"], b"From: a@b.example\r\n\r\nhi\r\n")

        with pytest.raises(smtplib.SMTPSenderRefused) as refused:  # 530: STARTTLS first
            await asyncio.to_thread(plain)
        assert refused.value.smtp_code == 530

        def secure() -> tuple[bool, dict]:
            ctx = ssl.create_default_context(cafile=str(cert))
            ctx.check_hostname = False
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
                c.ehlo()
                offered = c.has_extn("starttls")
                c.starttls(context=ctx)
                return offered, c.sendmail("a@b.example", ["support@acme.test"],
                                           b"From: a@b.example\r\nMessage-ID: <tls-1@b.example>\r\n\r\nhi\r\n")

        assert await asyncio.to_thread(secure) == (True, {})
        async with svc.db.transaction(write=False) as s:
            assert (await s.execute(select(MessageRow.provider_id))).scalars().all() == ["<tls-1@b.example>"]


async def test_absurd_headers_over_smtp_are_stored_with_a_flag(sqlite_url: str, tmp_path: Path) -> None:
    async with await make_server(sqlite_url, tmp_path, smtp_port=0, smtp_host="127.0.0.1") as server:
        svc = server.services
        ids = await seed_basics(svc)
        await email_channel(svc, ids["general"], 9)
        folded = "X-Junk: start" + "".join(f"\r\n {'y' * 900}" for _ in range(400))  # 360 KB of one header
        raw = (f"From: a@b.example\r\nMessage-ID: <huge-1@b.example>\r\n{folded}\r\n\r\nbody\r\n").encode()
        assert await asyncio.to_thread(send, svc.integrations["email"].runtime.smtp.port, raw, mail_from="a@b.example") == {}
        async with svc.db.transaction(write=False) as s:
            [msg] = (await s.execute(select(MessageRow))).scalars().all()
            [item] = (await s.execute(select(InboxItemRow))).scalars().all()
        assert msg.meta["email"]["flags"] == ["headers_too_large"] and "too large" in msg.text
        assert item.body.replace(b"\r\n", b"\n") == raw.replace(b"\r\n", b"\n")  # the original is kept whole
