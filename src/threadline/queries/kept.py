"""Responses kept while the database has not changed (``db/cache.py``), for the hottest reads: the
conversation list of the API and the desk's pages. Each key names the viewer, so one agent is never served
another agent's page. Requests for a key being produced wait for that one production (no stampede when
an entry ends: one render, not one per waiting request)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable

import structlog

from threadline.db.session import Database
from threadline.domain.access import Actor

log = structlog.get_logger(__name__)
_refreshing: set[asyncio.Task[bytes]] = set()  # background refreshes (a reference keeps each alive)


def _refreshed(task: asyncio.Task[bytes]) -> None:
    _refreshing.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.warning("kept_refresh_failed", error=repr(task.exception()))


def viewer(actor: Actor) -> tuple[object, ...]:
    """Everything a read's visibility depends on: who, their role, queues and teams."""
    return (actor.user_id, actor.role.value, tuple(sorted(actor.queue_ids)), tuple(sorted(actor.team_ids)),
            actor.via_token)


async def kept(db: Database, key: Hashable, produce: Callable[[], Awaitable[bytes]], *,
               refresh_after: float | None = None) -> bytes:
    """``produce()``'s bytes, from the cache while the database is unchanged since they were produced.

    ``refresh_after``: for a page that also shows the time ("3 min ago"), seconds after which a kept copy
    is produced again, in the background, while the kept copy still answers (the data in it is current:
    the database has not changed; only its relative times are up to that many seconds older)."""
    version = db.version()  # before produce() reads anything
    if version is None:
        return await produce()
    hit = db.cache.get(key, version)
    if hit is not None:
        made, value = hit
        if refresh_after is not None and time.monotonic() - made > refresh_after \
                and (key, version) not in db.cache.flights:
            task = asyncio.get_running_loop().create_task(_produce(db, key, version, produce))
            _refreshing.add(task)
            task.add_done_callback(_refreshed)
        return value  # type: ignore[no-any-return]
    flights: dict[Hashable, asyncio.Future[bytes]] = db.cache.flights
    flight = flights.get((key, version))
    if flight is not None:
        try:
            return await asyncio.shield(flight)
        except asyncio.CancelledError:
            if not flight.cancelled():  # this request was cancelled, not the production
                raise
            # the request producing it went away: produce it here
    return await _produce(db, key, version, produce)


async def _produce(db: Database, key: Hashable, version: int, produce: Callable[[], Awaitable[bytes]]) -> bytes:
    """Produce the value once (requests for it meanwhile wait for this production) and keep it."""
    flights: dict[Hashable, asyncio.Future[bytes]] = db.cache.flights
    flight = asyncio.get_running_loop().create_future()
    flights[(key, version)] = flight
    try:
        value = await produce()
    except asyncio.CancelledError:
        flight.cancel()
        raise
    except BaseException as exc:
        flight.set_exception(exc)
        flight.exception()  # retrieved: waiters re-raise it, none is required
        raise
    else:
        flight.set_result(value)
        db.cache.put(key, version, (time.monotonic(), value))
        return value
    finally:
        if flights.get((key, version)) is flight:
            del flights[(key, version)]
