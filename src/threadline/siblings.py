"""The processes of one installation on one host find and wake each other through its run folder.

``threadline serve --workers N`` starts N processes on one host. Without Redis they share two things: the
database (the outbox is the event log, bus/tail.py) and a run folder, ``data_dir/run`` (0700): each process
binds a Unix datagram socket there, ``<pid>-<n>.sock``, and a wake-up is one byte sent to every other
socket of the folder. Wake-ups are hints that coalesce: a full socket buffer (the receiver has wake-ups
pending anyway) or a process that went away loses nothing, because every receiver also polls. Sockets of
dead processes (kill -9 leaves them behind) are removed by whoever finds them.

The relayed browser calls' media process also listens in the run folder (web/forward.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import os
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

MAX_SOCKET_PATH = 100  # a Unix socket's path must fit in sun_path (108 bytes on Linux)
_numbers = itertools.count(1)


def run_dir(data_dir: Path) -> Path:
    """The run folder of the installation in ``data_dir`` (created 0700). A data folder whose path is too
    long for socket names gets a short folder under the system's temporary folder, named by a digest of
    its absolute path, so every process of the installation still finds the same one."""
    path = data_dir.resolve() / "run"
    if len(str(path)) + 24 > MAX_SOCKET_PATH:
        digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]
        path = Path(tempfile.gettempdir()) / f"threadline-{os.getuid()}-{digest}"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        path.chmod(0o700)
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pid_of(name: str) -> int | None:
    head = name.split("-", 1)[0]
    return int(head) if head.isdigit() else None


class Siblings:
    """This process's datagram socket in the run folder: sends one-byte wake-ups to the other processes and
    hands the ones it receives to ``on_message`` (once per distinct byte per loop turn)."""

    def __init__(self, folder: Path, on_message: Callable[[set[bytes]], None]) -> None:
        self.folder = folder
        self.on_message = on_message
        self.path = folder / f"{os.getpid()}-{next(_numbers)}.sock"
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def open(self) -> None:
        self.sweep()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # our pid's, so certainly stale
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind(str(self.path))
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._readable)

    def close(self) -> None:
        if self._sock is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def sweep(self) -> None:
        """Remove the sockets of processes that are gone."""
        for entry in os.scandir(self.folder):
            pid = _pid_of(entry.name)
            if entry.name.endswith(".sock") and pid is not None and not _alive(pid):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)

    def others(self) -> list[str]:
        own = self.path.name
        return [e.path for e in os.scandir(self.folder)
                if e.name.endswith(".sock") and e.name != own and _pid_of(e.name) is not None]

    def send(self, message: bytes) -> int:
        """Send ``message`` to every other process; how many got it."""
        if self._sock is None:
            return 0
        sent = 0
        for path in self.others():
            try:
                self._sock.sendto(message, path)
                sent += 1
            except BlockingIOError:  # its buffer is full: it has wake-ups pending already
                continue
            except (ConnectionRefusedError, FileNotFoundError):  # gone (kill -9): tidy up
                pid = _pid_of(os.path.basename(path))
                if pid is not None and not _alive(pid):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
            except OSError as exc:
                log.warning("sibling_wake_failed", path=path, error=str(exc))
        return sent

    def _readable(self) -> None:
        got: set[bytes] = set()
        while self._sock is not None:
            try:
                got.add(self._sock.recv(16))
            except (BlockingIOError, InterruptedError):
                break
        if got:
            self.on_message(got)
