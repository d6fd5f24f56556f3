"""security fixes of issue 12: provider replay tokens seen (``replay_nonces``), login attempts indexed by
address (throttling per account and address), and stored raw requests scrubbed of the credentials
earlier versions kept in their headers

Revision ID: 0013_security
Revises: 0012_scheduler
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import threadline.db.types

revision = "0013_security"
down_revision = "0012_scheduler"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
WHEN = threadline.db.types.UTCDateTime(timezone=True)
# As channels/base.SECRET_HEADERS and the adapters' secret_headers were when this migration was written
# (a migration never imports code that may change).
SECRET_HEADERS = frozenset({
    "authorization", "proxy-authorization", "cookie", "x-api-key", "api-key", "x-auth-token", "x-access-token",
    "x-csrf-token", "x-amz-security-token", "x-telegram-bot-api-secret-token",
})
REDACTED = "[redacted]"
BATCH = 500


def upgrade() -> None:
    op.create_table(
        "replay_nonces",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel_instance_id", sa.Integer(), nullable=False),
        sa.Column("nonce", sa.String(length=200), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("expires_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(["channel_instance_id"], ["channel_instances.id"],
                                name=op.f("fk_replay_nonces_channel_instance_id_channel_instances"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_replay_nonces")),
        sa.UniqueConstraint("channel_instance_id", "nonce", name=op.f("uq_replay_nonces_channel_instance_id_nonce")),
    )
    op.create_index(op.f("ix_replay_nonces_expires_at"), "replay_nonces", ["expires_at"], unique=False)
    op.create_index("ix_login_attempts_ip", "login_attempts", ["ip", "at"], unique=False)  # throttling per address
    _scrub_inbox_headers()


def _scrub_inbox_headers() -> None:
    """Replace credential header values in every stored request (batches by id, so a big inbox is fine)."""
    conn = op.get_bind()
    items = sa.table("inbox_items", sa.column("id", sa.Integer()), sa.column("headers", JSON))
    last = 0
    while True:
        rows = conn.execute(sa.select(items.c.id, items.c.headers).where(items.c.id > last)
                            .order_by(items.c.id).limit(BATCH)).all()
        if not rows:
            return
        for item_id, headers in rows:
            if isinstance(headers, dict) and any(k.lower() in SECRET_HEADERS and v != REDACTED
                                                 for k, v in headers.items()):
                clean = {k: (REDACTED if k.lower() in SECRET_HEADERS else v) for k, v in headers.items()}
                conn.execute(items.update().where(items.c.id == item_id).values(headers=clean))
        last = rows[-1][0]


def downgrade() -> None:
    op.drop_index("ix_login_attempts_ip", table_name="login_attempts")
    op.drop_index(op.f("ix_replay_nonces_expires_at"), table_name="replay_nonces")
    op.drop_table("replay_nonces")
