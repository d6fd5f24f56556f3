"""messaging: approved message templates per channel (WhatsApp's closed 24-hour window) and the queue of
inbound media to download into storage

Revision ID: 0006_messaging
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import threadline.db.types

revision = "0006_messaging"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "message_templates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel_instance_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("language", sa.String(length=20), nullable=False),
        sa.Column("category", sa.String(length=40), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("provider_ref", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", threadline.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", threadline.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["channel_instance_id"], ["channel_instances.id"],
                                name=op.f("fk_message_templates_channel_instance_id_channel_instances"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_templates")),
        sa.UniqueConstraint("channel_instance_id", "name", "language",
                            name=op.f("uq_message_templates_channel_instance_id_name_language")),
    )
    op.create_index(op.f("ix_message_templates_channel_instance_id"), "message_templates",
                    ["channel_instance_id"], unique=False)
    op.create_table(
        "media_downloads",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("channel_instance_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(length=1000), nullable=True),
        sa.Column("next_attempt_at", threadline.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", threadline.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", threadline.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"], name=op.f("fk_media_downloads_message_id_messages"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["channel_instance_id"], ["channel_instances.id"],
                                name=op.f("fk_media_downloads_channel_instance_id_channel_instances"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_media_downloads")),
    )
    op.create_index(op.f("ix_media_downloads_message_id"), "media_downloads", ["message_id"], unique=False)
    op.create_index(op.f("ix_media_downloads_status"), "media_downloads", ["status"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_media_downloads_status"), table_name="media_downloads")
    op.drop_index(op.f("ix_media_downloads_message_id"), table_name="media_downloads")
    op.drop_table("media_downloads")
    op.drop_index(op.f("ix_message_templates_channel_instance_id"), table_name="message_templates")
    op.drop_table("message_templates")
