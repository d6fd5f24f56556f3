"""Shared fixtures: databases (SQLite always; PostgreSQL when one answers, required when CI=true),
services, a real uvicorn server on loopback, and HTTP helpers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from threadline.config import Settings
from threadline.db.migrate import upgrade
from threadline.services import Services

PG_URL = os.environ.get("THREADLINE_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
# Under pytest-xdist (make test runs one worker per core) each worker empties and migrates a database of its
# own, named after the configured one: test -> test_gw0, test_gw1... (created on first use).
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
PG_BASE_URL = PG_URL
if XDIST_WORKER:
    PG_URL = f"{PG_URL.rsplit('/', 1)[0]}/{PG_URL.rsplit('/', 1)[1].split('?')[0]}_{XDIST_WORKER}"
REDIS_URL = os.environ.get("THREADLINE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
IN_CI = os.environ.get("CI", "").lower() == "true"
# Redis pub/sub channels are shared by every database number: a suite running beside another one on the
# same server (two checkouts, CI and a developer) must not receive its events.
TEST_RUN = uuid.uuid4().hex[:10]
PASSWORD = "correct-horse-battery"


def _port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def postgres_available() -> bool:
    from urllib.parse import urlparse

    u = urlparse(PG_URL.replace("+asyncpg", ""))
    return _port_open(u.hostname or "127.0.0.1", u.port or 5432)


def redis_available() -> bool:
    from urllib.parse import urlparse

    u = urlparse(REDIS_URL)
    return _port_open(u.hostname or "127.0.0.1", u.port or 6379)


def need(available: bool, what: str) -> None:
    if not available:
        if IN_CI:
            pytest.fail(f"{what} is required in CI (CI=true) but does not answer")
        pytest.skip(f"{what} is not running")


_pg_schema_ready = False


async def _create_worker_database(asyncpg) -> None:  # type: ignore[no-untyped-def]
    name = PG_URL.rsplit("/", 1)[1]
    conn = await asyncpg.connect(PG_BASE_URL.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _reset_postgres() -> None:
    """Empty every table (fast) once the schema exists; build the schema once per test session."""
    global _pg_schema_ready
    import asyncpg

    dsn = PG_URL.replace("postgresql+asyncpg://", "postgresql://")
    if XDIST_WORKER and not _pg_schema_ready:
        await _create_worker_database(asyncpg)
    conn = await asyncpg.connect(dsn)
    try:
        # A previous test's server may have left a connection behind; end it so nothing holds a lock.
        await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        if not _pg_schema_ready:
            await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
            await asyncio.to_thread(upgrade, PG_URL)
            _pg_schema_ready = True
        tables = [r["tablename"] for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname='public' AND tablename <> 'alembic_version'")]
        await conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


_sqlite_template: Path | None = None


def _sqlite_db(tmp_path: Path) -> str:
    """A migrated SQLite file, copied from one template migrated once per session."""
    global _sqlite_template
    import shutil
    import tempfile

    if _sqlite_template is None:
        folder = Path(tempfile.mkdtemp(prefix="tl-template-"))
        _sqlite_template = folder / "template.db"
        upgrade(f"sqlite+aiosqlite:///{_sqlite_template}")
    target = tmp_path / "data" / "threadline.db"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(_sqlite_template, target)
    return f"sqlite+aiosqlite:///{target}"


@pytest.fixture(params=["sqlite", "postgres"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        need(postgres_available(), "PostgreSQL")
        await _reset_postgres()
        return PG_URL
    return await asyncio.to_thread(_sqlite_db, tmp_path)


@pytest.fixture
async def sqlite_url(tmp_path: Path) -> str:
    return await asyncio.to_thread(_sqlite_db, tmp_path)


def make_settings(url: str, tmp_path: Path, **extra: object) -> Settings:
    values: dict[str, object] = {
        "database_url": url, "data_dir": tmp_path / "data", "secret_key": "test-secret-key-0123456789",
        "log_json": True, "log_level": "warning", "relay_poll_seconds": 0.2,
        "sender_backoff_base": 0.05, "sender_backoff_max": 0.2, "redis_prefix": f"tl-test-{TEST_RUN}",
        # fake providers, SMTP and IMAP servers listen on loopback (tests of the refusal set it to False)
        "channels_allow_private": True,
    }
    values.update(extra)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def services(db_url: str, tmp_path: Path) -> AsyncIterator[Services]:
    svc = Services.build(make_settings(db_url, tmp_path, run_workers=False))
    await svc.start()
    try:
        yield svc
    finally:
        await _finish(asyncio.ensure_future(svc.stop()), "services stop")


async def _finish(task: asyncio.Future, what: str, timeout: float = 15) -> None:
    """Await a shutdown; if it hangs, fail with the stack of every task instead of hanging the suite."""
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout)
    except TimeoutError:
        import io

        out = io.StringIO()
        for t in asyncio.all_tasks():
            out.write(f"task {t.get_name()}:\n")
            coro = t.get_coro()
            while coro is not None:
                frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
                if frame is not None:
                    out.write(f"  {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}\n")
                coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        if postgres_available():
            import asyncpg

            conn = await asyncpg.connect(PG_URL.replace("postgresql+asyncpg://", "postgresql://"))
            rows = await conn.fetch("SELECT pid, state, wait_event_type, wait_event, left(query, 120) AS q "
                                    "FROM pg_stat_activity WHERE datname = current_database()")
            await conn.close()
            out.write("\n".join(str(dict(r)) for r in rows))
        pytest.fail(f"{what} hung for {timeout} s; tasks:\n{out.getvalue()}")


class LiveServer:
    def __init__(self, app, port: int) -> None:  # type: ignore[no-untyped-def]
        self.app = app
        self.url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}"

    @property
    def services(self) -> Services:
        return self.app.state.services


@contextlib.asynccontextmanager
async def run_server(app) -> AsyncIterator[LiveServer]:  # type: ignore[no-untyped-def]
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", ws="websockets-sansio",
                            timeout_graceful_shutdown=3)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield LiveServer(app, port)
    finally:
        server.should_exit = True
        await _finish(task, "server shutdown")
        sock.close()


async def make_server(url: str, tmp_path: Path, **extra: object) -> contextlib.AbstractAsyncContextManager:
    from threadline.web.app import create_app

    return run_server(create_app(make_settings(url, tmp_path, **extra)))


@pytest.fixture
async def server(db_url: str, tmp_path: Path) -> AsyncIterator[LiveServer]:
    async with await make_server(db_url, tmp_path) as live:
        yield live


@pytest.fixture
async def sqlite_server(sqlite_url: str, tmp_path: Path) -> AsyncIterator[LiveServer]:
    async with await make_server(sqlite_url, tmp_path) as live:
        yield live


async def seed_basics(services: Services) -> dict[str, int]:
    """Two queues, a team, an admin, a supervisor, two agents (one per queue), an API channel."""
    from threadline.actions import channels as channel_actions
    from threadline.actions import users as user_actions

    async with services.db.transaction() as s:
        team = await user_actions.create_team(s, "Support")
        general = await user_actions.create_queue(s, "general", {}, team.id)
        billing = await user_actions.create_queue(s, "billing", {"skills": {"billing": 3}})
        admin = await user_actions.create_user(s, email="admin@example.com", name="Admin", role="admin",
                                               password=PASSWORD)
        sup = await user_actions.create_user(s, email="sup@example.com", name="Sup", role="supervisor",
                                             password=PASSWORD)
        alice = await user_actions.create_user(s, email="alice@example.com", name="Alice", password=PASSWORD,
                                               queue_ids=[general.id], skills={"general": 4})
        bob = await user_actions.create_user(s, email="bob@example.com", name="Bob", password=PASSWORD,
                                             queue_ids=[billing.id], skills={"billing": 5})
        channel = await channel_actions.create_channel(
            s, services.box, kind="api", name="API", default_queue_id=general.id,
            config={"secret": "s3cret-s3cret-s3cret", "webhook_url": None})
    return {"team": team.id, "general": general.id, "billing": billing.id, "admin": admin.id, "sup": sup.id,
            "alice": alice.id, "bob": bob.id, "channel": channel.id}


async def login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> str:
    """Log in with the session cookie; returns the CSRF token and sets it as a default header."""
    resp = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert resp.status_code == 200, resp.text
    csrf = resp.json()["csrf_token"]
    client.headers["X-CSRF-Token"] = csrf
    return csrf
