"""consent per scope: ``attributes.consent[address]`` becomes ``{scope: record}`` ("sms", "whatsapp")

Before, one STOP recorded on a contact's number stopped every messaging channel of that number: a
WhatsApp "Stop" (through Twilio) opted the customer out of SMS too. Each legacy record moves under the
scope of the channel it was recorded on (``channel_instance_id``): Twilio SMS → ``sms``, WhatsApp (Cloud
API or through Twilio) → ``whatsapp``; a record whose channel is gone stays an SMS opt-out, the only one
the old code enforced. Only contacts whose attributes mention ``consent`` are read.

Revision ID: 0011_consent_scope
Revises: 0010_one_head
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011_consent_scope"
down_revision = "0010_one_head"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
SCOPES = {"twilio": "sms", "twilio_whatsapp": "whatsapp", "whatsapp": "whatsapp"}  # kinds as of this revision
CONTACTS = sa.table("contacts", sa.column("id", sa.Integer()), sa.column("attributes", JSON))
CHANNELS = sa.table("channel_instances", sa.column("id", sa.Integer()), sa.column("kind", sa.String()))


def _rewrite(change: Any) -> None:
    bind = op.get_bind()
    kinds = {row.id: row.kind for row in bind.execute(sa.select(CHANNELS.c.id, CHANNELS.c.kind))}
    rows = bind.execute(sa.select(CONTACTS.c.id, CONTACTS.c.attributes)
                        .where(sa.cast(CONTACTS.c.attributes, sa.Text()).like('%"consent"%'))).all()
    for row in rows:
        attributes = dict(row.attributes or {})
        ledger = attributes.get("consent")
        if not isinstance(ledger, dict):
            continue
        new = {address: change(record, kinds) for address, record in ledger.items()}
        if new != ledger:
            attributes["consent"] = new
            bind.execute(sa.update(CONTACTS).where(CONTACTS.c.id == row.id).values(attributes=attributes))


def _scoped(record: Any, kinds: dict[int, str]) -> Any:
    if not isinstance(record, dict) or "status" not in record:
        return record  # already scoped, or not a consent record
    return {SCOPES.get(kinds.get(record.get("channel_instance_id"), ""), "sms"): record}  # type: ignore[arg-type]


def _unscoped(record: Any, kinds: dict[int, str]) -> Any:
    if not isinstance(record, dict) or "status" in record:
        return record
    entries = [v for v in record.values() if isinstance(v, dict)]
    return record.get("sms") or (entries[0] if entries else record)


def upgrade() -> None:
    _rewrite(_scoped)


def downgrade() -> None:
    _rewrite(_unscoped)
