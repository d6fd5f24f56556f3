"""Outgoing webhooks, the pure rules: signatures, the retry schedule, subscriptions, refused destinations."""

from __future__ import annotations

import hashlib
import hmac
import random
from datetime import UTC, datetime, timedelta

import pytest

from threadline.domain.errors import ValidationFailed
from threadline.domain.events import EVENT_NAMES
from threadline.domain.network import address_is_public, parse_retry_after, url_problem
from threadline.webhooks.domain import (
    NOT_IN_WILDCARD,
    RetryPolicy,
    delivery_body,
    matches,
    normalise_events,
    signature_header,
    verify_signature,
    wanted_names,
    wildcard_events,
)

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def test_signature_is_stripe_style_and_verifies_only_fresh_untampered_bodies() -> None:
    body = delivery_body(7, "conversation.created", 42, NOW, {"conversation": {"id": 1}})
    header = signature_header(["whsec_a"], body, 1_700_000_000)
    expected = hmac.new(b"whsec_a", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert verify_signature("whsec_a", body, header, now=1_700_000_100)
    assert not verify_signature("whsec_b", body, header, now=1_700_000_100)  # wrong secret
    assert not verify_signature("whsec_a", body + b" ", header, now=1_700_000_100)  # tampered body
    assert not verify_signature("whsec_a", body, header, now=1_700_000_000 + 301)  # replayed later
    assert not verify_signature("whsec_a", body, "v1=" + expected, now=1_700_000_000)  # no timestamp
    # while a rolled secret's predecessor is honoured, both sign: a receiver with either accepts
    both = signature_header(["whsec_new", "whsec_old"], body, 1_700_000_000)
    assert both.count("v1=") == 2
    assert verify_signature("whsec_old", body, both, now=1_700_000_000)
    assert verify_signature("whsec_new", body, both, now=1_700_000_000)


def test_body_carries_id_event_seq_time_and_data() -> None:
    import json

    assert json.loads(delivery_body(7, "message.created", 9, NOW, {"a": "é"})) == {
        "id": "7", "event": "message.created", "seq": 9, "created_at": "2026-03-02T12:00:00+00:00", "data": {"a": "é"}}


def test_backoff_schedule_spreads_attempts_over_about_a_day_with_jitter() -> None:
    policy = RetryPolicy()
    assert policy.schedule() == [10, 40, 160, 640, 2560, 10240, 21600, 21600, 21600]
    assert 20 * 3600 < sum(policy.schedule()) < 24 * 3600
    rng = random.Random(1)
    for n in range(1, 12):
        d = policy.delay(n, rng)
        assert 0.75 * policy.nominal_delay(n) <= d <= min(policy.max_seconds, 1.25 * policy.nominal_delay(n))
    # the n-th failed attempt schedules the next one; after max_attempts it gives up
    nxt = policy.next_attempt(1, NOW, None, rng)
    assert nxt is not None and timedelta(seconds=7.5) <= nxt - NOW <= timedelta(seconds=12.5)
    assert policy.next_attempt(policy.max_attempts, NOW, None, rng) is None
    # Retry-After wins, up to the longest wait
    assert policy.next_attempt(2, NOW, 120, rng) == NOW + timedelta(seconds=120)
    assert policy.next_attempt(2, NOW, 10**9, rng) == NOW + timedelta(seconds=policy.max_seconds)
    # a failing endpoint rests between attempts, at most pause_max_seconds unless the receiver asks
    assert policy.pause(20, None, rng) == policy.pause_max_seconds
    assert policy.pause(1, 30, rng) == 30


def test_endpoint_is_disabled_only_after_many_failures_over_a_long_time() -> None:
    policy = RetryPolicy(disable_after_failures=50, disable_after_seconds=24 * 3600)
    assert not policy.should_disable(49, NOW - timedelta(days=3), NOW)
    assert not policy.should_disable(500, NOW - timedelta(hours=23), NOW)  # a short outage with a burst
    assert policy.should_disable(50, NOW - timedelta(hours=24), NOW)


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert parse_retry_after("120", NOW) == 120
    assert parse_retry_after("Mon, 02 Mar 2026 12:01:00 GMT", NOW) == 60
    assert parse_retry_after("soon", NOW) is None and parse_retry_after(None, NOW) is None


def test_subscriptions_name_known_events_and_the_wildcard_leaves_out_internal_noise() -> None:
    assert {"contact.merged", "routing.sla_alert", "webhook.disabled"} <= set(EVENT_NAMES)
    assert normalise_events([" message.created", "conversation.created", "message.created"]) == [
        "conversation.created", "message.created"]
    with pytest.raises(ValidationFailed) as err:
        normalise_events(["conversation.created", "conversation.exploded", "nope"])
    assert err.value.field == "events" and "conversation.exploded, nope" in err.value.message
    with pytest.raises(ValidationFailed):
        normalise_events([" "])
    assert matches(["*"], "conversation.created") and matches(["*"], "routing.sla_alert")
    assert not matches(["*"], "routing.state") and not matches(["*"], "conversation.typing")
    assert matches(["*", "routing.state"], "routing.state")  # named explicitly
    assert not matches(["conversation.created"], "message.created")
    assert NOT_IN_WILDCARD.isdisjoint(wildcard_events()) and set(wildcard_events()) | NOT_IN_WILDCARD == set(EVENT_NAMES)
    assert wanted_names([["message.created"], ["routing.state"]]) == {"message.created", "routing.state"}


@pytest.mark.parametrize(("address", "public"), [
    ("93.184.216.34", True), ("2606:4700:4700::1111", True),
    ("127.0.0.1", False), ("10.1.2.3", False), ("172.16.0.1", False), ("192.168.1.1", False),
    ("169.254.169.254", False), ("100.64.0.1", False), ("0.0.0.0", False), ("224.0.0.1", False),
    ("::1", False), ("fe80::1", False), ("fd00::1", False), ("::ffff:127.0.0.1", False),
    ("::ffff:10.0.0.1", False), ("64:ff9b::a00:1", False), ("2002:7f00:1::", False),
])
def test_only_public_addresses_are_reachable(address: str, public: bool) -> None:
    assert address_is_public(address) is public


def test_urls_must_be_http_with_a_host() -> None:
    assert url_problem("https://crm.example.com/hooks?x=1") is None
    assert url_problem("http://10.0.0.1:8080/") is None  # syntax only; addresses are checked apart
    assert "https://" in (url_problem("ftp://example.com/") or "")
    assert url_problem("https:///path") is not None
    assert url_problem("https://example.com/a b") is not None
    assert url_problem("https://example.com:99999/") is not None
    assert url_problem("https://example.com/#frag") is not None
