"""The knowledge base's tables: categories, articles (category, visibility), one translation per article
and locale (its slug, the draft, and the published text with its sanitised HTML), visitors' feedback,
the searches that found nothing, and uploaded images (bytes in the core's file store).

The search index is not a mapped table: on SQLite an FTS5 virtual table ``kb_fts`` (rowid = the
translation's id), on PostgreSQL a ``search_vector tsvector`` column of ``kb_translations`` with a GIN
index; both are created by the migration (``0019_kb``) and written by ``repo`` in the transaction that
publishes, unpublishes or deletes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from threadline.db.models.base import Base, Timestamps
from threadline.db.types import JSONType, UTCDateTime, utcnow


class KbCategoryRow(Timestamps, Base):
    __tablename__ = "kb_categories"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(120), unique=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    names: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)  # locale → name
    descriptions: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)  # locale → description


class KbArticleRow(Timestamps, Base):
    __tablename__ = "kb_articles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    category_id: Mapped[int | None] = mapped_column(ForeignKey("kb_categories.id", ondelete="SET NULL"),
                                                    nullable=True, index=True)
    visibility: Mapped[str] = mapped_column(String(10), default="public")  # public | internal
    position: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)


class KbTranslationRow(Timestamps, Base):
    """One locale of an article: the draft (title, summary, body) that editors change, and the published
    copy the help center, the widget and search show until the draft is published again."""

    __tablename__ = "kb_translations"
    __table_args__ = (UniqueConstraint("article_id", "locale"), UniqueConstraint("locale", "slug"),
                      Index("ix_kb_translations_locale_published", "locale", "published_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    article_id: Mapped[int] = mapped_column(ForeignKey("kb_articles.id", ondelete="CASCADE"))
    locale: Mapped[str] = mapped_column(String(16))
    slug: Mapped[str] = mapped_column(String(120))
    title: Mapped[str] = mapped_column(String(200))
    summary: Mapped[str] = mapped_column(String(300), default="")
    body: Mapped[str] = mapped_column(Text, default="")
    published_title: Mapped[str | None] = mapped_column(String(200), nullable=True)
    published_summary: Mapped[str | None] = mapped_column(String(300), nullable=True)
    published_body: Mapped[str | None] = mapped_column(Text, nullable=True)
    published_html: Mapped[str | None] = mapped_column(Text, nullable=True)  # rendered and sanitised once
    published_text: Mapped[str | None] = mapped_column(Text, nullable=True)  # plain words: index, snippets
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)  # None: not published
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)


class KbFeedbackRow(Base):
    """A visitor's vote on one translation (one per visitor: a later vote replaces it)."""

    __tablename__ = "kb_feedback"
    __table_args__ = (UniqueConstraint("translation_id", "visitor"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    translation_id: Mapped[int] = mapped_column(ForeignKey("kb_translations.id", ondelete="CASCADE"))
    visitor: Mapped[str] = mapped_column(String(64))  # a keyed hash, never the address (domain.visitor_key)
    helpful: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class KbSearchMissRow(Base):
    """A search (folded words, per locale) that found nothing: how often and when, for what to write next."""

    __tablename__ = "kb_search_misses"
    __table_args__ = (UniqueConstraint("locale", "query"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    locale: Mapped[str] = mapped_column(String(16))
    query: Mapped[str] = mapped_column(String(200))
    count: Mapped[int] = mapped_column(Integer, default=1)
    first_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class KbImageRow(Base):
    """An image uploaded for articles: its bytes in the core's file store, by SHA-256."""

    __tablename__ = "kb_images"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    content_type: Mapped[str] = mapped_column(String(50))
    size: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
