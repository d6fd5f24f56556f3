"""web chat: one-time codes a visitor uses to confirm a typed e-mail address or phone number
(``webchat_verifications``; only a keyed hash of each code is stored)

Revision ID: 0015_webchat_verifications
Revises: 0014_routing_times
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import threadline.db.types

revision = "0015_webchat_verifications"
down_revision = "0014_routing_times"
branch_labels = None
depends_on = None

WHEN = threadline.db.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "webchat_verifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel_instance_id", sa.Integer(), nullable=False),
        sa.Column("visitor_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("value", sa.String(length=320), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("expires_at", WHEN, nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(["channel_instance_id"], ["channel_instances.id"],
                                name=op.f("fk_webchat_verifications_channel_instance_id_channel_instances"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webchat_verifications")),
    )
    op.create_index("ix_webchat_verifications_visitor", "webchat_verifications",
                    ["channel_instance_id", "visitor_id", "created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_webchat_verifications_visitor", table_name="webchat_verifications")
    op.drop_table("webchat_verifications")
