"""Stored files: content-addressed bytes, downloads only for people who may see the conversation."""

from __future__ import annotations

import httpx
from tests.conftest import login, seed_basics

from threadline.actions import attachments as attachment_actions
from threadline.actions import inbound as inbound_actions
from threadline.db.repos import channels as channels_repo
from threadline.domain.contacts import IdentityKind, IdentityValue
from threadline.domain.messages import InboundMessage, Sender


async def test_only_people_who_see_the_conversation_download_its_files(sqlite_server) -> None:
    svc = sqlite_server.services
    ids = await seed_basics(svc)
    async with svc.db.transaction() as s:
        channel = await channels_repo.get_channel(s, ids["channel"])
        who = Sender((IdentityValue(IdentityKind.HANDLE, "cust-1", str(channel.id)),), "Cust")
        msg = await inbound_actions.receive_inbound(s, channel, InboundMessage("p1", who, "see attached"))
        row = await attachment_actions.store_attachment(s, svc.files, b"<script>alert(1)</script>", name="x.html",
                                                        content_type="text/html", conversation_id=msg.conversation_id)
        again = await attachment_actions.store_attachment(s, svc.files, b"<script>alert(1)</script>", name="y.html",
                                                          content_type="text/html")
    assert row.sha256 == again.sha256 and svc.files.exists(row.sha256)  # stored once
    url = attachment_actions.describe(row)["url"]
    async with httpx.AsyncClient(base_url=sqlite_server.url) as alice:  # serves the conversation's queue
        await login(alice, "alice@example.com")
        resp = await alice.get(url)
        assert resp.status_code == 200 and resp.content == b"<script>alert(1)</script>"
        assert resp.headers["content-disposition"].startswith("attachment")  # HTML is never rendered
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert (await alice.get(attachment_actions.describe(again)["url"])).status_code == 404  # not attached
    async with httpx.AsyncClient(base_url=sqlite_server.url) as bob:  # another queue: as if it did not exist
        await login(bob, "bob@example.com")
        assert (await bob.get(url)).status_code == 404
    async with httpx.AsyncClient(base_url=sqlite_server.url) as anonymous:
        assert (await anonymous.get(url)).status_code == 401
