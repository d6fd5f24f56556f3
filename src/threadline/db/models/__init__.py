"""ORM tables of the core, one module per aggregate. Import this package to register the core's tables on
Base; feature packages (``threadline/features.py``) and integration packages register their own."""

from threadline.db.models.auth import ApiTokenRow, LoginAttemptRow, SessionRow
from threadline.db.models.base import Base
from threadline.db.models.channels import ChannelInstanceRow
from threadline.db.models.contacts import ContactRow, IdentityRow
from threadline.db.models.continuity import (
    ContactActivityRow,
    ContactAttributeDefRow,
    ContactMergeRow,
    MergeSuggestionRow,
)
from threadline.db.models.conversations import ConversationLabelRow, ConversationRow, MessageRow
from threadline.db.models.csat import CsatResponseRow
from threadline.db.models.desk import CannedResponseRow
from threadline.db.models.files import AttachmentRow
from threadline.db.models.messaging import MediaDownloadRow, MessageTemplateRow
from threadline.db.models.plumbing import (
    ChangeCounterRow,
    InboxItemRow,
    OutboundJobRow,
    OutboxCursorRow,
    OutboxEventRow,
    ReplayNonceRow,
    ScheduledJobRow,
)
from threadline.db.models.routing import (
    RoutingAgentRow,
    RoutingOfferRow,
    RoutingOutcomeRow,
    RoutingQueueRow,
    RoutingSettingRow,
    RoutingTaskRow,
)
from threadline.db.models.users import (
    PresenceLogRow,
    QueueMemberRow,
    QueueRow,
    TeamMemberRow,
    TeamRow,
    UserRow,
)

__all__ = [
    "ApiTokenRow", "AttachmentRow", "Base", "ContactActivityRow", "ContactAttributeDefRow", "ContactMergeRow", "MergeSuggestionRow", "CannedResponseRow", "ChannelInstanceRow", "ContactRow", "ConversationLabelRow", "ConversationRow",
    "CsatResponseRow",
    "IdentityRow", "ChangeCounterRow", "InboxItemRow", "LoginAttemptRow", "MediaDownloadRow", "MessageRow", "MessageTemplateRow", "OutboundJobRow", "OutboxCursorRow", "OutboxEventRow", "ReplayNonceRow",
    "PresenceLogRow", "QueueMemberRow", "QueueRow", "RoutingAgentRow", "RoutingOfferRow", "RoutingOutcomeRow", "RoutingQueueRow",
    "RoutingSettingRow", "RoutingTaskRow", "ScheduledJobRow", "SessionRow", "TeamMemberRow", "TeamRow", "UserRow",
]
