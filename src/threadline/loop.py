"""A background loop that stops cooperatively.

Cancelling a task in the middle of a database call can leave a pooled connection half-way through a
protocol exchange (asyncpg then hangs the next user of that connection), so workers are never
cancelled mid-operation: ``stop()`` sets a flag and wakes the loop, which exits at its next wait.
Only a loop that does not finish within ``grace`` seconds is cancelled.

``Services`` runs a list of ``Lifecycle`` objects (loops, the SMTP server, groups of loops), started in
order and stopped in reverse. A loop names in ``wakes_on`` the write tags (``db.session.mark_written``)
that should wake it at once after a commit, e.g. the sender wakes on ``"jobs"``.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Protocol

import structlog

log = structlog.get_logger(__name__)


class Lifecycle(Protocol):
    """Something a process starts and stops: a ``BackgroundLoop``, a server, a group of loops. A group
    lists its loops in ``parts`` (optional) so each is woken by its own write tags."""

    name: str

    async def start(self) -> Any: ...
    async def stop(self) -> Any: ...


class BackgroundLoop(ABC):
    name = "worker"
    wakes_on: ClassVar[frozenset[str]] = frozenset()  # write tags whose commit wakes this loop (Services)

    def __init__(self, *, interval: float) -> None:
        self.interval = interval
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self, grace: float = 10.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self._task is not None:
            done, _ = await asyncio.wait({self._task}, timeout=grace)
            if not done:
                log.warning("worker_cancelled_after_grace", worker=self.name)
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        await self.on_stop()

    async def on_stop(self) -> None:  # noqa: B027 - optional hook
        """Release resources once the loop has ended."""

    @abstractmethod
    async def tick(self) -> float | None:
        """One round of work; return how long to wait at most before the next (None: the interval)."""

    async def _run(self) -> None:
        while not self._stopping.is_set():
            timeout: float | None = None
            try:
                timeout = await self.tick()
            except Exception:
                log.exception("worker_error", worker=self.name)
            if self._stopping.is_set():
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval if timeout is None else timeout)
            self._wake.clear()
