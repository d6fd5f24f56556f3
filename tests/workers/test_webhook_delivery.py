"""Outgoing webhooks end to end: real HTTP to a receiver on loopback, events from the real inbound path,
retries on an injected clock, restarts, concurrent senders, auto-disable, and refused destinations.
Storage tests run on SQLite and PostgreSQL (the ``db_url`` fixture)."""

from __future__ import annotations

import asyncio
import json
import random
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from tests.conftest import login, make_server, make_settings, run_server, seed_basics
from tests.workers.webhook_receiver import FakeClock, Receiver
from threadline.actions import contacts as contact_actions
from threadline.actions import retention as retention_actions
from threadline.actions.events import capture_events
from threadline.db.repos import channels as channels_repo
from threadline.db.types import utcnow
from threadline.domain.retention import Retention
from threadline.net import DestinationRefused, check_destination, make_client, post
from threadline.security import sign
from threadline.services import Services
from threadline.webhooks import actions as webhook_actions
from threadline.webhooks import repo as webhooks_repo
from threadline.webhooks.domain import AttemptResult, RetryPolicy, verify_signature
from threadline.webhooks.models import WebhookDeliveryRow, WebhookEndpointRow

CHANNEL_SECRET = "s3cret-s3cret-s3cret"


async def inbound(client: httpx.AsyncClient, services: Services, channel_id: int, msg_id: str, text: str) -> None:
    """A customer message through the real path: signed POST /hooks/{key} → inbox → conversation."""
    async with services.db.transaction(write=False) as s:
        key = (await channels_repo.get_channel(s, channel_id)).key
    raw = json.dumps({"id": msg_id, "contact": {"id": f"cust-{msg_id}", "name": "Maria"}, "text": text}).encode()
    ts = str(int(time.time()))
    r = await client.post(f"/hooks/{key}", content=raw, headers={
        "content-type": "application/json", "x-threadline-timestamp": ts,
        "x-threadline-signature": sign(CHANNEL_SECRET, raw, ts)})
    assert r.status_code == 200, r.text


async def recorded(queue: asyncio.Queue, want: str, timeout: float = 5.0) -> None:
    """Wait until the sender has recorded an attempt with this outcome."""
    async with asyncio.timeout(timeout):
        while want not in (await queue.get()).outcomes.values():
            pass


async def test_conversation_created_is_delivered_signed_and_only_to_subscribers(db_url: str, tmp_path: Path) -> None:
    receiver = Receiver()
    async with run_server(receiver.app) as rx, \
            await make_server(db_url, tmp_path, webhooks_allow_private=True) as server:
        ids = await seed_basics(server.services)
        results: asyncio.Queue = asyncio.Queue()
        server.services.webhooks.sender.listeners.append(results.put_nowait)
        async with httpx.AsyncClient(base_url=server.url) as c:
            await login(c, "admin@example.com")
            one = await c.post("/api/v1/webhooks", json={"url": f"{rx.url}/crm", "events": ["conversation.created"],
                                                         "description": "CRM sync"})
            assert one.status_code == 201, one.text
            secret, crm_id = one.json()["secret"], one.json()["id"]
            assert secret.startswith("whsec_")
            every = await c.post("/api/v1/webhooks", json={"url": f"{rx.url}/bi", "events": ["*"]})
            assert every.status_code == 201

            await inbound(c, server.services, ids["channel"], "m-1", "Where is my parcel?")
            call = await receiver.next("/crm")
            assert call.headers["content-type"] == "application/json"
            assert call.headers["user-agent"] == "Threadline-Webhooks/1"
            assert call.headers["threadline-event"] == "conversation.created"
            assert verify_signature(secret, call.body, call.headers["threadline-signature"], now=time.time())
            assert not verify_signature(every.json()["secret"], call.body, call.headers["threadline-signature"],
                                        now=time.time())
            body = call.json
            assert body["event"] == "conversation.created" and body["id"] == call.headers["threadline-delivery"]
            assert isinstance(body["seq"], int) and body["created_at"]
            assert body["data"]["conversation"]["contact_name"] == "Maria"

            # "*" also gets message.created; once it has, the dispatcher decided for both endpoints
            await receiver.until("/bi", "message.created")
            assert [x.event for x in receiver.to("/crm")] == ["conversation.created"]
            assert {"contact.created", "conversation.created"} <= {x.event for x in receiver.to("/bi")}

            async with asyncio.timeout(5):  # the receiver has answered; wait until the sender recorded it
                while True:
                    log = await c.get(f"/api/v1/webhooks/{crm_id}/deliveries")
                    assert log.status_code == 200
                    [item] = log.json()["items"]
                    if item["status"] != "pending":
                        break
                    await results.get()
            assert (item["event"], item["status"], item["attempts"], item["last_status_code"]) == \
                ("conversation.created", "delivered", 1, 200)
            assert item["seq"] == body["seq"] and item["next_attempt_at"] is None

            # redeliver: the same id and body again
            again = await c.post(f"/api/v1/webhooks/deliveries/{item['id']}/redeliver")
            assert again.status_code == 202 and again.json()["status"] == "pending"
            repeat = await receiver.next("/crm")
            assert repeat.body == call.body and repeat.headers["threadline-delivery"] == str(item["id"])

            # ping, through the API and through the admin page's button
            ping = await c.post(f"/api/v1/webhooks/{crm_id}/ping")
            assert ping.status_code == 200 and ping.json()["ok"] and ping.json()["status_code"] == 200
            pinged = await receiver.next("/crm")
            assert pinged.event == "webhook.ping" and pinged.json["seq"] is None
            assert verify_signature(secret, pinged.body, pinged.headers["threadline-signature"], now=time.time())
            page = await c.post(f"/admin/webhooks/{crm_id}/ping", data={"csrf_token": c.headers["X-CSRF-Token"]})
            assert page.status_code == 200 and "answered 200" in page.text
            assert (await receiver.next("/crm")).event == "webhook.ping"


async def test_a_failed_delivery_is_retried_with_backoff_and_retry_after(sqlite_url: str, tmp_path: Path) -> None:
    receiver = Receiver({"/flaky": [(500, {}), (429, {"Retry-After": "120"})]})
    async with run_server(receiver.app) as rx, \
            await make_server(sqlite_url, tmp_path, webhooks_allow_private=True) as server:
        ids = await seed_basics(server.services)
        hooks = server.services.webhooks
        clock = FakeClock()
        hooks.sender.clock = hooks.dispatcher.clock = clock
        results: asyncio.Queue = asyncio.Queue()
        hooks.sender.listeners.append(results.put_nowait)
        async with httpx.AsyncClient(base_url=server.url) as c:
            await login(c, "admin@example.com")
            r = await c.post("/api/v1/webhooks", json={"url": f"{rx.url}/flaky", "events": ["conversation.created"]})
            endpoint_id = r.json()["id"]
            await inbound(c, server.services, ids["channel"], "m-1", "hello")

            first = await receiver.next("/flaky")
            await recorded(results, "retry")
            async with server.services.db.transaction(write=False) as s:
                row = (await webhooks_repo.list_deliveries(s, endpoint_id, status=None, before_id=None, limit=5))[0]
                endpoint = await webhooks_repo.get_endpoint(s, endpoint_id)
            assert (row.status, row.attempts, row.last_status_code) == ("pending", 1, 500)
            assert 7.4 <= (row.next_attempt_at - clock()).total_seconds() <= 12.6  # 10 s ±25 %
            assert endpoint.consecutive_failures == 1 and endpoint.paused_until > clock()

            clock.advance(60)
            hooks.sender.wake()
            second = await receiver.next("/flaky")
            await recorded(results, "retry")
            async with server.services.db.transaction(write=False) as s:
                row = await webhooks_repo.get_delivery(s, row.id)
            assert (row.attempts, row.last_status_code) == (2, 429)
            assert (row.next_attempt_at - clock()).total_seconds() == pytest.approx(120)  # Retry-After honoured

            clock.advance(121)
            hooks.sender.wake()
            third = await receiver.next("/flaky")
            await recorded(results, "delivered")
            async with server.services.db.transaction(write=False) as s:
                row = await webhooks_repo.get_delivery(s, row.id)
                endpoint = await webhooks_repo.get_endpoint(s, endpoint_id)
            assert (row.status, row.attempts, row.last_status_code, row.last_error) == ("delivered", 3, 200, None)
            assert endpoint.consecutive_failures == 0 and endpoint.paused_until is None
            # every attempt is the same delivery with the same body; only the attempt number changes
            assert first.body == second.body == third.body
            assert [x.headers["threadline-attempt"] for x in (first, second, third)] == ["1", "2", "3"]
            assert len({x.headers["threadline-delivery"] for x in (first, second, third)}) == 1


async def _endpoint_and_events(svc: Services, url: str, count: int) -> int:
    """An endpoint subscribed to contact.created, then ``count`` contacts created and relayed."""
    async with svc.db.transaction() as s:
        endpoint, _ = await webhook_actions.create_endpoint(s, svc.box, url=url, events=["contact.created"],
                                                            now=utcnow())
    for i in range(count):
        async with svc.db.transaction() as s:
            await contact_actions.create_contact(s, name=f"C{i}", identities=[])
    await svc.relay.relay_once()  # PostgreSQL: the relay gives the seqs
    assert await svc.webhooks.dispatcher.follow_once() >= count
    return endpoint.id


async def test_pending_and_in_flight_deliveries_are_sent_after_a_restart(db_url: str, tmp_path: Path) -> None:
    receiver = Receiver()
    async with run_server(receiver.app) as rx:
        settings = make_settings(db_url, tmp_path, run_workers=False, webhooks_allow_private=True)
        first = Services.build(settings)
        await first.start()
        try:
            endpoint_id = await _endpoint_and_events(first, f"{rx.url}/r", 2)
            async with first.db.transaction() as s:  # a sender took one, then the process died mid-flight
                [crashed] = await webhook_actions.claim_due(s, now=utcnow(), lease_seconds=70, limit=1,
                                                            per_endpoint=4)
        finally:
            await first.stop()

        second = Services.build(settings)
        await second.start()
        try:
            clock = FakeClock()
            assert second.webhooks is not None
            second.webhooks.sender.clock = clock
            await second.webhooks.sender.start()
            fresh = await receiver.next("/r")  # the pending one goes at once
            assert fresh.headers["threadline-delivery"] != str(crashed.id)
            clock.advance(71)  # the crashed attempt's lease ends: it is tried again
            second.webhooks.sender.wake()
            retried = await receiver.next("/r")
            assert retried.headers["threadline-delivery"] == str(crashed.id)
            assert retried.headers["threadline-attempt"] == "2"
            await second.webhooks.sender.drain(5)
            async with second.db.transaction(write=False) as s:
                rows = await webhooks_repo.list_deliveries(s, endpoint_id, status=None, before_id=None, limit=10)
            assert sorted((r.status, r.attempts) for r in rows) == [("delivered", 1), ("delivered", 2)]
            assert [c.json["data"]["contact"]["name"] for c in receiver.to("/r")] in (["C0", "C1"], ["C1", "C0"])
        finally:
            await second.stop()


async def test_two_processes_never_claim_the_same_delivery(db_url: str, tmp_path: Path) -> None:
    settings = make_settings(db_url, tmp_path, run_workers=False, webhooks_allow_private=True)
    a, b = Services.build(settings), Services.build(settings)
    await a.start()
    await b.start()
    try:
        now = utcnow()
        async with a.db.transaction() as s:
            endpoint, _ = await webhook_actions.create_endpoint(s, a.box, url="http://127.0.0.1:9/x", events=["*"],
                                                                now=now)
            await webhooks_repo.insert_deliveries(s, [
                {"endpoint_id": endpoint.id, "event_seq": 1000 + i, "event_name": "contact.created",
                 "status": "pending", "attempts": 0, "next_attempt_at": now, "created_at": now} for i in range(60)])

        async def claim_all(svc: Services) -> list[int]:
            got: list[int] = []
            while True:
                async with svc.db.transaction() as s:
                    rows = await webhook_actions.claim_due(s, now=now, lease_seconds=60, limit=7, per_endpoint=100)
                if not rows:
                    return got
                got += [r.id for r in rows]
                await asyncio.sleep(0)

        one, two = await asyncio.gather(claim_all(a), claim_all(b))
        assert not set(one) & set(two)
        assert len(one) + len(two) == 60
    finally:
        await b.stop()
        await a.stop()


async def test_one_backlogged_endpoint_does_not_starve_the_others(db_url: str, tmp_path: Path) -> None:
    svc = Services.build(make_settings(db_url, tmp_path, run_workers=False, webhooks_allow_private=True))
    await svc.start()
    try:
        now = utcnow()
        async with svc.db.transaction() as s:
            slow, _ = await webhook_actions.create_endpoint(s, svc.box, url="http://127.0.0.1:9/a", events=["*"], now=now)
            other, _ = await webhook_actions.create_endpoint(s, svc.box, url="http://127.0.0.1:9/b", events=["*"], now=now)
            rows = [{"endpoint_id": slow.id, "event_seq": i, "event_name": "contact.created", "status": "pending",
                     "attempts": 0, "next_attempt_at": now - timedelta(minutes=10), "created_at": now} for i in range(50)]
            rows += [{"endpoint_id": other.id, "event_seq": i, "event_name": "contact.created", "status": "pending",
                      "attempts": 0, "next_attempt_at": now, "created_at": now} for i in range(2)]
            await webhooks_repo.insert_deliveries(s, rows)
            claimed = await webhook_actions.claim_due(s, now=now, lease_seconds=60, limit=8, per_endpoint=4)
            assert sorted(c.endpoint_id for c in claimed) == [slow.id] * 4 + [other.id] * 2
            # with 3 of the slow endpoint's attempts still in flight here, it gets one more slot
            more = await webhook_actions.claim_due(s, now=now, lease_seconds=60, limit=8, per_endpoint=4,
                                                   busy={slow.id: 3})
            assert [c.endpoint_id for c in more] == [slow.id]
    finally:
        await svc.stop()


async def test_a_receiver_failing_for_long_or_gone_disables_its_endpoint(db_url: str, tmp_path: Path) -> None:
    svc = Services.build(make_settings(db_url, tmp_path, run_workers=False, webhooks_allow_private=True))
    await svc.start()
    try:
        now = utcnow()
        async with svc.db.transaction() as s:
            down, _ = await webhook_actions.create_endpoint(s, svc.box, url="http://127.0.0.1:9/down", events=["*"],
                                                            description="BI", now=now)
            gone, _ = await webhook_actions.create_endpoint(s, svc.box, url="http://127.0.0.1:9/gone", events=["*"],
                                                            now=now)
            await webhooks_repo.insert_deliveries(s, [
                {"endpoint_id": ep, "event_seq": seq, "event_name": "contact.created", "status": "pending",
                 "attempts": 0, "next_attempt_at": now, "created_at": now}
                for ep, seq in ((down.id, 1), (down.id, 2), (down.id, 3), (gone.id, 1))])
        policy = RetryPolicy(disable_after_failures=2, disable_after_seconds=0)
        with capture_events() as events:
            async with svc.db.transaction() as s:
                claimed = await webhook_actions.claim_due(s, now=now, lease_seconds=60, limit=10, per_endpoint=10)
                by_id = {c.id: c for c in claimed}
                results = [AttemptResult(c.id, c.attempts, 500 if c.endpoint_id == down.id else 410, None)
                           for c in claimed if not (c.endpoint_id == down.id and c.event_seq == 3)]
                done = await webhook_actions.record_results(s, results, policy=policy, now=now, rng=random.Random(1))
        assert sorted(done.disabled) == sorted([down.id, gone.id])
        assert {o for o in done.outcomes.values()} == {"retry"}
        disabled = [e for e, _ in events if e.name == "webhook.disabled"]
        assert sorted((e.endpoint_id, e.reason.startswith("the receiver answered 410")) for e in disabled) == \
            sorted([(down.id, False), (gone.id, True)])
        assert [e.description for e in disabled if e.endpoint_id == down.id] == ["BI"]
        async with svc.db.transaction(write=False) as s:
            ep = await webhooks_repo.get_endpoint(s, down.id)
            assert not ep.active and "2 failed attempts in a row" in (ep.disabled_reason or "")
            # a disabled endpoint's waiting deliveries stay, but are not due
            assert await webhooks_repo.due_candidates(s, now + timedelta(days=1), 10, 10) == []
        # the third delivery's attempt was still in flight (claimed): its result arrives late and counts
        async with svc.db.transaction() as s:
            late = by_id[[c.id for c in claimed if c.endpoint_id == down.id and c.event_seq == 3][0]]
            await webhook_actions.record_results(s, [AttemptResult(late.id, late.attempts, 200)], policy=policy,
                                                 now=now, rng=random.Random(1))
            # re-enabled: healthy again, and everything waiting is due again
            await webhook_actions.update_endpoint(s, down.id, active=True)
        async with svc.db.transaction(write=False) as s:
            ep = await webhooks_repo.get_endpoint(s, down.id)
            assert ep.active and ep.consecutive_failures == 0 and ep.disabled_reason is None
            later = now + timedelta(days=1)
            assert {e for _, e in await webhooks_repo.due_candidates(s, later, 10, 10)} == {down.id}
            rows = (await s.execute(select(WebhookDeliveryRow).where(WebhookDeliveryRow.endpoint_id == down.id))).scalars().all()
            assert sorted(r.status for r in rows) == ["delivered", "pending", "pending"]
            assert (await s.execute(select(WebhookEndpointRow.active).where(WebhookEndpointRow.id == gone.id))).scalar_one() is False
        # finished deliveries are forgotten after the retention period; waiting ones stay
        async with svc.db.transaction() as s:
            assert (await retention_actions.prune_once(s, Retention(), now + timedelta(days=31), [webhook_actions.RETAINED])).logs == {"webhook_deliveries": 1}
        async with svc.db.transaction(write=False) as s:
            rows = (await s.execute(select(WebhookDeliveryRow.status))).scalars().all()
            assert sorted(rows) == ["pending"] * 3
    finally:
        await svc.stop()


async def test_private_destinations_are_refused_when_saved_and_when_delivered() -> None:
    receiver = Receiver()
    async with run_server(receiver.app) as rx:
        for url in ("http://localhost:8080/x", "http://169.254.169.254/latest/meta-data", "http://[::1]/x",
                    "http://10.0.0.8/hook", rx.url + "/x"):
            with pytest.raises(DestinationRefused, match="private"):
                await check_destination(url, allow_private=False)
        with pytest.raises(DestinationRefused, match="https://"):
            await check_destination("file:///etc/passwd", allow_private=True)
        await check_destination("http://93.184.216.34/hook", allow_private=False)  # public literal: no DNS
        await check_destination(rx.url + "/x", allow_private=True)
        # at delivery time the connection itself is refused (a DNS answer may have changed since saving)
        guarded = make_client(allow_private=False, timeout=5)
        try:
            answer = await post(guarded, rx.url + "/x", b"{}", {}, timeout=5, now=utcnow())
        finally:
            await guarded.aclose()
        assert answer.status_code is None and "private" in (answer.error or "")
        assert receiver.calls == []
        allowed = make_client(allow_private=True, timeout=5)
        try:
            answer = await post(allowed, rx.url + "/x", b"{}", {}, timeout=5, now=utcnow())
        finally:
            await allowed.aclose()
        assert answer.status_code == 200 and answer.response == '{"ok": true}'
