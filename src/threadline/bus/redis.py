"""The Redis bus: events reach the subscribers of every process through one pub/sub channel.

Redis pub/sub is fire-and-forget; nothing is lost for good because the outbox table is the durable
log: a client that reconnects resumes from its last ``seq`` out of the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import redis.asyncio as aioredis
import structlog

from threadline.bus.base import Envelope
from threadline.bus.memory import LocalFanout

log = structlog.get_logger(__name__)


class RedisBus(LocalFanout):
    crosses_processes = True

    def __init__(self, url: str, prefix: str) -> None:
        """``prefix`` names this installation's channels (``Settings.resolved_redis_prefix``): Redis pub/sub
        channels are shared by every database number, so installations sharing a server need their own."""
        super().__init__()
        self.url = url
        self.events_channel = f"{prefix}:events"
        self.wake_channel = f"{prefix}:wake"
        self._redis: aioredis.Redis | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        self._redis = aioredis.from_url(self.url)
        await self._redis.ping()
        self._task = asyncio.create_task(self._listen(), name="redis-bus")
        await asyncio.wait_for(self._ready.wait(), timeout=10)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._redis is not None:
            await self._redis.aclose()

    async def _listen(self) -> None:
        while True:
            assert self._redis is not None
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self.events_channel, self.wake_channel)
                self._ready.set()
                async for item in pubsub.listen():
                    if item.get("type") != "message":
                        continue
                    channel = item["channel"].decode() if isinstance(item["channel"], bytes) else item["channel"]
                    if channel == self.wake_channel:
                        self.fire_wake()
                        continue
                    data = json.loads(item["data"])
                    self.deliver([Envelope.from_json_dict(d) for d in data])
            except asyncio.CancelledError:
                await pubsub.aclose()
                raise
            except Exception as exc:  # connection lost: reconnect; clients catch up from the outbox
                log.warning("redis_bus_reconnect", error=str(exc))
                await asyncio.sleep(1)

    async def publish(self, envelopes: list[Envelope]) -> None:
        assert self._redis is not None
        if envelopes:
            await self._redis.publish(self.events_channel, json.dumps([e.to_json_dict() for e in envelopes]))

    async def wake(self) -> None:
        assert self._redis is not None
        await self._redis.publish(self.wake_channel, b"1")
