"""Responses kept while the database has not changed (``db/cache.py``), for the hottest reads: the
conversation list of the API and the desk's pages. Each key names the viewer, so one agent is never served
another agent's page. Requests for a key being produced wait for that one production (no stampede when
an entry ends: one render, not one per waiting request)."""

from __future__ import annotations

import asyncio
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
    if version is None:
        return await produce()
    hit = db.cache.get(key, version)
    if hit is not None:
        return hit  # type: ignore[no-any-return]
    flights: dict[Hashable, asyncio.Future[bytes]] = db.cache.flights
    flight = flights.get((key, version))
    if flight is not None:
        try:
            return await asyncio.shield(flight)
        except asyncio.CancelledError:
            if not flight.cancelled():  # this request was cancelled, not the production
                raise
            # the request producing it went away: produce it here
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
        db.cache.put(key, version, value)
        return value
    finally:
        if flights.get((key, version)) is flight:
            del flights[(key, version)]
