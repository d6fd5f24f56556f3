"""Several processes on one host, no Redis: ``threadline serve --workers 2`` on a SQLite data folder. Desk
sockets land on either process (the kernel hands each connection to whichever process accepts it); every
socket gets every ``message.created`` exactly once, whichever process stored the message. Then the process
that leads the relay is killed with SIGKILL: its leader locks pass to a live process, the relay and the
router go on (a new message reaches the surviving sockets once, and is offered to an available agent)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from threadline.demo import API_SECRET
from threadline.security import sign

pytestmark = pytest.mark.skipif(not Path("/proc/locks").exists(), reason="reads /proc (Linux)")
TIMEOUT = 30


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(env: dict[str, str], *args: str) -> str:
    return subprocess.run([sys.executable, "-m", "threadline.cli", *args], env=env, check=True,
                          capture_output=True, text=True).stdout


def _serve(env: dict[str, str], port: int, *, workers: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "threadline.cli", "serve", "--port", str(port),
                             "--workers", str(workers)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _workers(pid: int) -> list[int]:
    """The server's worker processes (its children, without multiprocessing's resource tracker)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return []
    out = []
    for child in children:
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                out.append(int(child))
        except FileNotFoundError:
            continue
    return sorted(out)


def _lock_holders(folder: Path) -> dict[str, int]:
    """Leader lock files beside the database → the pid holding each (from /proc/locks)."""
    by_inode = {os.stat(p).st_ino: p.name for p in folder.glob("threadline.db.*.lock")}
    held: dict[str, int] = {}
    for line in Path("/proc/locks").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[1] == "FLOCK":
            inode = int(parts[5].rsplit(":", 1)[1])
            if inode in by_inode:
                held[by_inode[inode]] = int(parts[4])
    return held


def _owner(client_port: int, server_port: int, pids: list[int]) -> int | None:
    """Which process holds the server side of the TCP connection from ``client_port``."""
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            local, remote = f[1], f[2]
            if int(local.rsplit(":", 1)[1], 16) == server_port and int(remote.rsplit(":", 1)[1], 16) == client_port:
                inode = f[9]
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in pids:
        try:
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") == target for fd in os.listdir(f"/proc/{pid}/fd")):
                return pid
        except (FileNotFoundError, PermissionError):
            continue
    return None


def _listeners(port: int, pids: list[int]) -> set[int]:
    """The processes holding a listening socket on ``port`` (state 0A in /proc/net/tcp)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if int(f[1].rsplit(":", 1)[1], 16) == port and f[3] == "0A":
                inodes.add(f"socket:[{f[9]}]")
    found = set()
    for pid in pids:
        try:
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") in inodes for fd in os.listdir(f"/proc/{pid}/fd")):
                found.add(pid)
        except (FileNotFoundError, PermissionError):
            continue
    return found


async def _until(check: Any, what: str) -> Any:
    """Poll a condition read from outside the server (processes, locks); fail after TIMEOUT."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


class Desk:
    """One desk socket: the message.created provider ids it received, in order."""

    def __init__(self, ws: Any, pid: int) -> None:
        self.ws = ws
        self.pid = pid
        self.ids: list[str] = []

    async def until(self, provider_id: str) -> list[str]:
        """Read until ``provider_id`` arrives (events come in seq order: all before it have too)."""
        async with asyncio.timeout(TIMEOUT):
            while provider_id not in self.ids:
                msg = json.loads(await self.ws.recv())
                if msg["name"] == "message.created" and msg["data"]["message"]["provider_id"]:
                    self.ids.append(msg["data"]["message"]["provider_id"])
        return self.ids


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("THREADLINE_")}
    smtp_port = _port()
    env.update({"THREADLINE_DATA_DIR": str(data), "THREADLINE_LOG_LEVEL": "warning",
                "PYTHONPATH": os.pathsep.join(sys.path), "THREADLINE_SMTP_HOST": "127.0.0.1",
                "THREADLINE_SMTP_PORT": str(smtp_port), "THREADLINE_IMAP_POLLING": "false"})
    _cli(env, "migrate")
    url = next(line for line in _cli(env, "demo").splitlines() if "generic API channel inbound URL" in line)
    tokens = {who: _cli(env, "token", "create", "--user", f"{who}@demo.threadline.dev", "--name", "t").split()[-1]
              for who in ("supervisor", "alice", "admin")}
    port = _port()
    proc = _serve(env, port, workers=2)
    try:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base) as client:
            async def ready() -> bool:
                try:
                    return (await client.get("/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            deadline = time.monotonic() + TIMEOUT
            while not await ready():
                assert proc.poll() is None and time.monotonic() < deadline, "the server did not start"
                await asyncio.sleep(0.1)
            await _until(lambda: len(_workers(proc.pid)) == 2, "two worker processes")
            await _until(lambda: len(_lock_holders(data)) >= 3, "the leader locks")
            yield {"proc": proc, "port": port, "client": client, "data": data, "tokens": tokens, "smtp": smtp_port,
                   "hook": "/hooks/" + url.rsplit("/hooks/", 1)[1].strip()}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _desks(served: dict[str, Any], per_process: int, stack: Any) -> list[Desk]:
    """Open supervisor sockets until each worker process holds at least ``per_process`` of them."""
    port, pids = served["port"], _workers(served["proc"].pid)
    desks: list[Desk] = []
    for _ in range(60):
        if all(sum(d.pid == pid for d in desks) >= per_process for pid in pids):
            return desks
        ws = await stack.enter_async_context(websockets.connect(
            f"ws://127.0.0.1:{port}/api/v1/stream?token={served['tokens']['supervisor']}"))
        assert json.loads(await ws.recv())["name"] == "stream.ready"
        owner = _owner(ws.local_address[1], port, pids)
        assert owner in pids
        desks.append(Desk(ws, owner))
    raise AssertionError(f"sockets never landed on every process: {[d.pid for d in desks]}")


async def _send(served: dict[str, Any], ids: list[str], contact: str = "cust") -> None:
    async def one(i: int, provider_id: str) -> None:
        body = json.dumps({"id": provider_id, "contact": {"id": f"{contact}-{i % 7}", "name": f"C{i % 7}"},
                           "text": f"hello {provider_id}"}).encode()
        ts = str(int(time.time()))
        r = await served["client"].post(served["hook"], content=body, headers={
            "Content-Type": "application/json", "X-Threadline-Timestamp": ts,
            "X-Threadline-Signature": sign(API_SECRET, body, ts)})
        assert r.status_code == 200, r.text

    await asyncio.gather(*(one(i, pid) for i, pid in enumerate(ids)))


async def test_every_socket_on_every_process_gets_every_message_once_and_a_killed_leader_is_replaced(
        served: dict[str, Any]) -> None:
    import contextlib

    async with contextlib.AsyncExitStack() as stack:
        desks = await _desks(served, 2, stack)
        first = [f"m1-{i}" for i in range(40)]
        await _send(served, first)  # concurrently: the two processes store them, each in its own batches
        await _send(served, ["fence-1"])
        for desk in desks:
            got = await desk.until("fence-1")
            assert sorted(got) == sorted([*first, "fence-1"]), f"process {desk.pid}"
            assert len(got) == len(set(got))  # none twice

        # SIGKILL the process that leads the relay (and whatever else it leads)
        before = _lock_holders(served["data"])
        leader = before["threadline.db.relay.lock"]
        os.kill(leader, signal.SIGKILL)
        led = [name for name, pid in before.items() if pid == leader]
        survivors = [d for d in desks if d.pid != leader]
        assert survivors

        def taken_over() -> bool:
            now = _lock_holders(served["data"])
            return all(now.get(name) not in (None, leader) for name in led)

        await _until(taken_over, f"another process to take over {led}")

        # the relay goes on: the surviving sockets get the next messages once
        second = [f"m2-{i}" for i in range(20)]
        await _send(served, second)
        await _send(served, ["fence-2"])
        for desk in survivors:
            got = await desk.until("fence-2")
            assert sorted(got) == sorted([*first, "fence-1", *second, "fence-2"])
            assert len(got) == len(set(got))

        # the router goes on: Alice comes online and a new customer's conversation is offered to her
        token = served["tokens"]["alice"]
        ws = await stack.enter_async_context(websockets.connect(
            f"ws://127.0.0.1:{served['port']}/api/v1/stream?token={token}"))
        assert json.loads(await ws.recv())["name"] == "stream.ready"
        r = await served["client"].put("/api/v1/me/presence", json={"status": "available"},
                                       headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        await _send(served, ["after-kill"], contact="new")
        async with asyncio.timeout(TIMEOUT):
            while True:
                msg = json.loads(await ws.recv())
                if msg["name"] == "routing.offer":
                    break


async def test_every_process_receives_mail_on_the_one_smtp_port(served: dict[str, Any]) -> None:
    """The SMTP receiver listens in every process (SO_REUSEPORT): none fails to start on the port the first
    one took, and mails over separate connections all become messages once."""
    import contextlib
    import smtplib
    from email.message import EmailMessage

    r = await served["client"].post("/api/v1/channels", headers={"Authorization": f"Bearer {served['tokens']['admin']}"},
                                    json={"kind": "email", "name": "Mail", "config": {"address": "help@example.com"}})
    assert r.status_code == 201, r.text
    pids = _workers(served["proc"].pid)
    await _until(lambda: _listeners(served["smtp"], pids) == set(pids), "every process listening on the SMTP port")
    async with contextlib.AsyncExitStack() as stack:
        (desk,) = [Desk(await stack.enter_async_context(websockets.connect(
            f"ws://127.0.0.1:{served['port']}/api/v1/stream?token={served['tokens']['supervisor']}")), 0)]
        assert json.loads(await desk.ws.recv())["name"] == "stream.ready"

        def send(i: int) -> None:
            m = EmailMessage()
            m["From"], m["To"], m["Subject"] = f"c{i}@example.org", "help@example.com", f"order {i}"
            m["Message-ID"] = f"<mail-{i}@example.org>"
            m.set_content(f"where is order {i}?")
            with smtplib.SMTP("127.0.0.1", served["smtp"], timeout=20) as smtp:  # a new connection each
                smtp.send_message(m)

        for i in range(8):
            await asyncio.to_thread(send, i)
        got = await desk.until("<mail-7@example.org>")
        assert {f"<mail-{i}@example.org>" for i in range(8)} <= set(got)
        assert len(got) == len(set(got))
