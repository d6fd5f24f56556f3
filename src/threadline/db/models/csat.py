"""Web chat: customer satisfaction ratings (CSAT) given after a conversation is resolved."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from threadline.db.models.base import Base
from threadline.db.types import UTCDateTime, utcnow


class CsatResponseRow(Base):
    __tablename__ = "csat_responses"
    __table_args__ = (CheckConstraint("rating BETWEEN 1 AND 5", name="rating_range"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # One rating per conversation: a second submission replaces the first.
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"), unique=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    channel_instance_id: Mapped[int | None] = mapped_column(
        ForeignKey("channel_instances.id", ondelete="SET NULL"), nullable=True
    )
    rating: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(20), default="webchat")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
