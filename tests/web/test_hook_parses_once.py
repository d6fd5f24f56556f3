"""Issue 13 item 6: each inbound request is parsed once. The hook parses a provider's request to check it
and answer; the inbox takes those parsed items with the raw request and does not parse it again. The raw
request is still stored, and one that could not be processed with the request is parsed from it later."""

from __future__ import annotations

import json
import time

import httpx
from sqlalchemy import select
from tests.conftest import make_server, seed_basics

from threadline.actions.inbound import (
    files as message_actions,  # where the inbox worker calls receive_inbound_batch
)
from threadline.channels.api.adapter import ApiChannel
from threadline.db.models import InboxItemRow, MessageRow
from threadline.db.repos import channels as channels_repo
from threadline.security import sign

SECRET = "s3cret-s3cret-s3cret"  # the API channel of seed_basics


async def _post(client: httpx.AsyncClient, key: str, body: dict) -> httpx.Response:
    raw = json.dumps(body).encode()
    ts = str(int(time.time()))
    return await client.post(f"/hooks/{key}", content=raw, headers={
        "content-type": "application/json", "x-threadline-timestamp": ts,
        "x-threadline-signature": sign(SECRET, raw, ts)})


async def test_a_hook_request_is_parsed_once_and_its_raw_body_kept_for_later(db_url, tmp_path, monkeypatch) -> None:
    # no background workers: the sweep below is the only one (as after a restart), so nothing races it
    async with await make_server(db_url, tmp_path, run_workers=False) as server:
        await _scenario(server, monkeypatch)


async def _scenario(server, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    svc = server.services
    ids = await seed_basics(svc)
    async with svc.db.transaction(write=False) as s:
        key = (await channels_repo.get_channel(s, ids["channel"])).key
    parsed: list[bytes] = []
    real_parse = ApiChannel.parse

    def counting(self, req):  # type: ignore[no-untyped-def]
        parsed.append(req.body)
        return real_parse(self, req)

    monkeypatch.setattr(ApiChannel, "parse", counting)
    async with httpx.AsyncClient(base_url=server.url) as client:
        r = await _post(client, key, {"id": "once-1", "contact": {"id": "c-1"}, "text": "parsed once"})
        assert r.status_code == 200, r.text
        assert len(parsed) == 1 and svc.inbox.parses == 0  # the hook's parse, handed to the inbox
        async with svc.db.transaction(write=False) as s:
            item = (await s.execute(select(InboxItemRow).where(InboxItemRow.dedupe_key == "once-1"))).scalar_one()
            assert item.processed_at is not None and b"parsed once" in item.body  # the raw body is kept
            assert (await s.execute(select(MessageRow.text))).scalars().all() == ["parsed once"]

        # Processing fails with the request (a bug, the database): stored raw and acknowledged; the sweep
        # (as after a restart) parses the stored body, since nothing parsed survives the request.
        real_receive = message_actions.receive_inbound_batch

        async def failing(session, items, **kw):  # type: ignore[no-untyped-def]
            raise RuntimeError("not now")

        monkeypatch.setattr(message_actions, "receive_inbound_batch", failing)
        r = await _post(client, key, {"id": "later-1", "contact": {"id": "c-2"}, "text": "parsed from raw"})
        assert r.status_code == 200, r.text
        monkeypatch.setattr(message_actions, "receive_inbound_batch", real_receive)
        parsed.clear()
        assert await svc.inbox.sweep() == 1
        assert len(parsed) == 1 and b"parsed from raw" in parsed[0] and svc.inbox.parses == 1
        async with svc.db.transaction(write=False) as s:
            texts = (await s.execute(select(MessageRow.text).order_by(MessageRow.id))).scalars().all()
        assert texts == ["parsed once", "parsed from raw"]
