"""Issue 12, item 6: inputs any user can send that used to crash the server (500) are 4xx problem
documents: ids beyond what a column holds, null where a value is needed, JSON nested beyond reason."""

from __future__ import annotations

import base64
import json
import time

import httpx

from tests.conftest import login, seed_basics
from threadline.db.repos import channels as channels_repo
from threadline.security import sign

BIG = 9223372036854775808  # 2^63: beyond 64 bits
DEEP = b"[" * 100_000 + b"]" * 100_000


def _problem(r: httpx.Response, status: int = 422) -> dict:
    assert r.status_code == status, (r.request.method, r.request.url, r.status_code, r.text[:300])
    assert r.headers["content-type"] == "application/problem+json", r.headers["content-type"]
    return r.json()


async def test_ids_beyond_a_column_are_invalid_input(server) -> None:
    await seed_basics(server.services)
    async with httpx.AsyncClient(base_url=server.url) as c:
        await login(c, "admin@example.com")
        for path in (f"/api/v1/conversations/{BIG}", f"/api/v1/conversations/{2**31}/messages",
                     f"/api/v1/contacts/{BIG}/360", f"/api/v1/users/{BIG}", f"/api/v1/channels/{2**40}",
                     f"/api/v1/conversations?queue_id={BIG}", f"/api/v1/routing/tasks?queue_id={2**31}",
                     f"/api/v1/merge-suggestions?contact_id={BIG}"):
            body = _problem(await c.get(path))
            assert "less than or equal to 2147483647" in body["detail"], body
        body = _problem(await c.patch("/api/v1/conversations/1", json={"assignee_id": BIG}))
        assert body["field"] == "body.assignee_id"
        _problem(await c.post("/api/v1/users", json={"email": "x@example.com", "name": "X", "queue_ids": [BIG]}))
        forged = base64.urlsafe_b64encode(json.dumps([BIG]).encode()).decode()
        _problem(await c.get("/api/v1/contacts", params={"cursor": forged}))
        _problem(await c.get("/api/v1/contacts", params={"cursor": base64.urlsafe_b64encode(b'["abc"]').decode()}))
        # The desk's pages and partials too (HTML routes: a problem document all the same).
        for path in (f"/conversations/{BIG}", f"/desk/p/conversations/{BIG}/sidebar", f"/admin/users/{BIG}",
                     f"/?view=all&queue={BIG}", "/?queue=%C2%B2", f"/desk/p/conversations/1/messages?after={BIG}"):
            r = await c.get(path)
            assert r.status_code < 500, (path, r.status_code, r.text[:200])
        csrf = (await c.get("/api/v1/me")).json()["csrf_token"]
        r = await c.post("/desk/conversations/1/transfer", data={"target": f"queue:{BIG}", "csrf_token": csrf})
        assert r.status_code == 422, r.text[:200]
        r = await c.post("/admin/users", data={"csrf_token": csrf, "email": "y@example.com", "name": "Y",
                                               "queue_ids": str(BIG), "team_ids": "²"})
        assert r.status_code == 303, r.text[:200]  # the unusable ids are ignored, like any other non-id


async def test_null_where_a_value_is_needed_is_invalid_input(server) -> None:
    ids = await seed_basics(server.services)
    async with server.services.db.transaction(write=False) as s:
        key = (await channels_repo.get_channel(s, ids["channel"])).key
    async with httpx.AsyncClient(base_url=server.url) as c:
        raw = json.dumps({"id": "m-1", "contact": {"id": "c-1"}, "text": "hi"}).encode()
        ts = str(int(time.time()))
        await c.post(f"/hooks/{key}", content=raw, headers={"content-type": "application/json",
                                                           "x-threadline-timestamp": ts,
                                                           "x-threadline-signature": sign("s3cret-s3cret-s3cret",
                                                                                          raw, ts)})
        await login(c, "sup@example.com")
        conv = (await c.get("/api/v1/conversations")).json()["items"][0]["id"]
        for field in ("labels", "status", "priority"):
            body = _problem(await c.patch(f"/api/v1/conversations/{conv}", json={field: None}))
            assert body["field"] == f"body.{field}"
        cleared = await c.patch(f"/api/v1/conversations/{conv}", json={"labels": [], "assignee_id": None})
        assert cleared.status_code == 200 and cleared.json()["labels"] == []


async def test_json_nested_beyond_reason_is_refused_not_a_crash(server) -> None:
    ids = await seed_basics(server.services)
    from tests.channels.webchat.test_webchat import ORIGIN, make_channel

    widget = await make_channel(server, ids)
    async with server.services.db.transaction(write=False) as s:
        key = (await channels_repo.get_channel(s, ids["channel"])).key
    async with httpx.AsyncClient(base_url=server.url) as c:
        for path in ("/widget/session", "/widget/messages", "/widget/typing", "/widget/csat"):
            r = await c.post(f"{path}?channel={widget}", content=DEEP[:20_000] + DEEP[-20_000:],
                             headers={"content-type": "text/plain", "origin": ORIGIN})
            assert r.status_code == 422, (path, r.status_code, r.text[:200])
            r = await c.post(f"{path}?channel={widget}", content=b'{"a":' * 100 + b"1" + b"}" * 100,
                             headers={"content-type": "text/plain", "origin": ORIGIN})
            assert r.status_code == 422, (path, r.status_code, r.text[:200])
        # A signed provider request (the generic API channel) nested too deeply: 400, nothing stored.
        raw = b'{"id": "m-1", "contact": {"id": "c-1"}, "text": "hi", "x": ' + DEEP[:5000] + DEEP[-5000:] + b"}"
        ts = str(int(time.time()))
        r = await c.post(f"/hooks/{key}", content=raw, headers={
            "content-type": "application/json", "x-threadline-timestamp": ts,
            "x-threadline-signature": sign("s3cret-s3cret-s3cret", raw, ts)})
        assert r.status_code == 400 and "nested too deeply" in r.json()["detail"], r.text[:300]
        await login(c, "admin@example.com")
        _problem(await c.post("/api/v1/contacts", content=DEEP[:20_000] + DEEP[-20_000:],
                              headers={"content-type": "application/json"}), 400)
