"""Find and mask structured personal and payment data in free text, in any language.

What is found: payment card numbers (PCI), IBANs, Spanish DNI/NIE/CIF, Italian codice fiscale and partita
IVA and, when the policy asks, phone numbers and e-mail addresses. Each candidate a regular expression finds
is confirmed by a maintained validator (python-stdnum, phonenumbers) before it is masked, so an order
number, a date, an amount or a card number with one wrong digit stays as it was. Names, postal addresses and
free-form secrets are *not* found: only structured identifiers (docs/enrichment.md).

Pure: no I/O, nothing of Threadline imported. ``redact`` never returns the original secret in any field of
its result: the findings carry a kind and offsets only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum

import phonenumbers
from stdnum import iban as _iban
from stdnum import luhn as _luhn
from stdnum.es import cif as _es_cif
from stdnum.es import dni as _es_dni
from stdnum.es import nie as _es_nie
from stdnum.it import codicefiscale as _it_cf
from stdnum.it import iva as _it_iva


class Category(StrEnum):
    """What a policy can switch on."""

    CARDS = "cards"
    IBANS = "ibans"
    NATIONAL_IDS = "national_ids"
    PHONES = "phones"
    EMAILS = "emails"


class Kind(StrEnum):
    """What one finding is."""

    CARD = "card"
    IBAN = "iban"
    ES_DNI = "es_dni"
    ES_NIE = "es_nie"
    ES_CIF = "es_cif"
    IT_CODICE_FISCALE = "it_codice_fiscale"
    IT_PARTITA_IVA = "it_partita_iva"
    PHONE = "phone"
    EMAIL = "email"


CATEGORY_OF: dict[Kind, Category] = {
    Kind.CARD: Category.CARDS,
    Kind.IBAN: Category.IBANS,
    Kind.ES_DNI: Category.NATIONAL_IDS,
    Kind.ES_NIE: Category.NATIONAL_IDS,
    Kind.ES_CIF: Category.NATIONAL_IDS,
    Kind.IT_CODICE_FISCALE: Category.NATIONAL_IDS,
    Kind.IT_PARTITA_IVA: Category.NATIONAL_IDS,
    Kind.PHONE: Category.PHONES,
    Kind.EMAIL: Category.EMAILS,
}

_LABEL: dict[Kind, str] = {
    Kind.CARD: "[CARD]",
    Kind.IBAN: "[IBAN]",
    Kind.ES_DNI: "[ID]",
    Kind.ES_NIE: "[ID]",
    Kind.ES_CIF: "[ID]",
    Kind.IT_CODICE_FISCALE: "[ID]",
    Kind.IT_PARTITA_IVA: "[ID]",
    Kind.PHONE: "[PHONE]",
    Kind.EMAIL: "[EMAIL]",
}


class MaskStyle(StrEnum):
    """How a finding is masked.

    ``stars``: every letter and digit becomes ``*``, separators stay, so the text keeps its length and the
    findings' offsets hold in the original and the masked text alike. A card keeps its last 4 digits
    (``**** **** **** 1111``, as PCI DSS allows) and an IBAN its country and last 4 (``ES** **** … 1332``).
    ``label``: the finding becomes a label (``[CARD]``, ``[IBAN]``, ``[ID]``, ``[PHONE]``, ``[EMAIL]``)
    with no digit of it left.
    """

    STARS = "stars"
    LABEL = "label"


@dataclass(frozen=True, slots=True)
class RedactionPolicy:
    """Which categories are masked, how, and the region phone numbers are read in (ISO 3166 alpha-2, e.g.
    ``ES``; ``None`` finds only numbers written in international form, ``+34 …``)."""

    categories: frozenset[Category] = frozenset()
    mask: MaskStyle = MaskStyle.STARS
    region: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "categories", frozenset(Category(c) for c in self.categories))
        object.__setattr__(self, "mask", MaskStyle(self.mask))
        if self.region is not None:
            region = self.region.upper()
            if len(region) != 2 or not region.isalpha():
                raise ValueError(f"region must be an ISO 3166 alpha-2 code, not {self.region!r}")
            object.__setattr__(self, "region", region)

    @property
    def enabled(self) -> bool:
        return bool(self.categories)

    @classmethod
    def preset(cls, name: str, *, mask: MaskStyle | str = MaskStyle.STARS,
               region: str | None = None) -> RedactionPolicy:
        """``off``, ``pci`` (cards), ``pci+ids`` (cards, IBANs, national ids) or ``all`` (and phones and
        e-mail addresses)."""
        try:
            categories = PRESETS[name]
        except KeyError:
            raise ValueError(f"unknown redaction preset {name!r}; one of {', '.join(PRESETS)}") from None
        return cls(categories=categories, mask=MaskStyle(mask), region=region)


PRESETS: dict[str, frozenset[Category]] = {
    "off": frozenset(),
    "pci": frozenset({Category.CARDS}),
    "pci+ids": frozenset({Category.CARDS, Category.IBANS, Category.NATIONAL_IDS}),
    "all": frozenset(Category),
}

OFF = RedactionPolicy.preset("off")
PCI = RedactionPolicy.preset("pci")
PCI_IDS = RedactionPolicy.preset("pci+ids")
ALL = RedactionPolicy.preset("all")


@dataclass(frozen=True, slots=True)
class Finding:
    """One masked span, as offsets into the *masked* text (with ``stars`` they hold in the original too)."""

    kind: Kind
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Redacted:
    text: str
    findings: tuple[Finding, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.findings)


# --- candidates ------------------------------------------------------------------------------------------

# One cheap look before anything else, with one compiled regex: every identifier found here has a digit (a
# card, an IBAN, a DNI/NIE/CIF, a codice fiscale, a partita IVA, a phone number) or an "@" (an e-mail
# address). A message with neither returns at once; otherwise the finders run only on "zones": the words
# around each cluster of digits or "@" (regular expressions over a whole 1 KB message cost ~40 µs each in
# Python's engine, over a zone a few µs).
_ANCHOR = re.compile(r"[0-9][0-9 ().\-\u00a0/]*|@")
_ZONE_REACH = 40  # characters looked at on each side of an anchor (an IBAN's letters, a codice fiscale's)

# A run of digit groups, one separator between groups (space, dash, dot, no-break space).
_DIGIT_RUN = re.compile(r"(?<!\w)[0-9]+(?:[ \-.\u00a0][0-9]+)*(?!\w)")
_DIGITS = re.compile(r"[0-9]+")

# IBAN: compact, or printed in groups of 4 after the country and check digits.
_IBAN = re.compile(
    r"(?<!\w)[A-Za-z]{2}[0-9]{2}"
    r"(?:[A-Za-z0-9]{11,30}|(?:[ \u00a0\-][A-Za-z0-9]{4}){2,7}(?:[ \u00a0\-][A-Za-z0-9]{1,3})?)(?!\w)"
)
_IBAN_GROUP = re.compile(r"[A-Za-z0-9]+")

# Spanish DNI: 8 digits and a letter, attached or after a dash (after a space only in capitals, so that
# "pedido 12345678 a las 10" is not read as a DNI).
_ES_DNI = re.compile(r"(?<!\w)[0-9]{8}(?:-?[A-Za-z]| [A-Z])(?!\w)")
_ES_NIE = re.compile(r"(?<!\w)[XYZxyz][ \-]?[0-9]{7}[ \-]?[A-Za-z](?!\w)")
_ES_CIF = re.compile(r"(?<!\w)[ABCDEFGHJNPQRSUVWabcdefghjnpqrsuvw][ \-]?[0-9]{7}[0-9A-Ja-j](?!\w)")
_OMO = "0-9LMNPQRSTUVlmnpqrstuv"  # a codice fiscale's digits, or their omocodia letters
_IT_CF = re.compile(
    rf"(?<!\w)[A-Za-z]{{6}}[{_OMO}]{{2}}[A-Za-z][{_OMO}]{{2}}[A-Za-z][{_OMO}]{{3}}[A-Za-z](?!\w)"
)
_IT_IVA = re.compile(r"(?<!\w)(?:IT ?)?[0-9]{11}(?!\w)")

_EMAIL = re.compile(r"(?<![\w.%+\-])[\w.%+\-]+@[\w\-]+(?:\.[\w\-]+)*\.[^\W\d_]{2,}(?!\w)")

# Where a phone number could be: the matcher of phonenumbers runs on these spans only (it is slow on a long
# text: ~4 ms per KB of digits), with its own rules for what a number is.
_PHONE_SPAN = re.compile(r"(?<!\w)\+?\(?[0-9][0-9 ().\-\u00a0]{4,22}[0-9](?!\w)")

_SEPARATORS = frozenset(" -.\u00a0")


def _card_plausible(digits: str) -> bool:
    """A brand's prefix (IIN range) and a length it issues."""
    n = len(digits)
    if n < 13 or n > 19:
        return False
    first = digits[0]
    p2, p3, p4 = int(digits[:2]), int(digits[:3]), int(digits[:4])
    if first == "4":  # Visa
        return n in (13, 16, 19)
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:  # Mastercard
        return n == 16
    if p2 in (34, 37):  # American Express
        return n == 15
    if 300 <= p3 <= 305 or p2 in (36, 38, 39):  # Diners Club
        return 14 <= n <= 19
    if 3528 <= p4 <= 3589 or 2200 <= p4 <= 2204:  # JCB, Mir
        return n >= 16
    if first == "6" or p2 in (50, 56, 57, 58):  # Discover, UnionPay, Maestro, RuPay
        return True
    return False


def _is_card(digits: str) -> bool:
    return _card_plausible(digits) and _luhn.is_valid(digits)


def _find_cards(text: str, offset: int = 0) -> Iterator[tuple[Kind, int, int]]:
    for run in _DIGIT_RUN.finditer(text):
        start, end = run.span()
        if end - start < 13:
            continue
        groups = [(m.start() + start, m.end() + start) for m in _DIGITS.finditer(run.group())]
        sizes = [e - s for s, e in groups]
        if sum(sizes) < 13:
            continue
        # The whole run, else the longest run of whole groups from the left that is a card: "4111 1111 1111
        # 1111 12 25" (the expiry typed after it) is still a card. A single group is taken whole or not at all.
        # A window holds at most 19 groups (19 digits), so this is linear in the length of the run.
        cum = [0]
        for n in sizes:
            cum.append(cum[-1] + n)
        i = 0
        while i < len(groups):
            for j in range(min(len(groups), i + 19), i, -1):
                total = cum[j] - cum[i]
                if total > 19:
                    continue
                if total < 13:
                    break
                s, e = groups[i][0], groups[j - 1][1]
                if _is_card("".join(text[a:b] for a, b in groups[i:j])):
                    yield Kind.CARD, s, e
                    i = j - 1
                    break
            i += 1


def _find_ibans(text: str, offset: int = 0) -> Iterator[tuple[Kind, int, int]]:
    for m in _IBAN.finditer(text):
        start = m.start()
        parts = [(g.start() + start, g.end() + start) for g in _IBAN_GROUP.finditer(m.group())]
        # A grouped IBAN may have taken a short word after it ("… 1332 for"): drop groups from the right.
        for k in range(len(parts), 0, -1):
            end = parts[k - 1][1]
            candidate = text[start:end]
            if len(candidate) >= 15 and _iban_valid(candidate):
                yield Kind.IBAN, start, end
                break


def _iban_shapes(text: str, offset: int = 0) -> Iterator[tuple[Kind, int, int]]:
    """Every IBAN-shaped span, valid or not: an IBAN with a typo is held so that its digits are not taken for
    a card or an id (never reported)."""
    for m in _IBAN.finditer(text):
        yield Kind.IBAN, m.start(), m.end()


_IBAN_LETTER_VALUE = {c: str(ord(c) - 55) for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"}


def _iban_valid(candidate: str) -> bool:
    compact = re.sub(r"[\s\-]", "", candidate).upper()
    # the ISO 7064 mod 97 check first, in one int operation: most candidates that are not IBANs end here
    rearranged = compact[4:] + compact[:4]
    if not rearranged.isalnum() or not rearranged.isascii():
        return False
    if int("".join(_IBAN_LETTER_VALUE.get(c, c) for c in rearranged)) % 97 != 1:
        return False
    try:
        return _iban.is_valid(candidate.upper().replace("\u00a0", " ").replace("-", ""))
    except Exception:  # a validator never breaks redaction
        return False


def _regex_finder(pattern: re.Pattern[str], kind: Kind,
                  valid: Callable[[str], bool]) -> Callable[[str, int], Iterator[tuple[Kind, int, int]]]:
    def find(text: str, offset: int = 0) -> Iterator[tuple[Kind, int, int]]:
        for m in pattern.finditer(text):
            compact = re.sub(r"[\s\-]", "", m.group()).upper()
            try:
                ok = valid(compact)
            except Exception:
                ok = False
            if ok:
                yield kind, m.start(), m.end()
    return find


def _it_iva_valid(compact: str) -> bool:
    return _it_iva.is_valid(compact.removeprefix("IT"))


_find_es_dni = _regex_finder(_ES_DNI, Kind.ES_DNI, _es_dni.is_valid)
_find_es_nie = _regex_finder(_ES_NIE, Kind.ES_NIE, _es_nie.is_valid)
_find_es_cif = _regex_finder(_ES_CIF, Kind.ES_CIF, _es_cif.is_valid)
_find_it_cf = _regex_finder(_IT_CF, Kind.IT_CODICE_FISCALE, _it_cf.is_valid)
_find_it_iva = _regex_finder(_IT_IVA, Kind.IT_PARTITA_IVA, _it_iva_valid)


def _find_emails(text: str, offset: int = 0) -> Iterator[tuple[Kind, int, int]]:
    for m in _EMAIL.finditer(text):
        yield Kind.EMAIL, m.start(), m.end()


def _phone_finder(region: str | None,
                  held: list[tuple[int, int]]) -> Callable[[str, int], Iterator[tuple[Kind, int, int]]]:
    def find(text: str, offset: int = 0) -> Iterator[tuple[Kind, int, int]]:
        for span in _PHONE_SPAN.finditer(text):
            start, end = span.span()
            if any(s < end + offset and start + offset < e for s, e in held):
                continue  # a card, an IBAN or an id is there already: no phone matcher run for nothing
            if sum(c.isdigit() for c in span.group()) < 7:
                continue
            for match in phonenumbers.PhoneNumberMatcher(span.group(), region):
                yield Kind.PHONE, start + match.start, start + match.end
    return find


# --- masking ---------------------------------------------------------------------------------------------

def _stars(secret: str, keep_head: int = 0, keep_tail: int = 0) -> str:
    """Every letter and digit to ``*`` except the first ``keep_head`` and last ``keep_tail`` of them."""
    alnum = sum(1 for c in secret if c.isalnum())
    out, seen = [], 0
    for c in secret:
        if c.isalnum():
            seen += 1
            out.append(c if seen <= keep_head or seen > alnum - keep_tail else "*")
        else:
            out.append(c)
    return "".join(out)


def _mask(kind: Kind, secret: str, style: MaskStyle) -> str:
    if style is MaskStyle.LABEL:
        return _LABEL[kind]
    if kind is Kind.CARD:
        return _stars(secret, keep_tail=4)
    if kind is Kind.IBAN:
        return _stars(secret, keep_head=2, keep_tail=4)
    return _stars(secret)


# --- the API ---------------------------------------------------------------------------------------------

def _zones(text: str, emails: bool) -> list[tuple[int, int]]:
    """Spans of ``text`` worth looking at, cut at whitespace so that every boundary check in them holds."""
    spans: list[tuple[int, int]] = []
    for m in _ANCHOR.finditer(text):
        if m.group() == "@":
            if not emails:
                continue
            reach = 254  # an address's length at most
        else:
            reach = _ZONE_REACH
        start, end = max(0, m.start() - reach), min(len(text), m.end() + reach)
        if spans and start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], end))
        else:
            spans.append((start, end))
    out: list[tuple[int, int]] = []
    for start, end in spans:
        while start > 0 and not text[start - 1].isspace():
            start -= 1
        while end < len(text) and not text[end].isspace():
            end += 1
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def find(text: str, policy: RedactionPolicy) -> list[tuple[Kind, int, int]]:
    """The spans ``redact`` would mask, as (kind, start, end) into ``text``, in order, without overlaps."""
    if not policy.categories or not text:
        return []
    zones = _zones(text, Category.EMAILS in policy.categories)
    if not zones:
        return []
    cats = policy.categories
    # In order of precedence: a later finding that overlaps an earlier one is dropped (an e-mail address
    # with digits in it is one e-mail address; a card is never also a phone number). IBANs, cards and ids
    # are looked for even when the policy leaves them, so that they hold their place: under "pci" the
    # digits of an IBAN (or of an IBAN with a typo) are not taken for a card, and a card is never a phone.
    finders: list[tuple[Callable[[str, int], Iterator[tuple[Kind, int, int]]], bool]] = []
    if Category.EMAILS in cats:
        finders.append((_find_emails, True))
    finders.append((_find_ibans, Category.IBANS in cats))
    finders.append((_iban_shapes, False))
    finders.append((_find_cards, Category.CARDS in cats))
    ids = Category.NATIONAL_IDS in cats
    finders += [(_find_it_cf, ids), (_find_es_nie, ids), (_find_es_cif, ids), (_find_es_dni, ids),
                (_find_it_iva, ids)]
    held: list[tuple[int, int]] = []
    if Category.PHONES in cats:
        finders.append((_phone_finder(policy.region, held), True))
    taken: list[tuple[Kind, int, int]] = []
    for finder, report in finders:
        for z_start, z_end in zones:
            zone = text[z_start:z_end]
            for kind, start, end in finder(zone, z_start):
                start, end = start + z_start, end + z_start
                if all(end <= s or start >= e for s, e in held):
                    held.append((start, end))
                    if report:
                        taken.append((kind, start, end))
    taken.sort(key=lambda f: f[1])
    return taken


def redact(text: str, policy: RedactionPolicy) -> Redacted:
    """``text`` with every finding of ``policy`` masked, and the findings (kind and offsets, no secret)."""
    spans = find(text, policy)
    if not spans:
        return Redacted(text)
    out: list[str] = []
    findings: list[Finding] = []
    pos = 0
    length = 0
    for kind, start, end in spans:
        out.append(text[pos:start])
        length += start - pos
        masked = _mask(kind, text[start:end], policy.mask)
        out.append(masked)
        findings.append(Finding(kind, length, length + len(masked)))
        length += len(masked)
        pos = end
    out.append(text[pos:])
    return Redacted("".join(out), tuple(findings))
