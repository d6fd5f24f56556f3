"""continuity: merge suggestions, recorded merges, customer journey, contacts.merged_into_id

Revision ID: 0007_continuity
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import threadline.db.types

revision = "0007_continuity"
down_revision = "0001"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
WHEN = threadline.db.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # A plain ADD COLUMN (SQLite allows a REFERENCES clause on a NULL column); batch mode would copy
        # and drop the contacts table, and dropping it cascades into identities and conversations.
        op.execute("ALTER TABLE contacts ADD COLUMN merged_into_id INTEGER "
                   "CONSTRAINT fk_contacts_merged_into_id_contacts REFERENCES contacts (id) ON DELETE SET NULL")
    else:
        op.add_column("contacts", sa.Column("merged_into_id", sa.Integer(), nullable=True))
        op.create_foreign_key(op.f("fk_contacts_merged_into_id_contacts"), "contacts", "contacts",
                              ["merged_into_id"], ["id"], ondelete="SET NULL")
    op.create_table(
        "merge_suggestions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("other_contact_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"], name=op.f("fk_merge_suggestions_contact_id_contacts"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["other_contact_id"], ["contacts.id"],
                                name=op.f("fk_merge_suggestions_other_contact_id_contacts"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_merge_suggestions")),
    )
    op.create_index("ix_merge_suggestions_open", "merge_suggestions", ["status", "contact_id"])
    op.create_table(
        "contact_merges",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("moved", JSON, nullable=False),
        sa.Column("merged_at", WHEN, nullable=False),
        sa.Column("undone_at", WHEN, nullable=True),
        sa.ForeignKeyConstraint(["source_id"], ["contacts.id"], name=op.f("fk_contact_merges_source_id_contacts"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["target_id"], ["contacts.id"], name=op.f("fk_contact_merges_target_id_contacts"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["actor_id"], ["users.id"], name=op.f("fk_contact_merges_actor_id_users"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contact_merges")),
    )
    op.create_index(op.f("ix_contact_merges_source_id"), "contact_merges", ["source_id"])
    op.create_index(op.f("ix_contact_merges_target_id"), "contact_merges", ["target_id"])
    op.create_table(
        "contact_activity",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("data", JSON, nullable=False),
        sa.Column("at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"], name=op.f("fk_contact_activity_contact_id_contacts"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contact_activity")),
    )
    op.create_index("ix_contact_activity_contact", "contact_activity", ["contact_id", "at"])
    op.create_table(
        "contact_attribute_defs",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=False),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("options", JSON, nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_contact_attribute_defs")),
    )


def downgrade() -> None:
    op.drop_table("contact_attribute_defs")
    op.drop_table("contact_activity")
    op.drop_table("contact_merges")
    op.drop_table("merge_suggestions")
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE contacts DROP COLUMN merged_into_id")
    else:
        op.drop_constraint(op.f("fk_contacts_merged_into_id_contacts"), "contacts", type_="foreignkey")
        op.drop_column("contacts", "merged_into_id")
