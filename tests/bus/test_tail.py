"""The tail bus (several processes on one host, no Redis): every process follows the outbox by seq and hands
each event to its own subscribers once, in order, whichever process wrote it; wake-ups cross processes
through datagram sockets in the run folder. Two Services on one database stand for two processes (the
multi-process test with real processes is tests/web/test_processes.py)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.conftest import make_settings, seed_basics

from threadline.actions import users as user_actions
from threadline.bus.base import Envelope
from threadline.bus.tail import TailBus
from threadline.services import Services
from threadline.siblings import Siblings, run_dir


@pytest.fixture
async def pair(db_url: str, tmp_path: Path) -> AsyncIterator[tuple[Services, Services]]:
    # a 30 s poll: what arrives sooner came by a wake-up, not by polling
    first = Services.build(make_settings(db_url, tmp_path, processes=2, relay_poll_seconds=30))
    second = Services.build(make_settings(db_url, tmp_path, processes=2, relay_poll_seconds=30))
    assert isinstance(first.bus, TailBus) and isinstance(second.bus, TailBus)
    await first.start()
    await second.start()
    try:
        yield first, second
    finally:
        await second.stop()
        await first.stop()


class Seen:
    """What one subscriber got, and a way to await a given number of presence events."""

    def __init__(self, services: Services) -> None:
        self.envelopes: list[Envelope] = []
        self.changed = asyncio.Event()
        services.bus.subscribe(self._got)

    def _got(self, env: Envelope) -> None:
        self.envelopes.append(env)
        self.changed.set()

    def presence(self) -> list[tuple[int, str]]:
        return [(e.payload["user_id"], e.payload["status"]) for e in self.envelopes
                if e.name == "user.presence_changed"]

    async def until(self, count: int) -> None:
        async with asyncio.timeout(10):
            while len(self.presence()) < count:
                self.changed.clear()
                await self.changed.wait()


async def _presence(services: Services, user_id: int, status: str) -> None:
    async with services.db.transaction() as s:
        await user_actions.set_presence(s, user_id, status)


async def test_every_process_delivers_every_event_once_in_order_whoever_wrote_it(pair) -> None:
    first, second = pair
    await seed_basics(first)
    seen = [Seen(first), Seen(first), Seen(second), Seen(second)]  # two subscribers in each process
    expected: list[tuple[int, str]] = []
    for i in range(20):  # writes alternate between the processes, one leads the relay
        writer = first if i % 3 else second
        status = "available" if i % 2 == 0 else "away"  # each write changes it (the same status emits nothing)
        await _presence(writer, 3, status)
        expected.append((3, status))
    for s in seen:
        await s.until(len(expected))
    for s in seen:
        assert s.presence() == expected
        seqs = [e.seq for e in s.envelopes]
        assert seqs == sorted(set(seqs))  # in order, none twice
    # both processes saw the same stream, the seed's events included
    assert [e.seq for e in seen[0].envelopes] == [e.seq for e in seen[2].envelopes]
    assert sum(1 for svc in pair if svc.relay.leader.held) == 1  # one relay leads, the other follows


async def test_a_wake_reaches_the_other_process_loops(pair) -> None:
    first, second = pair
    woken = asyncio.Event()
    second.bus.on_wake(woken.set)
    await first.bus.wake()
    await asyncio.wait_for(woken.wait(), 10)


async def test_a_subscriber_that_raises_costs_the_others_nothing(pair) -> None:
    first, second = pair
    await seed_basics(first)

    def broken(env: Envelope) -> None:
        raise RuntimeError("bug")

    second.bus.subscribe(broken)
    seen = Seen(second)
    await _presence(first, 3, "available")
    await _presence(first, 3, "away")
    await seen.until(2)
    assert seen.presence() == [(3, "available"), (3, "away")]


async def test_sockets_of_dead_processes_are_swept(tmp_path: Path) -> None:
    folder = run_dir(tmp_path / "data")
    assert folder.stat().st_mode & 0o777 == 0o700
    stale = folder / "4194305-1.sock"  # above Linux's largest pid: never a live process
    stale.touch()
    got: list[set[bytes]] = []
    one = Siblings(folder, got.append)
    other_got = asyncio.Event()
    other = Siblings(folder, lambda _: other_got.set())
    one.open()
    other.open()
    try:
        assert not stale.exists()
        stale.touch()  # a process killed after the sweep: a send finds it gone and removes it
        assert one.send(b"w") == 1
        assert not stale.exists()
        await asyncio.wait_for(other_got.wait(), 10)
    finally:
        one.close()
        other.close()
    assert sorted(os.listdir(folder)) == []


def test_a_long_data_folder_gets_a_short_run_folder(tmp_path: Path) -> None:
    deep = tmp_path / ("x" * 120)
    folder = run_dir(deep)
    assert len(str(folder / "4194304-99.sock")) <= 100
    assert run_dir(deep) == folder  # every process finds the same one
