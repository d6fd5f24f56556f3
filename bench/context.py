"""What every benchmark prints first and last: when and where it ran, and its verdict against a target.

A figure means little without the state of the machine it was measured on (the development machine has
two cores shared with other work), so each benchmark starts with the date, the load average and the commit,
and states each target as ``meets`` or ``MISSES`` from the figures of that run only.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from pathlib import Path


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, check=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=Path(__file__).parent,
                               capture_output=True, text=True, check=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("+changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def load() -> str:
    """The 1/5/15-minute load averages, e.g. ``0.12 0.30 0.41``."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def header(name: str) -> str:
    """One line naming the benchmark, the time (UTC), the load average, the cores, Python and the commit."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    line = (f"{name}: {now}, load average {load()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, commit {_commit()}")
    print(line, flush=True)
    return line


def verdict(ok: bool) -> str:
    """``meets`` or ``MISSES``: a run that misses its target says so, whatever an older run said."""
    return "meets" if ok else "MISSES"


def sqlite_commit_floor(seconds: float = 1.0) -> float:
    """Single-row ``BEGIN; INSERT; COMMIT`` transactions per second on a SQLite file in WAL mode with
    ``synchronous=NORMAL`` (Threadline's settings), in a temporary folder: the floor under any durable
    write path on this machine at this moment."""
    import sqlite3
    import tempfile
    import time

    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(Path(tmp) / "floor.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE msg (id INTEGER PRIMARY KEY, conv_id INTEGER, body TEXT, created_at REAL)")
        db.execute("CREATE INDEX msg_conv ON msg (conv_id, created_at)")
        body = "hello, I need help with my order #1234 " * 3
        n = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            db.execute("BEGIN")
            db.execute("INSERT INTO msg (conv_id, body, created_at) VALUES (?, ?, ?)", (n % 500, body, time.time()))
            db.execute("COMMIT")
            n += 1
        elapsed = time.perf_counter() - t0
        db.close()
    return n / elapsed
