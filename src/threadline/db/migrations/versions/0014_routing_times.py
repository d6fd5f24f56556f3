"""one time type at the storage boundary: the routing tables' times (``routing_tasks``, ``routing_offers``,
``routing_outcomes``) become UTC datetimes like every other table's, instead of Unix seconds (floats)

The values are converted in place: on PostgreSQL with ``to_timestamp`` / ``extract(epoch ...)`` in the
column's ``ALTER ... USING``; on SQLite (which keeps datetimes as text, ``YYYY-MM-DD HH:MM:SS.ffffff``,
the way SQLAlchemy writes them) by rewriting the values first and then rebuilding the table with the new
declared type (no cast in the copy, so the rewritten text is kept). To the microsecond both ways.

Revision ID: 0014_routing_times
Revises: 0013_security
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import threadline.db.types

revision = "0014_routing_times"
down_revision = "0013_security"
branch_labels = None
depends_on = None

WHEN = threadline.db.types.UTCDateTime(timezone=True)
# table -> [(column, nullable)], as the routing tables were when this migration was written
COLUMNS = {
    "routing_tasks": [("enqueued_at", False), ("updated_at", False), ("wrap_ended_at", True)],
    "routing_offers": [("offered_at", False), ("expires_at", False), ("ended_at", True)],
    "routing_outcomes": [("enqueued_at", True), ("at", False)],
}


def _sqlite_text(col: str) -> str:
    """SQLite: Unix seconds (REAL) -> 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC), exact to the microsecond."""
    us = f"CAST(round({col} * 1000000) AS INTEGER)"
    return f"strftime('%Y-%m-%d %H:%M:%S', {us} / 1000000, 'unixepoch') || '.' || printf('%06d', {us} % 1000000)"


def _sqlite_seconds(col: str) -> str:
    """SQLite: 'YYYY-MM-DD HH:MM:SS[.ffffff]' -> Unix seconds (REAL)."""
    return (f"CAST(strftime('%s', substr({col}, 1, 19)) AS REAL)"
            f" + CASE WHEN length({col}) > 19 THEN CAST('0' || substr({col}, 20) AS REAL) ELSE 0.0 END")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, columns in COLUMNS.items():
            for col, nullable in columns:
                op.alter_column(table, col, type_=WHEN, existing_type=sa.Float(), existing_nullable=nullable,
                                postgresql_using=f"to_timestamp({col})")
        return
    for table, columns in COLUMNS.items():
        op.execute(f"UPDATE {table} SET " + ", ".join(f"{col} = {_sqlite_text(col)}" for col, _ in columns))
        # the copy reads the columns as datetimes already, so it keeps the text as it is (a CAST to DATETIME
        # would turn it into a number on SQLite)
        with op.batch_alter_table(table, recreate="always",
                                  reflect_args=[sa.Column(col, sa.DateTime(), nullable=n) for col, n in columns]) as batch:
            for col, nullable in columns:
                batch.alter_column(col, type_=WHEN, existing_type=sa.DateTime(), existing_nullable=nullable)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, columns in COLUMNS.items():
            for col, nullable in columns:
                op.alter_column(table, col, type_=sa.Float(), existing_type=WHEN, existing_nullable=nullable,
                                postgresql_using=f"extract(epoch from {col})")
        return
    for table, columns in COLUMNS.items():
        with op.batch_alter_table(table, recreate="always",
                                  reflect_args=[sa.Column(col, sa.Float(), nullable=n) for col, n in columns]) as batch:
            for col, nullable in columns:
                batch.alter_column(col, type_=sa.Float(), existing_type=sa.Float(), existing_nullable=nullable)
        op.execute(f"UPDATE {table} SET " + ", ".join(f"{col} = {_sqlite_seconds(col)}" for col, _ in columns))
