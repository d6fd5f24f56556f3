"""The consent ledger, read by both directions: an inbound STOP/START keyword writes it
(actions/inbound/consent.py), the outbound checks and the composer read it (actions/outbound/rules.py).

Consent lives on the contact, per address and per consent scope, the way providers apply opt-outs
(a channel's ``Capabilities.consent_scope``): ``attributes["consent"]["+14155551234"]["sms"] = {"status":
"opted_out", "keyword": "STOP", "channel_instance_id": 3, "at": "…"}``. A STOP on SMS stops SMS to that
number from every SMS channel; a STOP on WhatsApp stops WhatsApp (Cloud API or through Twilio) and leaves
SMS alone. An entry of the older, unscoped shape (``consent[address] = {"status": …}``, migrated by
``0011_consent_scope``) is read as an SMS opt-out, the only one that was ever enforced.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from threadline.db.repos import contacts as contacts_repo

CONSENT = "consent"
OPTED_OUT, OPTED_IN = "opted_out", "opted_in"

SMS, WHATSAPP = "sms", "whatsapp"
SCOPE_TITLES = {SMS: "SMS", WHATSAPP: "WhatsApp"}


def scope_title(scope: str) -> str:
    return SCOPE_TITLES.get(scope, scope)


def consent_entries(attributes: dict[str, Any] | None, address: str) -> dict[str, dict[str, Any]]:
    """The consent records of one address, by scope (an unscoped legacy record counts as SMS)."""
    record = ((attributes or {}).get(CONSENT) or {}).get(address)
    if not isinstance(record, dict):
        return {}
    if "status" in record:  # the shape before consent had scopes
        return {SMS: record}
    return {scope: entry for scope, entry in record.items() if isinstance(entry, dict)}


def consent_view(attributes: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Every recorded consent of a contact, for the desk: address, scope, its title, status, keyword, at."""
    out = []
    for address in sorted((attributes or {}).get(CONSENT) or {}):
        for scope, entry in sorted(consent_entries(attributes, address).items()):
            out.append({"address": address, "scope": scope, "title": scope_title(scope),
                        "status": entry.get("status"), "keyword": entry.get("keyword"), "at": entry.get("at")})
    return out


async def opted_out(session: AsyncSession, identity_id: int, scope: str = SMS) -> dict[str, Any] | None:
    """The opt-out record of this address in ``scope`` (a channel's ``consent_scope``; SMS by default, what
    the sender re-checks for channels with carrier keywords), or None when it may receive messages there."""
    ident = await contacts_repo.get_identity(session, identity_id)
    contact = await contacts_repo.get_contact(session, ident.contact_id) if ident else None
    if ident is None or contact is None:
        return None
    record = consent_entries(contact.attributes, ident.value).get(scope)
    return record if isinstance(record, dict) and record.get("status") == OPTED_OUT else None
