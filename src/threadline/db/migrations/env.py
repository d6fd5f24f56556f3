"""Alembic environment: runs migrations on the configured database (SQLite or PostgreSQL), async."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.ext.asyncio import create_async_engine

from threadline import features
from threadline.db.models import Base
from threadline.plugins import registry

config = context.config
registry.load()  # integration packages register their own tables on Base (e.g. email_mailbox_state)
features.import_models()  # so do feature packages (threadline/features.py), e.g. webhook_endpoints
target_metadata = Base.metadata


def _do_run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.connect() as connection:
        await connection.run_sync(_do_run)
    await engine.dispose()


def run() -> None:
    url = config.get_main_option("sqlalchemy.url")
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    assert url
    connectable = config.attributes.get("connection")
    if connectable is not None:
        _do_run(connectable)
        return
    asyncio.run(_run_async(url))


run()
