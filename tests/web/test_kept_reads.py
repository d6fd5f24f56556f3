"""Reads kept while the database is unchanged (db/cache.py, queries/kept.py): the same answers as without
the cache, never one agent's page for another, and nothing kept past a commit (a reply, a revoked token, a
changed membership, a write by another connection)."""

from __future__ import annotations

import asyncio
import sqlite3

import httpx
import pytest
from tests.conftest import seed_basics
from tests.web.test_desk_pages import inbound, page_login

from threadline.actions import auth as auth_actions
from threadline.actions import conversations as conv_actions
from threadline.actions import users as user_actions
from threadline.db.cache import ReadCache
from threadline.db.repos import auth as auth_repo
from threadline.db.session import Database
from threadline.domain.access import Actor
from threadline.domain.users import Role
from threadline.queries import kept as kept_module
from threadline.queries.kept import kept


async def token_for(services, user_id: int) -> str:  # type: ignore[no-untyped-def]
    async with services.db.transaction(write=True) as s:
        _, token = await auth_actions.create_token(s, user_id, "t")
    return token


async def test_two_agents_of_different_queues_on_the_same_cached_page(sqlite_server) -> None:
    services = sqlite_server.services
    ids = await seed_basics(services)
    general = await inbound(services, ids["channel"], "in general", email="g@example.com", name="Gina General")
    billing = await inbound(services, ids["channel"], "in billing", email="b@example.com", name="Bill Billing")
    async with services.db.transaction(write=True) as s:  # that one in bob's queue (billing)
        await conv_actions.update_conversation(s, Actor(user_id=ids["sup"], role=Role.SUPERVISOR), billing,
                                               queue_id=ids["billing"])
    alice, bob = await token_for(services, ids["alice"]), await token_for(services, ids["bob"])
    async with httpx.AsyncClient(base_url=sqlite_server.url) as c:
        seen = {}
        for who, tok in (("alice", alice), ("bob", bob), ("alice", alice), ("bob", bob)):
            r = await c.get("/api/v1/conversations?limit=25", headers={"Authorization": f"Bearer {tok}"})
            assert r.status_code == 200
            seen.setdefault(who, []).append({i["id"] for i in r.json()["items"]})
        assert seen["alice"] == [{general}, {general}]  # the second answer came from the cache: the same
        assert seen["bob"] == [{billing}, {billing}]
        assert services.db.cache.hits >= 2
    # the desk page, same URL, two agents of different queues, each twice
    async with httpx.AsyncClient(base_url=sqlite_server.url) as a, httpx.AsyncClient(base_url=sqlite_server.url) as b:
        await page_login(a, "alice@example.com")
        await page_login(b, "bob@example.com")
        for _ in range(2):
            pa, pb = (await a.get("/?view=all")).text, (await b.get("/?view=all")).text
            assert f'id="row-{general}"' in pa and f'id="row-{billing}"' not in pa
            assert f'id="row-{billing}"' in pb and f'id="row-{general}"' not in pb
            assert "Alice" in pa and "Bob" in pb


async def test_a_commit_ends_what_was_kept(sqlite_server) -> None:
    services = sqlite_server.services
    ids = await seed_basics(services)
    first = await inbound(services, ids["channel"], "first", email="f@example.com", name="First")
    alice = await token_for(services, ids["alice"])
    auth = {"Authorization": f"Bearer {alice}"}
    async with httpx.AsyncClient(base_url=sqlite_server.url) as c:
        async def listed() -> set[int]:
            r = await c.get("/api/v1/conversations?limit=25", headers=auth)
            assert r.status_code == 200, r.text
            return {i["id"] for i in r.json()["items"]}

        assert await listed() == {first}
        assert await listed() == {first}
        # a write through the app
        second = await inbound(services, ids["channel"], "second", email="s@example.com", name="Second")
        assert await listed() == {first, second}
        # a write by another connection (another process, a CLI): seen at once too
        path = services.db.sqlite_path
        with sqlite3.connect(path) as other:
            other.execute("UPDATE conversations SET status = 'resolved' WHERE id = ?", (first,))
        r = await c.get("/api/v1/conversations?limit=25&status=open", headers=auth)
        assert {i["id"] for i in r.json()["items"]} == {second}
        # leaving the queue: the next request is answered for the new memberships
        async with services.db.transaction(write=True) as s:
            await user_actions.update_user(s, ids["alice"], queue_ids=[])
        assert await listed() == set()
        # a revoked token is refused on the very next request, though its actor was kept
        async with services.db.transaction(write=True) as s:
            (row,) = await auth_repo.list_tokens(s, ids["alice"])
            await auth_actions.revoke_token(s, row.id)
        r = await c.get("/api/v1/conversations?limit=25", headers=auth)
        assert r.status_code == 401


async def test_logout_ends_the_kept_session(sqlite_server) -> None:
    services = sqlite_server.services
    await seed_basics(services)
    async with httpx.AsyncClient(base_url=sqlite_server.url) as c:
        csrf = await page_login(c, "alice@example.com")
        assert (await c.get("/")).status_code == 200
        assert (await c.get("/")).status_code == 200
        cookie = c.cookies.get("tl_session")
        r = await c.post("/logout", data={"csrf_token": csrf})
        assert r.status_code in (200, 303)
        c.cookies.set("tl_session", cookie)  # replay the old cookie
        r = await c.get("/", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login"


def test_read_cache_bounds_and_versions() -> None:
    cache = ReadCache(max_entries=3, max_bytes=100)
    cache.put("a", 1, b"x" * 10)
    assert cache.get("a", 1) == b"x" * 10
    assert cache.get("a", 2) is None and cache.get("a", 1) is None  # another version drops it
    for k in "bcde":
        cache.put(k, 1, b"y")
    assert len(cache) == 3 and cache.get("b", 1) is None  # least recently used went first
    cache.put("big", 1, b"z" * 60)  # over an eighth of the bytes: not kept
    assert cache.get("big", 1) is None
    cache.put("f", 1, b"w" * 12)
    cache.put("g", 1, b"w" * 12)
    assert cache._bytes <= 100
    assert cache.get("x", None) is None
    cache.put("x", None, b"never")
    assert cache.get("x", 1) is None


async def test_the_auth_counter_moves_with_users_memberships_sessions_and_tokens_only(sqlite_server) -> None:
    services = sqlite_server.services
    db = services.db
    ids = await seed_basics(services)
    before = db.auth_version()
    assert before is not None
    await inbound(services, ids["channel"], "a message is not an auth change", email="m@example.com", name="M")
    assert db.auth_version() == before
    token = await token_for(services, ids["alice"])  # api_tokens
    after_token = db.auth_version()
    assert after_token is not None and after_token > before
    async with db.transaction(write=True) as s:  # queue_members, through the action
        await user_actions.update_user(s, ids["alice"], queue_ids=[ids["billing"]])
    assert db.auth_version() > after_token  # type: ignore[operator]
    # the actor of a token is kept across writes elsewhere, and read again after an auth change
    async with httpx.AsyncClient(base_url=sqlite_server.url) as c:
        auth = {"Authorization": f"Bearer {token}"}
        assert (await c.get("/api/v1/me", headers=auth)).json()["id"] == ids["alice"]
        hits = db.cache.hits
        await inbound(services, ids["channel"], "another", email="n@example.com", name="N")
        assert (await c.get("/api/v1/me", headers=auth)).status_code == 200
        assert db.cache.hits > hits
        with sqlite3.connect(db.sqlite_path) as other:  # another process deactivates her
            other.execute("UPDATE users SET active = 0 WHERE id = ?", (ids["alice"],))
        assert (await c.get("/api/v1/me", headers=auth)).status_code == 401


@pytest.fixture
async def quiet_db(tmp_path):  # type: ignore[no-untyped-def]
    """A database file nothing else writes to (the version moves only when a test commits)."""
    from sqlalchemy import text

    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'quiet.db'}")
    async with db.transaction(write=True) as s:
        await s.execute(text("CREATE TABLE t (x INTEGER)"))
    assert db.version() is not None
    yield db
    await db.dispose()


async def test_requests_for_a_key_being_produced_wait_for_that_one_production(quiet_db) -> None:
    db = quiet_db
    calls = 0
    gate = asyncio.Event()
    started = asyncio.Event()

    async def produce() -> bytes:
        nonlocal calls
        calls += 1
        started.set()
        await gate.wait()
        return b"page"

    first = asyncio.create_task(kept(db, "k", produce))
    await started.wait()
    others = [asyncio.create_task(kept(db, "k", produce)) for _ in range(4)]
    gate.set()
    assert await asyncio.gather(first, *others) == [b"page"] * 5 and calls == 1
    assert await kept(db, "k", produce) == b"page" and calls == 1  # kept now

    async def broken() -> bytes:
        raise RuntimeError("no page")

    with pytest.raises(RuntimeError):
        await kept(db, "k2", broken)
    assert await kept(db, "k2", produce) == b"page" and calls == 2  # a failure is not kept
    assert not db.cache.flights


async def test_a_copy_past_its_age_answers_while_it_is_produced_again(quiet_db) -> None:
    db = quiet_db
    pages = iter([b"one", b"two"])
    done = asyncio.Event()

    async def produce() -> bytes:
        page = next(pages)
        if page == b"two":
            done.set()
        return page

    assert await kept(db, "aged", produce, refresh_after=0.0) == b"one"
    assert await kept(db, "aged", produce, refresh_after=0.0) == b"one"  # answers, and starts a refresh
    await done.wait()
    await asyncio.gather(*kept_module._refreshing)  # the refresh keeps its page when it ends
    assert await kept(db, "aged", produce, refresh_after=3600) == b"two"
