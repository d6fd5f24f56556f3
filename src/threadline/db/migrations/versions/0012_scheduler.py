"""durable timers (scheduled_jobs), outbox follower cursors (webhook_cursor generalised, its row kept as
"webhooks"), ephemeral outbox events (typing, wallboard snapshots; pruned after minutes) and the
conversation SLA columns (deadlines per queue, met or missed)

Revision ID: 0012_scheduler
Revises: 0011_consent_scope
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import threadline.db.types

revision = "0012_scheduler"
down_revision = "0011_consent_scope"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
WHEN = threadline.db.types.UTCDateTime(timezone=True)
SLA_COLUMNS = ("sla_started_at", "first_response_due_at", "first_response_at", "first_response_breached_at",
               "resolution_due_at", "resolution_breached_at")


def upgrade() -> None:
    op.create_table(
        "scheduled_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=60), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("due_at", WHEN, nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("lease_until", WHEN, nullable=True),
        sa.Column("failed_at", WHEN, nullable=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scheduled_jobs")),
        sa.UniqueConstraint("kind", "key", name=op.f("uq_scheduled_jobs_kind_key")),
    )
    op.create_index("ix_scheduled_jobs_due", "scheduled_jobs", ["failed_at", "due_at"])

    op.create_table(
        "outbox_cursors",
        sa.Column("name", sa.String(length=60), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_outbox_cursors")),
    )
    op.execute("INSERT INTO outbox_cursors (name, seq, updated_at) "
               "SELECT 'webhooks', seq, updated_at FROM webhook_cursor WHERE name = 'dispatcher'")
    op.drop_table("webhook_cursor")

    with op.batch_alter_table("outbox_events") as batch:
        batch.add_column(sa.Column("ephemeral", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.execute(sa.text("UPDATE outbox_events SET ephemeral = :yes WHERE name IN ('conversation.typing', "
                       "'routing.state')").bindparams(yes=True))
    op.create_index("ix_outbox_ephemeral", "outbox_events", ["ephemeral", "id"])

    with op.batch_alter_table("conversations") as batch:
        for name in SLA_COLUMNS:
            batch.add_column(sa.Column(name, WHEN, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        for name in reversed(SLA_COLUMNS):
            batch.drop_column(name)
    op.drop_index("ix_outbox_ephemeral", table_name="outbox_events")
    with op.batch_alter_table("outbox_events") as batch:
        batch.drop_column("ephemeral")
    op.create_table(
        "webhook_cursor",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_webhook_cursor")),
    )
    op.execute("INSERT INTO webhook_cursor (name, seq, updated_at) "
               "SELECT 'dispatcher', seq, updated_at FROM outbox_cursors WHERE name = 'webhooks'")
    op.drop_table("outbox_cursors")
    op.drop_index("ix_scheduled_jobs_due", table_name="scheduled_jobs")
    op.drop_table("scheduled_jobs")
