"""An integration package's own migrations: its versions folder joins Alembic's, on a branch of its own
that starts from a core revision; ``upgrade`` takes every head, so the core and the package are current."""

from __future__ import annotations

import asyncio
import sqlite3
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from threadline.db.migrate import alembic_config, upgrade
from threadline.plugins import registry
from threadline.plugins.registry import GROUP


async def test_a_package_migrates_its_own_tables_after_the_core(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    monkeypatch.setattr(registry, "entry_points", lambda group: [
        EntryPoint("notes", "tests.plugins.fakes:notes", GROUP)] if group == GROUP else [])
    registry.reset()
    try:
        url = f"sqlite+aiosqlite:///{tmp_path / 'plugin.db'}"
        heads = ScriptDirectory.from_config(alembic_config(url)).get_heads()
        assert "notes_0001" in heads
        await asyncio.to_thread(upgrade, url)
        with sqlite3.connect(tmp_path / "plugin.db") as db:
            assert {r[0] for r in db.execute("SELECT version_num FROM alembic_version")} == set(heads)
            columns = {r[1] for r in db.execute("PRAGMA table_info(notes_entries)")}
            assert columns == {"id", "contact_id", "text"}
    finally:
        monkeypatch.undo()
        registry.reset()
    # without the package the core's history is one line with one head
    core = ScriptDirectory.from_config(alembic_config(url)).get_heads()
    assert len(core) == 1 and "notes_0001" not in core
