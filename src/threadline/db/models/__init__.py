"""ORM tables, one module per aggregate. Import this package to register every table on Base."""

from threadline.db.models.auth import ApiTokenRow, LoginAttemptRow, SessionRow
from threadline.db.models.base import Base
from threadline.db.models.channels import ChannelInstanceRow
from threadline.db.models.contacts import ContactRow, IdentityRow
from threadline.db.models.conversations import ConversationLabelRow, ConversationRow, MessageRow
from threadline.db.models.files import AttachmentRow
from threadline.db.models.plumbing import InboxItemRow, OutboundJobRow, OutboxEventRow
from threadline.db.models.users import (
    PresenceLogRow,
    QueueMemberRow,
    QueueRow,
    TeamMemberRow,
    TeamRow,
    UserRow,
)

__all__ = [
    "ApiTokenRow", "AttachmentRow", "Base", "ChannelInstanceRow", "ContactRow", "ConversationLabelRow", "ConversationRow",
    "IdentityRow", "InboxItemRow", "LoginAttemptRow", "MessageRow", "OutboundJobRow", "OutboxEventRow",
    "PresenceLogRow", "QueueMemberRow", "QueueRow", "SessionRow", "TeamMemberRow", "TeamRow", "UserRow",
]
