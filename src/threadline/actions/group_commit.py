"""Group commit for agents' writes: the write actions that arrive while one transaction is being written share
the next one, each in its own savepoint.

On SQLite every write takes the database's one write lock in turn, and a transaction has a fixed cost
(BEGIN, the outbox's sequence read, the events' insert, COMMIT, then a wake-up of the relay and the sender
that each read once per commit). Eight agents replying at the same moment paid it eight times; now they pay
it once, and the sender and the relay find eight jobs and eight events per wake-up. Nothing waits for a
batch to fill: the first write starts a transaction at once, and whatever queued meanwhile goes into the
next. Each action runs in a savepoint (``actions.events.savepoint``), so one that fails is rolled back
alone, with its events, and its caller gets its own error; if the commit itself fails, every caller of the
batch gets that error. A caller learns its result only after the commit (persist before acknowledging).

PostgreSQL commits transactions concurrently, so there each action simply runs in a transaction of its
own. The inbound path has its own group commit (``workers/inbox.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions.events import savepoint
from threadline.db.session import Database

T = TypeVar("T")
MAX_BATCH = 64
Work = Callable[[AsyncSession], Awaitable[Any]]


class GroupCommit:
    def __init__(self, db: Database, *, max_batch: int = MAX_BATCH) -> None:
        self.db = db
        self.max_batch = max_batch
        self._queue: list[tuple[Work, asyncio.Future[Any]]] = []
        self._writer: asyncio.Task[None] | None = None
        self.batches = 0  # transactions written (tests)

    async def run(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run ``work(session)`` in a write transaction and return its result once that has committed."""
        if not self.db.is_sqlite:
            async with self.db.transaction(write=True) as session:
                return await work(session)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((work, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="group-commit")
        # shielded: a client that hangs up does not cancel a transaction other requests share
        return await asyncio.shield(future)  # type: ignore[no-any-return]

    async def _write(self) -> None:
        while self._queue:
            batch = self._queue[:self.max_batch]
            del self._queue[:len(batch)]
            outcomes: list[tuple[bool, Any]] = []
            try:
                async with self.db.transaction(write=True) as session:
                    if len(batch) == 1:  # alone: no savepoint, a failure rolls the transaction back
                        outcomes.append((True, await batch[0][0](session)))
                    else:
                        for work, _ in batch:
                            outcomes.append(await _one(session, work))
                self.batches += 1
            except asyncio.CancelledError:
                for _, future in batch:
                    if not future.done():
                        future.cancel()
                raise
            except Exception as exc:  # noqa: BLE001 - the commit (or a lone action) failed: every caller is told
                outcomes = [(False, exc)] * len(batch)
            for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)


async def _one(session: AsyncSession, work: Work) -> tuple[bool, Any]:
    try:
        async with savepoint(session):
            return True, await work(session)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - handed to that action's caller
        return False, exc
