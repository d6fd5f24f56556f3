"""Create and change contacts and their identities; recognise the sender of an inbound message."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions.continuity import suggest_merge
from threadline.actions.events import emit
from threadline.actions.permissions import visible_contact
from threadline.actions.views import contact_view
from threadline.db.models import ContactActivityRow, ContactRow, IdentityRow
from threadline.db.repos import contacts as repo
from threadline.db.repos import continuity as continuity_repo
from threadline.domain.access import Actor
from threadline.domain.contacts import IdentityValue, choose_contact, normalise_identity
from threadline.domain.errors import Conflict, NotFound, ValidationFailed
from threadline.domain.events import Audience, ContactCreated, ContactUpdated, ContactView
from threadline.domain.messages import Sender
from threadline.domain.text import clean_name

MAX_ATTRIBUTES = 100
# Per-address ledgers Threadline keeps (SMS/WhatsApp consent, undeliverable e-mail addresses): only the
# actions that record them write them (``system=True``), never an API client, a form or the CRM.
RESERVED_ATTRIBUTES = frozenset({"consent", "undeliverable_addresses"})


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


def _verifies(actor: Actor | None) -> bool:
    """Who confirms an identity typed by hand: a supervisor or an admin (or Threadline itself, no actor).
    An agent's addition stays unverified until the customer writes from it or a supervisor confirms it."""
    return actor is None or actor.sees_everything


async def _attach(session: AsyncSession, contact: ContactRow, ident: IdentityValue, verified: bool = True
                  ) -> IdentityRow:
    existing = await repo.find_identity(session, ident)
    if existing is not None:
        if existing.contact_id == contact.id:
            existing.verified = existing.verified or verified  # a supervisor confirms what was only claimed
            return existing
        if existing.verified or not verified:
            owner = f"contact {existing.contact_id}" if verified else "another contact"  # agents learn no ids
            raise Conflict(f"{ident.kind.value} {ident.value} already belongs to {owner}", field="identities")
        # Only claimed by someone else (typed into a form): the confirmed owner gets it, the claimant a suggestion.
        claimant = existing.contact_id
        existing.contact_id, existing.verified = contact.id, True
        await session.flush()
        await suggest_merge(session, contact.id, claimant, f"{ident.kind.value} {ident.value} was claimed by contact "
                            f"#{claimant} and then confirmed for contact #{contact.id}")
        return existing
    row = IdentityRow(contact_id=contact.id, kind=ident.kind.value, scope=ident.scope, value=ident.value,
                      verified=verified)
    session.add(row)
    await session.flush()
    return row


async def create_contact(session: AsyncSession, *, name: str, identities: list[dict[str, str]],
                         attributes: dict[str, Any] | None = None, actor: Actor | None = None) -> ContactView:
    values = [normalise_identity(i.get("kind", ""), i.get("value", ""), i.get("scope", "")) for i in identities]
    contact = ContactRow(name=clean_name(name), attributes=_check_attributes(attributes or {}))
    session.add(contact)
    await session.flush()
    for value in values:
        await _attach(session, contact, value, verified=_verifies(actor))
    view = await _view(session, contact)
    emit(session, ContactCreated(contact=view), Audience())
    return view


async def update_contact(session: AsyncSession, contact_id: int, *, name: str | None = None,
                         attributes: dict[str, Any] | None = None, actor: Actor | None = None,
                         source: str = "", system: bool = False) -> ContactView:
    """Change a contact's name or custom attributes (``None`` removes one). Attributes with a
    definition are checked and converted to their type; every change is recorded in the customer's
    journey with who made it (an agent, or ``source`` such as "crm"). An agent may change only a contact
    they see (``permissions.visible_contact``)."""
    if actor is not None:
        contact = await visible_contact(session, actor, contact_id)
    else:
        contact = await repo.get_contact(session, contact_id)
    if contact is None:
        raise NotFound(f"contact {contact_id} does not exist")
    changes = []
    edits: list[str] = []
    if name is not None and clean_name(name) != contact.name:
        edits.append(f"name: {contact.name or '—'} → {clean_name(name)}")
        contact.name, changes = clean_name(name), [*changes, "name"]
    if attributes is not None:
        if not system:
            for key in RESERVED_ATTRIBUTES & attributes.keys():
                raise ValidationFailed(f"{key} is kept by Threadline itself (opt-outs, bounces) and cannot be set "
                                       "here", field=f"attributes.{key}")
        defs = await continuity_repo.attribute_defs(session, list(attributes))
        typed = {k: (defs[k].coerce(v) if k in defs else v) for k, v in attributes.items()}
        before = dict(contact.attributes or {})
        merged = {**before, **typed}
        contact.attributes = _check_attributes({k: v for k, v in merged.items() if v is not None})
        edits += [f"{k}: {_show(before.get(k))} → {_show(contact.attributes.get(k))}"
                  for k in sorted(typed) if before.get(k) != contact.attributes.get(k)]
        changes.append("attributes")
    view = await _view(session, contact)
    if changes:
        emit(session, ContactUpdated(contact=view, changes=changes), Audience())
    if edits and (actor is not None or source):
        who = actor.name if actor is not None else source
        session.add(ContactActivityRow(contact_id=contact.id, kind="edit", title=f"{who} changed " + "; ".join(edits)[:280],
                                       data={"by": actor.user_id if actor else source}))
    return view


def _show(value: object) -> str:
    if value is None:
        return "—"
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)[:60]


async def add_identity(session: AsyncSession, contact_id: int, *, kind: str, value: str, scope: str = "",
                       actor: Actor | None = None) -> ContactView:
    """Add an identity typed by hand. By an agent (only on a contact they see) it is unverified: it never
    decides who a message is from, never takes an identity from another contact, and the first message
    that really comes from it starts its own contact with a merge suggestion. A supervisor or admin
    confirms it (verified), also one the customer only claimed."""
    if actor is not None:
        contact = await visible_contact(session, actor, contact_id)
    else:
        contact = await repo.get_contact(session, contact_id)
    if contact is None:
        raise NotFound(f"contact {contact_id} does not exist")
    await _attach(session, contact, normalise_identity(kind, value, scope), verified=_verifies(actor))
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

    Claims (what a visitor typed into a form, unverified) never decide who a message is from: an
    unknown claim is kept as an unverified identity of the sender; one that belongs to someone else
    becomes a merge suggestion. When a channel later vouches for an identity somebody only claimed,
    the identity goes to the verified sender and the claimant gets a merge suggestion instead.
    """
    for sender in senders:
        if not sender.identities:
            raise ValidationFailed("an inbound message needs at least one sender identity")
    known, owners = await repo.find_identities_and_owners(
        session, [i for s in senders for i in (*s.identities, *s.claims)])
    # Owners are contact ids; a contact created in this batch is -(its index + 1) until it is flushed.
    owner: dict[IdentityValue, int] = {ident: row.contact_id for ident, row in known.items() if row.verified}
    new_contacts: list[ContactRow] = []
    picks: list[tuple[int, bool]] = []
    conflicts: list[tuple[int, int, str]] = []
    for sender in senders:
        candidates = {ident: owner.get(ident) for ident in sender.identities}
        choice = choose_contact(candidates)
        created = False
        if choice == "conflict":
            primary_owner = candidates[sender.identities[0]]
            key = primary_owner if primary_owner is not None else next(v for v in candidates.values() if v)
            conflicts += [(key, other, f"{ident.kind.value} {ident.value} came with a message from contact #{key} "
                           f"but belongs to contact #{other}")
                          for ident, other in candidates.items() if other is not None and other != key and other > 0]
        elif choice is None:
            new_contacts.append(ContactRow(name=clean_name(sender.name), attributes={}))
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

    contacts = {**owners, **{c.id: c for c in new_contacts}}
    missing = {contact_id(k) for k, _ in picks} - contacts.keys()
    if missing:
        contacts.update(await repo.get_contacts(session, list(missing)))
    # A contact merged meanwhile (another transaction) stands for the one it was merged into.
    for _ in range(5):
        merged = {c.id: c.merged_into_id for c in contacts.values() if c.merged_into_id is not None}
        if not merged:
            break
        survivors = await repo.get_contacts(session, [t for t in merged.values() if t not in contacts])
        contacts.update(survivors)
        for i, (key, created) in enumerate(picks):
            target = merged.get(contact_id(key))
            if target is not None:
                picks[i] = (target, created)
        for ident, key in list(owner.items()):
            target = merged.get(contact_id(key))
            if target is not None:
                owner[ident] = target
        for cid in merged:
            contacts[cid] = contacts[merged[cid]] if merged[cid] in contacts else contacts[cid]
    touched: set[int] = {c.id for c in new_contacts}
    for sender, (key, _) in zip(senders, picks, strict=True):
        contact = contacts[contact_id(key)]
        if clean_name(sender.name) and not contact.name:
            contact.name = clean_name(sender.name)
            touched.add(contact.id)
    rows: dict[IdentityValue, IdentityRow] = dict(known)
    suggestions: list[tuple[int, int, str]] = list(conflicts)
    for ident, key in owner.items():
        row = rows.get(ident)
        if row is not None and not row.verified:  # only claimed so far: the verified sender gets it
            if row.contact_id != contact_id(key):
                suggestions.append((contact_id(key), row.contact_id, f"{ident.kind.value} {ident.value} was claimed "
                                    f"by contact #{row.contact_id} and then verified by a channel"))
                touched.add(row.contact_id)
            row.contact_id, row.verified = contact_id(key), True
            touched.add(contact_id(key))
        elif row is None:
            rows[ident] = IdentityRow(contact_id=contact_id(key), kind=ident.kind.value, scope=ident.scope,
                                      value=ident.value, verified=True)
            session.add(rows[ident])
            touched.add(contact_id(key))
    for sender, (key, _) in zip(senders, picks, strict=True):
        cid = contact_id(key)
        for claim in sender.claims:
            row = rows.get(claim)
            if row is None:
                rows[claim] = IdentityRow(contact_id=cid, kind=claim.kind.value, scope=claim.scope,
                                          value=claim.value, verified=False)
                session.add(rows[claim])
                touched.add(cid)
            elif row.contact_id != cid:
                suggestions.append((cid, row.contact_id, f"contact #{cid} gave {claim.kind.value} {claim.value}, "
                                    f"which belongs to contact #{row.contact_id}"))
    await session.flush()
    for a, b, reason in suggestions:
        await suggest_merge(session, a, b, reason)
    idents = await repo.identities_of(session, sorted(touched))
    missing = [cid for cid in touched if cid not in contacts]
    contacts.update(await repo.get_contacts(session, missing) if missing else {})
    for cid in touched:
        contact = contacts[cid]
        contact.search_text = " ".join([contact.name.lower(), *(i.value.lower() for i in idents[cid])])[:2000]
    if new_contacts:
        await session.flush()
        for contact in new_contacts:
            emit(session, ContactCreated(contact=contact_view(contact, idents[contact.id])), Audience())
    return [(contacts[contact_id(key)], rows[sender.identities[0]], created)
            for sender, (key, created) in zip(senders, picks, strict=True)]
