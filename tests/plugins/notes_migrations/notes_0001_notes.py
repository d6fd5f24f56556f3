"""notes: the table of a test integration package, on a branch of its own

Revision ID: notes_0001
Revises: 0010_one_head (a branch of its own, labelled "notes")
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "notes_0001"
down_revision = "0010_one_head"
branch_labels = ("notes",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notes_entries",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("contact_id", sa.Integer, sa.ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("notes_entries")
