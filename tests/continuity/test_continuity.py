"""One customer, one conversation, every channel: scenarios through the real HTTP interfaces."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.conftest import login, seed_basics
from threadline.actions import channels as channel_actions
from threadline.actions import inbound as inbound_actions
from threadline.db.repos import channels as channels_repo
from threadline.domain.contacts import IdentityKind, IdentityValue, normalise_identity
from threadline.domain.messages import InboundMessage, Sender
from threadline.security import sign

SECRET = "s3cret-s3cret-s3cret"


async def _post(client: httpx.AsyncClient, key: str, body: dict) -> None:
    raw = json.dumps(body).encode()
    ts = str(int(time.time()))
    resp = await client.post(f"/hooks/{key}", content=raw, headers={
        "content-type": "application/json", "x-threadline-timestamp": ts,
        "x-threadline-signature": sign(SECRET, raw, ts)})
    assert resp.status_code == 200, resp.text


async def _two_channels(svc) -> tuple[dict[str, int], str, str]:  # type: ignore[no-untyped-def]
    ids = await seed_basics(svc)
    async with svc.db.transaction() as s:
        web = await channels_repo.get_channel(s, ids["channel"])
        app = await channel_actions.create_channel(s, svc.box, kind="api", name="Mobile app",
                                                   default_queue_id=ids["general"],
                                                   config={"secret": SECRET, "webhook_url": None})
    return ids, web.key, app.key


async def test_a_customer_who_changes_channel_stays_in_one_conversation(sqlite_server) -> None:
    ids, web, app = await _two_channels(sqlite_server.services)
    async with httpx.AsyncClient(base_url=sqlite_server.url) as client:
        await _post(client, web, {"id": "w-1", "contact": {"id": "visitor-9", "name": "Ana", "phone": "+34 600 123 456"},
                                  "text": "My order has not arrived"})
        # Later, from the app, with a different handle but the same phone number (written differently).
        await _post(client, app, {"id": "a-1", "contact": {"id": "device-77", "phone": "+34 600-12-34-56"},
                                  "text": "Any news?"})
        await login(client, "alice@example.com")
        convs = (await client.get("/api/v1/conversations")).json()["items"]
        assert len(convs) == 1  # one customer issue, whatever the channel
        conv = convs[0]
        timeline = (await client.get(f"/api/v1/conversations/{conv['id']}/messages")).json()["items"]
        kinds = [(m["direction"], m["text"]) for m in timeline]
        assert kinds[0] == ("in", "My order has not arrived") and kinds[-1] == ("in", "Any news?")
        assert any(d == "activity" and "continued on Mobile app" in t for d, t in kinds)  # the switch is shown
        profile = (await client.get(f"/api/v1/contacts/{conv['contact_id']}/360")).json()
        assert {c["name"]: c["inbound_messages"] for c in profile["channels"]} == {"API": 1, "Mobile app": 1}
        assert [s["first_message"] for s in profile["open_conversations"]] == ["My order has not arrived"]
        assert {i["value"] for i in profile["contact"]["identities"]} >= {"+34600123456", "visitor-9", "device-77"}


async def test_merging_two_contacts_joins_their_timelines_and_can_be_undone(sqlite_server) -> None:
    ids, web, app = await _two_channels(sqlite_server.services)
    async with httpx.AsyncClient(base_url=sqlite_server.url) as client:
        await _post(client, web, {"id": "w-1", "contact": {"id": "v-1", "name": "Ana"}, "text": "first, on the web"})
        await _post(client, app, {"id": "a-1", "contact": {"id": "d-1", "name": "Ana P."}, "text": "second, in the app"})
        await _post(client, web, {"id": "w-2", "contact": {"id": "v-1"}, "text": "third, on the web again"})
        await login(client, "sup@example.com")
        convs = {c["contact_name"]: c for c in (await client.get("/api/v1/conversations")).json()["items"]}
        ana, ana_p = convs["Ana"], convs["Ana P."]
        # Refusals say why.
        same = await client.post(f"/api/v1/contacts/{ana['contact_id']}/merge", json={"source_id": ana["contact_id"]})
        assert same.status_code == 422 and "itself" in same.json()["detail"]
        missing = await client.post(f"/api/v1/contacts/{ana['contact_id']}/merge", json={"source_id": 999})
        assert missing.status_code == 404
        different = await client.post(f"/api/v1/conversations/{ana['id']}/merge", json={"source_id": ana_p["id"]})
        assert different.status_code == 422 and "merge the contacts first" in different.json()["detail"]

        merged = await client.post(f"/api/v1/contacts/{ana['contact_id']}/merge",
                                   json={"source_id": ana_p["contact_id"]})
        assert merged.status_code == 200, merged.text
        merge = merged.json()
        assert {i["value"] for i in merge["contact"]["identities"]} == {"v-1", "d-1"}
        again = await client.post(f"/api/v1/contacts/{ana['contact_id']}/merge", json={"source_id": ana_p["contact_id"]})
        assert again.status_code == 409 and "was merged into" in again.json()["detail"]
        # Both conversations are now the same customer's: merge them; the timeline is ordered and complete.
        joined = await client.post(f"/api/v1/conversations/{ana['id']}/merge", json={"source_id": ana_p["id"]})
        assert joined.status_code == 200, joined.text
        timeline = (await client.get(f"/api/v1/conversations/{ana['id']}/messages")).json()["items"]
        texts = [m["text"] for m in timeline if m["direction"] == "in"]
        assert texts == ["first, on the web", "second, in the app", "third, on the web again"]
        # The hidden contact no longer shows up in searches; the target has everything.
        listed = {c["id"] for c in (await client.get("/api/v1/contacts")).json()["items"]}
        assert ana_p["contact_id"] not in listed and ana["contact_id"] in listed

        undone = await client.post(f"/api/v1/contact-merges/{merge['merge_id']}/undo")
        assert undone.status_code == 200 and undone.json()["undone_at"]
        assert {i["value"] for i in undone.json()["contact"]["identities"]} == {"v-1"}
        assert (await client.post(f"/api/v1/contact-merges/{merge['merge_id']}/undo")).status_code == 409
        # A new message from the app identity lands on the restored contact again.
        await _post(client, app, {"id": "a-2", "contact": {"id": "d-1"}, "text": "hello again"})
        profile = (await client.get(f"/api/v1/contacts/{ana_p['contact_id']}/360")).json()
        assert profile["merged_into_id"] is None and profile["channels"][0]["name"] == "Mobile app"


async def test_a_split_message_starts_its_own_conversation(sqlite_server) -> None:
    ids, web, _ = await _two_channels(sqlite_server.services)
    async with httpx.AsyncClient(base_url=sqlite_server.url) as client:
        await _post(client, web, {"id": "w-1", "contact": {"id": "v-1", "name": "Ana"}, "text": "order 1 is late"})
        await _post(client, web, {"id": "w-2", "contact": {"id": "v-1"}, "text": "also, change my address"})
        await login(client, "alice@example.com")
        conv = (await client.get("/api/v1/conversations")).json()["items"][0]
        second = [m for m in (await client.get(f"/api/v1/conversations/{conv['id']}/messages")).json()["items"]
                  if m["text"] == "also, change my address"][0]
        new = await client.post(f"/api/v1/messages/{second['id']}/split")
        assert new.status_code == 201, new.text
        moved = (await client.get(f"/api/v1/conversations/{new.json()['id']}/messages")).json()["items"]
        assert [m["text"] for m in moved if m["direction"] == "in"] == ["also, change my address"]
        left = (await client.get(f"/api/v1/conversations/{conv['id']}/messages")).json()["items"]
        assert [m["text"] for m in left if m["direction"] == "in"] == ["order 1 is late"]


@pytest.mark.parametrize("verified_later", [False, True])
async def test_an_unverified_claim_suggests_a_merge_and_never_merges(services, verified_later: bool) -> None:
    ids = await seed_basics(services)
    async with services.db.transaction() as s:
        channel = await channels_repo.get_channel(s, ids["channel"])
        email = normalise_identity("email", "Ana@Example.com")
        owner = await inbound_actions.receive_inbound(s, channel, InboundMessage(
            "m-1", Sender((IdentityValue(IdentityKind.HANDLE, "ana", str(channel.id)), email), "Ana"), "hi"))
        # Someone else types Ana's email into a pre-chat form: a claim, not a proof.
        other = await inbound_actions.receive_inbound(s, channel, InboundMessage(
            "m-2", Sender((IdentityValue(IdentityKind.HANDLE, "stranger", str(channel.id)),), "Eve", claims=(email,)),
            "hello"))
        stranger_conv = other.conversation_id
        assert stranger_conv != owner.conversation_id
        # An unknown claim is kept, unverified, on the claimant; if a channel later vouches for it, the
        # identity goes to the verified sender and the claimant gets a suggestion instead.
        unknown = normalise_identity("email", "eve@example.org")
        await inbound_actions.receive_inbound(s, channel, InboundMessage(
            "m-3", Sender((IdentityValue(IdentityKind.HANDLE, "stranger", str(channel.id)),), "Eve", claims=(unknown,)),
            "me again"))
        if verified_later:
            real = await inbound_actions.receive_inbound(s, channel, InboundMessage(
                "m-4", Sender((IdentityValue(IdentityKind.HANDLE, "eve-real", str(channel.id)), unknown), "Eve R."),
                "it's really me"))
            assert real.conversation_id != stranger_conv  # the claimant's conversation is not joined
    async with services.db.transaction(write=False) as s:
        from threadline.db.repos import contacts as contacts_repo
        from threadline.db.repos import continuity as repo

        open_ = await repo.suggestions_for(s, None)
        reasons = [r.reason for r in open_]
        assert any("ana@example.com" in r for r in reasons)
        found = await contacts_repo.find_identities(s, [email, unknown])
        assert found[email].verified and found[email].contact_id != (await _contact_of(s, stranger_conv))
        assert found[unknown].verified is verified_later
        if verified_later:
            assert any("eve@example.org" in r and "verified by a channel" in r for r in reasons)


async def _contact_of(session, conversation_id: int) -> int:  # type: ignore[no-untyped-def]
    from threadline.db.repos import conversations as conv_repo

    return (await conv_repo.get_conversation(session, conversation_id)).contact_id


async def test_a_new_contact_is_enriched_from_the_crm_and_a_failing_crm_blocks_nothing(tmp_path, sqlite_url) -> None:
    """A fake CRM on loopback checks the signature and answers attributes; then it goes down."""
    import asyncio

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from tests.conftest import make_server, run_server
    from threadline.security import signature_matches

    seen: list[dict] = []
    state = {"up": True}

    async def lookup(request: Request) -> JSONResponse:
        body = await request.body()
        assert signature_matches("crm-secret", body, request.headers["x-threadline-signature"],
                                 request.headers["x-threadline-timestamp"])
        seen.append(json.loads(body))
        if not state["up"]:
            return JSONResponse({"error": "maintenance"}, status_code=503)
        return JSONResponse({"attributes": {"tier": "gold", "vip": True, "nested": {"ignored": 1}},
                             "external_id": "ACME-42", "link": "https://crm.example.com/a/42"})

    async with run_server(Starlette(routes=[Route("/lookup", lookup, methods=["POST"])])) as crm:
        async with await make_server(sqlite_url, tmp_path, crm_lookup_url=crm.url + "/lookup",
                                     crm_lookup_secret="crm-secret") as server:
            svc = server.services
            ids = await seed_basics(svc)
            enriched = asyncio.Event()
            svc.bus.subscribe(lambda env: enriched.set() if env.name == "contact.updated" else None)
            async with svc.db.transaction(write=False) as s:
                key = (await channels_repo.get_channel(s, ids["channel"])).key
            async with httpx.AsyncClient(base_url=server.url) as client:
                await _post(client, key, {"id": "m-1", "contact": {"id": "c-1", "name": "Ana"}, "text": "hi"})
                await asyncio.wait_for(enriched.wait(), 10)
                await login(client, "alice@example.com")
                conv = (await client.get("/api/v1/conversations")).json()["items"][0]
                profile = (await client.get(f"/api/v1/contacts/{conv['contact_id']}/360")).json()
                attrs = profile["contact"]["attributes"]
                assert attrs["tier"] == "gold" and attrs["vip"] is True and attrs["crm_external_id"] == "ACME-42"
                assert "nested" not in attrs  # only plain values are taken
                assert any(j["kind"] == "crm" for j in profile["journey"])
                assert seen[0]["contact"]["name"] == "Ana"
                # The CRM fails: the next customer's message is stored and listed all the same.
                state["up"] = False
                await _post(client, key, {"id": "m-2", "contact": {"id": "c-2", "name": "Bo"}, "text": "hello"})
                names = {c["contact_name"] for c in (await client.get("/api/v1/conversations")).json()["items"]}
                assert names == {"Ana", "Bo"}


async def test_typed_attributes_are_checked_and_every_change_is_recorded(sqlite_server) -> None:
    ids, web, _ = await _two_channels(sqlite_server.services)
    async with httpx.AsyncClient(base_url=sqlite_server.url) as admin, \
            httpx.AsyncClient(base_url=sqlite_server.url) as agent:
        await login(admin, "admin@example.com")
        await login(agent, "alice@example.com")
        ok = await admin.put("/api/v1/contact-attributes/tier", json={"label": "Tier", "type": "select",
                                                                     "options": ["silver", "gold"]})
        assert ok.status_code == 200, ok.text
        await admin.put("/api/v1/contact-attributes/account_value", json={"label": "Account value", "type": "number"})
        await admin.put("/api/v1/contact-attributes/tags", json={"label": "Tags", "type": "tags"})
        assert (await agent.put("/api/v1/contact-attributes/x", json={"label": "X", "type": "text"})).status_code == 403
        bad_key = await admin.put("/api/v1/contact-attributes/Bad Key", json={"label": "X", "type": "text"})
        assert bad_key.status_code == 422
        await _post(agent, web, {"id": "w-1", "contact": {"id": "v-1", "name": "Ana"}, "text": "hi"})
        contact_id = (await agent.get("/api/v1/conversations")).json()["items"][0]["contact_id"]
        wrong = await agent.patch(f"/api/v1/contacts/{contact_id}", json={"attributes": {"tier": "platinum"}})
        assert wrong.status_code == 422 and wrong.json()["field"] == "attributes.tier"
        assert "silver, gold" in wrong.json()["detail"]
        changed = await agent.patch(f"/api/v1/contacts/{contact_id}", json={"attributes": {
            "tier": "gold", "account_value": "1250.50", "tags": "VIP, renewal ,vip", "free_text": "kept as is"}})
        assert changed.status_code == 200, changed.text
        attrs = changed.json()["attributes"]
        assert attrs == {"tier": "gold", "account_value": 1250.5, "tags": ["renewal", "vip"], "free_text": "kept as is"}
        journey = (await agent.get(f"/api/v1/contacts/{contact_id}/360")).json()["journey"]
        edit = next(j for j in journey if j["kind"] == "edit")
        assert edit["title"].startswith("Alice changed") and "tier: — → gold" in edit["title"]


async def test_the_agent_answers_on_another_channel_of_the_customer_in_the_same_conversation(tmp_path, sqlite_url) -> None:
    """The customer wrote on the web, then in the app; the agent picks the web identity to answer."""
    import asyncio

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from tests.conftest import make_server, run_server

    delivered: list[dict] = []
    got = asyncio.Event()

    async def inbox(request: Request) -> JSONResponse:
        delivered.append({"channel": request.path_params["name"], "body": json.loads(await request.body())})
        got.set()
        return JSONResponse({"id": f"partner-{len(delivered)}"})

    async with run_server(Starlette(routes=[Route("/{name}", inbox, methods=["POST"])])) as partner, \
            await make_server(sqlite_url, tmp_path) as server:
        svc = server.services
        ids, web, app = await _two_channels(svc)
        async with svc.db.transaction() as s:
            await channel_actions.update_channel(s, svc.box, ids["channel"], config={"webhook_url": f"{partner.url}/web"})
            app_row = await channels_repo.get_channel_by_key(s, app)
            await channel_actions.update_channel(s, svc.box, app_row.id, config={"webhook_url": f"{partner.url}/app"})
        async with httpx.AsyncClient(base_url=server.url) as client:
            await _post(client, web, {"id": "w-1", "contact": {"id": "v-1", "name": "Ana", "email": "ana@example.com"},
                                      "text": "on the web"})
            await _post(client, app, {"id": "a-1", "contact": {"id": "d-1", "email": "ANA@example.com"},
                                      "text": "now in the app"})
            await login(client, "alice@example.com")
            conv = (await client.get("/api/v1/conversations")).json()["items"][0]
            profile = (await client.get(f"/api/v1/contacts/{conv['contact_id']}/360")).json()
            web_identity = next(i for i in profile["contact"]["identities"] if i["value"] == "v-1")
            reply = await client.post(f"/api/v1/conversations/{conv['id']}/messages", json={
                "text": "answered on the web", "channel_instance_id": ids["channel"], "identity_id": web_identity["id"]})
            assert reply.status_code == 201, reply.text
            assert reply.json()["conversation_id"] == conv["id"] and reply.json()["channel_instance_id"] == ids["channel"]
            await asyncio.wait_for(got.wait(), 10)
            assert delivered[0]["channel"] == "web" and delivered[0]["body"]["to"] == {"id": "v-1"}
            # Without a choice, the reply goes where the customer last wrote: the app.
            got.clear()
            default = await client.post(f"/api/v1/conversations/{conv['id']}/messages", json={"text": "and here"})
            assert default.json()["channel_instance_id"] == app_row.id
            await asyncio.wait_for(got.wait(), 10)
            assert delivered[-1]["channel"] == "app" and delivered[-1]["body"]["to"] == {"id": "d-1"}


async def test_a_signed_web_chat_visitor_who_later_writes_by_phone_reaches_the_same_conversation(server) -> None:
    """Issue 7, scenario 1: web chat with a signed identity and a phone on the profile; the customer leaves;
    a message from that phone arrives on another channel: same conversation, same agent, whole transcript."""
    from tests.channels.webchat.test_webchat import IDENTITY_SECRET, Visitor, make_channel
    from threadline.channels.webchat.adapter import identity_hash

    ids, _, app = await _two_channels(server.services)
    key = await make_channel(server, ids)
    visitor = Visitor(server, key)
    try:
        await visitor.start(user_id="42", user_hash=identity_hash(IDENTITY_SECRET, "42"))
        sent = await visitor.say("I was charged twice", "v1", profile={"name": "Lucia", "phone": "+39 347 123 4567"})
        assert sent.status_code == 201, sent.text
        conv_id = sent.json()["conversation_id"]
    finally:
        await visitor.aclose()
    async with httpx.AsyncClient(base_url=server.url) as alice:
        await login(alice, "alice@example.com")
        me = (await alice.get("/api/v1/me")).json()
        taken = await alice.patch(f"/api/v1/conversations/{conv_id}", json={"assignee_id": me["id"]})
        assert taken.status_code == 200, taken.text
        # The phone typed in the chat is only a claim; an agent's word does not confirm it (issue 12: an
        # identity typed by hand is unverified), a supervisor's does.
        contact_id = (await alice.get(f"/api/v1/conversations/{conv_id}")).json()["contact_id"]
        phone = next(i for i in (await alice.get(f"/api/v1/contacts/{contact_id}")).json()["identities"]
                     if i["kind"] == "phone")
        assert phone["verified"] is False
        typed = {"kind": "phone", "value": "+39 347 123 4567"}
        agent_says = await alice.post(f"/api/v1/contacts/{contact_id}/identities", json=typed)
        assert agent_says.status_code == 201, agent_says.text
        assert next(i for i in agent_says.json()["identities"] if i["kind"] == "phone")["verified"] is False
        async with httpx.AsyncClient(base_url=server.url) as sup:
            await login(sup, "sup@example.com")
            confirmed = await sup.post(f"/api/v1/contacts/{contact_id}/identities", json=typed)
        assert confirmed.status_code == 201, confirmed.text
        assert next(i for i in confirmed.json()["identities"] if i["kind"] == "phone")["verified"] is True
        await alice.post(f"/api/v1/conversations/{conv_id}/messages", json={"text": "Let me check that for you"})
        # The visitor closed the tab; later a text message comes from the phone on the profile.
        await _post(alice, app, {"id": "sms-1", "contact": {"id": "+393471234567", "phone": "+393471234567"},
                                 "text": "Hi, any news about the double charge?"})
        convs = (await alice.get("/api/v1/conversations", params={"assignee_id": me["id"]})).json()["items"]
        assert [c["id"] for c in convs] == [conv_id]  # the same conversation, still the same agent's
        timeline = (await alice.get(f"/api/v1/conversations/{conv_id}/messages")).json()["items"]
        texts = [m["text"] for m in timeline if m["direction"] in ("in", "out")]
        assert texts == ["I was charged twice", "Let me check that for you", "Hi, any news about the double charge?"]
        assert any(m["direction"] == "activity" and "continued on Mobile app" in m["text"] for m in timeline)


async def test_pages_the_visitor_views_join_the_customer_journey(server) -> None:
    from tests.channels.webchat.test_webchat import Visitor, make_channel

    ids = await seed_basics(server.services)
    key = await make_channel(server, ids)
    visitor = Visitor(server, key)
    try:
        await visitor.start()
        early = await visitor.post("/widget/pageview", {"token": visitor.token, "url": "https://shop.example/",
                                                       "title": "Home"})
        assert early.json() == {"ok": True, "recorded": False}  # not a customer yet
        sent = await visitor.say("Do you ship to Malta?", "c1")
        bad = await visitor.post("/widget/pageview", {"token": visitor.token, "url": "javascript:alert(1)"})
        assert bad.status_code == 422
        page = await visitor.post("/widget/pageview", {"token": visitor.token, "title": "Shipping",
                                                      "url": "https://shop.example/shipping"})
        assert page.json()["recorded"] is True
    finally:
        await visitor.aclose()
    async with httpx.AsyncClient(base_url=server.url) as alice:
        await login(alice, "alice@example.com")
        conv = (await alice.get(f"/api/v1/conversations/{sent.json()['conversation_id']}")).json()
        journey = (await alice.get(f"/api/v1/contacts/{conv['contact_id']}/360")).json()["journey"]
        assert [(j["kind"], j["title"]) for j in journey if j["kind"] == "page_view"] == [("page_view", "Shipping")]
        assert any(j["kind"] == "conversation" and j["title"] == "Do you ship to Malta?" for j in journey)


async def test_the_desk_shows_possible_duplicates_and_merges_them(sqlite_server) -> None:
    svc = sqlite_server.services
    ids = await seed_basics(svc)
    async with svc.db.transaction() as s:
        channel = await channels_repo.get_channel(s, ids["channel"])
        email = normalise_identity("email", "ana@example.com")
        await inbound_actions.receive_inbound(s, channel, InboundMessage(
            "m-1", Sender((IdentityValue(IdentityKind.HANDLE, "ana", str(channel.id)), email), "Ana"), "hi"))
        claimant = await inbound_actions.receive_inbound(s, channel, InboundMessage(
            "m-2", Sender((IdentityValue(IdentityKind.HANDLE, "visitor-7", str(channel.id)),), "Ana (chat)",
                          claims=(email,)), "hello again"))
    async with httpx.AsyncClient(base_url=sqlite_server.url) as alice:
        await login(alice, "alice@example.com")
        page = await alice.get(f"/conversations/{claimant.conversation_id}")
        assert page.status_code == 200 and "Possible duplicates" in page.text
        conv = (await alice.get(f"/api/v1/conversations/{claimant.conversation_id}")).json()
        suggestion = (await alice.get("/api/v1/merge-suggestions", params={"contact_id": conv["contact_id"]})).json()[0]
        other = suggestion["other_contact_id"] if suggestion["contact_id"] == conv["contact_id"] else suggestion["contact_id"]
        no_csrf = await alice.post(f"/desk/contacts/{conv['contact_id']}/merge", data={"source_id": str(other)},
                                   headers={"X-CSRF-Token": ""})
        assert no_csrf.status_code in (401, 403)
        merged = await alice.post(f"/desk/contacts/{conv['contact_id']}/merge", data={"source_id": str(other)})
        assert merged.status_code == 204, merged.text
        profile = (await alice.get(f"/api/v1/contacts/{conv['contact_id']}/360")).json()
        assert {i["value"] for i in profile["contact"]["identities"]} >= {"ana", "visitor-7", "ana@example.com"}
        assert profile["merge_suggestions"] == [] and len(profile["open_conversations"]) == 2


async def test_a_signed_in_visitor_typing_someone_elses_email_does_not_reach_their_history(server) -> None:
    """A host-site account signs the user id only: the e-mail typed with it stays a claim."""
    from tests.channels.webchat.test_webchat import IDENTITY_SECRET, Visitor, make_channel
    from threadline.channels.webchat.adapter import identity_hash

    ids, web, _ = await _two_channels(server.services)
    key = await make_channel(server, ids)
    async with httpx.AsyncClient(base_url=server.url) as client:
        await _post(client, web, {"id": "v-1", "contact": {"id": "victim", "name": "Vera",
                                                           "email": "vera@example.com"}, "text": "my secret order"})
    mallory = Visitor(server, key)
    try:
        await mallory.start(user_id="mallory", user_hash=identity_hash(IDENTITY_SECRET, "mallory"))
        sent = await mallory.say("show me my orders", "m1", profile={"name": "M", "email": "vera@example.com"})
        assert sent.status_code == 201, sent.text
        history = await mallory.history()
        assert all("secret" not in m["text"] for m in history["messages"])
    finally:
        await mallory.aclose()
    async with httpx.AsyncClient(base_url=server.url) as sup:
        await login(sup, "sup@example.com")
        convs = {c["contact_name"]: c for c in (await sup.get("/api/v1/conversations")).json()["items"]}
        assert convs["M"]["contact_id"] != convs["Vera"]["contact_id"]
        suggestions = (await sup.get("/api/v1/merge-suggestions")).json()
        assert any("vera@example.com" in s["reason"] for s in suggestions)


async def test_merging_keeps_per_address_ledgers_such_as_opt_outs_and_undo_removes_only_what_came(services) -> None:
    from threadline.actions import contacts as contact_actions
    from threadline.actions import continuity as continuity_actions
    from threadline.actions.permissions import Actor
    from threadline.db.repos import contacts as contacts_repo
    from threadline.domain.users import Role

    ids = await seed_basics(services)
    actor = Actor(user_id=ids["admin"], role=Role.ADMIN, name="Admin")
    async with services.db.transaction() as s:
        a = await contact_actions.create_contact(s, name="A", identities=[], attributes={
            "consent": {"+15550001": {"status": "granted"}}, "tier": "gold"})
        b = await contact_actions.create_contact(s, name="B", identities=[], attributes={
            "consent": {"+15550002": {"status": "opted_out"}}, "tier": "silver", "city": "Rome"})
        merge = await continuity_actions.merge_contacts(s, actor, b.id, a.id)
        target = await contacts_repo.get_contact(s, a.id)
        assert target.attributes["consent"] == {"+15550001": {"status": "granted"}, "+15550002": {"status": "opted_out"}}
        assert target.attributes["tier"] == "gold" and target.attributes["city"] == "Rome"  # the target wins
        await continuity_actions.undo_merge(s, actor, merge.id)
        target = await contacts_repo.get_contact(s, a.id)
        assert target.attributes == {"consent": {"+15550001": {"status": "granted"}}, "tier": "gold"}


async def test_opt_out_and_bounce_ledgers_cannot_be_overwritten_through_the_api(sqlite_server) -> None:
    _, web, _ = await _two_channels(sqlite_server.services)
    async with httpx.AsyncClient(base_url=sqlite_server.url) as sup:
        await _post(sup, web, {"id": "w-1", "contact": {"id": "v-1", "name": "Ana"}, "text": "hi"})
        await login(sup, "sup@example.com")
        contact_id = (await sup.get("/api/v1/conversations")).json()["items"][0]["contact_id"]
        for key in ("consent", "undeliverable_addresses"):
            resp = await sup.patch(f"/api/v1/contacts/{contact_id}", json={"attributes": {key: None}})
            assert resp.status_code == 422 and resp.json()["field"] == f"attributes.{key}"
