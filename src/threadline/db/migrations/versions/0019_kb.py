"""kb: the knowledge base (threadline/kb/): categories, articles, per-locale translations (draft and
published), feedback, searches without results, images; the search index (SQLite: an FTS5 table with
accent folding; PostgreSQL: a tsvector column with a GIN index, and the unaccent extension when the server
has it)

Revision ID: 0019_kb
Revises: 0018_change_counters
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import threadline.db.types

revision = "0019_kb"
down_revision = "0018_change_counters"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
WHEN = threadline.db.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "kb_categories",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=120), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("names", JSON, nullable=False),
        sa.Column("descriptions", JSON, nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_categories")),
        sa.UniqueConstraint("slug", name=op.f("uq_kb_categories_slug")),
    )
    op.create_table(
        "kb_articles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("category_id", sa.Integer(), nullable=True),
        sa.Column("visibility", sa.String(length=10), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(["category_id"], ["kb_categories.id"],
                                name=op.f("fk_kb_articles_category_id_kb_categories"), ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name=op.f("fk_kb_articles_created_by_users"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_articles")),
    )
    op.create_index(op.f("ix_kb_articles_category_id"), "kb_articles", ["category_id"])
    op.create_table(
        "kb_translations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("locale", sa.String(length=16), nullable=False),
        sa.Column("slug", sa.String(length=120), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("summary", sa.String(length=300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("published_title", sa.String(length=200), nullable=True),
        sa.Column("published_summary", sa.String(length=300), nullable=True),
        sa.Column("published_body", sa.Text(), nullable=True),
        sa.Column("published_html", sa.Text(), nullable=True),
        sa.Column("published_text", sa.Text(), nullable=True),
        sa.Column("published_at", WHEN, nullable=True),
        sa.Column("updated_by", sa.Integer(), nullable=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(["article_id"], ["kb_articles.id"],
                                name=op.f("fk_kb_translations_article_id_kb_articles"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["updated_by"], ["users.id"], name=op.f("fk_kb_translations_updated_by_users"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_translations")),
        sa.UniqueConstraint("article_id", "locale", name=op.f("uq_kb_translations_article_id")),
        sa.UniqueConstraint("locale", "slug", name=op.f("uq_kb_translations_locale")),
    )
    op.create_index("ix_kb_translations_locale_published", "kb_translations", ["locale", "published_at"])
    op.create_table(
        "kb_feedback",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("translation_id", sa.Integer(), nullable=False),
        sa.Column("visitor", sa.String(length=64), nullable=False),
        sa.Column("helpful", sa.Boolean(), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(["translation_id"], ["kb_translations.id"],
                                name=op.f("fk_kb_feedback_translation_id_kb_translations"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_feedback")),
        sa.UniqueConstraint("translation_id", "visitor", name=op.f("uq_kb_feedback_translation_id")),
    )
    op.create_table(
        "kb_search_misses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("locale", sa.String(length=16), nullable=False),
        sa.Column("query", sa.String(length=200), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("first_at", WHEN, nullable=False),
        sa.Column("last_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_search_misses")),
        sa.UniqueConstraint("locale", "query", name=op.f("uq_kb_search_misses_locale")),
    )
    op.create_table(
        "kb_images",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("content_type", sa.String(length=50), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name=op.f("fk_kb_images_created_by_users"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_kb_images")),
    )
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        # rowid = kb_translations.id; facets holds the locale and visibility as words (kb/domain.py)
        op.execute("CREATE VIRTUAL TABLE kb_fts USING fts5(title, body, stems, facets, "
                   "tokenize='unicode61 remove_diacritics 2')")
        return
    op.execute("ALTER TABLE kb_translations ADD COLUMN search_vector tsvector")
    op.execute("CREATE INDEX ix_kb_translations_search ON kb_translations USING gin (search_vector)")
    # Accent folding on PostgreSQL: the unaccent extension (contrib) and, for each language configuration
    # the server has, a copy "kb_<name>" whose words go through unaccent before the stemmer, so that
    # to_tsvector, to_tsquery and ts_headline all fold accents. A server without the extension, or a role
    # that may not create it: no copies, search works and accents matter (docs/self-service.md).
    savepoint = bind.begin_nested()
    try:
        bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS unaccent"))
        savepoint.commit()
    except sa.exc.DBAPIError:
        savepoint.rollback()
        return
    configs = set(bind.execute(sa.text("SELECT cfgname FROM pg_ts_config")).scalars())
    dictionaries = set(bind.execute(sa.text("SELECT dictname FROM pg_ts_dict")).scalars())
    for name in PG_CONFIGS:
        stem = "simple" if name == "simple" else f"{name}_stem"
        if name not in configs or stem not in dictionaries or f"kb_{name}" in configs:
            continue
        op.execute(f"CREATE TEXT SEARCH CONFIGURATION kb_{name} (COPY = {name})")
        op.execute(f"ALTER TEXT SEARCH CONFIGURATION kb_{name} ALTER MAPPING FOR hword, hword_part, word "
                   f"WITH unaccent, {stem}")


# The text search configurations PostgreSQL ships that the knowledge base uses (kb/domain.py PG_CONFIGS)
PG_CONFIGS = ("simple", "english", "spanish", "italian", "french", "german", "portuguese", "dutch", "swedish",
              "danish", "finnish", "norwegian", "russian", "hungarian", "romanian", "turkish")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS kb_fts")
    else:
        for name in PG_CONFIGS:
            op.execute(f"DROP TEXT SEARCH CONFIGURATION IF EXISTS kb_{name}")
    op.drop_table("kb_images")
    op.drop_table("kb_search_misses")
    op.drop_table("kb_feedback")
    op.drop_index("ix_kb_translations_locale_published", table_name="kb_translations")
    op.drop_table("kb_translations")
    op.drop_index(op.f("ix_kb_articles_category_id"), table_name="kb_articles")
    op.drop_table("kb_articles")
    op.drop_table("kb_categories")
