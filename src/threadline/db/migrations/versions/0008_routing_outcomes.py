"""routing outcomes (one fact per contact answered, removed from a queue or handled), the SLA
alert state of each task (so alerts are not announced again after a restart) and an agent's request
to end a wrap-up early (a column the router never writes)

Revision ID: 0008_routing_outcomes
Revises: 0002_routing
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_routing_outcomes"
down_revision = "0002_routing"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("routing_tasks") as batch:
        batch.add_column(sa.Column("sla_state", sa.String(length=20), nullable=False, server_default=""))
        batch.add_column(sa.Column("wrap_ended_at", sa.Float(), nullable=True))
    op.create_table(
        "routing_outcomes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("conversation_id", sa.Integer(), nullable=False),
        sa.Column("queue_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("enqueued_at", sa.Float(), nullable=True),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("wait_seconds", sa.Float(), nullable=True),
        sa.Column("handle_seconds", sa.Float(), nullable=True),
        sa.Column("within_target", sa.Boolean(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_routing_outcomes")),
    )
    op.create_index("ix_routing_outcomes_at", "routing_outcomes", ["at"])
    op.create_index("ix_routing_outcomes_queue_at", "routing_outcomes", ["queue_id", "at"])
    op.create_index("ix_routing_outcomes_agent_at", "routing_outcomes", ["agent_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_routing_outcomes_agent_at", table_name="routing_outcomes")
    op.drop_index("ix_routing_outcomes_queue_at", table_name="routing_outcomes")
    op.drop_index("ix_routing_outcomes_at", table_name="routing_outcomes")
    op.drop_table("routing_outcomes")
    with op.batch_alter_table("routing_tasks") as batch:
        batch.drop_column("wrap_ended_at")
        batch.drop_column("sla_state")
