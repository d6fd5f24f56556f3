"""Issue 12, item 1: an agent cannot take over another queue's customer, and an identity typed by hand
never carries replies away from the customer (real HTTP, signed channel requests, a real partner)."""

from __future__ import annotations

import httpx

from tests.conftest import login, seed_basics
from tests.security.helpers import API_SECRET, partner, post_api
from threadline.actions import channels as channel_actions
from threadline.db.repos import channels as channels_repo


async def _billing_customer(server, partner_url: str) -> tuple[dict[str, int], str, int, int]:  # type: ignore[no-untyped-def]
    """A customer writing on the billing queue's API channel: (ids, channel key, channel id, conversation id)."""
    svc = server.services
    ids = await seed_basics(svc)
    async with svc.db.transaction() as s:
        billing = await channel_actions.create_channel(
            s, svc.box, kind="api", name="Billing API", default_queue_id=ids["billing"],
            config={"secret": API_SECRET, "webhook_url": partner_url})
    async with httpx.AsyncClient(base_url=server.url) as c:
        r = await post_api(c, billing.key, {"id": "m-1", "contact": {"id": "cust-1", "name": "Carla"},
                                            "text": "Please refund my last invoice"})
        assert r.status_code == 200, r.text
        await login(c, "bob@example.com")
        conv = (await c.get("/api/v1/conversations")).json()["items"][0]
    return ids, billing.key, billing.id, conv["id"]


async def test_an_agent_of_another_queue_cannot_add_their_address_to_a_customer(server) -> None:
    async with partner() as p:
        ids, key, channel_id, conv_id = await _billing_customer(server, p.url)
        async with httpx.AsyncClient(base_url=server.url) as alice, \
                httpx.AsyncClient(base_url=server.url) as bob:
            await login(alice, "alice@example.com")  # serves "general" only
            await login(bob, "bob@example.com")  # serves "billing"
            contact_id = (await bob.get(f"/api/v1/conversations/{conv_id}")).json()["contact_id"]
            mine = {"kind": "handle", "value": "attacker-9", "scope": str(channel_id)}
            # The attack: the API refuses it like the desk does, as if the customer did not exist.
            added = await alice.post(f"/api/v1/contacts/{contact_id}/identities", json=mine)
            assert added.status_code == 404, added.text
            assert added.headers["content-type"] == "application/problem+json"
            for method, path, body in [
                ("GET", f"/api/v1/contacts/{contact_id}", None),
                ("PATCH", f"/api/v1/contacts/{contact_id}", {"name": "Mallory"}),
                ("GET", f"/api/v1/contacts/{contact_id}/360", None),
                ("POST", f"/api/v1/contacts/{contact_id}/activity", {"kind": "custom", "title": "x"}),
                ("GET", f"/api/v1/merge-suggestions?contact_id={contact_id}", None),
                ("GET", f"/api/v1/contacts/{contact_id}/csat", None),
            ]:
                r = await alice.request(method, path, json=body)
                assert r.status_code == 404, (method, path, r.status_code, r.text)
            desk = await alice.post(f"/desk/contacts/{contact_id}", data={"name": "Mallory"})
            assert desk.status_code == 404
            listed = (await alice.get("/api/v1/contacts", params={"q": "carla"})).json()["items"]
            assert listed == []
            assert [c["id"] for c in (await bob.get("/api/v1/contacts", params={"q": "carla"})).json()["items"]] \
                == [contact_id]
            # The attacker then writes from that address: a stranger, not the customer.
            r = await post_api(alice, key, {"id": "m-2", "contact": {"id": "attacker-9"}, "text": "it's me, Carla"})
            assert r.status_code == 200
            profile = (await bob.get(f"/api/v1/contacts/{contact_id}")).json()
            assert profile["name"] == "Carla" and [i["value"] for i in profile["identities"]] == ["cust-1"]
            # Bob's next reply in the customer's conversation still goes to the customer.
            sent = await bob.post(f"/api/v1/conversations/{conv_id}/messages", json={"text": "Refund done"})
            assert sent.status_code == 201, sent.text
            assert (await p.reply_to(sent.json()["id"]))["to"] == {"id": "cust-1"}


async def test_an_identity_an_agent_adds_stays_unverified_until_a_supervisor_confirms_it(server) -> None:
    async with partner() as p:
        ids, key, channel_id, conv_id = await _billing_customer(server, p.url)
        async with httpx.AsyncClient(base_url=server.url) as bob, httpx.AsyncClient(base_url=server.url) as sup:
            await login(bob, "bob@example.com")
            await login(sup, "sup@example.com")
            contact_id = (await bob.get(f"/api/v1/conversations/{conv_id}")).json()["contact_id"]
            typed = {"kind": "handle", "value": "carla-2", "scope": str(channel_id)}
            added = await bob.post(f"/api/v1/contacts/{contact_id}/identities", json=typed)
            assert added.status_code == 201, added.text
            assert {i["value"]: i["verified"] for i in added.json()["identities"]} == {"cust-1": True, "carla-2": False}
            # Whoever writes from it is not taken for the customer: their own contact, and a suggestion.
            r = await post_api(bob, key, {"id": "m-2", "contact": {"id": "carla-2"}, "text": "hello"})
            assert r.status_code == 200
            convs = (await bob.get("/api/v1/conversations")).json()["items"]
            assert len(convs) == 2 and {c["contact_id"] for c in convs} - {contact_id}
            suggestions = (await bob.get("/api/v1/merge-suggestions", params={"contact_id": contact_id})).json()
            assert len(suggestions) == 1 and "carla-2" in suggestions[0]["reason"]
            sent = await bob.post(f"/api/v1/conversations/{conv_id}/messages", json={"text": "Still you?"})
            assert (await p.reply_to(sent.json()["id"]))["to"] == {"id": "cust-1"}
            # A supervisor's word confirms an address at once.
            confirmed = await sup.post(f"/api/v1/contacts/{contact_id}/identities",
                                       json={"kind": "email", "value": "carla@example.com"})
            assert confirmed.status_code == 201
            assert {i["value"]: i["verified"] for i in confirmed.json()["identities"]}["carla@example.com"] is True
            # An agent cannot take over an address another contact only claimed, nor learn who has it.
            taken = await bob.post(f"/api/v1/contacts/{contact_id}/identities", json=typed)
            assert taken.status_code == 409 and "another contact" in taken.json()["detail"]


async def test_merging_and_unmerging_needs_every_conversation_in_sight(server) -> None:
    async with partner() as p:
        ids, key, channel_id, conv_id = await _billing_customer(server, p.url)
        async with httpx.AsyncClient(base_url=server.url) as alice, httpx.AsyncClient(base_url=server.url) as bob, \
                httpx.AsyncClient(base_url=server.url) as sup:
            for client, who in ((alice, "alice"), (bob, "bob"), (sup, "sup")):
                await login(client, f"{who}@example.com")
            carla = (await bob.get(f"/api/v1/conversations/{conv_id}")).json()["contact_id"]
            # Alice's own customer on the general queue's channel.
            async with server.services.db.transaction(write=False) as s:
                general_key = (await channels_repo.get_channel(s, ids["channel"])).key
            r = await post_api(alice, general_key, {"id": "g-1", "contact": {"id": "c-7", "name": "Carla P."},
                                                    "text": "about my invoice"})
            assert r.status_code == 200
            other = next(c for c in (await alice.get("/api/v1/conversations")).json()["items"])["contact_id"]
            for target, source in ((other, carla), (carla, other)):
                refused = await alice.post(f"/api/v1/contacts/{target}/merge", json={"source_id": source})
                assert refused.status_code == 404, refused.text
            desk = await alice.post(f"/desk/contacts/{other}/merge", data={"source_id": str(carla)})
            assert desk.status_code == 404
            merged = await sup.post(f"/api/v1/contacts/{carla}/merge", json={"source_id": other})
            assert merged.status_code == 200, merged.text
            merge_id = merged.json()["merge_id"]
            # Both agents see part of the merged customer, neither all of it: no undo, and they are told why.
            for agent in (alice, bob):
                undo = await agent.post(f"/api/v1/contact-merges/{merge_id}/undo")
                assert undo.status_code == 403 and "supervisor" in undo.json()["detail"]
            assert (await sup.post(f"/api/v1/contact-merges/{merge_id}/undo")).status_code == 200
