"""Customer continuity: merge suggestions, recorded merges (for undo) and the customer journey."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from threadline.db.models.base import Base
from threadline.db.types import JSONType, UTCDateTime, utcnow


class MergeSuggestionRow(Base):
    """Two contacts that may be one person (an unverified claim pointed from one to the other)."""

    __tablename__ = "merge_suggestions"
    __table_args__ = (Index("ix_merge_suggestions_open", "status", "contact_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    other_contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    reason: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(20), default="open")  # open | merged | dismissed
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ContactMergeRow(Base):
    """A merge of ``source`` into ``target``, with what moved, so that it can be undone."""

    __tablename__ = "contact_merges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    moved: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    merged_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    undone_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ContactActivityRow(Base):
    """One step of a customer's journey outside conversations: a page viewed, an article read…"""

    __tablename__ = "contact_activity"
    __table_args__ = (Index("ix_contact_activity_contact", "contact_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(40))  # page_view | article_read | crm | …
    title: Mapped[str] = mapped_column(String(300), default="")
    url: Mapped[str] = mapped_column(String(2000), default="")
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ContactAttributeDefRow(Base):
    """The definition of a typed custom attribute of contacts."""

    __tablename__ = "contact_attribute_defs"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    label: Mapped[str] = mapped_column(String(100))
    type: Mapped[str] = mapped_column(String(20))
    options: Mapped[list[str]] = mapped_column(JSONType, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
