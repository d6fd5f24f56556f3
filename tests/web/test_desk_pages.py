"""The agent desk and admin pages over HTTP: pages, HTMX partials, desk actions with CSRF and roles,
attachments from the composer, canned responses (pages and REST API), admin forms."""

from __future__ import annotations

import re

import httpx
from tests.conftest import login, seed_basics

from threadline.actions import inbound as inbound_actions
from threadline.db.repos import channels as channels_repo
from threadline.db.repos import conversations as conv_repo
from threadline.domain.contacts import normalise_identity
from threadline.domain.messages import InboundMessage, Sender

XSS = "<script>alert('x')</script><img src=x onerror=alert(1)>"


async def inbound(services, channel_id: int, text: str, *, email: str = "maria@example.com",  # type: ignore[no-untyped-def]
                  name: str = "Maria Rossi", pid: str | None = None) -> int:
    async with services.db.transaction(write=True) as s:
        channel = await channels_repo.get_channel(s, channel_id)
        msg = await inbound_actions.receive_inbound(s, channel, InboundMessage(
            provider_id=pid or f"p-{email}-{text[:20]}", sender=Sender(
                identities=(normalise_identity("email", email),), name=name), text=text))
        assert msg is not None
        return msg.conversation_id


async def page_login(c: httpx.AsyncClient, email: str) -> str:
    """Log in through the /login form; returns the CSRF token the desk page carries."""
    r = await c.post("/login", data={"email": email, "password": "correct-horse-battery"})
    assert r.status_code == 303 and r.headers["location"] == "/"
    page = await c.get("/")
    m = re.search(r'"X-CSRF-Token": "([^"]+)"', page.text)
    assert m, "the desk page carries the CSRF token for HTMX"
    return m.group(1)


async def test_desk_pages_partials_and_actions(server) -> None:
    ids = await seed_basics(server.services)
    conv_id = await inbound(server.services, ids["channel"], "Hello " + XSS)
    async with httpx.AsyncClient(base_url=server.url) as c:
        assert (await c.get("/")).headers["location"] == "/login"
        csrf = await page_login(c, "alice@example.com")
        page = await c.get("/?view=all")
        assert page.status_code == 200 and "/static/desk/vendor/htmx.min.js" in page.text
        # user content is escaped: the payload never appears as markup
        assert "<script>alert" not in page.text and "&lt;script&gt;alert" in page.text
        assert f'id="row-{conv_id}"' in page.text
        # HTMX partials: the list for #list (with search), the pane for #pane
        hx = {"HX-Request": "true", "HX-Target": "list"}
        found = await c.get("/?view=all&q=maria", headers=hx)
        assert f'id="row-{conv_id}"' in found.text and "<html" not in found.text
        assert f'id="row-{conv_id}"' not in (await c.get("/?view=all&q=nobody-like-this", headers=hx)).text
        assert f'id="row-{conv_id}"' not in (await c.get("/?view=mine", headers=hx)).text
        pane = await c.get(f"/conversations/{conv_id}", headers={"HX-Request": "true", "HX-Target": "pane"})
        assert 'id="composer"' in pane.text and "&lt;img src=x" in pane.text and "<img src=x" not in pane.text

        # writes need the CSRF token
        r = await c.post(f"/desk/conversations/{conv_id}/reply", data={"text": "no token"})
        assert r.status_code == 403
        h = {"X-CSRF-Token": csrf}
        r = await c.post(f"/desk/conversations/{conv_id}/reply", data={"text": "Hi Maria!", "kind": "reply"}, headers=h)
        assert r.status_code == 204 and "desk:changed" in r.headers["HX-Trigger"]
        r = await c.post(f"/desk/conversations/{conv_id}/reply", data={"text": "VIP customer", "kind": "note"}, headers=h)
        assert r.status_code == 204
        assert (await c.post(f"/desk/conversations/{conv_id}/update", data={"assign": "me"}, headers=h)).status_code == 204
        r = await c.post(f"/desk/conversations/{conv_id}/update", data={"add_label": "VIP", "priority": "high"}, headers=h)
        assert r.status_code == 204
        r = await c.post(f"/desk/conversations/{conv_id}/update", data={"status": "snoozed", "snooze": "1h"}, headers=h)
        assert r.status_code == 204
        r = await c.post(f"/desk/conversations/{conv_id}/update", data={"priority": "sky-high"}, headers=h)
        assert r.status_code == 422 and r.json()["field"] == "priority"
        assert (await c.post(f"/desk/conversations/{conv_id}/update", data={"status": "resolved"},
                             headers=h)).status_code == 204
        # new messages after the ones the page has (what live.js appends)
        msgs = await c.get(f"/desk/p/conversations/{conv_id}/messages?after=0")
        assert "Hi Maria!" in msgs.text and "VIP customer" in msgs.text and "Internal note" in msgs.text
        assert "resolved the conversation" in msgs.text
        header = await c.get(f"/desk/p/conversations/{conv_id}/header")
        assert "Reopen" in header.text and "vip" in header.text
        # an agent can edit the customer's attributes
        r = await c.post(f"/desk/contacts/{(await conv_of(server, conv_id)).contact_id}",
                         data={"name": "Maria R.", "new_key": "plan", "new_value": "gold"}, headers=h)
        assert r.status_code == 204
        side = await c.get(f"/desk/p/conversations/{conv_id}/sidebar")
        assert "Maria R." in side.text and "gold" in side.text and 'id="csat-block"' in side.text
        # presence
        r = await c.post("/desk/presence", data={"presence": "break:Lunch"}, headers=h)
        assert r.status_code == 204
        me = (await c.get("/api/v1/me")).json()
        assert me["presence"] == "break" and me["presence_reason"] == "Lunch"

    async with services_transaction(server) as s:
        rows, _ = await conv_repo.list_messages(s, conv_id, None, 100)
        conv = await conv_repo.get_conversation(s, conv_id)
    kinds = [m.direction for m in rows]
    assert kinds.count("out") == 1 and kinds.count("note") == 1
    assert conv.status == "resolved" and conv.assignee_id == ids["alice"] and conv.priority == "high"


async def conv_of(server, conv_id: int):  # type: ignore[no-untyped-def]
    async with services_transaction(server) as s:
        return await conv_repo.get_conversation(s, conv_id)


def services_transaction(server):  # type: ignore[no-untyped-def]
    return server.services.db.transaction(write=False)


async def test_agents_see_only_their_conversations_and_transfer_with_a_note(sqlite_server) -> None:
    ids = await seed_basics(sqlite_server.services)
    mine = await inbound(sqlite_server.services, ids["channel"], "general question")  # lands in Alice's queue
    async with httpx.AsyncClient(base_url=sqlite_server.url) as c:
        csrf = await page_login(c, "bob@example.com")  # Bob serves billing only
        assert (await c.get(f"/conversations/{mine}")).status_code == 404
        r = await c.post(f"/desk/conversations/{mine}/reply", data={"text": "hi"}, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 404
        assert f'id="row-{mine}"' not in (await c.get("/?view=all")).text
    async with httpx.AsyncClient(base_url=sqlite_server.url) as c:
        csrf = await page_login(c, "alice@example.com")
        h = {"X-CSRF-Token": csrf}
        r = await c.post(f"/desk/conversations/{mine}/transfer", data={"target": "bogus"}, headers=h)
        assert r.status_code == 422
        r = await c.post(f"/desk/conversations/{mine}/transfer",
                         data={"target": f"user:{ids['bob']}", "note": "billing question after all"}, headers=h)
        assert r.status_code == 204
        # the note travels in the activity line; Bob now holds it, Alice still sees it through her queue
        msgs = await c.get(f"/desk/p/conversations/{mine}/messages")
        assert "transferred the conversation to Bob: billing question after all" in msgs.text
        # Alice no longer holds it, so she may not hand it on again
        r = await c.post(f"/desk/conversations/{mine}/transfer", data={"target": f"queue:{ids['billing']}"}, headers=h)
        assert r.status_code == 403
    async with httpx.AsyncClient(base_url=sqlite_server.url) as c:
        await page_login(c, "bob@example.com")
        assert (await c.get(f"/conversations/{mine}")).status_code == 200
        assert f'id="row-{mine}"' in (await c.get("/?view=mine")).text
    async with httpx.AsyncClient(base_url=sqlite_server.url) as api:  # the same action over the REST API
        await login(api, "bob@example.com")
        r = await api.post(f"/api/v1/conversations/{mine}/transfer", json={"queue_id": ids["billing"], "note": "yours"})
        assert r.status_code == 200 and r.json()["queue_id"] == ids["billing"] and r.json()["assignee_id"] is None
        assert (await api.post(f"/api/v1/conversations/{mine}/transfer", json={"note": "x"})).status_code == 422


async def test_reply_with_an_attachment_is_stored_and_downloadable(sqlite_server) -> None:
    ids = await seed_basics(sqlite_server.services)
    conv_id = await inbound(sqlite_server.services, ids["channel"], "send me the form")
    async with httpx.AsyncClient(base_url=sqlite_server.url) as c:
        csrf = await page_login(c, "alice@example.com")
        r = await c.post(f"/desk/conversations/{conv_id}/reply", data={"text": "Here it is", "kind": "reply"},
                         files={"files": ("form.pdf", b"%PDF-1.4 fake", "application/pdf")},
                         headers={"X-CSRF-Token": csrf})
        assert r.status_code == 204, r.text
        msgs = await c.get(f"/desk/p/conversations/{conv_id}/messages")
        url = re.search(r'href="(/api/v1/attachments/[^"]+)"', msgs.text)
        assert url and "form.pdf" in msgs.text
        dl = await c.get(url.group(1))
        assert dl.status_code == 200 and dl.content == b"%PDF-1.4 fake"
        r = await c.post(f"/desk/conversations/{conv_id}/reply", data={"text": "note", "kind": "note"},
                         files={"files": ("a.txt", b"x", "text/plain")}, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 422


async def test_canned_responses_api(sqlite_server) -> None:
    await seed_basics(sqlite_server.services)
    async with httpx.AsyncClient(base_url=sqlite_server.url) as admin:
        await login(admin, "admin@example.com")
        r = await admin.post("/api/v1/canned-responses", json={"shortcut": "/Hello", "title": "Hi", "text": "Hi there!"})
        assert r.status_code == 201 and r.json()["shortcut"] == "hello"
        cid = r.json()["id"]
        assert (await admin.post("/api/v1/canned-responses", json={"shortcut": "hello", "text": "x"})).status_code == 409
        bad = await admin.post("/api/v1/canned-responses", json={"shortcut": "no spaces", "text": "x"})
        assert bad.status_code == 422 and bad.json()["field"] == "shortcut"
        r = await admin.patch(f"/api/v1/canned-responses/{cid}", json={"text": "Hello {{name}}!"})
        assert r.status_code == 200 and r.json()["text"] == "Hello {{name}}!"
    async with httpx.AsyncClient(base_url=sqlite_server.url) as agent:
        await login(agent, "alice@example.com")
        listed = await agent.get("/api/v1/canned-responses")
        assert [c["shortcut"] for c in listed.json()] == ["hello"]
        assert (await agent.post("/api/v1/canned-responses", json={"shortcut": "x", "text": "x"})).status_code == 403
        assert (await agent.delete(f"/api/v1/canned-responses/{cid}")).status_code == 403
    async with httpx.AsyncClient(base_url=sqlite_server.url) as admin:
        await login(admin, "admin@example.com")
        assert (await admin.delete(f"/api/v1/canned-responses/{cid}")).status_code == 204
        assert (await admin.get(f"/api/v1/canned-responses/{cid}")).status_code == 404


async def test_admin_pages_by_role_and_forms(sqlite_server) -> None:
    ids = await seed_basics(sqlite_server.services)
    sections = ["users", "teams", "queues", "channels", "canned"]
    async with httpx.AsyncClient(base_url=sqlite_server.url) as c:
        assert (await c.get("/admin/users")).status_code == 303
        await page_login(c, "alice@example.com")
        for section in sections:
            assert (await c.get(f"/admin/{section}")).status_code == 403
        assert (await c.post("/admin/teams", data={"name": "Hackers"})).status_code == 403
    async with httpx.AsyncClient(base_url=sqlite_server.url) as c:
        csrf = await page_login(c, "sup@example.com")
        for section in sections:
            r = await c.get(f"/admin/{section}")
            assert r.status_code == 200 and "read-only" in r.text and 'method="post"' not in r.text
        assert "s3cret" not in (await c.get("/admin/channels")).text
        r = await c.post("/admin/teams", data={"name": "Sneaky", "csrf_token": csrf})
        assert r.status_code == 403
    async with httpx.AsyncClient(base_url=sqlite_server.url) as c:
        csrf = await page_login(c, "admin@example.com")
        assert (await c.post("/admin/teams", data={"name": "No token"})).status_code == 403
        r = await c.post("/admin/teams", data={"name": "Night shift", "csrf_token": csrf})
        assert r.status_code == 303 and "ok=" in r.headers["location"]
        assert "Night shift" in (await c.get("/admin/teams")).text
        r = await c.post("/admin/users", data={
            "csrf_token": csrf, "name": "Dana", "email": "dana@example.com", "role": "agent",
            "password": "another-long-password", "skill_name": ["billing", "spanish"], "skill_level": ["5", "2"],
            "queue_ids": [str(ids["billing"])], "team_ids": [str(ids["team"])]})
        assert r.status_code == 303 and "ok=" in r.headers["location"], r.headers["location"]
        users = (await c.get("/api/v1/users")).json()
        dana = next(u for u in users if u["email"] == "dana@example.com")
        assert dana["skills"] == {"billing": 5, "spanish": 2} and dana["queue_ids"] == [ids["billing"]]
        r = await c.post("/admin/users", data={"csrf_token": csrf, "name": "Eve", "email": "eve@example.com",
                                               "password": "another-long-password", "skill_name": "x",
                                               "skill_level": "9"})
        assert "error=" in r.headers["location"]
        r = await c.post(f"/admin/users/{dana['id']}", data={
            "csrf_token": csrf, "name": "Dana S.", "role": "supervisor", "active": "on",
            "skill_name": "billing", "skill_level": "4"})
        assert r.status_code == 303 and "ok=" in r.headers["location"]
        assert "Dana S." in (await c.get("/admin/users")).text
        r = await c.post(f"/admin/queues/{ids['billing']}", data={"csrf_token": csrf, "name": "billing-eu",
                                                                  "skills_spec": "billing:4, german:2"})
        assert r.status_code == 303 and "ok=" in r.headers["location"], r.headers["location"]
        queues = {q["id"]: q for q in (await c.get("/api/v1/queues")).json()}
        assert queues[ids["billing"]]["name"] == "billing-eu"
        assert queues[ids["billing"]]["settings"]["skills"] == {"billing": 4, "german": 2}
        r = await c.post("/admin/canned", data={"csrf_token": csrf, "shortcut": "thanks", "title": "Thanks",
                                                "text": "Thank you <b>so</b> much"})
        assert r.status_code == 303
        page = await c.get("/admin/canned")
        assert "Thank you &lt;b&gt;so&lt;/b&gt; much" in page.text
        # channels: the form comes from the kind's Config schema; secrets never come back
        form = await c.get("/admin/channels?kind=api")
        assert 'name="config.secret"' in form.text and 'type="password"' in form.text
        r = await c.post("/admin/channels", data={"csrf_token": csrf, "kind": "api", "name": "Partner API",
                                                  "config.secret": "partner-secret-0123456789",
                                                  "config.timeout_seconds": "5"})
        assert r.status_code == 303 and "ok=" in r.headers["location"], r.headers["location"]
        page = await c.get("/admin/channels")
        assert "Partner API" in page.text and "partner-secret" not in page.text and "/hooks/" in page.text
        r = await c.post("/admin/channels", data={"csrf_token": csrf, "kind": "api", "name": "Weak",
                                                  "config.secret": "short"})
        assert "error=" in r.headers["location"]


async def test_webchat_channels_show_their_embed_snippet(sqlite_server) -> None:
    from threadline.channels.registry import get_adapter_class

    await seed_basics(sqlite_server.services)
    cls = get_adapter_class("webchat")
    assert cls is not None, "the web chat channel is installed"
    async with httpx.AsyncClient(base_url=sqlite_server.url) as c:
        csrf = await page_login(c, "admin@example.com")
        form = await c.get("/admin/channels?kind=webchat")
        assert form.status_code == 200
        assert 'name="config.allowed_origins"' in form.text and 'value="phone"' in form.text
        data = {"csrf_token": csrf, "kind": "webchat", "name": "Website chat",
                "config.allowed_origins": "https://shop.example.com\nhttps://www.example.com",
                "multi": "prechat_fields", "config.prechat_fields": ["name", "topic"], "config.position": "left"}
        r = await c.post("/admin/channels", data=data)
        assert r.status_code == 303 and "ok=" in r.headers["location"], r.headers["location"]
        page = await c.get("/admin/channels")
        base = sqlite_server.services.settings.public_base_url
        async with sqlite_server.services.db.transaction(write=False) as s:
            key = next(ch.key for ch in await channels_repo.list_channels(s) if ch.kind == "webchat")
        snippet = f'&lt;script src=&#34;{base}/widget.js&#34; data-channel=&#34;{key}&#34; async&gt;&lt;/script&gt;'
        assert snippet in page.text
        async with httpx.AsyncClient(base_url=sqlite_server.url) as api:
            await login(api, "admin@example.com")
            chan = next(ch for ch in (await api.get("/api/v1/channels")).json() if ch["kind"] == "webchat")
        assert chan["config"]["allowed_origins"] == ["https://shop.example.com", "https://www.example.com"]
        assert chan["config"]["prechat_fields"] == ["name", "topic"] and chan["config"]["position"] == "left"


async def test_channel_picker_and_csat_in_the_sidebar(sqlite_server) -> None:
    from threadline.actions import channels as channel_actions
    from threadline.actions import csat as csat_actions

    ids = await seed_basics(sqlite_server.services)
    async with sqlite_server.services.db.transaction(write=True) as s:
        other = await channel_actions.create_channel(s, sqlite_server.services.box, kind="api", name="Partner API",
                                                     config={"secret": "another-secret-0123456789"})
    conv_id = await inbound(sqlite_server.services, ids["channel"], "first via API", pid="one")
    assert await inbound(sqlite_server.services, other.id, "then via partner", pid="two") == conv_id
    async with httpx.AsyncClient(base_url=sqlite_server.url) as c:
        csrf = await page_login(c, "alice@example.com")
        pane = await c.get(f"/conversations/{conv_id}", headers={"HX-Request": "true", "HX-Target": "pane"})
        options = re.findall(r'<option value="(\d+):(\d+)" *(selected)? *>', pane.text)
        assert {int(ch) for ch, _, _ in options} == {ids["channel"], other.id}
        assert [int(ch) for ch, _, sel in options if sel] == [other.id]  # the last one used is preselected
        ident = next(i for ch, i, _ in options if int(ch) == ids["channel"])
        r = await c.post(f"/desk/conversations/{conv_id}/reply",
                         data={"text": "answering on the first", "target": f"{ids['channel']}:{ident}"},
                         headers={"X-CSRF-Token": csrf})
        assert r.status_code == 204
        async with sqlite_server.services.db.transaction(write=False) as s:
            rows, _ = await conv_repo.list_messages(s, conv_id, None, 100)
        assert [m.channel_instance_id for m in rows if m.direction == "out"] == [ids["channel"]]
        # the timeline marks each change of channel, also in the partial live.js appends
        full = await c.get(f"/desk/p/conversations/{conv_id}/messages")
        assert full.text.count("Channel switched to") == 2 and "Channel switched to Partner API" in full.text
        tail = await c.get(f"/desk/p/conversations/{conv_id}/messages?after={rows[-2].id}")
        assert "Channel switched to API" in tail.text and "Partner API" not in tail.text
        # CSAT: the sidebar shows the customer's ratings once there are any
        side = await c.get(f"/desk/p/conversations/{conv_id}/sidebar")
        assert "No ratings yet" in side.text
        r = await c.post(f"/desk/conversations/{conv_id}/update", data={"status": "resolved"},
                         headers={"X-CSRF-Token": csrf})
        assert r.status_code == 204
        async with sqlite_server.services.db.transaction(write=True) as s:
            conv = await conv_repo.get_conversation(s, conv_id)
            await csat_actions.submit_csat(s, conversation_id=conv_id, contact_id=conv.contact_id, rating=4,
                                              comment="Nice <b>service</b>")
        side = await c.get(f"/desk/p/conversations/{conv_id}/sidebar")
        assert 'aria-label="4 out of 5"' in side.text and "Nice &lt;b&gt;service&lt;/b&gt;" in side.text


async def test_snooze_until_a_local_time(sqlite_server) -> None:
    from datetime import UTC, datetime

    ids = await seed_basics(sqlite_server.services)
    conv_id = await inbound(sqlite_server.services, ids["channel"], "call me next year")
    async with httpx.AsyncClient(base_url=sqlite_server.url) as c:
        csrf = await page_login(c, "alice@example.com")
        r = await c.post(f"/desk/conversations/{conv_id}/update", headers={"X-CSRF-Token": csrf}, data={
            "status": "snoozed", "snooze": "custom", "snooze_until": "2030-01-02T10:00", "tz_offset": "-60"})
        assert r.status_code == 204
        header = await c.get(f"/desk/p/conversations/{conv_id}/header")
        assert "until 02 Jan 09:00 UTC" in header.text  # 10:00 in UTC+1
        r = await c.post(f"/desk/conversations/{conv_id}/update", headers={"X-CSRF-Token": csrf},
                         data={"status": "snoozed", "snooze": "custom", "snooze_until": "not a date"})
        assert r.status_code == 422 and r.json()["field"] == "snooze_until"
    conv = await conv_of(sqlite_server, conv_id)
    assert conv.status == "snoozed" and conv.snoozed_until == datetime(2030, 1, 2, 9, 0, tzinfo=UTC)


async def test_admins_edit_a_queues_routing_and_hours_and_impossible_settings_are_refused(sqlite_server) -> None:
    ids = await seed_basics(sqlite_server.services)
    async with httpx.AsyncClient(base_url=sqlite_server.url) as c:
        csrf = await page_login(c, "admin@example.com")
        page = await c.get("/admin/queues")
        assert f'action="/admin/queues/{ids["general"]}/routing"' in page.text
        form = {"csrf_token": csrf, "offer_timeout_seconds": "45", "wrap_up_seconds": "20", "sticky_seconds": "600",
                "language_required": "on", "steps": '[{"after_seconds": 60, "overflow_to": ' + str(ids["billing"]) + "}]",
                "hours": '{"timezone": "Europe/Rome", "weekly": {"mon": [["09:00", "18:00"]]}}'}
        ok = await c.post(f"/admin/queues/{ids['general']}/routing", data=form)
        assert ok.status_code == 303 and "ok=" in ok.headers["location"], ok.headers.get("location")
        saved = (await c.get(f"/api/v1/routing/queues/{ids['general']}/settings")).json()
        assert saved["routing"]["offer_timeout_seconds"] == 45 and saved["routing"]["sticky_seconds"] == 600
        assert saved["settings"]["hours"]["timezone"] == "Europe/Rome"
        # an overflow loop (billing → general → billing) is refused with the reason
        loop = {**form, "steps": '[{"after_seconds": 60, "overflow_to": ' + str(ids["general"]) + "}]"}
        refused = await c.post(f"/admin/queues/{ids['billing']}/routing", data=loop)
        assert refused.status_code == 303 and "error=" in refused.headers["location"]
        assert "cycle" in httpx.URL(refused.headers["location"]).params["error"]
        bad_tz = await c.post(f"/admin/queues/{ids['general']}/routing", data={**form, "hours": '{"timezone": "Mars/Base"}'})
        assert "error=" in bad_tz.headers["location"] and "time zone" in httpx.URL(bad_tz.headers["location"]).params["error"]
    async with httpx.AsyncClient(base_url=sqlite_server.url) as agent:
        csrf = await page_login(agent, "alice@example.com")
        assert (await agent.post(f"/admin/queues/{ids['general']}/routing", data={**form, "csrf_token": csrf})).status_code == 403


async def test_supervisors_watch_queues_waiting_tasks_and_agents_live(sqlite_server) -> None:
    from tests.web.test_hooks_and_stream import hook_url, signed

    ids = await seed_basics(sqlite_server.services)
    async with httpx.AsyncClient(base_url=sqlite_server.url) as c:
        body, headers = signed({"id": "m-1", "contact": {"id": "cust-1", "name": "Zoe"}, "text": "anyone there?"})
        assert (await c.post(await hook_url(sqlite_server, ids["channel"]), content=body, headers=headers)).status_code == 200
        await page_login(c, "sup@example.com")
        page = await c.get("/admin/live")
        assert page.status_code == 200 and 'data-board-url="/admin/live/board"' in page.text
        board = await c.get("/admin/live/board")
        assert board.status_code == 200
        assert "general" in board.text and "Alice" in board.text and "Bob" in board.text
        conv = (await c.get("/api/v1/conversations")).json()["items"][0]
        assert f"#{conv['id']}" in board.text  # waiting (nobody is available), listed with its wait
        # today's figures come from the router's outcomes: one answered in 12 s, one after 90 s (target 60 s)
        import re
        import time as _time

        from threadline.db.repos import routing as routing_repo
        from threadline.domain.routing.records import Outcome, instant
        now = _time.time()
        async with sqlite_server.services.db.transaction() as s:
            await routing_repo.insert_outcomes(s, [
                Outcome(conv["id"], ids["general"], "messaging", ids["alice"], "answered", instant(now - k),
                        instant(now - 12 - k), w, within_target=w <= 60)
                for k, w in ((5, 12.0), (3, 90.0))])
        from threadline.web.desk.admin import clear_figures_cache

        clear_figures_cache()  # the board keeps today's figures a few seconds; these outcomes are new
        board = await c.get("/admin/live/board")
        row = re.search(rf'<tr data-queue="{ids["general"]}".*?</tr>', board.text, re.S)
        assert row is not None
        assert re.search(r'class="q-answered[^"]*">2<', row.group(0)) and ">50%<" in row.group(0) and "chip warn" in row.group(0)
        assert "51s" in row.group(0)  # ASA: (12 + 90) / 2
    async with httpx.AsyncClient(base_url=sqlite_server.url) as agent:
        await page_login(agent, "alice@example.com")
        assert (await agent.get("/admin/live/board")).status_code == 403


async def test_admins_edit_a_queues_call_settings_and_bad_codes_come_back_as_the_pages_error(sqlite_server) -> None:
    ids = await seed_basics(sqlite_server.services)
    async with httpx.AsyncClient(base_url=sqlite_server.url) as c:
        csrf = await page_login(c, "admin@example.com")
        page = await c.get("/admin/queues")
        assert f'action="/admin/queues/{ids["general"]}/voice"' in page.text
        form = {"csrf_token": csrf, "record": "on_demand", "dispositions": "resolved\r\n  order-status \r\n\r\nresolved\n",
                "verified_for_sensitive": "on", "callback_order": "agent_first"}
        ok = await c.post(f"/admin/queues/{ids['general']}/voice", data=form)
        assert ok.status_code == 303 and "ok=" in ok.headers["location"], ok.headers.get("location")
        queues = {q["id"]: q for q in (await c.get("/api/v1/queues")).json()}
        assert queues[ids["general"]]["settings"]["voice"] == {
            "record": "on_demand", "dispositions": ["resolved", "order-status"], "callback_order": "agent_first",
            "verified_for_sensitive": True}
        assert queues[ids["general"]]["settings"]["skills"] == {}  # the rest of the settings stay
        page = await c.get("/admin/queues")  # the form shows what is saved
        assert '<option value="on_demand" selected>' in page.text
        assert ">resolved\norder-status</textarea>" in page.text
        assert re.search(r'name="verified_for_sensitive" checked', page.text)
        assert '<option value="agent_first" selected>' in page.text
        # unticked, emptied: back to free text and no verification needed
        ok = await c.post(f"/admin/queues/{ids['general']}/voice", data={"csrf_token": csrf, "record": "channel",
                                                                          "dispositions": ""})
        assert "ok=" in ok.headers["location"]
        queues = {q["id"]: q for q in (await c.get("/api/v1/queues")).json()}
        assert queues[ids["general"]]["settings"]["voice"] == {
            "record": "channel", "dispositions": [], "callback_order": "customer_first", "verified_for_sensitive": False}
        # what is wrong comes back on the page with the reason, never a 500 or raw JSON; nothing is saved
        for bad, why in [({"dispositions": "x" * 61}, "longer than 60 characters"),
                         ({"dispositions": "\n".join(f"code-{i}" for i in range(51))}, "Disposition codes:"),
                         ({"record": "sometimes"}, "not a recording policy")]:
            r = await c.post(f"/admin/queues/{ids['general']}/voice", data={"csrf_token": csrf, "record": "never", **bad})
            assert r.status_code == 303 and "error=" in r.headers["location"], r.headers["location"]
            assert why in httpx.URL(r.headers["location"]).params["error"]
            shown = await c.get(r.headers["location"])
            assert shown.status_code == 200 and 'role="alert"' in shown.text and why.split(":")[0] in shown.text
        queues = {q["id"]: q for q in (await c.get("/api/v1/queues")).json()}
        assert queues[ids["general"]]["settings"]["voice"]["record"] == "channel"
    async with httpx.AsyncClient(base_url=sqlite_server.url) as agent:
        csrf = await page_login(agent, "alice@example.com")
        r = await agent.post(f"/admin/queues/{ids['general']}/voice", data={"csrf_token": csrf, "record": "always"})
        assert r.status_code == 403
