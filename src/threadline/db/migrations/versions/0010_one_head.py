"""merge the feature branches into one line: from here on every migration follows the previous one

Until 0009 each feature branched from 0001 (files, routing, web chat, desk, email, messaging, continuity,
webhooks), so the schema had eight heads and ``migrate`` upgraded to all of them. This revision joins
them; the history is linear after it and ``threadline check`` compares one revision.

Revision ID: 0010_one_head
Revises: 0002_files, 0003_webchat, 0004_desk, 0005_email, 0006_messaging, 0007_continuity,
         0008_routing_outcomes, 0009_webhooks
"""

from __future__ import annotations

revision = "0010_one_head"
# on one line, so that tools reading revisions line by line see every parent
down_revision = ("0002_files", "0003_webchat", "0004_desk", "0005_email", "0006_messaging", "0007_continuity", "0008_routing_outcomes", "0009_webhooks")  # noqa: E501
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
