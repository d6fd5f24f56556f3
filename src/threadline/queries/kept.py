"""Responses kept while the database has not changed (``db/cache.py``), for the hottest reads: the
conversation list of the API and the desk's pages. Each key names the viewer, so one agent is never served
another agent's page."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable

from threadline.db.session import Database
from threadline.domain.access import Actor


def viewer(actor: Actor) -> tuple[object, ...]:
    """Everything a read's visibility depends on: who, their role, queues and teams."""
    return (actor.user_id, actor.role.value, tuple(sorted(actor.queue_ids)), tuple(sorted(actor.team_ids)),
            actor.via_token)


async def kept(db: Database, key: Hashable, produce: Callable[[], Awaitable[bytes]]) -> bytes:
    """``produce()``'s bytes, from the cache while the database is unchanged since they were produced."""
    version = db.version()  # before produce() reads anything
    hit = db.cache.get(key, version)
    if hit is not None:
        return hit  # type: ignore[no-any-return]
    value = await produce()
    db.cache.put(key, version, value)
    return value
