"""email: IMAP mailbox progress (UIDVALIDITY, last UID) per channel and folder

Revision ID: 0005_email
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import threadline.db.types

revision = "0005_email"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "email_mailbox_state",
        sa.Column("channel_instance_id", sa.Integer(), nullable=False),
        sa.Column("mailbox", sa.String(length=200), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("last_uid", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", threadline.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["channel_instance_id"], ["channel_instances.id"],
                                name=op.f("fk_email_mailbox_state_channel_instance_id_channel_instances"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("channel_instance_id", "mailbox", name=op.f("pk_email_mailbox_state")),
    )


def downgrade() -> None:
    op.drop_table("email_mailbox_state")
