"""The embedded bus: one process, delivery by function call."""

from __future__ import annotations

from collections.abc import Callable

from threadline.bus.base import Envelope, Subscriber


class LocalFanout:
    """Subscriber bookkeeping shared by the buses."""

    crosses_processes = False  # whether ``publish`` and ``wake`` reach the other processes too

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self._wake: list[Callable[[], None]] = []

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        self._subscribers.append(fn)

        def unsubscribe() -> None:
            if fn in self._subscribers:
                self._subscribers.remove(fn)

        return unsubscribe

    def on_wake(self, fn: Callable[[], None]) -> None:
        self._wake.append(fn)

    def deliver(self, envelopes: list[Envelope]) -> None:
        for env in envelopes:
            for fn in list(self._subscribers):
                fn(env)

    def fire_wake(self) -> None:
        for fn in self._wake:
            fn()


class MemoryBus(LocalFanout):
    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def publish(self, envelopes: list[Envelope]) -> None:
        self.deliver(envelopes)

    async def wake(self) -> None:
        self.fire_wake()
