"""The webhooks API and admin pages over real HTTP: admins only, clear 4xx for bad input, secrets shown
once, private destinations refused (no THREADLINE_WEBHOOKS_ALLOW_PRIVATE here)."""

from __future__ import annotations

import httpx
from tests.conftest import login, seed_basics

PUBLIC = "https://93.184.216.34/threadline"  # a public address literal: no DNS needed, never contacted here


async def test_only_admins_manage_webhooks(sqlite_server) -> None:
    await seed_basics(sqlite_server.services)
    for who in ("alice@example.com", "sup@example.com"):
        async with httpx.AsyncClient(base_url=sqlite_server.url) as c:
            await login(c, who)
            assert (await c.get("/api/v1/webhooks")).status_code == 403
            r = await c.post("/api/v1/webhooks", json={"url": PUBLIC, "events": ["*"]})
            assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
            assert (await c.get("/api/v1/webhooks/event-types")).status_code == 403
            assert (await c.get("/admin/webhooks")).status_code == 403
    async with httpx.AsyncClient(base_url=sqlite_server.url) as anon:
        assert (await anon.get("/api/v1/webhooks")).status_code == 401


async def test_endpoint_lifecycle_and_validation(sqlite_server) -> None:
    await seed_basics(sqlite_server.services)
    async with httpx.AsyncClient(base_url=sqlite_server.url) as c:
        await login(c, "admin@example.com")
        bad = await c.post("/api/v1/webhooks", json={"url": PUBLIC, "events": ["conversation.created",
                                                                               "conversation.exploded"]})
        assert bad.status_code == 422 and bad.json()["field"] == "events"
        assert "conversation.exploded" in bad.json()["detail"] and "conversation.created" not in bad.json()["detail"]
        for body, field, words in [
            ({"url": "http://127.0.0.1:8080/hook", "events": ["*"]}, "url", "private"),
            ({"url": "http://169.254.169.254/latest/meta-data/", "events": ["*"]}, "url", "private"),
            ({"url": "ftp://example.com/x", "events": ["*"]}, "url", "https://"),
            ({"url": "https://hooks.invalid/x", "events": ["nope.event"]}, "events", "nope.event"),  # before DNS
            ({"url": PUBLIC, "events": []}, "body.events", ""),
            ({"url": PUBLIC, "events": ["*"], "colour": "red"}, "body.colour", "unknown field"),
        ]:
            r = await c.post("/api/v1/webhooks", json=body)
            assert r.status_code == 422 and r.json()["field"] == field and words in r.json()["detail"], r.text

        created = await c.post("/api/v1/webhooks", json={"url": PUBLIC, "events": ["message.created", "*"],
                                                         "description": "BI <export>"})
        assert created.status_code == 201
        hook = created.json()
        assert hook["secret"].startswith("whsec_") and hook["events"] == ["*", "message.created"]
        assert hook["active"] and hook["consecutive_failures"] == 0
        listed = (await c.get("/api/v1/webhooks")).json()
        assert [h["id"] for h in listed] == [hook["id"]] and "secret" not in listed[0]
        assert "secret" not in (await c.get(f"/api/v1/webhooks/{hook['id']}")).json()

        types = (await c.get("/api/v1/webhooks/event-types")).json()
        assert "routing.state" in types["not_in_wildcard"] and "routing.state" not in types["wildcard"]
        assert "contact.merged" in types["wildcard"]

        r = await c.patch(f"/api/v1/webhooks/{hook['id']}", json={"events": ["contact.merged"], "active": False})
        assert r.status_code == 200 and r.json()["events"] == ["contact.merged"] and not r.json()["active"]
        assert r.json()["disabled_reason"] == "disabled by an admin"
        r = await c.patch(f"/api/v1/webhooks/{hook['id']}", json={"active": True})
        assert r.json()["active"] and r.json()["disabled_reason"] is None
        r = await c.patch(f"/api/v1/webhooks/{hook['id']}", json={"url": "http://10.0.0.1/"})
        assert r.status_code == 422 and r.json()["field"] == "url"
        r = await c.patch(f"/api/v1/webhooks/{hook['id']}", json={"events": ["nope.never"]})
        assert r.status_code == 422 and "nope.never" in r.json()["detail"]

        rolled = await c.post(f"/api/v1/webhooks/{hook['id']}/roll-secret", json={"keep_previous_seconds": 3600})
        assert rolled.status_code == 200 and rolled.json()["secret"] != hook["secret"]
        assert rolled.json()["previous_secret_expires_at"] is not None
        plain = await c.post(f"/api/v1/webhooks/{hook['id']}/roll-secret")
        assert plain.status_code == 200 and plain.json()["previous_secret_expires_at"] is None
        too_long = await c.post(f"/api/v1/webhooks/{hook['id']}/roll-secret", json={"keep_previous_seconds": 10**6})
        assert too_long.status_code == 422

        log = await c.get(f"/api/v1/webhooks/{hook['id']}/deliveries?status=failed")
        assert log.status_code == 200 and log.json() == {"items": [], "next_cursor": None}
        assert (await c.get(f"/api/v1/webhooks/{hook['id']}/deliveries?status=lost")).status_code == 422
        assert (await c.get(f"/api/v1/webhooks/{hook['id']}/deliveries?cursor=garbage")).status_code == 422
        assert (await c.get("/api/v1/webhooks/999/deliveries")).status_code == 404
        assert (await c.post("/api/v1/webhooks/999/ping")).status_code == 404
        assert (await c.post("/api/v1/webhooks/deliveries/999/redeliver")).status_code == 404

        assert (await c.delete(f"/api/v1/webhooks/{hook['id']}")).status_code == 204
        assert (await c.get(f"/api/v1/webhooks/{hook['id']}")).status_code == 404
        assert (await c.delete(f"/api/v1/webhooks/{hook['id']}")).status_code == 404


async def test_admin_page_creates_shows_the_secret_once_and_escapes(sqlite_server) -> None:
    await seed_basics(sqlite_server.services)
    async with httpx.AsyncClient(base_url=sqlite_server.url) as c:
        csrf = await login(c, "admin@example.com")
        page = await c.get("/admin/webhooks")
        assert page.status_code == 200 and "Add a webhook" in page.text and 'href="/admin/webhooks"' in page.text
        refused = await c.post("/admin/webhooks", data={"csrf_token": csrf, "url": "http://192.168.1.20/x",
                                                        "events": ["*"]})
        assert refused.status_code == 422 and "private" in refused.text
        assert 'value="http://192.168.1.20/x"' in refused.text  # the form keeps what was typed
        expired = await c.post("/admin/webhooks", data={"csrf_token": "stale", "url": PUBLIC, "events": ["*"]})
        assert expired.status_code == 403
        made = await c.post("/admin/webhooks", data={"csrf_token": csrf, "url": PUBLIC, "events": ["*"],
                                                     "description": "<script>alert(1)</script>"})
        assert made.status_code == 200 and "whsec_" in made.text and "shown this once" in made.text
        assert "<script>alert(1)</script>" not in made.text and "&lt;script&gt;" in made.text
        hook = (await c.get("/api/v1/webhooks")).json()[0]
        again = await c.get(f"/admin/webhooks/{hook['id']}")
        assert again.status_code == 200 and "whsec_" not in again.text and "Recent deliveries" in again.text
        off = await c.post(f"/admin/webhooks/{hook['id']}/toggle?back=list", data={"csrf_token": csrf})
        assert off.status_code == 303 and off.headers["location"].startswith("/admin/webhooks?ok=")
        listing = await c.get("/admin/webhooks")
        assert "Disabled" in listing.text and "disabled by an admin" in listing.text
        rolled = await c.post(f"/admin/webhooks/{hook['id']}/roll-secret", data={"csrf_token": csrf})
        assert rolled.status_code == 200 and "whsec_" in rolled.text
        saved = await c.post(f"/admin/webhooks/{hook['id']}", data={"csrf_token": csrf, "url": PUBLIC,
                                                                    "events": ["bogus.event"]})
        assert saved.status_code == 303 and "bogus.event" in saved.headers["location"]
        gone = await c.post(f"/admin/webhooks/{hook['id']}/delete", data={"csrf_token": csrf})
        assert gone.status_code == 303 and (await c.get("/api/v1/webhooks")).json() == []
        assert (await c.get(f"/admin/webhooks/{hook['id']}")).status_code == 404
