"""A customer proved an address with a one-time code: the claim joins the customer at once.

A web chat visitor types an e-mail address or phone number (a claim, never trusted by itself: see
docs/continuity.md); when they then enter the code we sent there, they control the address, as surely
as if that channel had vouched for it. So the address is verified and the visitor's contact joins its
owner: the visitor's contact is merged into the contact that already owns the address (recorded like an
agent's merge, so it can be undone), or the address becomes a verified identity of the visitor's contact
(taken from a contact that had only claimed it, which gets a merge suggestion). Without a code, claims
keep the takeover protection they always had.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions import contacts as contact_actions
from threadline.actions.continuity import merge_contacts
from threadline.actions.conversations import add_activity
from threadline.actions.events import emit
from threadline.actions.views import contact_view
from threadline.db.models import ContactRow, IdentityRow
from threadline.db.repos import contacts as contacts_repo
from threadline.db.repos import conversations as conv_repo
from threadline.domain.contacts import IdentityValue
from threadline.domain.events import Audience, ContactCreated, ContactUpdated
from threadline.domain.text import clean_name


async def join_proven_claim(session: AsyncSession, visitor: IdentityValue, proven: IdentityValue, *,
                            name: str = "", how: str = "with a code") -> int:
    """``visitor`` (the channel's own identity of the person) proved ``proven``; returns the contact both
    belong to now."""
    own = await contacts_repo.find_identity(session, visitor)
    owner = await contacts_repo.find_identity(session, proven)
    if owner is not None and owner.verified:  # an existing customer: the visitor is them
        target_id = owner.contact_id
        if own is None:
            session.add(IdentityRow(contact_id=target_id, kind=visitor.kind.value, scope=visitor.scope,
                                    value=visitor.value, verified=True))
        elif own.contact_id != target_id:
            await merge_contacts(session, None, own.contact_id, target_id,
                                 reason=f"the visitor confirmed {proven.value} {how}")
    else:
        if own is None:  # not a customer yet: they are now, with both identities
            contact = ContactRow(name=clean_name(name), attributes={})
            session.add(contact)
            await session.flush()
            session.add(IdentityRow(contact_id=contact.id, kind=visitor.kind.value, scope=visitor.scope,
                                    value=visitor.value, verified=True))
            await session.flush()
            emit(session, ContactCreated(contact=contact_view(contact, [])), Audience())
            target_id = contact.id
        else:
            target_id = own.contact_id
        await contact_actions.add_identity(session, target_id, kind=proven.kind.value, value=proven.value,
                                           scope=proven.scope)  # no actor: verified, taken from a claimant
    await session.flush()
    target = await contacts_repo.get_contact(session, target_id)
    assert target is not None
    conv = await conv_repo.latest_open_for_contact(session, target_id)
    if conv is not None:
        add_activity(session, conv, f"The customer confirmed {proven.value} {how}", None)
    idents = await contacts_repo.identities_of(session, [target_id])
    emit(session, ContactUpdated(contact=contact_view(target, idents[target_id]), changes=["identities"]), Audience())
    return target_id
