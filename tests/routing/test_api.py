"""Routing over real HTTP and websockets, with the routing worker running inside the server:
an arriving conversation pops up on the agent's stream, the agent accepts it over the API; settings
that cannot work are refused with the reason; supervisors see queues, agents and positions."""

from __future__ import annotations

import asyncio
import json

import httpx
import websockets

from tests.conftest import PASSWORD, login, seed_basics
from tests.routing.helpers import arrive

STREAM_TIMEOUT = 10.0


async def token_for(server, email: str) -> str:  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient(base_url=server.url) as c:
        r = await c.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        c.headers["X-CSRF-Token"] = r.json()["csrf_token"]
        return (await c.post("/api/v1/tokens", json={"name": "t"})).json()["token"]


async def next_event(ws, name: str, pred=lambda e: True) -> dict:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(STREAM_TIMEOUT):
        while True:
            msg = json.loads(await ws.recv())
            if msg["name"] == name and pred(msg):
                return msg


async def test_an_offer_pops_up_on_the_agent_stream_and_is_accepted_over_http(server) -> None:
    ids = await seed_basics(server.services)
    alice_token = await token_for(server, "alice@example.com")
    sup_token = await token_for(server, "sup@example.com")
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {alice_token}"}) as alice, \
            websockets.connect(f"{server.ws_url}/api/v1/stream?token={alice_token}") as ws, \
            websockets.connect(f"{server.ws_url}/api/v1/stream?token={sup_token}") as sup_ws:
        assert json.loads(await ws.recv())["name"] == "stream.ready"
        assert json.loads(await sup_ws.recv())["name"] == "stream.ready"
        assert (await alice.put("/api/v1/me/presence", json={"status": "available"})).status_code == 200
        conv = await arrive(server.services, ids["channel"])

        offer = (await next_event(ws, "routing.offer"))["data"]
        assert offer["conversation_id"] == conv and offer["agent_id"] == ids["alice"]
        assert offer["expires_at"] > offer["offered_at"] and offer["contact_name"].startswith("Customer")
        mine = (await alice.get("/api/v1/routing/offers")).json()
        assert [o["offer_id"] for o in mine] == [offer["offer_id"]]

        r = await alice.post(f"/api/v1/routing/offers/{offer['offer_id']}/accept")
        assert r.status_code == 200, r.text
        assert r.json() == {"conversation_id": conv}
        updated = await next_event(ws, "conversation.updated", lambda e: e["data"]["conversation"]["id"] == conv)
        assert updated["data"]["conversation"]["assignee_id"] == ids["alice"]
        ended = (await next_event(ws, "routing.offer_ended"))["data"]  # same transaction, emitted after
        assert ended["outcome"] == "accepted"
        again = await alice.post(f"/api/v1/routing/offers/{offer['offer_id']}/accept")
        assert again.status_code == 409 and "accepted" in again.json()["detail"]

        # supervisors get queue and agent states; the worker catches up with the accept
        state = await next_event(sup_ws, "routing.state",
                                 lambda e: any(a["agent_id"] == ids["alice"] and a["load"].get("messaging") == 1
                                               for a in e["data"]["agents"]))
        assert state["data"]["at"] > 0
        async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {sup_token}"}) as sup:
            queues = {q["name"]: q for q in (await sup.get("/api/v1/routing/queues")).json()}
            assert queues["general"]["assigned"] == 1 and queues["general"]["waiting"] == 0
            agents = {a["id"]: a for a in (await sup.get("/api/v1/routing/agents")).json()}
            assert agents[ids["alice"]]["load"] == {"messaging": 1}
            assert agents[ids["alice"]]["presence"] == "available"
        # an agent may not see supervisors' views
        assert (await alice.get("/api/v1/routing/queues")).status_code == 403


async def test_a_waiting_task_shows_its_position_and_estimated_wait(server) -> None:
    ids = await seed_basics(server.services)
    sup_token = await token_for(server, "sup@example.com")
    async with websockets.connect(f"{server.ws_url}/api/v1/stream?token={sup_token}") as sup_ws, \
            httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {sup_token}"}) as sup:
        assert json.loads(await sup_ws.recv())["name"] == "stream.ready"
        first = await arrive(server.services, ids["channel"])  # alice is offline: both wait
        second = await arrive(server.services, ids["channel"])
        await next_event(sup_ws, "routing.state",
                         lambda e: any(q["queue_id"] == ids["general"] and q["waiting"] == 2
                                       for q in e["data"]["queues"]))
        one = (await sup.get(f"/api/v1/routing/tasks/{first}")).json()
        two = (await sup.get(f"/api/v1/routing/tasks/{second}")).json()
        assert (one["status"], one["position"], two["position"]) == ("waiting", 1, 2)
        assert two["estimated_wait_seconds"] is None or two["estimated_wait_seconds"] >= 0
        listed = (await sup.get("/api/v1/routing/tasks", params={"queue_id": ids["general"]})).json()
        assert [t["conversation_id"] for t in listed] == [first, second]
        # a permitted agent picks the second one by hand
        alice_token = await token_for(server, "alice@example.com")
        async with httpx.AsyncClient(base_url=server.url,
                                     headers={"Authorization": f"Bearer {alice_token}"}) as alice:
            r = await alice.post(f"/api/v1/routing/tasks/{second}/pick")
            assert r.status_code == 204, r.text
            conv = (await alice.get(f"/api/v1/conversations/{second}")).json()
            assert conv["assignee_id"] == ids["alice"]
            bob_token = await token_for(server, "bob@example.com")
            r = await alice.post(f"/api/v1/routing/tasks/{first}/pick",
                                 headers={"Authorization": f"Bearer {bob_token}"})
            assert r.status_code in (403, 404)  # bob does not serve the general queue


async def test_settings_that_cannot_work_are_refused_with_the_reason(server) -> None:
    ids = await seed_basics(server.services)
    general, billing = ids["general"], ids["billing"]
    async with httpx.AsyncClient(base_url=server.url) as c:
        await login(c, "admin@example.com")
        ok = await c.put(f"/api/v1/routing/queues/{billing}/settings",
                         json={"routing": {"steps": [{"after_seconds": 120, "overflow_to": general}]}})
        assert ok.status_code == 200, ok.text
        loop = await c.put(f"/api/v1/routing/queues/{general}/settings",
                           json={"routing": {"steps": [{"after_seconds": 60, "overflow_to": billing}]}})
        assert loop.status_code == 422
        assert "overflow cycle" in loop.json()["detail"] and "forever" in loop.json()["detail"]

        nobody = await c.put(f"/api/v1/routing/queues/{general}/settings",
                             json={"routing": {}, "settings": {"skills": {"klingon": 5}}})
        assert nobody.status_code == 422
        assert "can never be matched" in nobody.json()["detail"] and "klingon" in nobody.json()["detail"]
        forced = await c.put(f"/api/v1/routing/queues/{general}/settings",
                             json={"routing": {}, "settings": {"skills": {"klingon": 5}}, "force": True})
        assert forced.status_code == 200 and forced.json()["warnings"]

        bad = await c.put(f"/api/v1/routing/queues/{general}/settings",
                          json={"routing": {"steps": [{"after_seconds": 30}]}})
        assert bad.status_code == 422 and "changes nothing" in bad.json()["detail"]
        relaxed = await c.put(f"/api/v1/routing/queues/{general}/settings",
                              json={"routing": {"steps": [{"after_seconds": 30, "max_level": 3},
                                                          {"after_seconds": 60, "add_teams": [ids["team"]]}],
                                                "offer_timeout_seconds": 20, "wrap_up_seconds": 30},
                                    "settings": {"skills": {"general": 4}}})
        assert relaxed.status_code == 200, relaxed.text
        got = (await c.get(f"/api/v1/routing/queues/{general}/settings")).json()
        assert got["routing"]["steps"][1]["add_teams"] == [str(ids["team"])]
        assert got["settings"]["skills"] == {"general": 4}

        cap = await c.put(f"/api/v1/routing/agents/{ids['alice']}", json={"capacity": {"chat": -1}})
        assert cap.status_code == 422
        assert (await c.put(f"/api/v1/routing/agents/{ids['alice']}",
                            json={"capacity": {"chat": 5, "voice": 1}})).status_code == 204
        assert (await c.patch("/api/v1/routing/settings", json={"max_consecutive_no_answer": 2})).json()[
            "max_consecutive_no_answer"] == 2

    async with httpx.AsyncClient(base_url=server.url) as agent:
        await login(agent, "alice@example.com")
        script = await agent.get("/static/desk/offers.js")  # the desk's offer popup
        assert script.status_code == 200 and "routing.offer" in script.text
        r = await agent.put(f"/api/v1/routing/queues/{general}/settings", json={"routing": {}})
        assert r.status_code == 403


async def test_wrap_up_over_http_the_agent_is_ready_early_and_the_figures_count_it(server) -> None:
    ids = await seed_basics(server.services)
    alice_token = await token_for(server, "alice@example.com")
    sup_token = await token_for(server, "sup@example.com")
    admin_token = await token_for(server, "admin@example.com")
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {admin_token}"}) as admin:
        r = await admin.put(f"/api/v1/routing/queues/{ids['general']}/settings",
                            json={"routing": {"wrap_up_seconds": 300}})
        assert r.status_code == 200, r.text
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {alice_token}"}) as alice, \
            httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {sup_token}"}) as sup, \
            websockets.connect(f"{server.ws_url}/api/v1/stream?token={alice_token}") as ws:
        assert json.loads(await ws.recv())["name"] == "stream.ready"
        assert (await alice.put("/api/v1/me/presence", json={"status": "available"})).status_code == 200
        conv = await arrive(server.services, ids["channel"])
        offer = (await next_event(ws, "routing.offer"))["data"]
        assert (await alice.post(f"/api/v1/routing/offers/{offer['offer_id']}/accept")).status_code == 200
        # not in wrap-up yet: refused with the reason
        early = await alice.post(f"/api/v1/routing/tasks/{conv}/end-wrap-up")
        assert early.status_code == 409 and "not in wrap-up" in early.json()["detail"]
        assert (await alice.patch(f"/api/v1/conversations/{conv}", json={"status": "resolved"})).status_code == 200
        started = (await next_event(ws, "routing.wrap_up", lambda e: e["data"]["state"] == "started"))["data"]
        assert started["conversation_id"] == conv and started["until"] > started["at"] + 250
        assert [w["conversation_id"] for w in (await alice.get("/api/v1/routing/wrap-ups")).json()] == [conv]
        assert (await alice.post("/api/v1/routing/tasks/999999/end-wrap-up")).status_code == 404
        r = await alice.post(f"/api/v1/routing/tasks/{conv}/end-wrap-up")
        assert r.status_code == 204, r.text
        ended = (await next_event(ws, "routing.wrap_up", lambda e: e["data"]["state"] == "ended"))["data"]
        assert ended["ended_by"] == "agent" and ended["conversation_id"] == conv
        assert (await alice.get("/api/v1/routing/wrap-ups")).json() == []

        figures = {f["queue_id"]: f for f in (await sup.get("/api/v1/routing/figures")).json()}
        general = figures[ids["general"]]
        assert (general["answered"], general["answered_within_target"], general["handled"]) == (1, 1, 1)
        assert general["service_level_percent"] == 100.0 and general["aht_seconds"] is not None
        assert figures[ids["billing"]]["answered"] == 0 and figures[ids["billing"]]["service_level_percent"] is None
        bad = await sup.get("/api/v1/routing/figures", params={"since": 100, "until": 50})
        assert bad.status_code == 422 and "until" in bad.text
        assert (await alice.get("/api/v1/routing/figures")).status_code == 403
