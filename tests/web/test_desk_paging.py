"""The desk's conversation list in pages over HTTP: the first page ends with a "Load more" whose keyset
cursor brings the next page (no duplicates, no gaps, newcomers do not shift it), with filters and
search; live refreshes keep the rows already loaded; the live board's figures are cached briefly."""

from __future__ import annotations

import html
import re
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select, update
from tests.conftest import make_server, seed_basics
from tests.web.test_desk_pages import inbound, page_login

from threadline.actions import inbound as inbound_actions
from threadline.db.models import ConversationRow
from threadline.db.repos import channels as channels_repo
from threadline.db.repos import routing as routing_repo
from threadline.domain.contacts import normalise_identity
from threadline.domain.messages import InboundMessage, Sender
from threadline.domain.routing.records import Outcome, instant
from threadline.web.desk import admin as desk_admin
from threadline.web.desk import routes as desk_routes

HX_LIST = {"HX-Request": "true", "HX-Target": "list"}
HX_MORE = {"HX-Request": "true", "HX-Target": "list-more"}


async def many_conversations(services, channel_id: int, n: int, *, ties: int = 7) -> list[int]:  # type: ignore[no-untyped-def]
    """``n`` conversations, one customer each; every ``ties`` of them share one last_activity_at (page
    boundaries fall inside ties). Every third says "refund". Returns the ids in list order."""
    async with services.db.transaction(write=True) as s:
        channel = await channels_repo.get_channel(s, channel_id)
        ids = []
        for i in range(n):
            text = f"order {i}" + (" refund please" if i % 3 == 0 else "")
            msg = await inbound_actions.receive_inbound(s, channel, InboundMessage(
                provider_id=f"page-{i}", sender=Sender(identities=(normalise_identity("email", f"c{i}@example.com"),),
                                                      name=f"Customer {i}"), text=text))
            assert msg is not None
            ids.append(msg.conversation_id)
    base = datetime.now(UTC) - timedelta(hours=1)
    async with services.db.transaction(write=True) as s:
        for i, cid in enumerate(ids):
            await s.execute(update(ConversationRow).where(ConversationRow.id == cid)
                            .values(last_activity_at=base + timedelta(seconds=i // ties)))
        rows = (await s.execute(select(ConversationRow.id, ConversationRow.last_activity_at)
                                .where(ConversationRow.id.in_(ids)))).all()
    return [r.id for r in sorted(rows, key=lambda r: (r.last_activity_at, r.id), reverse=True)]


def row_ids(text: str) -> list[int]:
    return [int(m) for m in re.findall(r'id="row-(\d+)"', text)]


def more_url(text: str) -> str | None:
    m = re.search(r'<button[^>]*id="list-more"[^>]*hx-get="([^"]+)"', text)
    return html.unescape(m.group(1)) if m else None


async def follow(c: httpx.AsyncClient, first: str) -> tuple[list[list[int]], str]:
    """The first page (as the list partial), then every page its Load more leads to."""
    r = await c.get(first, headers=HX_LIST)
    assert r.status_code == 200
    pages, url, text = [row_ids(r.text)], more_url(r.text), r.text
    while url:
        r = await c.get(url, headers=HX_MORE)
        assert r.status_code == 200 and "<html" not in r.text and "All caught up" not in r.text
        pages.append(row_ids(r.text))
        url, text = more_url(r.text), r.text
    return pages, text


async def test_the_list_pages_by_cursor_without_gaps_or_duplicates(sqlite_url, tmp_path) -> None:
    async with await make_server(sqlite_url, tmp_path, run_workers=False) as server:
        ids = await seed_basics(server.services)
        order = await many_conversations(server.services, ids["channel"], 75)
        async with httpx.AsyncClient(base_url=server.url) as c:
            await page_login(c, "sup@example.com")
            # the full page: the first 60 rows, newest first, and a Load more; the nav count stays exact
            page = await c.get("/?view=all")
            assert row_ids(page.text) == order[:60]
            assert more_url(page.text) is not None and 'hx-trigger="click, intersect once"' in page.text
            assert re.search(r'data-count-for="all"[^>]*>.*?<span class="count">75</span>', page.text, re.S)

            first = await c.get("/?view=all", headers=HX_LIST)
            url = more_url(first.text)
            assert url is not None and url.startswith("/?view=all&status=open&after=")
            # a customer writes meanwhile: that conversation goes to the top, the next page does not shift
            newcomer = await inbound(server.services, ids["channel"], "I am new here", email="new@example.com")
            second = await c.get(url, headers=HX_MORE)
            assert row_ids(second.text) == order[60:] and more_url(second.text) is None
            assert newcomer not in row_ids(second.text) and "All caught up" not in second.text

            pages, _ = await follow(c, "/?view=all")
            assert [len(p) for p in pages] == [60, 16]
            assert sum(pages, []) == [newcomer, *order]  # every row once, in the list's order

            # a live refresh redraws as many rows as the agent has loaded (whole pages, capped)
            shown = await c.get("/?view=all&shown=76", headers=HX_LIST)
            assert row_ids(shown.text) == [newcomer, *order] and more_url(shown.text) is None
            assert len(row_ids((await c.get("/?view=all&shown=61", headers=HX_LIST)).text)) == 76
            assert len(row_ids((await c.get("/?view=all&shown=junk", headers=HX_LIST)).text)) == 60

            bad = await c.get("/?view=all&after=not-a-cursor", headers=HX_MORE)
            assert bad.status_code == 422


async def test_pages_keep_the_search_and_the_filters(sqlite_url, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(desk_routes, "PAGE_SIZE", 10)
    async with await make_server(sqlite_url, tmp_path, run_workers=False) as server:
        ids = await seed_basics(server.services)
        order = await many_conversations(server.services, ids["channel"], 75)
        refunds = [cid for i, cid in enumerate(sorted(order)) if i % 3 == 0]  # ids follow creation order
        async with server.services.db.transaction(write=True) as s:  # every other one is urgent
            await s.execute(update(ConversationRow).where(ConversationRow.id.in_(order[::2])).values(priority="urgent"))
        async with httpx.AsyncClient(base_url=server.url) as c:
            await page_login(c, "sup@example.com")
            pages, _ = await follow(c, "/?view=all&q=refund")
            assert [len(p) for p in pages] == [10, 10, 5]
            assert sum(pages, []) == [cid for cid in order if cid in refunds]
            first = await c.get("/?view=all&q=refund", headers=HX_LIST)
            assert "q=refund" in (more_url(first.text) or "")

            pages, _ = await follow(c, "/?view=all&priority=urgent&q=refund")
            urgent_refunds = [cid for cid in order[::2] if cid in refunds]
            assert sum(pages, []) == urgent_refunds and len(sum(pages, [])) == len(set(sum(pages, [])))
            assert len(pages) == 2  # 13 rows: 10, then 3

            # nothing matches: the empty state, no Load more
            empty = await c.get("/?view=all&q=nobody-like-this", headers=HX_LIST)
            assert "All caught up" in empty.text and more_url(empty.text) is None


async def test_the_live_boards_figures_are_cached_for_a_few_seconds(sqlite_server, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = await seed_basics(sqlite_server.services)
    conv = await inbound(sqlite_server.services, ids["channel"], "hello")
    clock = [1000.0]
    monkeypatch.setattr(desk_admin, "_clock", lambda: clock[0])
    desk_admin.clear_figures_cache()

    async def answered(k: int) -> None:
        now = time.time()
        async with sqlite_server.services.db.transaction() as s:
            await routing_repo.insert_outcomes(s, [
                Outcome(conv, ids["general"], "messaging", ids["alice"], "answered", instant(now - k),
                        instant(now - 20 - k), 10.0, within_target=True)])

    def answered_on_board(text: str) -> int:
        row = re.search(rf'<tr data-queue="{ids["general"]}".*?</tr>', text, re.S)
        assert row is not None
        m = re.search(r'class="q-answered[^"]*">(\d+)<', row.group(0))
        return int(m.group(1)) if m else 0

    async with httpx.AsyncClient(base_url=sqlite_server.url) as c:
        await page_login(c, "sup@example.com")
        await answered(3)
        assert answered_on_board((await c.get("/admin/live/board")).text) == 1
        await answered(2)
        clock[0] += desk_admin.FIGURES_TTL - 1  # within the TTL: the figures are not aggregated again
        assert answered_on_board((await c.get("/admin/live/board")).text) == 1
        clock[0] += 1.5  # past it: today's figures are read again
        assert answered_on_board((await c.get("/admin/live/board")).text) == 2
        await answered(1)
        desk_admin.clear_figures_cache()
        assert answered_on_board((await c.get("/admin/live/board")).text) == 3
