"""Per-mailbox IMAP progress: the UIDVALIDITY seen and the highest UID stored, so a restart neither
re-reads nor skips a mail."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from threadline.db.models.base import Base
from threadline.db.types import UTCDateTime, utcnow


class MailboxStateRow(Base):
    __tablename__ = "email_mailbox_state"

    channel_instance_id: Mapped[int] = mapped_column(
        ForeignKey("channel_instances.id", ondelete="CASCADE"), primary_key=True)
    mailbox: Mapped[str] = mapped_column(String(200), primary_key=True)
    uidvalidity: Mapped[int] = mapped_column(BigInteger, default=0)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
