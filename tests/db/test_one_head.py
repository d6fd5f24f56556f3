"""The core's migrations are one line with one head (issue 13 item 10). Two branches merged without a
merge revision would leave two heads: ``threadline migrate`` still upgrades both, but the order of their
revisions is undefined and ``alembic revision`` refuses to pick a parent. Add a merge revision
(``alembic merge heads``) when this fails."""

from __future__ import annotations

from alembic.config import Config
from alembic.script import ScriptDirectory

from threadline.db.migrate import MIGRATIONS, alembic_config
from threadline.plugins import registry


def test_the_core_migrations_have_one_head() -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    script = ScriptDirectory.from_config(cfg)
    heads = script.get_heads()
    assert len(heads) == 1, f"the core's migrations have {len(heads)} heads: {heads}; add a merge revision"
    # every revision reaches the base through its parents (walking raises on a missing one)
    assert script.get_base() in {r.revision for r in script.walk_revisions()}


def test_each_integration_package_adds_one_head_of_its_own() -> None:
    """With the installed packages' folders: the core's head plus one per package branch."""
    heads = ScriptDirectory.from_config(alembic_config("sqlite+aiosqlite://")).get_heads()
    assert len(heads) == 1 + len(registry.load().migration_locations()), heads
