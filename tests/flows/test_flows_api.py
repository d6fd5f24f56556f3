"""The flows API over real HTTP: admins create flows and save versions, supervisors read, agents and
strangers are refused; an invalid definition is a 422 naming every reason (never a 500, huge integers
included); versions are immutable and readable by number, as a call that pinned one reads it."""

from __future__ import annotations

import httpx
from tests.conftest import login, seed_basics
from tests.flows.sample import ivr

from threadline.actions.events import capture_events
from threadline.db.types import utcnow
from threadline.domain.errors import NotFound
from threadline.domain.events import FlowSaved
from threadline.flows import actions as flow_actions


async def test_roles(sqlite_server) -> None:
    await seed_basics(sqlite_server.services)
    async with httpx.AsyncClient(base_url=sqlite_server.url) as c:
        await login(c, "alice@example.com")
        assert (await c.get("/api/v1/flows")).status_code == 403
        r = await c.post("/api/v1/flows", json={"name": "Main IVR"})
        assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
    async with httpx.AsyncClient(base_url=sqlite_server.url) as c:
        await login(c, "admin@example.com")
        flow = (await c.post("/api/v1/flows", json={"name": "Main IVR", "kind": "ivr", "definition": ivr()})).json()
    async with httpx.AsyncClient(base_url=sqlite_server.url) as c:
        await login(c, "sup@example.com")
        assert (await c.get("/api/v1/flows")).status_code == 200
        assert (await c.get(f"/api/v1/flows/{flow['id']}")).status_code == 200
        assert (await c.get(f"/api/v1/flows/{flow['id']}/versions/1")).status_code == 200
        assert (await c.post("/api/v1/flows/validate", json={"definition": ivr()})).json()["ok"] is True
        assert (await c.post("/api/v1/flows", json={"name": "Mine"})).status_code == 403
        assert (await c.post(f"/api/v1/flows/{flow['id']}/versions", json={"definition": ivr()})).status_code == 403
        assert (await c.patch(f"/api/v1/flows/{flow['id']}", json={"name": "x"})).status_code == 403
    async with httpx.AsyncClient(base_url=sqlite_server.url) as anon:
        assert (await anon.get("/api/v1/flows")).status_code == 401


async def test_lifecycle_versions_and_refusals(server) -> None:  # SQLite and PostgreSQL
    await seed_basics(server.services)
    async with httpx.AsyncClient(base_url=server.url) as c:
        await login(c, "admin@example.com")
        created = await c.post("/api/v1/flows", json={"name": "Chat bot", "kind": "bot"})
        assert created.status_code == 201, created.text
        flow = created.json()
        assert flow["current_version"] == 0 and flow["versions"] == [] and flow["definition"] is None
        again = await c.post("/api/v1/flows", json={"name": "chat BOT"})
        assert again.status_code == 409 and again.json()["field"] == "name"

        v1 = await c.post(f"/api/v1/flows/{flow['id']}/versions", json={"definition": ivr(), "note": "first"})
        assert v1.status_code == 201 and v1.json()["version"] == 1 and v1.json()["definition"]["start"] == "welcome"
        changed = ivr()
        changed["nodes"]["billing"]["priority"] = 9
        v2 = await c.post(f"/api/v1/flows/{flow['id']}/versions", json={"definition": changed})
        assert v2.json()["version"] == 2

        bad = ivr()
        bad["nodes"]["main"]["options"][0]["next"] = "nowhere"
        bad["nodes"]["main"]["options"][1]["key"] = "1"
        refused = await c.post(f"/api/v1/flows/{flow['id']}/versions", json={"definition": bad})
        assert refused.status_code == 422 and refused.headers["content-type"] == "application/problem+json"
        body = refused.json()
        assert body["field"] == "definition" and "'options[1].next' points to 'nowhere'" in body["detail"]
        assert "menu key '1' is offered twice" in body["detail"]

        detail = (await c.get(f"/api/v1/flows/{flow['id']}")).json()
        assert detail["current_version"] == 2 and [v["version"] for v in detail["versions"]] == [2, 1]
        assert detail["definition"]["nodes"]["billing"]["priority"] == 9
        old = (await c.get(f"/api/v1/flows/{flow['id']}/versions/1")).json()  # what a pinned call runs
        assert old["definition"]["nodes"]["billing"]["priority"] == 5 and old["note"] == "first"
        assert old["definition"] == v1.json()["definition"]
        assert (await c.get(f"/api/v1/flows/{flow['id']}/versions/3")).status_code == 404
        assert (await c.get("/api/v1/flows/999")).status_code == 404
        assert (await c.post("/api/v1/flows/999/versions", json={"definition": ivr()})).status_code == 404

        renamed = await c.patch(f"/api/v1/flows/{flow['id']}", json={"name": "Support bot", "description": "web"})
        assert renamed.status_code == 200 and renamed.json()["name"] == "Support bot"
        listed = (await c.get("/api/v1/flows")).json()
        assert [f["name"] for f in listed] == ["Support bot"]

        # a flow created with an invalid definition is not created at all
        r = await c.post("/api/v1/flows", json={"name": "Broken", "definition": bad})
        assert r.status_code == 422 and all(f["name"] != "Broken" for f in (await c.get("/api/v1/flows")).json())

    async with server.services.db.transaction(write=False) as s:
        pinned = await flow_actions.get_version(s, flow["id"], 1)
        assert pinned.nodes["billing"].priority == 5  # type: ignore[union-attr]
        version, current = await flow_actions.current_definition(s, flow["id"])
        assert version == 2 and current.nodes["billing"].priority == 9  # type: ignore[union-attr]
        try:
            await flow_actions.get_version(s, flow["id"], 7)
        except NotFound as exc:
            assert "no version 7" in exc.message
        else:
            raise AssertionError("a missing version is a NotFound")


async def test_validate_answers_problems_without_saving(sqlite_server) -> None:
    await seed_basics(sqlite_server.services)
    async with httpx.AsyncClient(base_url=sqlite_server.url) as c:
        await login(c, "admin@example.com")
        bad = ivr()
        bad["nodes"]["hours"]["timezone"] = "Moon/Base"
        bad["nodes"]["extra"] = {"type": "hangup"}
        r = await c.post("/api/v1/flows/validate", json={"definition": bad})
        assert r.status_code == 200 and r.json()["ok"] is False
        assert {"node": "extra", "message": "unreachable: no path from the start 'welcome' leads here"} \
            in r.json()["problems"]
        assert any(p["node"] == "hours" and "Moon/Base" in p["message"] for p in r.json()["problems"])
        shape = await c.post("/api/v1/flows/validate", json={"definition": {"start": "a", "nodes": {
            "a": {"type": "queue", "queue_id": 10**30}}}})
        assert shape.status_code == 200 and shape.json()["problems"][0]["node"] == "a"
        assert (await c.get("/api/v1/flows")).json() == []


async def test_bad_input_is_a_4xx_never_a_500(sqlite_server) -> None:
    await seed_basics(sqlite_server.services)
    async with httpx.AsyncClient(base_url=sqlite_server.url) as c:
        await login(c, "admin@example.com")
        flow = (await c.post("/api/v1/flows", json={"name": "IVR", "definition": ivr()})).json()
        huge = ivr()
        huge["nodes"]["billing"]["queue_id"] = 10**400
        huge["nodes"]["main"]["timeout_seconds"] = -(10**50)
        for method, path, body in [
            ("POST", "/api/v1/flows", {"name": "", "kind": "ivr"}),
            ("POST", "/api/v1/flows", {"name": "x", "kind": "fax"}),
            ("POST", "/api/v1/flows", {"name": "x", "colour": "red"}),
            ("POST", "/api/v1/flows", {"name": "x", "definition": "not an object"}),
            ("POST", "/api/v1/flows", {"name": "x", "definition": huge}),
            ("POST", f"/api/v1/flows/{flow['id']}/versions", {"definition": huge}),
            ("POST", f"/api/v1/flows/{flow['id']}/versions", {"definition": {}}),
            ("POST", f"/api/v1/flows/{flow['id']}/versions", {}),
            ("GET", f"/api/v1/flows/{10**30}", None),
            ("GET", f"/api/v1/flows/{flow['id']}/versions/{2**31}", None),
            ("GET", f"/api/v1/flows/{flow['id']}/versions/-1", None),
            ("POST", f"/api/v1/flows/{10**30}/versions", {"definition": ivr()}),
        ]:
            r = await c.request(method, path, json=body)
            assert r.status_code == 422, (path, body, r.status_code, r.text)
            assert r.headers["content-type"] == "application/problem+json" and r.json()["detail"]
        r = await c.post("/api/v1/flows", content=b"{not json", headers={"content-type": "application/json"})
        assert 400 <= r.status_code < 500
        r = await c.post("/api/v1/flows/validate", json={"definition": huge})
        assert r.status_code == 200 and r.json()["ok"] is False
        # nothing was saved on the way
        assert (await c.get(f"/api/v1/flows/{flow['id']}")).json()["current_version"] == 1


async def test_saving_emits_flow_saved(sqlite_server) -> None:
    with capture_events() as events:
        async with sqlite_server.services.db.transaction() as s:
            row, version = await flow_actions.create_flow(s, name="Pinned", definition=ivr(), now=utcnow())
            await flow_actions.save_version(s, row.id, ivr(), now=utcnow())
    assert version is not None and version.version == 1 and row.current_version == 2
    saved = [e for e, _ in events if isinstance(e, FlowSaved)]
    assert [(e.flow_name, e.version) for e in saved] == [("Pinned", 1), ("Pinned", 2)]
