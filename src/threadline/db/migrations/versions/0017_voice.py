"""voice: calls (the customer leg of each call, where it stands, the flow it runs) and the provider
events applied to them, each once

Revision ID: 0017_voice
Revises: 0016_flows
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import threadline.db.types

revision = "0017_voice"
down_revision = "0016_flows"
branch_labels = None
depends_on = None

WHEN = threadline.db.types.UTCDateTime(timezone=True)
JSON = threadline.db.types.JSONType


def upgrade() -> None:
    op.create_table(
        "calls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel_instance_id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=40), nullable=False),
        sa.Column("provider_ref", sa.String(length=200), nullable=False),
        sa.Column("conversation_id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=True),
        sa.Column("message_id", sa.Integer(), nullable=True),
        sa.Column("direction", sa.String(length=10), nullable=False),
        sa.Column("from_number", sa.String(length=60), nullable=False),
        sa.Column("to_number", sa.String(length=60), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("end_cause", sa.String(length=20), nullable=True),
        sa.Column("locale", sa.String(length=10), nullable=False),
        sa.Column("queue_id", sa.Integer(), nullable=True),
        sa.Column("agent_id", sa.Integer(), nullable=True),
        sa.Column("flow_id", sa.Integer(), nullable=True),
        sa.Column("flow_version", sa.Integer(), nullable=True),
        sa.Column("flow_state", JSON, nullable=True),
        sa.Column("verified_by", sa.String(length=40), nullable=True),
        sa.Column("callback_requested", sa.Boolean(), nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("started_at", WHEN, nullable=False),
        sa.Column("enqueued_at", WHEN, nullable=True),
        sa.Column("answered_at", WHEN, nullable=True),
        sa.Column("ended_at", WHEN, nullable=True),
        sa.Column("recording_url", sa.Text(), nullable=True),
        sa.Column("recording_seconds", sa.Integer(), nullable=True),
        sa.Column("details", JSON, nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(["channel_instance_id"], ["channel_instances.id"],
                                name=op.f("fk_calls_channel_instance_id_channel_instances"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"],
                                name=op.f("fk_calls_conversation_id_conversations"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"],
                                name=op.f("fk_calls_contact_id_contacts"), ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"],
                                name=op.f("fk_calls_message_id_messages"), ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["queue_id"], ["queues.id"], name=op.f("fk_calls_queue_id_queues"), ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["agent_id"], ["users.id"], name=op.f("fk_calls_agent_id_users"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calls")),
        sa.UniqueConstraint("channel_instance_id", "provider_ref", name=op.f("uq_calls_channel_instance_id_provider_ref")),
    )
    op.create_index("ix_calls_conversation", "calls", ["conversation_id", "id"], unique=False)
    op.create_index("ix_calls_live", "calls", ["state", "queue_id"], unique=False)
    op.create_table(
        "call_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=True),
        sa.Column("data", JSON, nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(["call_id"], ["calls.id"], name=op.f("fk_call_events_call_id_calls"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_events")),
        sa.UniqueConstraint("call_id", "key", name=op.f("uq_call_events_call_id_key")),
    )


def downgrade() -> None:
    op.drop_table("call_events")
    op.drop_index("ix_calls_live", table_name="calls")
    op.drop_index("ix_calls_conversation", table_name="calls")
    op.drop_table("calls")
