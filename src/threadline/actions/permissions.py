"""Who is acting, and what they may see and do."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from threadline.db.models import ContactRow, ConversationRow
from threadline.db.repos import contacts as contacts_repo
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

    @property
    def viewer(self) -> contacts_repo.Viewer | None:
        """What limits an agent's view (None: a supervisor or admin sees everything)."""
        return None if self.sees_everything else (self.user_id, self.queue_ids, self.team_ids)


def _sees_contact(contact: ContactRow, total: int, seen: int) -> bool:
    """The rule for an agent: they see one of its conversations, or it has none yet and is not merged."""
    return seen > 0 or (total == 0 and contact.merged_into_id is None)


async def visible_contact(session: AsyncSession, actor: Actor, contact_id: int, *, all_conversations: bool = False
                          ) -> ContactRow:
    """The contact, if ``actor`` may see and act on it; otherwise NotFound, the answer for a missing one.

    The one rule for contacts (API and desk): supervisors and admins see every contact; an agent sees a
    contact when they see at least one of its conversations, or when it has none yet and is not merged
    into another (a contact just created by hand). ``all_conversations`` (merging, undoing a merge) asks
    more: the agent must see every conversation of the contact, or PermissionDenied says to ask a
    supervisor, because the change would move conversations they cannot see.
    """
    contact = await contacts_repo.get_contact(session, contact_id)
    if contact is None:
        raise NotFound(f"contact {contact_id} does not exist")
    viewer = actor.viewer
    if viewer is None:
        return contact
    total, seen = (await contacts_repo.conversation_visibility(session, [contact.id], viewer))[contact.id]
    if not _sees_contact(contact, total, seen):
        raise NotFound(f"contact {contact_id} does not exist")
    if all_conversations and seen < total:
        raise PermissionDenied(f"contact {contact_id} has conversations you cannot see; ask a supervisor")
    return contact


async def visible_contact_ids(session: AsyncSession, actor: Actor, contact_ids: list[int]) -> set[int]:
    """Which of these contacts ``actor`` may see (the rule of ``visible_contact``), in two queries."""
    contacts = await contacts_repo.get_contacts(session, contact_ids)
    viewer = actor.viewer
    if viewer is None:
        return set(contacts)
    counts = await contacts_repo.conversation_visibility(session, list(contacts), viewer)
    return {cid for cid, c in contacts.items() if _sees_contact(c, *counts[cid])}
