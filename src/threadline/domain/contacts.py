"""Contacts and their identities: how Threadline recognises one customer on every channel.

An identity is one address of a contact: an email, an E.164 phone number (one number serves SMS,
WhatsApp and voice), a handle on one channel instance (a Telegram chat id, a page-scoped id, the
external id of a generic API channel), a web visitor id, or an external CRM id. Identities are
normalised before they are stored or matched, so ``+1 (415) 555-0100`` and ``+14155550100`` match.
"""

from __future__ import annotations

import datetime as _dt
import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import phonenumbers

from threadline.domain.errors import ValidationFailed
from threadline.domain.text import clean_name

if TYPE_CHECKING:  # domain/messages imports this module
    from threadline.domain.messages import Sender


class IdentityKind(enum.StrEnum):
    EMAIL = "email"
    PHONE = "phone"
    HANDLE = "handle"  # scoped to one channel instance
    WEB_VISITOR = "web_visitor"  # scoped to one channel instance
    EXTERNAL = "external"  # a CRM's id, scoped by the CRM's name in ``scope``

    @property
    def scoped(self) -> bool:
        return self in (IdentityKind.HANDLE, IdentityKind.WEB_VISITOR, IdentityKind.EXTERNAL)


_EMAIL_RE = re.compile(r"^[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+\.[^@\s<>()\[\],;:\"]+$")
MAX_IDENTITY_LEN = 320


@dataclass(frozen=True, slots=True)
class IdentityValue:
    kind: IdentityKind
    value: str
    scope: str = ""  # channel instance id for handles and visitors, CRM name for external ids

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind.value, self.scope, self.value)


def normalise_email(raw: str) -> str:
    value = raw.strip()
    if len(value) > MAX_IDENTITY_LEN or not _EMAIL_RE.match(value):
        raise ValidationFailed(f"{raw!r} is not an email address", field="value")
    return value.casefold()


def _legacy_forms(number: phonenumbers.PhoneNumber) -> list[str]:
    """Today's national number(s) a legacy or provider-specific form stands for, most likely first.

    Messaging providers report some mobiles in forms the numbering plans dropped; the same person then
    writes by SMS or calls from the current form, so both must give one E.164:

    - Mexico: WhatsApp (and old habits) put the retired mobile token ``1`` after +52 (``+52 1 55 1234 5678``,
      13 digits, which libphonenumber rightly calls impossible since 2019): the number is +52 55 1234 5678.
    - Brazil: WhatsApp accounts made before the ninth digit (2012–2016) keep their 8-digit mobile in the
      WhatsApp id (``55 31 8888 7777``); the number is ``55 31 9 8888 7777``. Subscriber numbers starting
      with 6–9 are mobiles; 2–5 are landlines and are never touched.
    - Argentina: a mobile written with both the international mobile ``9`` and the national ``15``
      (``+54 9 11 15 2345 6789``); libphonenumber itself already maps ``+54 11 15 …`` to ``+54 9 11 …``.
    """
    cc, nsn = number.country_code, str(number.national_number)
    if cc == 52 and len(nsn) == 11 and nsn.startswith("1"):
        return [nsn[1:]]
    if cc == 55 and len(nsn) == 10 and nsn[2] in "6789":
        return [nsn[:2] + "9" + nsn[2:]]
    if cc == 54 and nsn.startswith("9") and len(nsn) == 13:
        return [nsn[:1 + n] + nsn[3 + n:] for n in (2, 3, 4) if nsn[1 + n:3 + n] == "15"]
    return []


def normalise_phone(raw: str, default_region: str | None = None) -> str:
    """Return the E.164 form of ``raw``; raise ValidationFailed when it is not a possible number.

    A number that is not valid as written but whose legacy/provider form maps to a valid one (see
    ``_legacy_forms``: Mexico's ``+52 1``, Brazil's missing ninth digit, Argentina's ``9 … 15``) becomes that
    valid number, so SMS, WhatsApp and voice give one identity. A valid number is never rewritten."""
    text = raw.strip()
    if text.lower().startswith("tel:"):
        text = text[4:]
    if text.lower().startswith("whatsapp:"):
        text = text[9:]
    if len(text) > 64:
        raise ValidationFailed("a phone number is at most 64 characters", field="value")
    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as exc:
        raise ValidationFailed(f"{raw!r} is not a phone number ({exc})", field="value") from None
    if not phonenumbers.is_valid_number(number):
        for nsn in _legacy_forms(number):
            candidate = phonenumbers.PhoneNumber(country_code=number.country_code, national_number=int(nsn))
            if phonenumbers.is_valid_number(candidate):
                number = candidate
                break
    if not phonenumbers.is_possible_number(number):
        raise ValidationFailed(f"{raw!r} is not a possible phone number", field="value")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_identity(kind: IdentityKind | str, value: str, scope: str = "") -> IdentityValue:
    """Normalise one identity; the only place where matching keys are made."""
    try:
        kind = IdentityKind(kind)
    except ValueError:
        allowed = ", ".join(k.value for k in IdentityKind)
        raise ValidationFailed(f"unknown identity kind {kind!r}; use one of {allowed}", field="kind") from None
    if not isinstance(value, str) or not value.strip():
        raise ValidationFailed("an identity needs a non-empty value", field="value")
    if kind is IdentityKind.EMAIL:
        return IdentityValue(kind, normalise_email(value))
    if kind is IdentityKind.PHONE:
        return IdentityValue(kind, normalise_phone(value))
    text = value.strip()
    if len(text) > MAX_IDENTITY_LEN:
        raise ValidationFailed(f"an identity is at most {MAX_IDENTITY_LEN} characters", field="value")
    if kind.scoped and not scope:
        raise ValidationFailed(f"a {kind.value} identity needs a scope (channel or CRM)", field="scope")
    return IdentityValue(kind, text, str(scope))


@dataclass(slots=True)
class Contact:
    """A customer: one person (or company contact) however many channels they use."""

    name: str = ""
    identities: list[IdentityValue] = field(default_factory=list)
    attributes: dict[str, object] = field(default_factory=dict)
    id: int | None = None

    def add_identity(self, identity: IdentityValue) -> bool:
        """Add an identity; return False when the contact already has it."""
        if any(i.key == identity.key for i in self.identities):
            return False
        self.identities.append(identity)
        return True

    def display_name(self) -> str:
        if self.name:
            return self.name
        for kind in (IdentityKind.EMAIL, IdentityKind.PHONE):
            for ident in self.identities:
                if ident.kind is kind:
                    return ident.value
        return f"Contact #{self.id}" if self.id else "Unknown contact"


def choose_contact(candidates: Mapping[IdentityValue, ContactRef | None]) -> ContactRef | None | str:
    """Pick the contact that a set of incoming identities points to.

    ``candidates`` maps each normalised identity of an inbound message to the contact that owns it
    (None when unknown). Returns the single contact they agree on, None when none is known, or the
    string ``"conflict"`` when they name two different contacts (the caller keeps the strongest match —
    the channel handle — records a merge suggestion and merges nothing).
    """
    owners = {cid for cid in candidates.values() if cid is not None}
    if not owners:
        return None
    if len(owners) == 1:
        return owners.pop()
    return "conflict"


# --- which contact an inbound sender is: a pure planner, applied by actions/contacts.resolve_senders ---

@dataclass(frozen=True, slots=True)
class KnownIdentity:
    """A stored identity as the planner sees it: who owns it, and whether a channel vouched for it."""

    contact_id: int
    verified: bool


@dataclass(frozen=True, slots=True)
class NewContact:
    """A contact the plan creates; ``index`` is its place in ``IdentityPlan.new_contacts``."""

    index: int


ContactRef = int | NewContact  # a stored contact's id, or a contact the plan creates


class SuggestionReason(enum.Enum):
    CONFLICT = "conflict"  # a message's identities belong to two contacts
    CLAIM_VERIFIED = "claim_verified"  # a channel vouched for an identity another contact only claimed
    CLAIM_TAKEN = "claim_taken"  # a contact claimed an identity that belongs to another


@dataclass(frozen=True, slots=True)
class MergeSuggestion:
    """Two contacts that may be one person; merging is an agent's decision, never the planner's."""

    a: ContactRef
    b: ContactRef
    reason: SuggestionReason
    identity: IdentityValue

    def text(self, a: int, b: int) -> str:
        """Why, once both contacts have ids."""
        what = f"{self.identity.kind.value} {self.identity.value}"
        if self.reason is SuggestionReason.CONFLICT:
            return f"{what} came with a message from contact #{a} but belongs to contact #{b}"
        if self.reason is SuggestionReason.CLAIM_VERIFIED:
            return f"{what} was claimed by contact #{b} and then verified by a channel"
        return f"contact #{a} gave {what}, which belongs to contact #{b}"


@dataclass(frozen=True, slots=True)
class IdentityWrite:
    """Store ``identity`` for ``contact``: a new row, or the stored one moved to it and/or confirmed."""

    identity: IdentityValue
    contact: ContactRef
    verified: bool
    new: bool


@dataclass(frozen=True, slots=True)
class SenderPick:
    """Who one sender is: the contact, whether the plan creates it, and the identity the message came
    through (the sender's first, the channel's own address)."""

    contact: ContactRef
    created: bool
    identity: IdentityValue


@dataclass(slots=True)
class IdentityPlan:
    picks: list[SenderPick]  # one per sender, in order
    new_contacts: list[str] = field(default_factory=list)  # the names of the contacts to create
    names: dict[int, str] = field(default_factory=dict)  # stored contacts without a name that get one
    writes: list[IdentityWrite] = field(default_factory=list)
    suggestions: list[MergeSuggestion] = field(default_factory=list)
    touched: set[ContactRef] = field(default_factory=set)  # contacts whose identities or name changed


def plan_identities(senders: Sequence[Sender], known: Mapping[IdentityValue, KnownIdentity], *,
                    names: Mapping[int, str] | None = None, survivors: Mapping[int, int] | None = None
                    ) -> IdentityPlan:
    """Decide which contact each inbound sender is, from what is stored (``known``: the stored rows of the
    senders' identities and claims; ``names``: their owners' names; ``survivors``: the contact each merged
    contact was merged into).

    The first identity is the channel's own address (the strongest). Other identities the channel
    vouches for are attached when nobody owns them; when they point at a different contact nothing
    is merged (merging is an agent's decision). Senders are planned in order, so two messages from
    the same new customer in one batch land on one new contact. A contact merged meanwhile stands for
    the one it was merged into.

    Claims (what a visitor typed into a form, unverified) never decide who a message is from: an
    unknown claim is kept as an unverified identity of the sender; one that belongs to someone else
    becomes a merge suggestion. When a channel later vouches for an identity somebody only claimed,
    the identity goes to the verified sender and the claimant gets a merge suggestion instead.
    """
    for sender in senders:
        if not sender.identities:
            raise ValidationFailed("an inbound message needs at least one sender identity")
    survivors = survivors or {}
    plan = IdentityPlan(picks=[])
    owner: dict[IdentityValue, ContactRef] = {i: k.contact_id for i, k in known.items() if k.verified}
    chosen: list[tuple[ContactRef, bool]] = []
    for sender in senders:
        candidates = {ident: owner.get(ident) for ident in sender.identities}
        choice = choose_contact(candidates)
        created = False
        if choice == "conflict":
            primary = candidates[sender.identities[0]]
            key = primary if primary is not None else next(v for v in candidates.values() if v is not None)
            plan.suggestions += [MergeSuggestion(key, other, SuggestionReason.CONFLICT, ident)
                                 for ident, other in candidates.items()
                                 if isinstance(other, int) and other != key]
        elif choice is None:
            key, created = NewContact(len(plan.new_contacts)), True
            plan.new_contacts.append(clean_name(sender.name))
            plan.touched.add(key)
        else:
            assert not isinstance(choice, str)
            key = choice
        for ident in sender.identities:
            owner.setdefault(ident, key)
        chosen.append((key, created))

    def final(ref: ContactRef) -> ContactRef:
        return survivors.get(ref, ref) if isinstance(ref, int) else ref

    chosen = [(final(key), created) for key, created in chosen]
    owner = {ident: final(key) for ident, key in owner.items()}
    current = dict(names or {})
    for sender, (key, _) in zip(senders, chosen, strict=True):
        name = clean_name(sender.name)
        if not name:
            continue
        if isinstance(key, NewContact):
            if not plan.new_contacts[key.index]:
                plan.new_contacts[key.index] = name
        elif not current.get(key):
            current[key] = plan.names[key] = name
            plan.touched.add(key)
    rows: dict[IdentityValue, tuple[ContactRef, bool]] = {i: (k.contact_id, k.verified) for i, k in known.items()}
    for ident, key in owner.items():
        row = rows.get(ident)
        if row is not None and not row[1]:  # only claimed so far: the verified sender gets it
            if row[0] != key:
                plan.suggestions.append(MergeSuggestion(key, row[0], SuggestionReason.CLAIM_VERIFIED, ident))
                plan.touched.add(row[0])
            rows[ident] = (key, True)
            plan.writes.append(IdentityWrite(ident, key, verified=True, new=False))
            plan.touched.add(key)
        elif row is None:
            rows[ident] = (key, True)
            plan.writes.append(IdentityWrite(ident, key, verified=True, new=True))
            plan.touched.add(key)
    for sender, (key, _) in zip(senders, chosen, strict=True):
        for claim in sender.claims:
            row = rows.get(claim)
            if row is None:
                rows[claim] = (key, False)
                plan.writes.append(IdentityWrite(claim, key, verified=False, new=True))
                plan.touched.add(key)
            elif row[0] != key:
                plan.suggestions.append(MergeSuggestion(key, row[0], SuggestionReason.CLAIM_TAKEN, claim))
    plan.picks = [SenderPick(key, created, sender.identities[0])
                  for sender, (key, created) in zip(senders, chosen, strict=True)]
    return plan
class SuggestionStatus(enum.StrEnum):
    """A merge suggestion's status (``merge_suggestions.status``): open until merged or dismissed."""

    OPEN = "open"
    MERGED = "merged"
    DISMISSED = "dismissed"


class AttributeType(enum.StrEnum):
    TEXT = "text"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATE = "date"
    SELECT = "select"
    TAGS = "tags"
    URL = "url"


ATTRIBUTE_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


@dataclass(frozen=True)
class AttributeDef:
    """A typed custom attribute of contacts (tier, account value, renewal date, tags…)."""

    key: str
    label: str
    type: AttributeType
    options: tuple[str, ...] = ()  # the choices of a select

    def coerce(self, value: object) -> object:
        """The value as stored, or ValidationFailed saying what is wrong (None clears the attribute)."""
        if value is None:
            return None
        where = f"attributes.{self.key}"
        t = self.type
        if t is AttributeType.NUMBER:
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise ValidationFailed(f"{self.label} must be a number", field=where)
            try:
                number = float(value)
            except ValueError:
                raise ValidationFailed(f"{self.label} must be a number, not {value!r}", field=where) from None
            return int(number) if number.is_integer() else number
        if t is AttributeType.BOOLEAN:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
                return value.lower() in ("true", "yes", "1")
            raise ValidationFailed(f"{self.label} must be true or false", field=where)
        if t is AttributeType.DATE:
            try:
                return _dt.date.fromisoformat(str(value)).isoformat()
            except ValueError:
                raise ValidationFailed(f"{self.label} must be a date like 2026-12-31", field=where) from None
        if t is AttributeType.SELECT:
            if str(value) not in self.options:
                raise ValidationFailed(f"{self.label} must be one of: {', '.join(self.options)}", field=where)
            return str(value)
        if t is AttributeType.TAGS:
            items = value if isinstance(value, list) else str(value).split(",")
            tags = sorted({str(v).strip().lower()[:40] for v in items if str(v).strip()})
            if len(tags) > 50:
                raise ValidationFailed(f"{self.label} holds at most 50 tags", field=where)
            return tags
        if t is AttributeType.URL:
            text = str(value).strip()
            if not re.match(r"^https?://[^\s]+$", text):
                raise ValidationFailed(f"{self.label} must be an http(s) link", field=where)
            return text[:2000]
        if not isinstance(value, str | int | float):
            raise ValidationFailed(f"{self.label} must be text", field=where)
        return str(value)[:2000]
