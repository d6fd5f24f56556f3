"""Admin: "test connection" logs in to the SMTP and IMAP servers before anything is saved, and says in
the server's words what was refused."""

from __future__ import annotations

import httpx

from tests.channels.email import dovecot
from tests.channels.email.helpers import Sink
from tests.conftest import login, need, seed_basics


async def test_test_connection_reports_success_and_the_servers_refusals(sqlite_server) -> None:  # type: ignore[no-untyped-def]
    ids = await seed_basics(sqlite_server.services)
    need(dovecot.available(), "Dovecot (apt-get install dovecot-imapd)")
    sink = Sink(user="mailer", password="right-pw")
    async with sink.running(), dovecot.running() as imap, httpx.AsyncClient(base_url=sqlite_server.url) as c:
        await login(c, "admin@example.com")
        base = {"address": "support@acme.test", "smtp_host": "127.0.0.1", "smtp_port": sink.port,
                "smtp_security": "none", "smtp_username": "mailer", "smtp_password": "right-pw",
                "inbound": "imap", "imap_host": "127.0.0.1", "imap_port": imap.port, "imap_security": "none",
                "imap_username": dovecot.USER, "imap_password": dovecot.PASSWORD}
        r = await c.post("/api/v1/channels/test", json={"kind": "email", "config": base})
        assert r.status_code == 200, r.text
        assert r.json()["ok"] is True and len(r.json()["checks"]) == 2

        r = await c.post("/api/v1/channels/test", json={"kind": "email", "config": {**base, "smtp_password": "bad"}})
        body = r.json()
        assert body["ok"] is False and "SMTP" in body["error"] and "535" in body["error"]

        r = await c.post("/api/v1/channels/test", json={"kind": "email", "config": {**base, "imap_password": "bad"}})
        body = r.json()
        assert body["ok"] is False and "IMAP" in body["error"] and "login refused" in body["error"]

        r = await c.post("/api/v1/channels/test", json={"kind": "email", "config": {**base, "imap_folder": "Nope"}})
        assert r.json()["ok"] is False and "Nope" in r.json()["error"]

        closed = {**base, "smtp_port": imap.port + 1 if imap.port < 65535 else 1}
        r = await c.post("/api/v1/channels/test", json={"kind": "email", "config": closed})
        assert r.json()["ok"] is False and "cannot connect" in r.json()["error"]

        r = await c.post("/api/v1/channels/test", json={"kind": "email", "config": {**base, "address": "nope"}})
        assert r.status_code == 422 and "address" in r.json()["detail"]

        # a saved channel: masked secrets keep their stored values
        saved = {**base, "inbound": "smtp"}  # IMAP settings still tested; no poller runs for it meanwhile
        created = await c.post("/api/v1/channels", json={"kind": "email", "name": "Mail", "config": saved,
                                                         "default_queue_id": ids["general"]})
        assert created.status_code == 201, created.text
        masked = created.json()["config"]
        assert masked["smtp_password"] == "********"
        r = await c.post("/api/v1/channels/test", json={"kind": "email", "config": masked,
                                                        "channel_id": created.json()["id"]})
        assert r.json()["ok"] is True, r.json()

    async with httpx.AsyncClient(base_url=sqlite_server.url) as agent:
        await login(agent, "alice@example.com")
        r = await agent.post("/api/v1/channels/test", json={"kind": "email", "config": base})
        assert r.status_code == 403


async def test_unknown_kind_is_a_validation_error(sqlite_server) -> None:  # type: ignore[no-untyped-def]
    await seed_basics(sqlite_server.services)
    async with httpx.AsyncClient(base_url=sqlite_server.url) as c:
        await login(c, "admin@example.com")
        r = await c.post("/api/v1/channels/test", json={"kind": "nope", "config": {}})
        assert r.status_code == 422


async def test_tls_on_both_servers_and_certificate_checks(sqlite_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import asyncio
    import ssl

    from tests.channels.email.helpers import self_signed

    await seed_basics(sqlite_server.services)
    need(dovecot.available(), "Dovecot (apt-get install dovecot-imapd)")
    cert, key = await asyncio.to_thread(self_signed, tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(str(cert), str(key))
    sink = Sink(tls=server_ctx)  # STARTTLS required before MAIL
    async with sink.running(), dovecot.running() as imap, httpx.AsyncClient(base_url=sqlite_server.url) as c:
        await login(c, "admin@example.com")
        config = {"address": "support@acme.test", "smtp_host": "127.0.0.1", "smtp_port": sink.port,
                  "smtp_security": "starttls", "smtp_verify_tls": False, "inbound": "imap",
                  "imap_host": "127.0.0.1", "imap_port": imap.tls_port, "imap_security": "tls",
                  "imap_verify_tls": False, "imap_username": dovecot.USER, "imap_password": dovecot.PASSWORD}
        r = await c.post("/api/v1/channels/test", json={"kind": "email", "config": config})
        body = r.json()
        assert body["ok"] is True, body
        assert body["checks"][0] == f"SMTP 127.0.0.1:{sink.port}: connected (STARTTLS)"
        assert body["checks"][1].startswith(f"IMAP 127.0.0.1:{imap.tls_port}: logged in, folder 'INBOX' opened")
        # a self-signed certificate is refused when verification is on (the default)
        r = await c.post("/api/v1/channels/test", json={"kind": "email", "config": {**config, "smtp_verify_tls": True}})
        assert r.json()["ok"] is False and "certificate" in r.json()["error"].lower()
        r = await c.post("/api/v1/channels/test", json={"kind": "email", "config": {**config, "imap_verify_tls": True}})
        assert r.json()["ok"] is False and "certificate" in r.json()["error"].lower()


async def test_the_admin_page_tests_the_connection_before_the_channel_is_created(sqlite_server) -> None:
    """The "Test connection" button posts the form as it is; the answer says what the server said."""
    from tests.web.test_desk_pages import page_login

    await seed_basics(sqlite_server.services)
    sink = Sink(user="mailer", password="right-pw")
    async with sink.running(), httpx.AsyncClient(base_url=sqlite_server.url) as c:
        csrf = await page_login(c, "admin@example.com")
        page = await c.get("/admin/channels", params={"kind": "email"})
        assert 'hx-post="/admin/channels/test"' in page.text
        form = {"csrf_token": csrf, "kind": "email", "name": "Mail", "config.address": "support@acme.test",
                "config.smtp_host": "127.0.0.1", "config.smtp_port": str(sink.port), "config.smtp_security": "none",
                "config.smtp_username": "mailer", "config.smtp_password": "right-pw", "config.inbound": "smtp"}
        ok = await c.post("/admin/channels/test", data=form)
        assert ok.status_code == 200 and "Connection works" in ok.text, ok.text
        refused = await c.post("/admin/channels/test", data={**form, "config.smtp_password": "wrong"})
        assert "Refused" in refused.text and "535" in refused.text
        invalid = await c.post("/admin/channels/test", data={**form, "config.address": "<b>nope</b>"})
        assert "address" in invalid.text and "<b>" not in invalid.text  # the message is escaped
        assert (await c.post("/admin/channels/test", data={**form, "csrf_token": "x"})).status_code == 403
        assert (await c.get("/admin/channels")).text.count("Mail") == 0  # nothing was saved
