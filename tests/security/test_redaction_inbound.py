"""Issue 16, PCI: a card number (or, by policy, an IBAN or a national id) a customer types is masked before
anything is stored: the message, the events, the API, and the raw provider request kept in the inbox
(real HTTP, a signed generic API channel)."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import select

from tests.conftest import _sqlite_db, login, make_server, seed_basics
from tests.security.helpers import API_SECRET, post_api
from threadline.actions import channels as channel_actions
from threadline.db.models import InboxItemRow, MessageRow

CARD = "4111 1111 1111 1111"  # a valid Visa test number (Luhn)
IBAN = "ES91 2100 0418 4502 0005 1332"


async def _customer_writes(server, text: str) -> tuple[dict, list[InboxItemRow], list[MessageRow]]:  # type: ignore[no-untyped-def]
    svc = server.services
    ids = await seed_basics(svc)
    async with svc.db.transaction() as s:
        channel = await channel_actions.create_channel(s, svc.box, kind="api", name="Shop API",
                                                       default_queue_id=ids["billing"], config={"secret": API_SECRET})
    async with httpx.AsyncClient(base_url=server.url) as c:
        r = await post_api(c, channel.key, {"id": "m-1", "contact": {"id": "cust-1", "name": "Carla"}, "text": text})
        assert r.status_code == 200, r.text
        await login(c, "bob@example.com")
        conv = (await c.get("/api/v1/conversations")).json()["items"][0]
        shown = (await c.get(f"/api/v1/conversations/{conv['id']}/messages")).json()
    async with svc.db.transaction(write=False) as s:
        items = list((await s.execute(select(InboxItemRow))).scalars())
        messages = list((await s.execute(select(MessageRow).where(MessageRow.direction == "in"))).scalars())
    return shown, items, messages


async def test_a_card_number_is_masked_everywhere_it_would_be_stored(server) -> None:
    shown, items, messages = await _customer_writes(server, f"My card is {CARD}, exp 12/29, order 4111-2222-3333")
    [msg] = messages
    assert "4111 1111" not in msg.text and msg.text.endswith("1111, exp 12/29, order 4111-2222-3333")
    assert msg.meta["redacted"] == ["card"]
    assert all(b"4111 1111 1111" not in item.body for item in items) and items
    body = shown["items"] if isinstance(shown, dict) else shown
    assert all("4111 1111 1111" not in m["text"] for m in body)


async def test_the_default_policy_leaves_an_iban_and_stricter_ones_mask_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = await asyncio.to_thread(_sqlite_db, tmp_path / "pci")
    async with await make_server(url, tmp_path / "pci") as server:
        _, _, [msg] = await _customer_writes(server, f"Refund to {IBAN} please")
    assert IBAN in msg.text and "redacted" not in msg.meta
    url = await asyncio.to_thread(_sqlite_db, tmp_path / "ids")
    async with await make_server(url, tmp_path / "ids", redaction="pci+ids") as server:
        _, items, [msg] = await _customer_writes(server, f"Refund to {IBAN} please")
    assert "2100 0418" not in msg.text and msg.meta["redacted"] == ["iban"]
    assert all(b"2100 0418" not in item.body for item in items)
