"""Workers that claim leased rows and work on them concurrently, in every process.

The pattern of both senders (outbound messages, outgoing webhooks): a claim takes due rows and leases
them (a conditional ``UPDATE … RETURNING`` over rows locked ``FOR UPDATE SKIP LOCKED`` on PostgreSQL,
``db/repos/common.claim_rows``), so two processes never take one row and a process that dies only
delays its rows to the end of their lease. The work (an HTTP call) runs outside any transaction, at
most ``concurrency`` at a time in this process and ``per_key`` per key (an endpoint, a channel), so one
slow receiver cannot hold every slot; results of finished attempts are recorded together, in one
transaction, by ``record``.
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import structlog

from threadline.loop import BackgroundLoop

log = structlog.get_logger(__name__)
R = TypeVar("R")


class LeasedWorker(BackgroundLoop, Generic[R]):
    def __init__(self, *, concurrency: int, per_key: int, poll_seconds: float, shutdown_wait: float) -> None:
        super().__init__(interval=poll_seconds)
        self.concurrency = concurrency
        self.per_key = per_key
        self.shutdown_wait = shutdown_wait
        self._tasks: set[asyncio.Task[None]] = set()
        self._busy: dict[int, int] = {}  # key → attempts in flight in this process
        self._results: list[R] = []

    @property
    def free(self) -> int:
        """Slots free for new work in this process."""
        return self.concurrency - len(self._tasks)

    @abstractmethod
    async def record(self, results: list[R]) -> None:
        """Record finished attempts (one transaction); raise to keep them leased (tried again later)."""

    def spawn(self, key: int, name: str, work: Callable[[], Awaitable[R]], crashed: Callable[[Exception], R]) -> None:
        """Run ``work()`` in a task counted against ``key``; its result (or ``crashed(exc)`` if it raised:
        a bug must not leave the row leased with no result) waits for the next ``flush``."""
        self._busy[key] = self._busy.get(key, 0) + 1

        async def run() -> None:
            try:
                result = await work()
            except Exception as exc:
                log.exception("leased_attempt_crashed", worker=self.name, task=name)
                result = crashed(exc)
            finally:
                left = self._busy.get(key, 1) - 1
                if left > 0:
                    self._busy[key] = left
                else:
                    self._busy.pop(key, None)
            self._results.append(result)
            self.wake()

        task = asyncio.create_task(run(), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def add_result(self, result: R) -> None:
        """A result decided without an attempt (e.g. nothing to send): recorded with the next flush."""
        self._results.append(result)

    async def flush(self) -> None:
        """Record every finished attempt in one transaction; if that fails, the rows stay leased and are
        tried again when their lease ends."""
        if not self._results:
            return
        results, self._results = self._results, []
        try:
            await self.record(results)
        except Exception:
            log.exception("leased_results_not_recorded", worker=self.name, count=len(results))

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for the attempts in flight and record them (tests, shutdown)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
        await self.flush()

    async def on_stop(self) -> None:
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=self.shutdown_wait)
            for task in pending:  # their rows are leased: tried again when the lease ends
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        await self.flush()
