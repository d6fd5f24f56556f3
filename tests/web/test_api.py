"""The REST API over real HTTP: auth, CSRF, tokens, permissions, problem details, pagination."""

from __future__ import annotations

import httpx
from tests.conftest import login, seed_basics


async def test_login_session_csrf_and_logout(server) -> None:
    await seed_basics(server.services)
    async with httpx.AsyncClient(base_url=server.url) as c:
        assert (await c.get("/api/v1/me")).status_code == 401
        bad = await c.post("/api/v1/auth/login", json={"email": "alice@example.com", "password": "nope"})
        assert bad.status_code == 401 and bad.headers["content-type"] == "application/problem+json"
        csrf = await login(c, "alice@example.com")
        cookie = c.cookies.get("tl_session")
        me = await c.get("/api/v1/me")
        assert me.json()["email"] == "alice@example.com" and me.json()["csrf_token"] == csrf
        del c.headers["X-CSRF-Token"]
        no_csrf = await c.put("/api/v1/me/presence", json={"status": "available"})
        assert no_csrf.status_code == 403 and "CSRF" in no_csrf.json()["detail"]
        ok = await c.put("/api/v1/me/presence", json={"status": "available"}, headers={"X-CSRF-Token": csrf})
        assert ok.status_code == 200 and ok.json()["presence"] == "available"
        assert (await c.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf})).status_code == 204
    async with httpx.AsyncClient(base_url=server.url, cookies={"tl_session": cookie}) as c2:
        assert (await c2.get("/api/v1/me")).status_code == 401  # the session is gone server-side


async def test_login_is_throttled_after_repeated_failures(server) -> None:
    await seed_basics(server.services)
    async with httpx.AsyncClient(base_url=server.url) as c:
        for _ in range(5):
            r = await c.post("/api/v1/auth/login", json={"email": "bob@example.com", "password": "wrong-password"})
            assert r.status_code == 401
        r = await c.post("/api/v1/auth/login", json={"email": "bob@example.com", "password": "correct-horse-battery"})
        assert r.status_code == 429 and "Retry-After" in r.headers


async def test_api_tokens_carry_their_owners_permissions(server) -> None:
    ids = await seed_basics(server.services)
    async with httpx.AsyncClient(base_url=server.url) as c:
        await login(c, "alice@example.com")
        created = await c.post("/api/v1/tokens", json={"name": "script"})
        assert created.status_code == 201
        token = created.json()["token"]
        listed = await c.get("/api/v1/tokens")
        assert "token" not in listed.json()[0]  # shown once only
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as t:
        assert (await t.get("/api/v1/me")).json()["id"] == ids["alice"]
        # an agent's token cannot do admin things, and needs no CSRF token
        denied = await t.post("/api/v1/users", json={"email": "n@example.com", "name": "N"})
        assert denied.status_code == 403
        channels = (await t.get("/api/v1/channels")).json()
        assert channels[0]["config"] is None and channels[0]["inbound_url"] is None
        assert (await t.get("/api/v1/channel-kinds")).status_code == 403
        token_id = created.json()["id"]
        assert (await t.delete(f"/api/v1/tokens/{token_id}")).status_code == 204
        assert (await t.get("/api/v1/me")).status_code == 401
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": "Bearer tl_forged"}) as f:
        assert (await f.get("/api/v1/conversations")).status_code == 401


async def test_admin_manages_users_queues_and_channels_with_secrets_masked(server) -> None:
    await seed_basics(server.services)
    async with httpx.AsyncClient(base_url=server.url) as c:
        await login(c, "admin@example.com")
        r = await c.post("/api/v1/users", json={"email": "new@example.com", "name": "New", "role": "agent",
                                                "skills": {"billing": 4}, "password": "a-long-password"})
        assert r.status_code == 201 and r.json()["skills"] == {"billing": 4}
        bad = await c.post("/api/v1/users", json={"email": "n2@example.com", "name": "N", "skills": {"x": 9}})
        assert bad.status_code == 422 and bad.json()["field"] == "skills"
        ch = await c.post("/api/v1/channels", json={"kind": "api", "name": "Partner",
                                                    "config": {"secret": "0123456789abcdef!", "webhook_url": None}})
        assert ch.status_code == 201
        body = ch.json()
        assert body["config"]["secret"] == "********" and body["inbound_url"].startswith("http://127.0.0.1:8080/hooks/")
        weak = await c.post("/api/v1/channels", json={"kind": "api", "name": "Weak", "config": {"secret": "x"}})
        assert weak.status_code == 422 and "config.secret" in weak.json()["detail"]
        unknown = await c.post("/api/v1/channels", json={"kind": "carrier-pigeon", "name": "P", "config": {}})
        assert unknown.status_code == 422 and "unknown channel kind" in unknown.json()["detail"]
        q = await c.post("/api/v1/queues", json={"name": "vip", "settings": {"sla": {"answer_seconds": 20}}})
        assert q.status_code == 201 and q.json()["settings"]["sla"]["answer_seconds"] == 20


async def test_bad_input_gets_clear_4xx_never_500(server) -> None:
    await seed_basics(server.services)
    async with httpx.AsyncClient(base_url=server.url) as c:
        await login(c, "sup@example.com")
        r = await c.post("/api/v1/contacts", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 422 and "JSON" in r.json()["detail"]
        r = await c.post("/api/v1/contacts", json={"name": "X", "favourite_colour": "blue"})
        assert r.status_code == 422 and r.json()["errors"][0] == {"field": "body.favourite_colour",
                                                                   "message": "unknown field"}
        r = await c.post("/api/v1/contacts", json={"identities": [{"kind": "phone", "value": "12"}]})
        assert r.status_code == 422 and r.json()["field"] == "value"
        r = await c.get("/api/v1/conversations/999999")
        assert r.status_code == 404 and "999999" in r.json()["detail"]
        r = await c.get("/api/v1/conversations/abc")
        assert r.status_code == 422 and r.json()["field"] == "path.conversation_id"
        r = await c.get("/api/v1/conversations", params={"cursor": "garbage"})
        assert r.status_code == 422 and r.json()["field"] == "cursor"
        r = await c.get("/api/v1/conversations", params={"status": "closed"})
        assert r.status_code == 422
        r = await c.post("/api/v1/contacts", content=b"x" * 2_000_001, headers={"content-type": "application/json"})
        assert r.status_code == 413 and "larger than" in r.json()["detail"]
        r = await c.get("/api/v1/nothing-here")
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
        r = await c.patch("/api/v1/conversations/1", json={"status": "resolved", "assignee_id": "me"})
        assert r.status_code == 422 and r.json()["field"] == "body.assignee_id"


async def test_conversations_filters_and_cursor_pagination(server) -> None:
    ids = await seed_basics(server.services)
    from threadline.actions import inbound as inbound_actions
    from threadline.db.repos import channels as channels_repo
    from threadline.domain.contacts import IdentityKind, IdentityValue
    from threadline.domain.messages import InboundMessage, Sender

    async with server.services.db.transaction() as s:
        channel = await channels_repo.get_channel(s, ids["channel"])
        for i in range(7):
            who = Sender((IdentityValue(IdentityKind.HANDLE, f"c{i}", str(channel.id)),), f"Customer {i}")
            await inbound_actions.receive_inbound(s, channel, InboundMessage(f"p{i}", who, f"hi {i}"))
    async with httpx.AsyncClient(base_url=server.url) as c:
        await login(c, "sup@example.com")
        seen, cursor = [], None
        while True:
            params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
            page = (await c.get("/api/v1/conversations", params=params)).json()
            seen += [item["id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert len(seen) == 7 and len(set(seen)) == 7
        first = seen[0]
        await c.patch(f"/api/v1/conversations/{first}", json={"labels": ["refund"], "status": "pending"})
        labelled = (await c.get("/api/v1/conversations", params={"label": "refund"})).json()["items"]
        assert [i["id"] for i in labelled] == [first]
        pending = (await c.get("/api/v1/conversations", params={"status": "pending"})).json()["items"]
        assert [i["id"] for i in pending] == [first]
        found = (await c.get("/api/v1/contacts", params={"q": "customer 3"})).json()["items"]
        assert [f["name"] for f in found] == ["Customer 3"]
    async with httpx.AsyncClient(base_url=server.url) as bob:
        await login(bob, "bob@example.com")  # serves only billing: sees none of them
        assert (await bob.get("/api/v1/conversations")).json()["items"] == []
        assert (await bob.get(f"/api/v1/conversations/{first}")).status_code == 404


async def test_operations_endpoints_and_self_hosted_docs(sqlite_server) -> None:
    async with httpx.AsyncClient(base_url=sqlite_server.url) as c:
        assert (await c.get("/healthz")).json() == {"status": "ok"}
        assert (await c.get("/readyz")).json()["checks"]["database"] == "ok"
        metrics = await c.get("/metrics")
        assert "threadline_http_requests_total" in metrics.text
        spec = (await c.get("/api/v1/openapi.json")).json()
        assert "/api/v1/conversations" in spec["paths"] and "/api/v1/contacts/{contact_id}" in spec["paths"]
        docs = await c.get("/api/docs")
        assert "/api/docs/static/swagger-ui-bundle.js" in docs.text and "cdn" not in docs.text.lower()
        js = await c.get("/api/docs/static/swagger-ui-bundle.js")
        assert js.status_code == 200 and len(js.content) > 100_000
