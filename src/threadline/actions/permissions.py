"""What an actor may see beyond one conversation: contacts, by the conversation rule of
``domain/access.py`` (``Actor`` and ``Visibility`` live there; ``Actor`` is re-exported here for callers
that still import it from its old home)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from threadline.db.models import ContactRow
from threadline.db.repos import contacts as contacts_repo
from threadline.domain.access import Actor
from threadline.domain.errors import NotFound, PermissionDenied

__all__ = ["Actor", "visible_contact", "visible_contact_ids"]


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
    vis = actor.visibility
    if vis.everything:
        return contact
    total, seen = (await contacts_repo.conversation_visibility(session, [contact.id], vis))[contact.id]
    if not _sees_contact(contact, total, seen):
        raise NotFound(f"contact {contact_id} does not exist")
    if all_conversations and seen < total:
        raise PermissionDenied(f"contact {contact_id} has conversations you cannot see; ask a supervisor")
    return contact


async def visible_contact_ids(session: AsyncSession, actor: Actor, contact_ids: list[int]) -> set[int]:
    """Which of these contacts ``actor`` may see (the rule of ``visible_contact``), in two queries."""
    contacts = await contacts_repo.get_contacts(session, contact_ids)
    vis = actor.visibility
    if vis.everything:
        return set(contacts)
    counts = await contacts_repo.conversation_visibility(session, list(contacts), vis)
    return {cid for cid, c in contacts.items() if _sees_contact(c, *counts[cid])}
