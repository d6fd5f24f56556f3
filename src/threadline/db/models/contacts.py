"""Contacts (customers) and their identities on every channel."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from threadline.db.models.base import Base, Timestamps
from threadline.db.types import JSONType


class ContactRow(Timestamps, Base):
    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    # Lower-cased name and identity values, for search that works the same on SQLite and PostgreSQL.
    search_text: Mapped[str] = mapped_column(String(2000), default="", index=True)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # Set when this contact was merged into another (kept, hidden, so that the merge can be undone).
    merged_into_id: Mapped[int | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="SET NULL"), nullable=True, default=None
    )


class IdentityRow(Timestamps, Base):
    __tablename__ = "identities"
    __table_args__ = (UniqueConstraint("kind", "scope", "value"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    scope: Mapped[str] = mapped_column(String(100), default="")
    value: Mapped[str] = mapped_column(String(320))
    verified: Mapped[bool] = mapped_column(Boolean, default=True)
