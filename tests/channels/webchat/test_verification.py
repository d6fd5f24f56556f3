"""Verification by code (issue 12 item 12), over real HTTP with the code mailed through a real SMTP sink:
a web chat visitor confirms a typed e-mail address and joins the customer it belongs to at once; wrong,
expired and exhausted codes, bad input and floods are refused with a 4xx that says why."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select, update

from tests.channels.email.helpers import Sink
from tests.channels.email.test_smtp_flow import email_channel
from tests.channels.webchat.test_webchat import Visitor, agent, make_channel
from tests.conftest import make_server, seed_basics
from threadline.channels.webchat.models import VerificationRow
from threadline.channels.webchat.verification import JOB
from threadline.db.types import utcnow

VERA = "vera@example.com"


def job_outcomes(server) -> asyncio.Queue[str]:  # type: ignore[no-untyped-def]
    """Each run of the job that sends a code: the mail leaves before its transaction commits, so a test
    waits for the outcome (no sleeping)."""
    outcomes: asyncio.Queue[str] = asyncio.Queue()
    server.services.timers.listeners.append(
        lambda job, outcome: outcomes.put_nowait(outcome) if job.kind == JOB else None)
    return outcomes


async def committed(outcomes: asyncio.Queue[str]) -> None:
    assert await asyncio.wait_for(outcomes.get(), 10) == "done"


async def code_from(sink: Sink, to: str, outcomes: asyncio.Queue[str]) -> str:
    _, rcpts, mail = await sink.next()
    await committed(outcomes)
    assert rcpts == [to] and mail["Subject"] == "Your confirmation code" and "Reply-To" not in mail
    found = re.search(r"\b(\d{6})\b", mail.get_body(("plain",)).get_content())
    assert found is not None
    return found.group(1)


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


async def test_a_visitor_confirms_an_email_with_a_code_and_joins_the_customer(db_url: str, tmp_path: Path) -> None:
    sink = Sink()
    async with sink.running(), await make_server(db_url, tmp_path) as server:
        ids = await seed_basics(server.services)
        key = await make_channel(server, ids)
        outcomes = job_outcomes(server)
        sup = await agent(server, "sup@example.com")
        vera = await sup.post("/api/v1/contacts", json={"name": "Vera", "identities": [{"kind": "email",
                                                                                        "value": VERA}]})
        assert vera.status_code == 201, vera.text
        vera_id = vera.json()["id"]
        v = Visitor(server, key)
        try:
            await v.start()
            # nothing can send codes yet: said so
            none = await v.post("/widget/verify/start", {"token": v.token, "kind": "email", "value": VERA})
            assert none.status_code == 409 and "not available" in none.json()["detail"]
            await email_channel(server.services, ids["general"], sink.port)

            chat = await v.say("Where is my order?", "c1", profile={"name": "V", "email": VERA})
            conv_id = chat.json()["conversation_id"]
            conv = (await sup.get(f"/api/v1/conversations/{conv_id}")).json()
            assert conv["contact_id"] != vera_id  # typing an address proves nothing

            # bad input: a clear 4xx each
            assert (await v.post("/widget/verify/check", {"token": v.token, "code": "123456"})).status_code == 404
            for body, status in (({"kind": "fax", "value": VERA}, 422), ({"kind": "email", "value": "not-an-email"}, 422),
                                 ({"kind": "email"}, 422), ({"kind": "email", "value": VERA, "token": ""}, 401)):
                r = await v.post("/widget/verify/start", {"token": v.token, **body})
                assert r.status_code == status, (body, r.text)
                assert r.json()["detail"]
            bad_code = await v.post("/widget/verify/check", {"token": v.token, "code": "12ab"})
            assert bad_code.status_code == 422

            started = await v.post("/widget/verify/start", {"token": v.token, "kind": "email", "value": " Vera@Example.com"})
            assert started.status_code == 202, started.text
            assert started.json() == {"kind": "email", "value": VERA, "expires_in": 600}
            code = await code_from(sink, VERA, outcomes)
            async with server.services.db.transaction(write=False) as s:  # only a keyed hash is stored
                row = (await s.execute(select(VerificationRow))).scalars().one()
                assert row.code_hash and code not in row.code_hash and row.status == "sent"

            miss = await v.post("/widget/verify/check", {"token": v.token, "code": wrong(code)})
            assert miss.status_code == 422 and "4 tries left" in miss.json()["detail"]
            # the widget's errors are RFC 9457 problem documents like the rest of the API (its code kept)
            assert miss.headers["content-type"].startswith("application/problem+json")
            assert {"type", "title", "status", "detail", "code"} <= miss.json().keys() and miss.json()["status"] == 422
            ok = await v.post("/widget/verify/check", {"token": v.token, "code": code})
            assert ok.status_code == 200, ok.text
            assert ok.json() == {"ok": True, "verified": VERA}
            # joined at once: the chat is now Vera's, with a line saying why
            conv = (await sup.get(f"/api/v1/conversations/{conv_id}")).json()
            assert conv["contact_id"] == vera_id
            lines = [m["text"] for m in (await sup.get(f"/api/v1/conversations/{conv_id}/messages")).json()["items"]
                     if m["direction"] == "activity"]
            assert any("confirmed vera@example.com with a code" in t for t in lines)
            again = await v.post("/widget/verify/check", {"token": v.token, "code": code})  # spent
            assert again.status_code == 404
            # and the visitor's next message lands there too
            follow = await v.say("any news?", "c2")
            assert follow.json()["conversation_id"] == conv_id
        finally:
            await v.aclose()
            await sup.aclose()


async def test_expired_exhausted_and_flooded_codes_are_refused(db_url: str, tmp_path: Path) -> None:
    sink = Sink()
    async with sink.running(), await make_server(db_url, tmp_path) as server:
        ids = await seed_basics(server.services)
        key = await make_channel(server, ids)
        outcomes = job_outcomes(server)
        await email_channel(server.services, ids["general"], sink.port)
        v = Visitor(server, key)
        try:
            await v.start()
            await v.say("hello", "c1")
            start = {"token": v.token, "kind": "email", "value": "new@example.org", "language": "es"}
            assert (await v.post("/widget/verify/start", start)).status_code == 202
            _, _, mail = await sink.next()
            assert mail["Subject"] == "Tu código de confirmación"
            code = re.search(r"\b(\d{6})\b", mail.get_body(("plain",)).get_content()).group(1)  # type: ignore[union-attr]
            await committed(outcomes)
            async with server.services.db.transaction() as s:  # ten minutes later
                await s.execute(update(VerificationRow).values(expires_at=utcnow() - timedelta(seconds=1)))
            expired = await v.post("/widget/verify/check", {"token": v.token, "code": code})
            assert expired.status_code == 410 and "expired" in expired.json()["detail"]

            # a new request replaces the old one; five wrong codes spend it, even the right one then
            assert (await v.post("/widget/verify/start", start)).status_code == 202
            code = await code_from_any(sink, outcomes)
            for left in (4, 3, 2, 1):
                r = await v.post("/widget/verify/check", {"token": v.token, "code": wrong(code)})
                assert r.status_code == 422 and f"{left} tries left" in r.json()["detail"]
            last = await v.post("/widget/verify/check", {"token": v.token, "code": wrong(code)})
            assert last.status_code == 422 and "Ask for a new one" in last.json()["detail"]
            spent = await v.post("/widget/verify/check", {"token": v.token, "code": code})
            assert spent.status_code == 429 and "Too many wrong codes" in spent.json()["detail"]

            # asking again and again: refused (per minute here; per hour across processes)
            assert (await v.post("/widget/verify/start", start)).status_code == 202
            flood = await v.post("/widget/verify/start", start)
            assert flood.status_code == 429, flood.text
            # many visitor sessions cannot flood one address either
            async with server.services.db.transaction() as s:
                s.add_all([VerificationRow(channel_instance_id=ids["channel"], visitor_id=f"x{i}", kind="email",
                                           value="new@example.org", status="replaced", attempts=0)
                           for i in range(10)])
            other = Visitor(server, key)
            await other.start()
            flooded = await other.post("/widget/verify/start", {**start, "token": other.token})
            assert flooded.status_code == 429 and "sent to this e-mail address" in flooded.json()["detail"]
            await other.aclose()
            # the address was never confirmed: it stays a claim of nobody's
            sup = await agent(server, "sup@example.com")
            found = (await sup.get("/api/v1/contacts", params={"q": "new@example.org"})).json()["items"]
            assert all(i["verified"] is False for c in found for i in c["identities"] if i["value"] == "new@example.org")
            await sup.aclose()
        finally:
            await v.aclose()


async def code_from_any(sink: Sink, outcomes: asyncio.Queue[str]) -> str:
    _, _, mail = await sink.next()
    await committed(outcomes)
    found = re.search(r"\b(\d{6})\b", mail.get_body(("plain",)).get_content())
    assert found is not None
    return found.group(1)


async def test_a_phone_number_is_confirmed_with_a_code_sent_by_sms(sqlite_server) -> None:
    """The code goes through the workspace's Twilio SMS channel (a fake Twilio REST API on loopback)."""
    from contextlib import aclosing

    from tests.channels.e2e import FakeProvider, setup
    from tests.channels.harness import TWILIO_OK, twilio_config
    from tests.conftest import run_server

    fake = FakeProvider(TWILIO_OK)
    async with run_server(fake.app()) as api:
        ids, admin, _ = await setup(sqlite_server, "twilio", twilio_config(api.url))
        async with aclosing(admin):
            key = await make_channel(sqlite_server, ids)
            outcomes = job_outcomes(sqlite_server)
            v = Visitor(sqlite_server, key)
            try:
                await v.start()
                assert "phone" in (await v.http.get("/widget/config", params={"channel": key})).json()["verify"]
                sent = await v.say("call me", "c1", profile={"phone": "+1 415-555-1234"})
                start = {"token": v.token, "kind": "phone", "value": "+1 (415) 555 1234", "language": "it"}
                r = await v.post("/widget/verify/start", start)
                assert r.status_code == 202 and r.json()["value"] == "+14155551234"
                [call] = await fake.wait_calls(1)
                assert call.form["To"] == ["+14155551234"]
                body = call.form["Body"][0]
                assert "è il tuo codice" in body
                code = re.search(r"\b(\d{6})\b", body).group(1)  # type: ignore[union-attr]
                await committed(outcomes)
                ok = await v.post("/widget/verify/check", {"token": v.token, "code": code})
                assert ok.status_code == 200 and ok.json()["verified"] == "+14155551234"
                conv = (await admin.get(f"/api/v1/conversations/{sent.json()['conversation_id']}")).json()
                identities = (await admin.get(f"/api/v1/contacts/{conv['contact_id']}")).json()["identities"]
                assert {"kind": "phone", "value": "+14155551234", "verified": True}.items() <= next(
                    i for i in identities if i["kind"] == "phone").items()
            finally:
                await v.aclose()
