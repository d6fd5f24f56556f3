"""E-mail edge cases over real SMTP (Python's smtplib to the embedded receiver, replies caught by an SMTP
sink), on SQLite and PostgreSQL: a contact form's Reply-To is the customer; automatic replies are recorded
quietly (no reopening, no conversation.updated for the router, never a conversation to handle); a mail
without Message-ID gets a reply that references no invented id; a Message-ID reused by another sender is
stored, a redelivery is not; non-ASCII attachment names survive the download (RFC 6266); postmaster@ of a
served domain is accepted; the desk shows the subject."""

from __future__ import annotations

import asyncio
import json
import re
import smtplib
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest
import websockets
from sqlalchemy import select

from tests.channels.email.helpers import Sink
from tests.channels.email.test_smtp_flow import email_channel, send
from tests.conftest import make_server, seed_basics
from tests.web.test_desk_pages import page_login
from tests.web.test_hooks_and_stream import token_for
from threadline.db.models import ConversationRow, MessageRow

NAME = "Fattura_è_Ñ_日本.pdf"


def mail(frm: str, subject: str, body: str, *, msgid: str | None, **headers: str) -> bytes:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = frm, "support@acme.test", subject
    m["Date"] = "Tue, 07 Jan 2025 09:00:00 +0000"
    if msgid:
        m["Message-ID"] = msgid
    for name, value in headers.items():
        m[name.replace("_", "-")] = value
    m.set_content(body)
    return m.as_bytes()


async def events_until(ws, done) -> list[dict]:  # type: ignore[no-untyped-def]
    """Every stream event up to and including the first one ``done`` accepts."""
    seen = []
    async with asyncio.timeout(10):
        while True:
            event = json.loads(await ws.recv())
            seen.append(event)
            if done(event):
                return seen


def inbound_from(address: str):  # type: ignore[no-untyped-def]
    def match(event: dict) -> bool:
        m = event["data"].get("message") if event["name"] == "message.created" else None
        return bool(m and m["direction"] == "in" and m["meta"].get("email", {}).get("from") == address)
    return match


async def test_email_edge_cases_over_smtp(db_url: str, tmp_path: Path) -> None:
    sink = Sink()
    async with sink.running(), await make_server(db_url, tmp_path, smtp_port=0, smtp_host="127.0.0.1") as server:
        svc = server.services
        port = svc.integrations["email"].runtime.smtp.port
        ids = await seed_basics(svc)
        channel_id = await email_channel(svc, ids["general"], sink.port)
        admin = await token_for(server, "admin@example.com")
        async with websockets.connect(f"{server.ws_url}/api/v1/stream?token={admin}") as ws, \
                httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {admin}"}) as c:
            assert json.loads(await ws.recv())["name"] == "stream.ready"

            async def smtp(raw: bytes, to: str = "support@acme.test", mail_from: str = "robot@forms.example") -> dict:
                return await asyncio.to_thread(send, port, raw, to=to, mail_from=mail_from)

            # 1. a contact form: sent by the site's robot, the customer in Reply-To
            await smtp(mail("Acme Website <no-reply@forms.example>", "Contact form: broken order",
                            "Name: Jane Roe\nMessage: my order #4471 arrived broken.", msgid="<form-1@forms.example>",
                            Reply_To="Jane Roe <jane@customer.example>"))
            [event] = [e for e in await events_until(ws, inbound_from("no-reply@forms.example"))
                       if e["name"] == "message.created"]
            msg = event["data"]["message"]
            conv_id = msg["conversation_id"]
            assert msg["meta"]["email"]["customer"] == "jane@customer.example"
            conv = (await c.get(f"/api/v1/conversations/{conv_id}")).json()
            contact = (await c.get(f"/api/v1/contacts/{conv['contact_id']}")).json()
            assert contact["name"] == "Jane Roe"
            assert [(i["kind"], i["value"]) for i in contact["identities"]] == [("email", "jane@customer.example")]
            assert (await c.post(f"/api/v1/conversations/{conv_id}/messages", json={"text": "We send a new one."}
                                 )).status_code == 201
            _, rcpts, reply = await sink.next()
            assert rcpts == ["jane@customer.example"] and reply["To"] == "jane@customer.example"
            assert reply["In-Reply-To"] == "<form-1@forms.example>"

            # 2. resolved; Jane's out-of-office answers the reply: recorded in it, nothing reopened or routed
            assert (await c.patch(f"/api/v1/conversations/{conv_id}", json={"status": "resolved"})).status_code == 200
            await events_until(ws, lambda e: e["name"] == "conversation.updated"
                               and e["data"]["conversation"]["status"] == "resolved")
            await smtp(mail("Jane Roe <jane@customer.example>", "Automatic reply: Re: Contact form: broken order",
                            "I am on holiday until 20 January.", msgid="<ooo-1@customer.example>",
                            Auto_Submitted="auto-replied", In_Reply_To=reply["Message-ID"]), mail_from="")
            # 3. an unknown robot's auto-answer with nothing to attach to: kept, in a conversation resolved at once
            await smtp(mail("Helpdesk <helpdesk@vendor.example>", "We received your request",
                            "Ticket 991 opened.", msgid="<ack-1@vendor.example>", X_Autoreply="yes"),
                       mail_from="helpdesk@vendor.example")
            # 4. a mail without Message-ID, and a sentinel that ends the events we look at
            await smtp(mail("Lucy Gray <lucy@customer.example>", "No id", "Where is my refund?", msgid=None),
                       mail_from="lucy@customer.example")
            seen = await events_until(ws, inbound_from("lucy@customer.example"))
            ooo = [e["data"]["message"] for e in seen if inbound_from("jane@customer.example")(e)]
            assert len(ooo) == 1 and ooo[0]["conversation_id"] == conv_id and ooo[0]["meta"]["automatic"] is True
            # nothing for the router to look at (the SLA clock's own note that our reply in step 1 met the
            # first-response target may arrive late, from its follower; it is not about the automatic reply)
            assert not [e for e in seen if e["name"] == "conversation.updated"
                        and e["data"]["conversation"]["id"] == conv_id and e["data"]["changes"] != ["sla"]]
            conv = (await c.get(f"/api/v1/conversations/{conv_id}")).json()
            assert conv["status"] == "resolved" and conv["assignee_id"] is None
            [robot] = [e["data"]["conversation"] for e in seen if e["name"] == "conversation.created"
                       and e["data"]["conversation"]["id"] != conv_id and e["data"]["conversation"]["status"] == "resolved"]
            lucy = [e["data"]["message"] for e in seen if inbound_from("lucy@customer.example")(e)][0]
            assert robot["id"] != lucy["conversation_id"]
            async with svc.db.transaction(write=False) as s:
                robot_conv = await s.get(ConversationRow, robot["id"])
                assert robot_conv is not None and robot_conv.status == "resolved"

            # 5. the reply to the mail without Message-ID names no invented parent
            assert (await c.post(f"/api/v1/conversations/{lucy['conversation_id']}/messages",
                                 json={"text": "Tomorrow."})).status_code == 201
            _, rcpts, reply = await sink.next()
            assert rcpts == ["lucy@customer.example"]
            assert reply["In-Reply-To"] is None and reply["References"] is None

            # 6. one Message-ID, two senders: both stored; the first one's redelivery is not
            first = mail("Ana Lima <ana@cliente.example>", "Pedido", "Hola", msgid="<reused@mailer.example>")
            forged = mail("Mallory <mallory@evil.example>", "Pedido", "Pay here", msgid="<reused@mailer.example>")
            for raw, sender in ((first, "ana@cliente.example"), (forged, "mallory@evil.example"),
                                (first, "ana@cliente.example")):
                assert await smtp(raw, mail_from=sender) == {}
            await smtp(mail("Sentinel <sentinel@x.example>", "s", "s", msgid="<s-1@x.example>"),
                       mail_from="sentinel@x.example")
            await events_until(ws, inbound_from("sentinel@x.example"))
            async with svc.db.transaction(write=False) as s:
                reused = (await s.execute(select(MessageRow.provider_id, MessageRow.text).where(
                    MessageRow.provider_id.like("<reused@mailer.example>%")).order_by(MessageRow.id))).all()
            assert [t for _, t in reused] == ["Hola", "Pay here"]
            assert reused[0][0] == "<reused@mailer.example>" and reused[1][0].startswith("<reused@mailer.example>#")
            original = await c.get(f"/api/v1/messages/{ooo[0]['id']}/original")
            assert original.status_code == 200 and b"I am on holiday" in original.content

            # 7. a non-ASCII attachment name survives the download
            m = EmailMessage()
            m["From"], m["To"], m["Subject"] = "Giulia <giulia@cliente.example>", "support@acme.test", "Fattura"
            m["Message-ID"] = "<att-1@cliente.example>"
            m.set_content("In allegato.")
            m.add_attachment(b"%PDF-1.4 fake", maintype="application", subtype="pdf", filename=NAME)
            await smtp(m.as_bytes(), mail_from="giulia@cliente.example")
            [att] = [e["data"]["message"] for e in await events_until(ws, inbound_from("giulia@cliente.example"))
                     if inbound_from("giulia@cliente.example")(e)][0]["attachments"]
            assert att["name"] == NAME
            got = await c.get(att["url"])
            assert got.status_code == 200 and got.content == b"%PDF-1.4 fake"
            disposition = got.headers["content-disposition"]
            assert disposition.isascii() and "filename*=UTF-8''Fattura_%C3%A8_%C3%91_%E6%97%A5%E6%9C%AC.pdf" in disposition
            assert 'filename="Fattura_e_N___.pdf"' in disposition
            # what a browser does (RFC 6266 §4.3: filename* wins): the name as the customer sent it
            assert unquote(re.search(r"filename\*=UTF-8''([^;\s]+)", disposition).group(1)) == NAME  # type: ignore[union-attr]

            # 8. postmaster of the served domain (any case, or without a domain) is accepted; of another, not
            for rcpt in ("PostMaster@Acme.Test", "postmaster"):
                assert await smtp(mail("Ops <ops@isp.example>", f"abuse report {rcpt}", "FYI", msgid=f"<pm-{rcpt}@isp>"),
                                  to=rcpt, mail_from="ops@isp.example") == {}
                seen = await events_until(ws, inbound_from("ops@isp.example"))
                pm = [e["data"]["message"] for e in seen if inbound_from("ops@isp.example")(e)][0]
                assert pm["channel_instance_id"] == channel_id
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                await smtp(mail("Ops <ops@isp.example>", "x", "x", msgid="<pm-3@isp>"), to="postmaster@other.example")

        # 9. the desk shows the subject: in the conversation header and on the message
        async with httpx.AsyncClient(base_url=server.url) as desk:
            await page_login(desk, "admin@example.com")
            pane = await desk.get(f"/conversations/{conv_id}", headers={"HX-Request": "true", "HX-Target": "pane"})
            assert pane.status_code == 200
            assert 'class="conv-subject"' in pane.text and 'class="subject">Contact form: broken order<' in pane.text
            assert "Automatic reply" in pane.text  # the out-of-office is marked as such
