"""Create and change contacts and their identities; recognise the sender of an inbound message (the
decision is the pure planner ``domain.contacts.plan_identities``; this module reads its facts and applies it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions.continuity import suggest_merge
from threadline.actions.events import emit
from threadline.actions.guards import check_sensitive
from threadline.actions.permissions import visible_contact
from threadline.actions.views import contact_view
from threadline.db.models import ContactActivityRow, ContactRow, IdentityRow
from threadline.db.repos import contacts as repo
from threadline.db.repos import continuity as continuity_repo
from threadline.db.session import insert_built, reserve_ids
from threadline.db.types import utcnow
from threadline.domain.access import Actor
from threadline.domain.contacts import (
    ContactRef,
    IdentityValue,
    KnownIdentity,
    NewContact,
    normalise_identity,
    plan_identities,
)
from threadline.domain.errors import Conflict, NotFound, ValidationFailed
from threadline.domain.events import Audience, ContactCreated, ContactUpdated, ContactView
from threadline.domain.messages import Sender
from threadline.domain.text import clean_name

CONTACTS, IDENTITIES = ContactRow.__table__, IdentityRow.__table__

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
    contact.search_text = _search_text(contact, idents)
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
        after = _check_attributes({k: v for k, v in merged.items() if v is not None})
        if actor is not None and after != before:  # e.g. voice: not while an unverified caller is on the line
            await check_sensitive(session, [contact.id], "changing the contact's attributes")  # (actions/guards.py)
        contact.attributes = after
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
    if actor is not None:
        await check_sensitive(session, [contact.id], "changing the contact's phone numbers or e-mail addresses")
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

    Reads the facts (the stored identities, their owners, where merged owners went), lets the pure
    planner ``domain.contacts.plan_identities`` decide (its docstring holds the rules), then applies the
    plan: new contacts and identities, names, merge suggestions, search text, ``contact.created`` events.
    """
    known, contacts = await repo.find_identities_and_owners(
        session, [i for s in senders for i in (*s.identities, *s.claims)])
    survivors = await _survivors(session, contacts)
    plan = plan_identities(senders, {i: KnownIdentity(row.contact_id, row.verified) for i, row in known.items()},
                           names={cid: c.name for cid, c in contacts.items()}, survivors=survivors)
    # New rows are built in memory with their ids and inserted with one statement per table (``insert_built``)
    now = utcnow()
    new_contacts = [ContactRow(id=cid, name=name, attributes={}, created_at=now, updated_at=now)
                    for cid, name in zip(await reserve_ids(session, CONTACTS, len(plan.new_contacts)),
                                         plan.new_contacts, strict=True)]
    contacts.update({c.id: c for c in new_contacts})

    def contact_id(ref: ContactRef) -> int:
        return new_contacts[ref.index].id if isinstance(ref, NewContact) else ref

    for cid, name in plan.names.items():
        contacts[cid].name = name
    rows: dict[IdentityValue, IdentityRow] = dict(known)
    new_identities: list[IdentityRow] = []
    new_ids = iter(await reserve_ids(session, IDENTITIES, sum(write.new for write in plan.writes)))
    for write in plan.writes:
        ident, cid = write.identity, contact_id(write.contact)
        if write.new:
            rows[ident] = IdentityRow(id=next(new_ids), contact_id=cid, kind=ident.kind.value, scope=ident.scope,
                                      value=ident.value, verified=write.verified, created_at=now, updated_at=now)
            new_identities.append(rows[ident])
        else:
            rows[ident].contact_id, rows[ident].verified = cid, write.verified
    # a new contact has exactly the identities this plan gave it; the others' are read below
    fresh = {c.id for c in new_contacts}
    idents: dict[int, list[IdentityRow]] = {cid: [] for cid in fresh}
    for row in sorted(rows.values(), key=lambda r: r.id):
        if row.contact_id in fresh:
            idents[row.contact_id].append(row)
    for contact in new_contacts:
        contact.search_text = _search_text(contact, idents[contact.id])
    await insert_built(session, new_contacts)
    await insert_built(session, new_identities)
    for suggestion in plan.suggestions:
        a, b = contact_id(suggestion.a), contact_id(suggestion.b)
        await suggest_merge(session, a, b, suggestion.text(a, b))
    touched = {contact_id(ref) for ref in plan.touched} - fresh
    idents.update(await repo.identities_of(session, sorted(touched)))
    missing = [cid for cid in touched if cid not in contacts]
    contacts.update(await repo.get_contacts(session, missing) if missing else {})
    for cid in touched:
        contacts[cid].search_text = _search_text(contacts[cid], idents[cid])
    for contact in new_contacts:
        emit(session, ContactCreated(contact=contact_view(contact, idents[contact.id])), Audience())
    return [(contacts[contact_id(pick.contact)], rows[pick.identity], pick.created) for pick in plan.picks]


def _search_text(contact: ContactRow, identities: Sequence[IdentityRow]) -> str:
    return " ".join([contact.name.lower(), *(i.value.lower() for i in identities)])[:2000]


async def _survivors(session: AsyncSession, contacts: dict[int, ContactRow], hops: int = 5) -> dict[int, int]:
    """The contact each merged one was merged into (meanwhile, by another transaction), following a chain of
    merges up to ``hops`` long; the survivors are loaded into ``contacts``."""
    for _ in range(hops):
        missing = {c.merged_into_id for c in contacts.values()
                   if c.merged_into_id is not None and c.merged_into_id not in contacts}
        if not missing:
            break
        contacts.update(await repo.get_contacts(session, list(missing)))
    out: dict[int, int] = {}
    for cid in contacts:
        target, steps = cid, 0
        while (nxt := contacts[target].merged_into_id) is not None and nxt in contacts and steps < hops:
            target, steps = nxt, steps + 1
        if target != cid:
            out[cid] = target
    return out
