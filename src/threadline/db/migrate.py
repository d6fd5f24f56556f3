"""Run Alembic migrations programmatically (``threadline migrate`` and the test fixtures)."""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.config import Config

from threadline.plugins import registry

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    """The core's versions plus the folder each integration package owns (``Integration.migrations``)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    extra = registry.load().migration_locations()
    if extra:  # each package's own branch (branch_labels, depends_on a core revision)
        locations = [MIGRATIONS / "versions", *extra]
        cfg.set_main_option("path_separator", "os")
        cfg.set_main_option("version_locations", os.pathsep.join(str(p) for p in locations).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "heads") -> None:
    """Upgrade to the heads: the core's (one since ``0010_one_head``) and each integration package's own."""
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1]
        if path and not path.startswith(":memory:"):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), revision)


def revision(url: str, message: str) -> None:
    command.revision(alembic_config(url), message=message, autogenerate=True)
