"""A visitor's request to confirm an e-mail address or phone number with a one-time code.

The code itself is never stored: it is made when the message carrying it is sent (the scheduled job
``webchat.verify_send``), and only its HMAC (keyed with the instance secret and the row id) is kept, with
its expiry and the wrong attempts counted against it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from threadline.db.models.base import Base
from threadline.db.types import UTCDateTime, utcnow


class VerificationRow(Base):
    __tablename__ = "webchat_verifications"
    __table_args__ = (Index("ix_webchat_verifications_visitor", "channel_instance_id", "visitor_id", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel_instance_id: Mapped[int] = mapped_column(ForeignKey("channel_instances.id", ondelete="CASCADE"))
    visitor_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(10))  # email | phone
    value: Mapped[str] = mapped_column(String(320))  # normalised
    language: Mapped[str] = mapped_column(String(8), default="en")
    # pending (code on its way) → sent → verified | failed (too many wrong codes) | replaced (a newer request)
    status: Mapped[str] = mapped_column(String(12), default="pending")
    code_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    error: Mapped[str | None] = mapped_column(String(500), nullable=True)  # why the code could not be sent
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
