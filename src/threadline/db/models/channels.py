"""Channel instances: one configured channel (a web chat, a phone number, an API endpoint…)."""

from __future__ import annotations

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from threadline.db.models.base import Base, Timestamps


class ChannelInstanceRow(Timestamps, Base):
    __tablename__ = "channel_instances"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(100), unique=True)
    # The public part of the inbound URL (/hooks/{key}); random, so ids are not guessable.
    key: Mapped[str] = mapped_column(String(64), unique=True)
    # The adapter's config as JSON, encrypted with the instance secret (Fernet): secrets at rest.
    config_encrypted: Mapped[str] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    default_queue_id: Mapped[int | None] = mapped_column(
        ForeignKey("queues.id", ondelete="SET NULL"), nullable=True
    )
