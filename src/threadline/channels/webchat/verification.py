"""Verification by code: a web chat visitor confirms a typed e-mail address or phone number.

``start`` records the request (refused with a clear 4xx for a bad address, a workspace with no channel
that can send there, or too many requests) and schedules the job ``webchat.verify_send``. The job makes a
random 6-digit code, sends it through the workspace's e-mail channel (a phone: its SMS channel), and keeps
only an HMAC of it (keyed with the instance secret and the request's id) with its expiry (10 minutes):
the code is never stored, so nobody reading the database learns one. A job that cannot send is retried
with backoff by the scheduler (a new code each time; only the last one sent counts).

``check`` compares a code in constant time. A wrong code counts against the request (5 at most, then it
is spent); an expired one says so; a newer request replaces the older one. The right code verifies the
address and joins the visitor to the customer it belongs to at once (``actions/verification.py``); an
address never confirmed stays a claim with the usual takeover protection.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions.scheduler import schedule_job
from threadline.actions.verification import join_proven_claim
from threadline.channels.webchat.models import VerificationRow
from threadline.db.models import ChannelInstanceRow
from threadline.db.repos import channels as channels_repo
from threadline.db.types import utcnow
from threadline.domain.contacts import IdentityKind, IdentityValue, normalise_identity
from threadline.domain.errors import Conflict, DomainError, NotFound, RateLimited, ValidationFailed
from threadline.domain.messages import OutboundMessage

JOB = "webchat.verify_send"
CODE_TTL = timedelta(minutes=10)
MAX_ATTEMPTS = 5  # wrong codes per request
MAX_REQUESTS = 5  # requests per visitor per hour (beside the per-minute limit of the endpoint)
MAX_PER_ADDRESS = 10  # codes sent to one address per hour, whoever asks
KEEP_FOR = timedelta(days=1)  # then a request is deleted (by the next request, whoever makes it)
SENDER_KINDS = {"email": "email", "phone": "twilio"}  # who carries the code: e-mail, SMS
LANGUAGES = ("en", "es", "it")
SUBJECTS = {"en": "Your confirmation code", "es": "Tu código de confirmación", "it": "Il tuo codice di conferma"}
TEXTS = {
    "en": "{code} is your code to confirm this address in the {title} chat. It expires in 10 minutes. "
          "If you did not ask for it, ignore this message.",
    "es": "{code} es tu código para confirmar esta dirección en el chat de {title}. Caduca en 10 minutos. "
          "Si no lo has pedido, ignora este mensaje.",
    "it": "{code} è il tuo codice per confermare questo indirizzo nella chat di {title}. Scade tra 10 minuti. "
          "Se non l'hai richiesto, ignora questo messaggio.",
}


class Expired(DomainError):
    status = 410
    code = "expired"


def code_hash(secret: str, verification_id: int, code: str) -> str:
    return hmac.new(secret.encode(), f"webchat-verify:{verification_id}:{code}".encode(), hashlib.sha256).hexdigest()


def _what(kind: str) -> str:
    return "e-mail address" if kind == "email" else "phone number"


async def sender_channel(session: AsyncSession, kind: str) -> ChannelInstanceRow | None:
    """The enabled channel that carries codes to an address of this kind (the oldest, if several)."""
    wanted = SENDER_KINDS.get(kind)
    rows = [r for r in await channels_repo.list_channels(session) if r.kind == wanted and r.enabled]
    return min(rows, key=lambda r: r.id) if rows else None


async def available_kinds(session: AsyncSession) -> list[str]:
    """What a visitor can confirm with a code here: ``email`` with an e-mail channel, ``phone`` with SMS."""
    kinds = {r.kind for r in await channels_repo.list_channels(session) if r.enabled}
    return [k for k, carrier in SENDER_KINDS.items() if carrier in kinds]


async def start(session: AsyncSession, channel_id: int, visitor_id: str, kind: str, value: str,
                language: str = "en") -> VerificationRow:
    """Record a visitor's request for a code and schedule its sending."""
    if kind not in SENDER_KINDS:
        raise ValidationFailed("kind must be email or phone", field="kind")
    ident = normalise_identity(kind, value)  # ValidationFailed (422) saying what is wrong
    if await sender_channel(session, kind) is None:
        raise Conflict(f"Confirming a {_what(kind)} with a code is not available here.")
    now = utcnow()
    # requests older than a day serve no limit any more: forgotten (they hold addresses people typed)
    await session.execute(delete(VerificationRow).where(VerificationRow.created_at < now - KEEP_FOR))
    recent = (await session.execute(select(func.count()).select_from(VerificationRow).where(
        VerificationRow.channel_instance_id == channel_id, VerificationRow.visitor_id == visitor_id,
        VerificationRow.created_at > now - timedelta(hours=1)))).scalar_one()
    if recent >= MAX_REQUESTS:
        raise RateLimited("You asked for too many codes; please try again later.")
    # per address too, whoever asks: many visitor sessions cannot flood someone's inbox or phone
    to_address = (await session.execute(select(func.count()).select_from(VerificationRow).where(
        VerificationRow.kind == kind, VerificationRow.value == ident.value,
        VerificationRow.created_at > now - timedelta(hours=1)))).scalar_one()
    if to_address >= MAX_PER_ADDRESS:
        raise RateLimited(f"Too many codes were sent to this {_what(kind)}; please try again later.")
    await session.execute(update(VerificationRow).where(
        VerificationRow.channel_instance_id == channel_id, VerificationRow.visitor_id == visitor_id,
        VerificationRow.status.in_(("pending", "sent"))).values(status="replaced"))
    row = VerificationRow(channel_instance_id=channel_id, visitor_id=visitor_id, kind=kind, value=ident.value,
                          language=language if language in LANGUAGES else "en", status="pending", attempts=0,
                          created_at=now)
    session.add(row)
    await session.flush()
    await schedule_job(session, JOB, row.id, now)
    return row


@dataclass(frozen=True, slots=True)
class Checked:
    ok: bool
    tries_left: int
    contact_id: int | None = None
    value: str = ""


async def check(session: AsyncSession, channel_id: int, visitor: IdentityValue, visitor_id: str, code: str,
                secret: str, *, name: str = "") -> Checked:
    """Check a code against the visitor's latest request. A wrong code is counted (and committed: the
    caller answers 422 after the transaction); the right one joins the visitor to the address's owner."""
    row = (await session.execute(select(VerificationRow).where(
        VerificationRow.channel_instance_id == channel_id, VerificationRow.visitor_id == visitor_id,
        VerificationRow.status != "replaced").order_by(VerificationRow.id.desc()).limit(1))).scalar_one_or_none()
    if row is None or row.status == "verified":
        raise NotFound("There is no code to check; ask for a new one.")
    if row.status == "failed" or row.attempts >= MAX_ATTEMPTS:
        raise RateLimited("Too many wrong codes; ask for a new one.")
    if row.code_hash is None:
        raise Conflict("The code is on its way; please try again in a moment.")
    if row.expires_at is None or row.expires_at <= utcnow():
        raise Expired("This code has expired; ask for a new one.")
    if not hmac.compare_digest(code_hash(secret, row.id, code), row.code_hash):
        row.attempts += 1
        if row.attempts >= MAX_ATTEMPTS:
            row.status = "failed"
        return Checked(False, MAX_ATTEMPTS - row.attempts)
    row.status = "verified"
    proven = IdentityValue(IdentityKind(row.kind), row.value, "")
    contact_id = await join_proven_claim(session, visitor, proven, name=name, how="with a code")
    return Checked(True, MAX_ATTEMPTS - row.attempts, contact_id, row.value)


def send_handler(host: Any) -> Any:
    """The job that makes and sends a request's code (``Host.on_job(JOB, …)``)."""

    async def send(session: AsyncSession, job: Any, now: datetime) -> None:
        row = await session.get(VerificationRow, int(job.key))
        if row is None or row.status != "pending":
            return  # replaced or spent meanwhile: nothing to send
        carrier = await sender_channel(session, row.kind)
        if carrier is None:
            row.status, row.error = "failed", "no channel can send the code any more"
            return
        chat = await channels_repo.get_channel(session, row.channel_instance_id)
        title = getattr(getattr(host.adapter(chat), "config", None), "title", "") if chat is not None else ""
        code = f"{secrets.randbelow(1_000_000):06d}"
        text = TEXTS[row.language if row.language in TEXTS else "en"].format(code=code, title=title or "our")
        await host.adapter(carrier).send(OutboundMessage(
            message_id=row.id, conversation_id=0, to=IdentityValue(IdentityKind(row.kind), row.value, ""), text=text,
            subject=SUBJECTS.get(row.language, SUBJECTS["en"])))
        row.code_hash = code_hash(host.settings.resolved_secret_key, row.id, code)
        row.status, row.expires_at, row.error = "sent", now + CODE_TTL, None

    return send
