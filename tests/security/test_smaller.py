"""Issue 12, item 8: header limits, logout, login throttling per account and address, the last admin,
names that spoof, /metrics, desk upload limits: each through the real HTTP interface."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.conftest import PASSWORD, login, make_server, seed_basics
from tests.web.test_desk_pages import inbound, page_login

RLO_NAME = "Ana\u202eexe.doc\u200b"  # a right-to-left override and a zero-width space


async def test_too_many_or_too_big_headers_are_431(server) -> None:
    async with httpx.AsyncClient(base_url=server.url) as c:
        assert (await c.get("/healthz")).status_code == 200
        many = {f"x-h{i}": "1" for i in range(150)}
        r = await c.get("/healthz", headers=many)
        assert r.status_code == 431 and r.headers["content-type"] == "application/problem+json"
        assert "too many request headers" in r.json()["detail"]
        r = await c.get("/healthz", headers={"x-big": "a" * 8000, "x-big2": "b" * 8000, "x-big3": "c" * 8000,
                                              "x-big4": "d" * 8000, "x-big5": "e" * 8000})
        assert r.status_code == 431 and "bytes" in r.json()["detail"]
        r = await c.post("/hooks/any", headers=many, content=b"{}")  # the hook fast path too
        assert r.status_code == 431


async def test_logout_needs_the_csrf_token_and_ends_the_session_on_the_server(server) -> None:
    await seed_basics(server.services)
    async with httpx.AsyncClient(base_url=server.url) as c:
        csrf = await page_login(c, "alice@example.com")
        cookie = c.cookies["tl_session"]
        # Another site posting the log-out form: refused, nothing cleared, the session still works.
        forged = await c.post("/logout", data={}, headers={"origin": "https://evil.example"})
        assert forged.status_code == 403 and "set-cookie" not in forged.headers
        assert (await c.get("/api/v1/me")).status_code == 200
        # The real button: the session ends on the server, so the old cookie is worth nothing.
        out = await c.post("/logout", data={"csrf_token": csrf})
        assert out.status_code == 303 and out.headers["location"] == "/login"
        assert 'tl_session=""' in out.headers["set-cookie"] or "Max-Age=0" in out.headers["set-cookie"]
    async with httpx.AsyncClient(base_url=server.url, cookies={"tl_session": cookie}) as replay:
        assert (await replay.get("/api/v1/me")).status_code == 401
    async with httpx.AsyncClient(base_url=server.url) as api:  # the API's log out, the same way
        csrf = await login(api, "bob@example.com")
        cookie = api.cookies["tl_session"]
        assert (await api.post("/api/v1/auth/logout", headers={"X-CSRF-Token": "wrong"})).status_code == 403
        assert (await api.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf})).status_code == 204
    async with httpx.AsyncClient(base_url=server.url, cookies={"tl_session": cookie}) as replay:
        assert (await replay.get("/api/v1/me")).status_code == 401


async def test_someone_guessing_passwords_cannot_lock_the_user_out(server) -> None:
    await seed_basics(server.services)
    attacker, user, office = ({"x-forwarded-for": ip} for ip in ("203.0.113.66", "198.51.100.7", "192.0.2.10"))
    async with httpx.AsyncClient(base_url=server.url) as c:
        for _ in range(5):
            r = await c.post("/api/v1/auth/login", json={"email": "alice@example.com", "password": "nope-nope-1"},
                             headers=attacker)
            assert r.status_code == 401
        blocked = await c.post("/api/v1/auth/login", json={"email": "alice@example.com", "password": PASSWORD},
                               headers=attacker)
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
        # Alice, from her own address, logs in as usual (the attacker's failures are the attacker's).
        ok = await c.post("/api/v1/auth/login", json={"email": "alice@example.com", "password": PASSWORD},
                          headers=user)
        assert ok.status_code == 200, ok.text
        # A mistyped password or four, then the right one: the count starts again after a success.
        for _ in range(4):
            await c.post("/api/v1/auth/login", json={"email": "bob@example.com", "password": "typo-typo-1"},
                         headers=office)
        assert (await c.post("/api/v1/auth/login", json={"email": "bob@example.com", "password": PASSWORD},
                             headers=office)).status_code == 200
        for _ in range(4):
            r = await c.post("/api/v1/auth/login", json={"email": "bob@example.com", "password": "typo-typo-2"},
                             headers=office)
            assert r.status_code == 401
        # Spraying many accounts from one address is throttled by address.
        for i in range(30):
            await c.post("/api/v1/auth/login", json={"email": f"u{i}@example.com", "password": "x" * 12},
                         headers={"x-forwarded-for": "203.0.113.99"})
        r = await c.post("/api/v1/auth/login", json={"email": "sup@example.com", "password": PASSWORD},
                         headers={"x-forwarded-for": "203.0.113.99"})
        assert r.status_code == 429 and "from your address" in r.json()["detail"]


async def test_the_last_active_admin_stays_one(server) -> None:
    ids = await seed_basics(server.services)
    async with httpx.AsyncClient(base_url=server.url) as c:
        await login(c, "admin@example.com")
        for change in ({"active": False}, {"role": "supervisor"}):
            r = await c.patch(f"/api/v1/users/{ids['admin']}", json=change)
            assert r.status_code == 409 and "last active admin" in r.json()["detail"], r.text
        assert (await c.get("/api/v1/me")).json()["role"] == "admin"
        # With a second admin, either may step down.
        assert (await c.patch(f"/api/v1/users/{ids['sup']}", json={"role": "admin"})).status_code == 200
        assert (await c.patch(f"/api/v1/users/{ids['admin']}", json={"role": "agent"})).status_code == 200
    async with httpx.AsyncClient(base_url=server.url) as sup:  # now the last admin, they cannot be deactivated
        await login(sup, "sup@example.com")
        r = await sup.patch(f"/api/v1/users/{ids['sup']}", json={"active": False})
        assert r.status_code == 409


async def test_names_cannot_spoof_with_invisible_or_direction_characters(server) -> None:
    ids = await seed_basics(server.services)
    conv_id = await inbound(server.services, ids["channel"], "hello", name=RLO_NAME)  # from a channel
    async with httpx.AsyncClient(base_url=server.url) as c:
        await login(c, "admin@example.com")
        conv = (await c.get(f"/api/v1/conversations/{conv_id}")).json()
        assert conv["contact_name"] == "Anaexe.doc"
        made = await c.post("/api/v1/contacts", json={"name": "Bob\u2066\u200dby\u2069", "identities": []})
        assert made.json()["name"] == "Bobby"
        edited = await c.patch(f"/api/v1/contacts/{made.json()['id']}", json={"name": "  Zoë\u200f  Ünal\ufeff "})
        assert edited.json()["name"] == "Zoë Ünal"
        user = await c.post("/api/v1/users", json={"email": "rtl@example.com", "name": "Eve\u202e", "role": "agent"})
        assert user.json()["name"] == "Eve"
        persian = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"  # a joiner inside a word is kept
        kept = await c.patch(f"/api/v1/contacts/{made.json()['id']}", json={"name": persian})
        assert kept.json()["name"] == persian
        page = await c.get(f"/conversations/{conv_id}")
        assert re.search(r"<bdi[^>]*>Anaexe\.doc</bdi>", page.text), "names are isolated where shown"


async def test_metrics_are_not_public(tmp_path: Path, sqlite_url: str) -> None:
    async with await make_server(sqlite_url, tmp_path) as server, httpx.AsyncClient(base_url=server.url) as c:
        assert (await c.get("/metrics")).status_code == 200  # this host, directly
        relayed = await c.get("/metrics", headers={"x-forwarded-for": "203.0.113.5"})  # through a proxy
        assert relayed.status_code == 403 and "THREADLINE_METRICS_TOKEN" in relayed.json()["detail"]
    token = "metrics-token-0123456789"
    async with await make_server(sqlite_url, tmp_path, metrics_token=token) as server, \
            httpx.AsyncClient(base_url=server.url) as c:
        assert (await c.get("/metrics")).status_code == 401
        assert (await c.get("/metrics", headers={"authorization": "Bearer wrong-token-000000"})).status_code == 401
        ok = await c.get("/metrics", headers={"authorization": f"Bearer {token}", "x-forwarded-for": "203.0.113.5"})
        assert ok.status_code == 200 and "threadline_http_requests" in ok.text


async def test_desk_uploads_take_what_the_composer_allows(server) -> None:
    ids = await seed_basics(server.services)
    conv_id = await inbound(server.services, ids["channel"], "send me the invoice")
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as c:
        csrf = await page_login(c, "admin@example.com")
        page = await c.get(f"/conversations/{conv_id}")
        assert 'data-max-file="10000000"' in page.text  # the composer knows the limits it says
        h = {"X-CSRF-Token": csrf}
        three_mb = ("invoice.pdf", b"%PDF-" + b"0" * 3_000_000, "application/pdf")
        r = await c.post(f"/desk/conversations/{conv_id}/reply", data={"text": "Here it is"},
                         files={"files": three_mb}, headers=h)
        assert r.status_code == 204, r.text[:300]
        eleven = ("big.pdf", b"0" * 10_000_001, "application/pdf")
        r = await c.post(f"/desk/conversations/{conv_id}/reply", data={"text": "x"}, files={"files": eleven}, headers=h)
        assert r.status_code == 422 and "10 MB" in r.json()["detail"]
        many = [("files", (f"f{i}.txt", b"x", "text/plain")) for i in range(11)]
        r = await c.post(f"/desk/conversations/{conv_id}/reply", data={"text": "x"}, files=many, headers=h)
        assert r.status_code == 422 and "at most 10 files" in r.json()["detail"]
        huge = [("files", (f"f{i}.bin", b"0" * 9_000_000, "application/octet-stream")) for i in range(3)]
        r = await c.post(f"/desk/conversations/{conv_id}/reply", data={"text": "x"}, files=huge, headers=h)
        assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"
        # Everywhere else the body limit stays 1 MB.
        r = await c.post("/api/v1/contacts", content=b'{"name": "' + b"a" * 1_100_000 + b'"}',
                         headers={**h, "content-type": "application/json"})
        assert r.status_code == 413
