"""Approved message templates of a messaging channel (WhatsApp outside its 24-hour window): the body with
``{{1}}``/``{{name}}`` variables as the agent sees it, and the provider's reference (the WhatsApp template
name, or the Twilio Content SID ``HX…``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from threadline.db.models.base import Base, Timestamps
from threadline.db.types import UTCDateTime, utcnow


class MessageTemplateRow(Timestamps, Base):
    __tablename__ = "message_templates"
    __table_args__ = (UniqueConstraint("channel_instance_id", "name", "language"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel_instance_id: Mapped[int] = mapped_column(ForeignKey("channel_instances.id", ondelete="CASCADE"),
                                                     index=True)
    name: Mapped[str] = mapped_column(String(200))
    language: Mapped[str] = mapped_column(String(20), default="en_US")
    category: Mapped[str] = mapped_column(String(40), default="utility")
    body: Mapped[str] = mapped_column(Text)
    provider_ref: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="approved")


class MediaDownloadRow(Timestamps, Base):
    """An inbound attachment a provider only linked (Twilio MediaUrl, WhatsApp media id, Telegram file id):
    queued with its message, fetched by workers/media.py outside any write transaction, then stored in
    the FileStore and pointed at ``/api/v1/attachments/{id}`` in the message."""

    __tablename__ = "media_downloads"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    channel_instance_id: Mapped[int] = mapped_column(ForeignKey("channel_instances.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer, default=0)  # index in the message's attachments
    url: Mapped[str] = mapped_column(String(2000))
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)  # pending, done, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
