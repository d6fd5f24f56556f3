"""Services runs a list of loops: started in order, stopped in reverse, each woken by the write tags it
declares (``wakes_on``), never by a switchboard of names."""

from __future__ import annotations

from pathlib import Path

from threadline.services import Services

from ..conftest import make_settings


class Recorder:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    async def start(self) -> None:
        self.log.append(f"start {self.name}")

    async def stop(self) -> None:
        self.log.append(f"stop {self.name}")


async def test_loops_start_in_order_and_stop_in_reverse(sqlite_url: str, tmp_path: Path) -> None:
    svc = Services.build(make_settings(sqlite_url, tmp_path, run_workers=True, smtp_port=0))
    # the core's loops, then those integrations contribute (the email package's SMTP server and IMAP poller)
    assert [loop.name for loop in svc.loops] == ["outbox-relay", "inbox-worker", "sender", "router", "media",
                                                 "webhooks", "timers", "sla-clock", "voice", "smtp-receiver",
                                                 "imap-poller"]
    log: list[str] = []
    for loop in svc.loops:  # the real ones are covered everywhere else; here: the order only
        await loop.stop()
    svc.loops = [Recorder(n, log) for n in ("relay", "inbox", "smtp")]
    await svc.start()
    await svc.stop()
    assert log == ["start relay", "start inbox", "start smtp", "stop smtp", "stop inbox", "stop relay"]


async def test_a_commit_wakes_the_loops_that_declared_its_write_tags(sqlite_url: str, tmp_path: Path) -> None:
    svc = Services.build(make_settings(sqlite_url, tmp_path, run_workers=False))
    try:
        assert {tag: [loop.name for loop in loops] for tag, loops in svc._wakers.items()} == {
            "events": ["outbox-relay"], "jobs": ["sender"], "media": ["media"],
            "webhook_endpoints": ["webhook-dispatcher"], "webhook_deliveries": ["webhook-sender"],
            "scheduled_jobs": ["timers"]}
        loops = [svc.relay, svc.sender, svc.media, svc.webhooks.dispatcher, svc.webhooks.sender]
        for loop in loops:
            loop._wake.clear()
        svc._committed(frozenset({"jobs", "webhook_deliveries"}))
        assert [loop._wake.is_set() for loop in loops] == [False, True, False, False, True]
    finally:
        await svc.stop()
