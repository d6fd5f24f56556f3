"""change counters: a counter per group of tables that triggers raise on every write (``auth``: users,
memberships, sessions, API tokens), so a reader can keep what it derived from them (db/cache.py)

Revision ID: 0018_change_counters
Revises: 0017_voice
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018_change_counters"
down_revision = "0017_voice"
branch_labels = None
depends_on = None

AUTH_TABLES = ("users", "queue_members", "team_members", "auth_sessions", "api_tokens")


def upgrade() -> None:
    op.create_table(
        "change_counters",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_change_counters")),
    )
    op.execute("INSERT INTO change_counters (name, n) VALUES ('auth', 0)")
    if op.get_bind().dialect.name != "sqlite":
        return  # PostgreSQL keeps no reads (db/cache.py): no triggers to pay for
    for table in AUTH_TABLES:
        for what in ("INSERT", "UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER tl_auth_{table}_{what.lower()} AFTER {what} ON {table} "
                       "BEGIN UPDATE change_counters SET n = n + 1 WHERE name = 'auth'; END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table in AUTH_TABLES:
            for what in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS tl_auth_{table}_{what}")
    op.drop_table("change_counters")
