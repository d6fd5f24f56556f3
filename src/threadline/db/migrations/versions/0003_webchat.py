"""web chat: CSAT responses

Revision ID: 0003_webchat
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import threadline.db.types

revision = "0003_webchat"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "csat_responses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("conversation_id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("channel_instance_id", sa.Integer(), nullable=True),
        sa.Column("rating", sa.Integer(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("created_at", threadline.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"],
                                name=op.f("fk_csat_responses_conversation_id_conversations"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"],
                                name=op.f("fk_csat_responses_contact_id_contacts"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["channel_instance_id"], ["channel_instances.id"],
                                name=op.f("fk_csat_responses_channel_instance_id_channel_instances"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_csat_responses")),
        sa.UniqueConstraint("conversation_id", name=op.f("uq_csat_responses_conversation_id")),
        sa.CheckConstraint("rating BETWEEN 1 AND 5", name=op.f("ck_csat_responses_rating_range")),
    )
    with op.batch_alter_table("csat_responses", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_csat_responses_contact_id"), ["contact_id"], unique=False)


def downgrade() -> None:
    op.drop_table("csat_responses")
