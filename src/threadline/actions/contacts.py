"""Create and change contacts and their identities; recognise the sender of an inbound message."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions.events import emit
from threadline.actions.views import contact_view
from threadline.db.models import ContactRow, IdentityRow
from threadline.db.repos import contacts as repo
from threadline.domain.contacts import IdentityValue, choose_contact, normalise_identity
from threadline.domain.errors import Conflict, NotFound, ValidationFailed
from threadline.domain.events import Audience, ContactCreated, ContactUpdated, ContactView
from threadline.domain.messages import Sender

MAX_ATTRIBUTES = 100


def _check_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    if len(attributes) > MAX_ATTRIBUTES:
        raise ValidationFailed(f"at most {MAX_ATTRIBUTES} custom attributes", field="attributes")
    for key in attributes:
        if not key or len(key) > 64:
            raise ValidationFailed("attribute names are 1-64 characters", field="attributes")
    return attributes


async def _refresh_search(session: AsyncSession, contact: ContactRow) -> list[IdentityRow]:
    idents = (await repo.identities_of(session, [contact.id]))[contact.id]
    contact.search_text = " ".join([contact.name.lower(), *(i.value.lower() for i in idents)])[:2000]
    return idents


async def _view(session: AsyncSession, contact: ContactRow) -> ContactView:
    await session.flush()
    idents = await _refresh_search(session, contact)
    await session.flush()
    return contact_view(contact, idents)


async def _attach(session: AsyncSession, contact: ContactRow, ident: IdentityValue, verified: bool = True
                  ) -> IdentityRow:
    existing = await repo.find_identity(session, ident)
    if existing is not None:
        if existing.contact_id != contact.id:
            raise Conflict(f"{ident.kind.value} {ident.value} already belongs to contact {existing.contact_id}",
                           field="identities")
        return existing
    row = IdentityRow(contact_id=contact.id, kind=ident.kind.value, scope=ident.scope, value=ident.value,
                      verified=verified)
    session.add(row)
    await session.flush()
    return row


async def create_contact(session: AsyncSession, *, name: str, identities: list[dict[str, str]],
                         attributes: dict[str, Any] | None = None) -> ContactView:
    values = [normalise_identity(i.get("kind", ""), i.get("value", ""), i.get("scope", "")) for i in identities]
    contact = ContactRow(name=name.strip()[:200], attributes=_check_attributes(attributes or {}))
    session.add(contact)
    await session.flush()
    for value in values:
        await _attach(session, contact, value)
    view = await _view(session, contact)
    emit(session, ContactCreated(contact=view), Audience())
    return view


async def update_contact(session: AsyncSession, contact_id: int, *, name: str | None = None,
                         attributes: dict[str, Any] | None = None) -> ContactView:
    contact = await repo.get_contact(session, contact_id)
    if contact is None:
        raise NotFound(f"contact {contact_id} does not exist")
    changes = []
    if name is not None and name.strip() != contact.name:
        contact.name, changes = name.strip()[:200], [*changes, "name"]
    if attributes is not None:
        merged = {**(contact.attributes or {}), **attributes}
        contact.attributes = _check_attributes({k: v for k, v in merged.items() if v is not None})
        changes.append("attributes")
    view = await _view(session, contact)
    if changes:
        emit(session, ContactUpdated(contact=view, changes=changes), Audience())
    return view


async def add_identity(session: AsyncSession, contact_id: int, *, kind: str, value: str, scope: str = ""
                       ) -> ContactView:
    contact = await repo.get_contact(session, contact_id)
    if contact is None:
        raise NotFound(f"contact {contact_id} does not exist")
    await _attach(session, contact, normalise_identity(kind, value, scope))
    view = await _view(session, contact)
    emit(session, ContactUpdated(contact=view, changes=["identities"]), Audience())
    return view


async def resolve_sender(session: AsyncSession, sender: Sender) -> tuple[ContactRow, IdentityRow, bool]:
    """Find (or create) the contact an inbound message is from, and the identity it came through."""
    return (await resolve_senders(session, [sender]))[0]


async def resolve_senders(session: AsyncSession, senders: Sequence[Sender]
                          ) -> list[tuple[ContactRow, IdentityRow, bool]]:
    """Find (or create) the contact each inbound message is from and the identity it came through:
    (contact, identity, created) per sender, in order, with a fixed number of queries for the batch.

    The first identity is the channel's own address (the strongest). Other identities the channel
    vouches for are attached when nobody owns them; when they point at a different contact nothing
    is merged (merging is an agent's decision). Senders are resolved in order, so two messages from
    the same new customer in one batch land on one new contact.
    """
    for sender in senders:
        if not sender.identities:
            raise ValidationFailed("an inbound message needs at least one sender identity")
    known = await repo.find_identities(session, [i for s in senders for i in s.identities])
    # Owners are contact ids; a contact created in this batch is -(its index + 1) until it is flushed.
    owner: dict[IdentityValue, int] = {ident: row.contact_id for ident, row in known.items()}
    new_contacts: list[ContactRow] = []
    picks: list[tuple[int, bool]] = []
    for sender in senders:
        candidates = {ident: owner.get(ident) for ident in sender.identities}
        choice = choose_contact(candidates)
        created = False
        if choice == "conflict":
            primary_owner = candidates[sender.identities[0]]
            key = primary_owner if primary_owner is not None else next(v for v in candidates.values() if v)
        elif choice is None:
            new_contacts.append(ContactRow(name=sender.name.strip()[:200], attributes={}))
            key, created = -len(new_contacts), True
        else:
            key = int(choice)
        for ident in sender.identities:
            owner.setdefault(ident, key)
        picks.append((key, created))
    if new_contacts:
        session.add_all(new_contacts)
        await session.flush()

    def contact_id(key: int) -> int:
        return new_contacts[-key - 1].id if key < 0 else key

    contacts = await repo.get_contacts(session, [contact_id(k) for k, _ in picks])
    touched: set[int] = {c.id for c in new_contacts}
    for sender, (key, _) in zip(senders, picks, strict=True):
        contact = contacts[contact_id(key)]
        if sender.name and not contact.name:
            contact.name = sender.name.strip()[:200]
            touched.add(contact.id)
    rows: dict[IdentityValue, IdentityRow] = dict(known)
    for ident, key in owner.items():
        if ident not in rows:
            rows[ident] = IdentityRow(contact_id=contact_id(key), kind=ident.kind.value, scope=ident.scope,
                                      value=ident.value, verified=True)
            session.add(rows[ident])
            touched.add(contact_id(key))
    await session.flush()
    idents = await repo.identities_of(session, sorted(touched))
    for cid in touched:
        contact = contacts[cid]
        contact.search_text = " ".join([contact.name.lower(), *(i.value.lower() for i in idents[cid])])[:2000]
    if new_contacts:
        await session.flush()
        for contact in new_contacts:
            emit(session, ContactCreated(contact=contact_view(contact, idents[contact.id])), Audience())
    return [(contacts[contact_id(key)], rows[sender.identities[0]], created)
            for sender, (key, created) in zip(senders, picks, strict=True)]
