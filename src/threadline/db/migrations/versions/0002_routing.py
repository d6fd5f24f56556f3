"""routing (ACD) state: tasks, offers, agent capacities, queue routing settings

Revision ID: 0002_routing
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import threadline.db.types

revision = "0002_routing"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    json = threadline.db.types.JSONType
    op.create_table(
        "routing_tasks",
        sa.Column("conversation_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("queue_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=True),
        sa.Column("enqueued_at", sa.Float(), nullable=False),
        sa.Column("task", json, nullable=False),
        sa.Column("position", sa.Integer(), nullable=True),
        sa.Column("ewt_seconds", sa.Float(), nullable=True),
        sa.Column("note", sa.String(length=500), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"],
                                name=op.f("fk_routing_tasks_conversation_id_conversations"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("conversation_id", name=op.f("pk_routing_tasks")),
    )
    op.create_index("ix_routing_tasks_queue_status", "routing_tasks", ["queue_id", "status"])
    op.create_index(op.f("ix_routing_tasks_agent_id"), "routing_tasks", ["agent_id"])
    op.create_table(
        "routing_offers",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("conversation_id", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("queue_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("offered_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("ended_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"],
                                name=op.f("fk_routing_offers_conversation_id_conversations"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_routing_offers")),
    )
    op.create_index("ix_routing_offers_open_task", "routing_offers", ["conversation_id"], unique=True,
                    sqlite_where=sa.text("status = 'open'"), postgresql_where=sa.text("status = 'open'"))
    op.create_index("ix_routing_offers_agent_status", "routing_offers", ["agent_id", "status"])
    op.create_table(
        "routing_agents",
        sa.Column("user_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("capacity", json, nullable=False),
        sa.Column("blocked_by", json, nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_routing_agents_user_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_routing_agents")),
    )
    op.create_table(
        "routing_queues",
        sa.Column("queue_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("config", json, nullable=False),
        sa.ForeignKeyConstraint(["queue_id"], ["queues.id"], name=op.f("fk_routing_queues_queue_id_queues"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("queue_id", name=op.f("pk_routing_queues")),
    )
    op.create_table(
        "routing_settings",
        sa.Column("key", sa.String(length=40), nullable=False),
        sa.Column("value", json, nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_routing_settings")),
    )


def downgrade() -> None:
    for table in ("routing_settings", "routing_queues", "routing_agents", "routing_offers", "routing_tasks"):
        op.drop_table(table)
