"""Read results kept while the database has not changed: the version is SQLite's ``PRAGMA data_version``.

``data_version`` (read on a connection of its own that never writes) changes whenever any other connection,
in this process or another one, commits to the database file: a result computed after reading version
``v`` is still exact while the version is ``v``, whatever wrote in between and wherever it ran. So a
cached value never outlives the rows it came from (a revoked token, a changed membership, a new message
all commit, and so invalidate), and nothing has to name what it invalidates. Callers read the version
**before** the queries whose result they keep: a commit that lands between the two only makes the entry
look older than it is, never newer.

A key always names whose view it is (the user, their role, queues and teams, or their session), so one
agent is never served another's page. Time-dependent pages put a time bucket in their key.

What is derived only from a few tables (who a token or session is: users, memberships, sessions, tokens)
is kept by a narrower version, a change counter that triggers raise on every write to those tables
(``change_counters``, migration 0018), so that replies and other writes elsewhere do not end it.

PostgreSQL has no such counter; there ``version()`` is None and nothing is cached (every read runs).
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from collections.abc import Hashable
from pathlib import Path
from typing import Any

MAX_ENTRIES = 4096
MAX_BYTES = 32 * 1024 * 1024  # bodies kept (pages, JSON) across all entries


class DataVersion:
    """SQLite's data version of one database file, on a dedicated read-only connection (microseconds)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None

    def read(self) -> int | None:
        try:
            if self._conn is None:
                self._conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None,
                                             check_same_thread=False)
            return int(self._conn.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.Error:  # not created yet, or gone: do not cache
            self.close()
            return None

    def counter(self, name: str) -> int | None:
        """A change counter (migration 0018: raised by triggers on every write to its tables), read in a
        transaction of its own, so always the latest committed value; None where it does not exist."""
        try:
            if self._conn is None:
                self.read()
            if self._conn is None:
                return None
            row = self._conn.execute("SELECT n FROM change_counters WHERE name = ?", (name,)).fetchone()
            return int(row[0]) if row is not None else None
        except sqlite3.Error:
            return None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class ReadCache:
    """A bounded LRU of ``key -> (version, value)``; a lookup with another version is a miss (and drops it)."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._entries: OrderedDict[Hashable, tuple[int, Any, int]] = OrderedDict()
        self._bytes = 0
        self.hits = self.misses = 0
        self.flights: dict[Hashable, Any] = {}  # (key, version) -> the future of its production (queries/kept.py)

    def get(self, key: Hashable, version: int | None) -> Any | None:
        if version is None:
            return None
        entry = self._entries.get(key)
        if entry is None or entry[0] != version:
            if entry is not None:
                self._drop(key)
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry[1]

    def put(self, key: Hashable, version: int | None, value: Any) -> None:
        if version is None:
            return
        size = sum(len(v) for v in (value if isinstance(value, tuple) else (value,)) if isinstance(v, bytes | str))
        if size > self.max_bytes // 8:
            return
        if key in self._entries:
            self._drop(key)
        self._entries[key] = (version, value, size)
        self._bytes += size
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: Hashable) -> None:
        _, _, size = self._entries.pop(key)
        self._bytes -= size

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)
