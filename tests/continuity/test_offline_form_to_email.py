"""Issue 12 item 12, through the real interfaces (the widget's HTTP API, the embedded SMTP receiver, a
real SMTP sink for our replies, the REST API), on SQLite and PostgreSQL: a web chat visitor leaves a
message with the offline form, and the conversation goes on by e-mail.

- After the agent merges the e-mail contact and conversation into the chat's, the reply goes by e-mail
  (where the customer wrote last), and the timeline says the customer continued there.
- When the customer answers our e-mail from the address typed in the form, the answer proves the claim:
  same contact, same conversation, the address verified. Another sender quoting our Message-ID proves
  nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import httpx
import websockets

from tests.channels.email.helpers import Sink
from tests.channels.email.test_smtp_flow import email_channel, next_inbound, send
from tests.channels.webchat.test_webchat import Visitor, make_channel
from tests.conftest import login, make_server, seed_basics
from tests.web.test_hooks_and_stream import token_for
from threadline.actions import users as user_actions

OLGA = "olga@cliente.example"


@dataclass
class Site:
    server: object
    sink: Sink
    smtp_port: int
    ids: dict[str, int]
    chat_key: str
    email_id: int
    stream: object  # the supervisor's live stream (websocket)
    sup: httpx.AsyncClient


@contextlib.asynccontextmanager
async def site(db_url: str, tmp_path: Path) -> AsyncIterator[Site]:
    """A server with a web chat and an e-mail channel; nobody available, so the chat offers the offline form."""
    sink = Sink()
    async with sink.running(), await make_server(db_url, tmp_path, smtp_port=0, smtp_host="127.0.0.1") as server:
        svc = server.services
        ids = await seed_basics(svc)
        email_id = await email_channel(svc, ids["general"], sink.port)
        chat_key = await make_channel(server, ids)
        async with svc.db.transaction() as s:
            await user_actions.set_presence(s, ids["alice"], "offline")
        token = await token_for(server, "sup@example.com")
        async with websockets.connect(f"{server.ws_url}/api/v1/stream?token={token}") as ws, \
                httpx.AsyncClient(base_url=server.url) as sup:
            assert json.loads(await ws.recv())["name"] == "stream.ready"
            await login(sup, "sup@example.com")
            yield Site(server, sink, svc.integrations["email"].runtime.smtp.port, ids, chat_key, email_id, ws, sup)


async def leave_offline_message(s: Site, text: str) -> dict:
    visitor = Visitor(s.server, s.chat_key)
    try:
        config = (await visitor.http.get("/widget/config", params={"channel": s.chat_key})).json()
        assert config["online"] is False and config["offline_form"] is True
        await visitor.start()
        left = await visitor.say(text, "o1", offline=True, profile={"name": "Olga", "email": OLGA})
        assert left.status_code == 201, left.text
        return left.json()
    finally:
        await visitor.aclose()


def mail(subject: str, text: str, *, sender: str = OLGA, message_id: str, answers: str | None = None) -> bytes:
    m = EmailMessage()
    m["From"] = f"Olga <{sender}>"
    m["To"] = "support@acme.test"
    m["Subject"] = subject
    m["Message-ID"] = message_id
    if answers:
        m["In-Reply-To"] = answers
        m["References"] = answers
    m.set_content(text)
    return m.as_bytes()


async def mail_in(s: Site, raw: bytes, sender: str = OLGA) -> dict:
    assert await asyncio.to_thread(send, s.smtp_port, raw, mail_from=sender) == {}
    while True:  # the stream also carries the chat's messages
        msg = await next_inbound(s.stream)
        if msg["channel_instance_id"] == s.email_id:
            return msg


async def identities(s: Site, contact_id: int) -> dict[str, bool]:
    r = await s.sup.get(f"/api/v1/contacts/{contact_id}")
    assert r.status_code == 200, r.text
    return {i["value"]: i["verified"] for i in r.json()["identities"]}


async def timeline(s: Site, conv_id: int) -> list[dict]:
    return (await s.sup.get(f"/api/v1/conversations/{conv_id}/messages")).json()["items"]


async def test_after_a_merge_the_reply_goes_where_the_customer_wrote_last(db_url: str, tmp_path: Path) -> None:
    async with site(db_url, tmp_path) as s:
        chat = await leave_offline_message(s, "My parcel never came")
        chat_conv = chat["conversation_id"]
        # Olga writes a new mail (not an answer): the channel vouches for the address, which leaves the
        # chat contact that only claimed it; a new contact and conversation, with a merge suggestion.
        mailed = await mail_in(s, mail("Parcel", "Any news about my parcel?", message_id="<p-1@cliente.example>"))
        assert mailed["conversation_id"] != chat_conv
        chat_contact = (await s.sup.get(f"/api/v1/conversations/{chat_conv}")).json()["contact_id"]
        mail_contact = (await s.sup.get(f"/api/v1/conversations/{mailed['conversation_id']}")).json()["contact_id"]
        assert chat_contact != mail_contact

        # The agent joins them: contacts, then conversations (into the chat's)
        merged = await s.sup.post(f"/api/v1/contacts/{chat_contact}/merge", json={"source_id": mail_contact})
        assert merged.status_code == 200, merged.text
        joined = await s.sup.post(f"/api/v1/conversations/{chat_conv}/merge",
                                  json={"source_id": mailed["conversation_id"]})
        assert joined.status_code == 200, joined.text
        assert joined.json()["last_channel_instance_id"] == s.email_id
        items = await timeline(s, chat_conv)
        lines = [m["text"] for m in items if m["direction"] == "activity"]
        assert lines[-2].startswith(f"Sup merged conversation #{mailed['conversation_id']} here")
        assert lines[-1] == "The customer continued on Support mail (email)"

        # The default reply goes by e-mail to the address she wrote from, not to the abandoned chat
        reply = await s.sup.post(f"/api/v1/conversations/{chat_conv}/messages", json={"text": "It ships today."})
        assert reply.status_code == 201, reply.text
        assert reply.json()["channel_instance_id"] == s.email_id
        _, rcpts, out = await s.sink.next()
        assert rcpts == [OLGA] and out["In-Reply-To"] == "<p-1@cliente.example>"


async def test_the_customer_answering_our_email_from_the_typed_address_continues_the_chat(
        db_url: str, tmp_path: Path) -> None:
    async with site(db_url, tmp_path) as s:
        chat = await leave_offline_message(s, "Please call me about the invoice")
        conv_id = chat["conversation_id"]
        contact_id = (await s.sup.get(f"/api/v1/conversations/{conv_id}")).json()["contact_id"]
        assert (await identities(s, contact_id))[OLGA] is False  # typed in a form: a claim
        claimed = next(i for i in (await s.sup.get(f"/api/v1/contacts/{contact_id}")).json()["identities"]
                       if i["value"] == OLGA)

        # we answer by e-mail, as the offline form promised
        reply = await s.sup.post(f"/api/v1/conversations/{conv_id}/messages", json={
            "text": "Here is your invoice.", "channel_instance_id": s.email_id, "identity_id": claimed["id"]})
        assert reply.status_code == 201, reply.text
        _, rcpts, out = await s.sink.next()
        assert rcpts == [OLGA]
        ours = out["Message-ID"]

        # someone else quoting our Message-ID proves nothing: their own contact and conversation
        forged = await mail_in(s, mail("Re: invoice", "me too", sender="mallory@evil.example",
                                       message_id="<m-1@evil.example>", answers=ours), sender="mallory@evil.example")
        assert forged["conversation_id"] != conv_id
        assert (await identities(s, contact_id))[OLGA] is False

        # Olga answers our mail from the address she typed: the claim is proven
        answer = await mail_in(s, mail("Re: invoice", "Thanks, but the amount is wrong.",
                                       message_id="<a-1@cliente.example>", answers=ours))
        assert answer["conversation_id"] == conv_id
        conv = (await s.sup.get(f"/api/v1/conversations/{conv_id}")).json()
        assert conv["contact_id"] == contact_id and conv["last_channel_instance_id"] == s.email_id
        assert (await identities(s, contact_id))[OLGA] is True
        suggestions = (await s.sup.get("/api/v1/merge-suggestions", params={"contact_id": contact_id})).json()
        assert suggestions == []
        texts = [m["text"] for m in await timeline(s, conv_id)]
        assert f"The customer confirmed {OLGA} by answering our e-mail" in texts
        assert texts[-1] == "Thanks, but the amount is wrong."
        # and her next new mail (no threading) finds the same customer
        later = await mail_in(s, mail("Another thing", "One more question.", message_id="<a-2@cliente.example>"))
        assert later["conversation_id"] == conv_id
