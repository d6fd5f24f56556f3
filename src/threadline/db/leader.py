"""Single-leader election for the workers that must run once (event relay, sender).

PostgreSQL: a session-level advisory lock held on a dedicated connection; if the process dies,
the server drops the connection and the lock, and another process takes over.
SQLite: an exclusive ``flock`` on a file beside the database (one host by definition).
"""

from __future__ import annotations

import fcntl
import os
import zlib
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from threadline.db.session import Database


class LeaderLock:
    def __init__(self, db: Database, name: str) -> None:
        self.db = db
        self.name = name
        self.key = zlib.crc32(f"threadline:{name}".encode()) & 0x7FFFFFFF
        self._fd: int | None = None
        self._conn: AsyncConnection | None = None
        self._engine = None

    @property
    def held(self) -> bool:
        return self._fd is not None or self._conn is not None

    async def try_acquire(self) -> bool:
        if self.held:
            return await self.still_held()
        if self.db.is_sqlite:
            base = self.db.sqlite_path or Path("threadline-memory")
            path = base.with_name(base.name + f".{self.name}.lock")
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            self._fd = fd
            return True
        if self._engine is None:
            self._engine = self.db.null_pool_engine()
        conn = await self._engine.connect()
        got = (await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key})).scalar()
        await conn.commit()
        if got:
            self._conn = conn
            return True
        await conn.close()
        return False

    async def still_held(self) -> bool:
        if self._fd is not None:
            return True
        if self._conn is None:
            return False
        try:
            await self._conn.execute(text("SELECT 1"))
            await self._conn.commit()
            return True
        except Exception:
            self._conn = None
            return False

    async def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        if self._conn is not None:
            try:
                await self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
                await self._conn.close()
            except Exception:
                pass
            self._conn = None
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None
