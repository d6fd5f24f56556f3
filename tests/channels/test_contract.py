"""The contract every registered channel adapter keeps: it refuses a request that is not signed by its
provider, turns every recorded provider fixture into valid domain objects, gives a retried delivery the
same dedupe key (so the inbox stores it once), and maps the provider's answers to a receipt, a retryable
error or a permanent error with the provider's reason."""

from __future__ import annotations

import httpx
import pytest

from threadline.channels.base import (
    ChannelAdapter,
    InvalidSignature,
    PermanentSendError,
    RawRequest,
    RetryableSendError,
)
from threadline.channels.registry import adapters
from threadline.domain.contacts import IdentityKind
from threadline.domain.messages import DeliveryStatus, InboundMessage, OutboundMessage, StatusUpdate

from .harness import Harness, Reply, body_of, harnesses

HOOK = "https://support.example.com/hooks/abc123"
# Channels that are not HTTP-signed providers and keep their contract in their own test folders.
ELSEWHERE = {"email": "tests/channels/email", "webchat": "tests/channels/webchat",
             # phone lines: call control and CTI events over real HTTP with FakeTwilio and a scripted PBX
             "twilio_voice": "tests/voice", "pbx": "tests/voice",
             "asterisk": "tests/voice"}
KINDS = sorted(adapters())


def build(kind: str, h: Harness) -> ChannelAdapter:
    cls = adapters()[kind]
    adapter = cls(cls.Config.model_validate(h.config), httpx.AsyncClient(), scope="1")
    adapter.hook_url = HOOK
    return adapter


def harness_or_skip(kind: str) -> Harness:
    h = harnesses().get(kind)
    if h is None:
        if kind in ELSEWHERE:
            pytest.skip(f"{kind} is covered by {ELSEWHERE[kind]}")
        pytest.fail(f"channel kind {kind!r} is registered but has no contract harness in tests/channels/harness.py")
    return h


def request(h: Harness, body: bytes, secret: str | None = None, url: str = HOOK) -> RawRequest:
    return RawRequest("POST", url, h.headers(body, url, secret), body)


def test_every_messaging_kind_is_registered() -> None:
    assert {"twilio", "twilio_whatsapp", "whatsapp", "messenger", "instagram", "telegram"} <= set(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_capabilities_are_sane(kind: str) -> None:
    caps = adapters()[kind].capabilities
    assert (caps.max_text_length > 0 or caps.work_class == "voice") and caps.identity_kinds  # a phone line: no text
    assert all(k in {i.value for i in IdentityKind} for k in caps.identity_kinds)
    assert caps.reply_window_seconds is None or caps.reply_window_seconds > 0
    assert not caps.templates or caps.reply_window_seconds  # templates exist for the closed window


@pytest.mark.parametrize("kind", KINDS)
def test_rejects_bad_and_missing_signatures(kind: str) -> None:
    h = harness_or_skip(kind)
    adapter = build(kind, h)
    bodies = [p.read_bytes() for p in h.files()] or [b'{"id":"m-1","contact":{"id":"c"},"text":"hi"}']
    for body in bodies:
        adapter.verify(request(h, body))  # the real signature passes
        with pytest.raises(InvalidSignature):
            adapter.verify(request(h, body, secret="not-the-secret-000000000"))
        with pytest.raises(InvalidSignature):
            adapter.verify(RawRequest("POST", HOOK, {"content-type": "application/json"}, body))
        if h.signs_body:
            with pytest.raises(InvalidSignature):  # signed, then tampered with
                tampered = request(h, body)
                adapter.verify(RawRequest("POST", HOOK, tampered.headers, body.replace(b"1", b"2", 1) + b"&"))


@pytest.mark.parametrize("kind", KINDS)
def test_parses_every_recorded_fixture_into_domain_objects(kind: str) -> None:
    h = harness_or_skip(kind)
    adapter = build(kind, h)
    caps = adapter.capabilities
    if not h.files():
        pytest.skip(f"{kind} has no recorded provider fixtures (its payload is Threadline's own)")
    for path in h.files():
        items = adapter.parse(request(h, path.read_bytes()))
        if path.name.startswith("ignored_"):
            assert items == [], path.name
            continue
        assert items, f"{path.name} gave nothing"
        for item in items:
            assert isinstance(item, InboundMessage | StatusUpdate), path.name
            assert item.provider_id, path.name
            if isinstance(item, StatusUpdate):
                assert path.name.startswith("status_"), path.name
                assert isinstance(item.status, DeliveryStatus)
                if item.status is DeliveryStatus.FAILED:
                    assert item.error, f"{path.name}: a failure needs the provider's reason"
                continue
            assert not path.name.startswith("status_"), path.name
            assert item.sender.identities, path.name
            for ident in item.sender.identities:
                assert ident.value
                assert ident.kind.value in caps.identity_kinds or ident.kind is IdentityKind.PHONE, path.name
                if ident.kind is IdentityKind.PHONE:
                    assert ident.value.startswith("+") and ident.value[1:].isdigit(), path.name
                if ident.kind.scoped:
                    assert ident.scope == "1", path.name
            assert item.text.strip() or item.attachments, path.name
            assert len(item.text) <= 65_536


@pytest.mark.parametrize("kind", KINDS)
def test_a_replay_has_the_same_dedupe_key_and_different_deliveries_do_not(kind: str) -> None:
    h = harness_or_skip(kind)
    adapter = build(kind, h)
    keys = []
    for path in h.files():
        if path.name.startswith("ignored_"):
            continue
        body = path.read_bytes()
        first, again = request(h, body), request(h, body)
        k1 = adapter.dedupe_key(adapter.parse(first), first)
        k2 = adapter.dedupe_key(adapter.parse(again), again)
        assert k1 and k1 == k2, path.name
        keys.append(k1)
    assert len(keys) == len(set(keys))


def transport(reply: Reply | Exception) -> httpx.MockTransport:
    def answer(req: httpx.Request) -> httpx.Response:
        if isinstance(reply, Exception):
            raise reply
        ctype = "text/html" if isinstance(reply.body, str) else "application/json"
        return httpx.Response(reply.status, content=body_of(reply), headers={"content-type": ctype, **reply.headers})
    return httpx.MockTransport(answer)


async def send_with(kind: str, h: Harness, reply: Reply | Exception):  # type: ignore[no-untyped-def]
    cls = adapters()[kind]
    async with httpx.AsyncClient(transport=transport(reply)) as http:
        adapter = cls(cls.Config.model_validate(h.config), http, scope="1")
        adapter.hook_url = HOOK
        return await adapter.send(OutboundMessage(message_id=7, conversation_id=3, to=h.to, text="Hello"))


@pytest.mark.parametrize("kind", KINDS)
async def test_send_maps_the_provider_answers(kind: str) -> None:
    h = harness_or_skip(kind)
    receipt = await send_with(kind, h, h.ok)
    assert receipt.provider_id and receipt.status is DeliveryStatus.SENT
    with pytest.raises(RetryableSendError) as throttled:
        await send_with(kind, h, h.throttled)
    assert throttled.value.retry_after == h.throttled_retry_after
    with pytest.raises(RetryableSendError):
        await send_with(kind, h, h.server_error)
    with pytest.raises(RetryableSendError):
        await send_with(kind, h, httpx.ConnectError("connection refused"))
    with pytest.raises(PermanentSendError) as refused:
        await send_with(kind, h, h.refused)
    assert h.refused_reason in str(refused.value)
