"""The inbox: requests stored and processed together, failures isolated and kept, nothing lost."""

from __future__ import annotations

import asyncio
import json

from sqlalchemy import func, select

from tests.conftest import make_settings, seed_basics
from threadline.actions import inbound as inbound_actions
from threadline.actions.inbound import files as inbound_files  # where the inbox's batch calls it
from threadline.channels.base import RawRequest
from threadline.db.models import InboxItemRow, MessageRow
from threadline.db.repos import channels as channels_repo
from threadline.services import Services


def _req(provider_id: str, contact: str, text: str = "hello") -> RawRequest:
    body = json.dumps({"id": provider_id, "contact": {"id": contact}, "text": text}).encode()
    return RawRequest("POST", "http://test/hooks/k", {"content-type": "application/json"}, body)


async def _count(svc: Services, model) -> int:  # type: ignore[no-untyped-def]
    async with svc.db.transaction(write=False) as s:
        return (await s.execute(select(func.count()).select_from(model))).scalar_one()


async def test_requests_arriving_together_share_a_transaction_and_duplicates_are_dropped(services) -> None:
    ids = await seed_basics(services)
    async with services.db.transaction(write=False) as s:
        channel = await channels_repo.get_channel(s, ids["channel"])
    commits: list[frozenset[str]] = []
    services.db.after_commit.append(commits.append)
    results = await asyncio.gather(*(services.inbox.store(_req(f"p-{i % 5}", f"c-{i % 3}"), channel, f"p-{i % 5}")
                                     for i in range(20)))
    assert sorted(r for r in results if r is not None) == sorted({r for r in results if r is not None})
    assert sum(r is not None for r in results) == 5  # one per provider id, however often it was sent
    assert len(commits) == 1  # twenty requests, one write transaction
    assert await _count(services, MessageRow) == 5
    again = await services.inbox.store(_req("p-1", "c-1"), channel, "p-1")  # a provider retry, later
    assert again is None and await _count(services, MessageRow) == 5


async def test_a_request_that_fails_is_kept_with_its_error_and_the_others_go_through(services, monkeypatch) -> None:
    ids = await seed_basics(services)
    async with services.db.transaction(write=False) as s:
        channel = await channels_repo.get_channel(s, ids["channel"])
    real = inbound_actions.receive_inbound_batch

    async def flaky(session, items, **kw):  # type: ignore[no-untyped-def]
        if any(m.text == "boom" for _, m in items):
            raise ValueError("the parser choked on this one")
        return await real(session, items, **kw)

    monkeypatch.setattr(inbound_files, "receive_inbound_batch", flaky)
    got = await asyncio.gather(services.inbox.store(_req("ok-1", "a"), channel, "ok-1"),
                               services.inbox.store(_req("bad", "b", "boom"), channel, "bad"),
                               services.inbox.store(_req("ok-2", "c"), channel, "ok-2"))
    assert all(g is not None for g in got)  # all three stored (and acknowledged)
    assert await _count(services, MessageRow) == 2
    async with services.db.transaction(write=False) as s:
        bad = await s.get(InboxItemRow, got[1])
        assert bad.processed_at is None and "parser choked" in bad.error and bad.attempts == 1
    # Fixed (a new release): the sweep processes what was left.
    monkeypatch.setattr(inbound_files, "receive_inbound_batch", real)
    assert await services.inbox.sweep() == 1
    assert await _count(services, MessageRow) == 3


async def test_a_request_stored_before_a_crash_is_processed_after_the_restart(sqlite_url, tmp_path) -> None:
    first = Services.build(make_settings(sqlite_url, tmp_path, run_workers=False))
    await first.start()
    ids = await seed_basics(first)
    async with first.db.transaction() as s:
        channel = await channels_repo.get_channel(s, ids["channel"])
    # The process dies after committing the raw request and before processing it.
    stored = await first.inbox._store_only([{"channel_instance_id": channel.id, "dedupe_key": "p-9", "method": "POST",
                                             "url": "http://test/hooks/k", "headers": {},
                                             "body": _req("p-9", "c-9").body}])
    assert isinstance(stored[0], int)
    await first.stop()
    second = Services.build(make_settings(sqlite_url, tmp_path))  # workers on: the sweep runs at start
    arrived = asyncio.Event()
    second.bus.subscribe(lambda env: arrived.set() if env.name == "message.created" else None)
    await second.start()
    try:
        await asyncio.wait_for(arrived.wait(), 10)
        assert await _count(second, MessageRow) == 1
    finally:
        await second.stop()


async def test_an_overloaded_inbox_refuses_with_503_instead_of_queueing_without_bound(sqlite_server) -> None:
    import httpx

    from tests.web.test_hooks_and_stream import hook_url, signed

    svc = sqlite_server.services
    ids = await seed_basics(svc)
    svc.inbox.max_waiting = 0  # as if thousands were already waiting for the database
    body, headers = signed({"id": "m-1", "contact": {"id": "c-1"}, "text": "hi"})
    async with httpx.AsyncClient(base_url=sqlite_server.url) as client:
        resp = await client.post(await hook_url(sqlite_server, ids["channel"]), content=body, headers=headers)
    assert resp.status_code == 503 and "retry" in resp.json()["detail"]
    assert await _count(svc, MessageRow) == 0 and await _count(svc, InboxItemRow) == 0
