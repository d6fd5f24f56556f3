"""Who is acting, and what they may see and do."""

from __future__ import annotations

from dataclasses import dataclass, field

from threadline.db.models import ConversationRow
from threadline.domain.errors import NotFound, PermissionDenied
from threadline.domain.users import Role


@dataclass(frozen=True)
class Actor:
    user_id: int
    role: Role
    name: str = ""
    queue_ids: list[int] = field(default_factory=list)
    team_ids: list[int] = field(default_factory=list)
    via_token: bool = False

    @property
    def sees_everything(self) -> bool:
        return self.role.at_least(Role.SUPERVISOR)

    def require(self, role: Role, what: str = "do this") -> None:
        if not self.role.at_least(role):
            raise PermissionDenied(f"only a {role.value} or above may {what}")

    def can_see(self, conv: ConversationRow) -> bool:
        return (
            self.sees_everything
            or conv.assignee_id == self.user_id
            or (conv.queue_id is not None and conv.queue_id in self.queue_ids)
            or (conv.team_id is not None and conv.team_id in self.team_ids)
        )

    def check_can_see(self, conv: ConversationRow | None, conversation_id: int) -> ConversationRow:
        # An agent learns nothing about conversations outside their queues: same answer as a missing one.
        if conv is None or not self.can_see(conv):
            raise NotFound(f"conversation {conversation_id} does not exist")
        return conv
