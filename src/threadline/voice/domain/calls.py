"""The call model, pure: states and their transitions, provider events applied once and in provider
order, the timeline line a call leaves in its conversation, queue announcements, and the generic CTI
payload any PBX can post. No I/O: the actions (``voice/actions.py``) read and write rows around it.

A call belongs to a conversation (its timeline entry is a message of that conversation) and to the
contact identity of the caller's number (E.164). Its customer leg goes::

    ringing → in_flow → queued → offered → connected ⇄ on_hold → wrap_up → ended
                    ↘ voicemail ↗              ↘ ended (abandoned: hung up while queued or offered)

``ended`` carries a cause (``EndCause``). A provider's events are applied in its order (Twilio's
``SequenceNumber`` per call, a PBX's timestamp) and each only once: an event at or below the last one
applied is a repeat or arrived late and changes nothing.
"""

from __future__ import annotations

import hmac
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class CallState(StrEnum):
    RINGING = "ringing"
    IN_FLOW = "in_flow"  # the IVR (a flow) talks with the caller
    QUEUED = "queued"  # waiting for an agent, hearing music and announcements
    OFFERED = "offered"  # an agent is being offered it
    CONNECTED = "connected"
    ON_HOLD = "on_hold"
    VOICEMAIL = "voicemail"  # the caller is leaving a message
    WRAP_UP = "wrap_up"  # the caller is gone, the agent is writing up
    ENDED = "ended"


class EndCause(StrEnum):
    COMPLETED = "completed"  # answered and hung up normally
    ABANDONED = "abandoned"  # hung up while queued or offered
    CALLBACK = "callback"  # left the queue asking to be called back (the task keeps its place)
    SELF_SERVED = "self_served"  # the flow ended it (it answered the caller) before any queue
    VOICEMAIL = "voicemail"
    NO_ANSWER = "no_answer"  # an outbound call or callback nobody answered
    BUSY = "busy"
    FAILED = "failed"
    REJECTED = "rejected"


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


LIVE = frozenset({CallState.RINGING, CallState.IN_FLOW, CallState.QUEUED, CallState.OFFERED,
                  CallState.CONNECTED, CallState.ON_HOLD, CallState.VOICEMAIL})
WAITING = frozenset({CallState.QUEUED, CallState.OFFERED})
# Which state may follow which (a provider event asking for anything else is ignored, e.g. a late
# "ringing" after the call connected).
NEXT: dict[CallState, frozenset[CallState]] = {
    CallState.RINGING: frozenset({CallState.IN_FLOW, CallState.QUEUED, CallState.OFFERED, CallState.CONNECTED,
                                  CallState.VOICEMAIL, CallState.ENDED}),  # offered: rung on a known agent's desk
    CallState.IN_FLOW: frozenset({CallState.QUEUED, CallState.VOICEMAIL, CallState.CONNECTED, CallState.ENDED}),
    CallState.QUEUED: frozenset({CallState.OFFERED, CallState.CONNECTED, CallState.VOICEMAIL, CallState.ENDED}),
    CallState.OFFERED: frozenset({CallState.QUEUED, CallState.CONNECTED, CallState.ENDED}),
    CallState.CONNECTED: frozenset({CallState.ON_HOLD, CallState.QUEUED, CallState.WRAP_UP, CallState.ENDED}),
    CallState.ON_HOLD: frozenset({CallState.CONNECTED, CallState.QUEUED, CallState.WRAP_UP, CallState.ENDED}),
    CallState.VOICEMAIL: frozenset({CallState.ENDED}),
    CallState.WRAP_UP: frozenset({CallState.ENDED}),
    CallState.ENDED: frozenset(),
}


@dataclass(frozen=True, slots=True)
class CallFacts:
    """What the rules need of a call (the row has more)."""

    state: CallState
    direction: Direction = Direction.INBOUND
    started_at: datetime | None = None
    enqueued_at: datetime | None = None
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    end_cause: EndCause | None = None
    last_seq: int = -1  # the provider order of the last event applied
    agent_name: str | None = None
    voicemail_seconds: int | None = None
    callback: bool = False  # the caller left the queue asking to be called back (keeping their place)

    def can_become(self, state: CallState) -> bool:
        return state == self.state or state in NEXT[self.state]

    def fresh(self, seq: int | None) -> bool:
        """Whether an event at provider position ``seq`` is new (None: the provider gives no order)."""
        return seq is None or seq > self.last_seq

    def move(self, state: CallState, at: datetime, seq: int | None = None) -> CallFacts:
        """The call after moving to ``state`` at ``at`` (unchanged when the move is not allowed)."""
        if not self.can_become(state) or state == self.state:
            return self if seq is None else replace(self, last_seq=max(self.last_seq, seq))
        out = replace(self, state=state, last_seq=self.last_seq if seq is None else max(self.last_seq, seq))
        if state is CallState.QUEUED and self.enqueued_at is None:
            out = replace(out, enqueued_at=at)
        if state is CallState.CONNECTED and self.answered_at is None:
            out = replace(out, answered_at=at)
        return out

    def hang_up(self, at: datetime, seq: int | None = None, cause: EndCause | None = None) -> CallFacts:
        """The customer's leg ended: the cause follows from where the call was, unless given."""
        if self.state is CallState.ENDED:
            return self
        if cause is None:
            if self.state in WAITING and self.callback:
                cause = EndCause.CALLBACK
            elif self.state in WAITING:
                cause = EndCause.ABANDONED
            elif self.state is CallState.VOICEMAIL:
                cause = EndCause.VOICEMAIL
            elif self.answered_at is not None:
                cause = EndCause.COMPLETED
            elif self.state in (CallState.IN_FLOW, CallState.RINGING) and self.direction is Direction.INBOUND:
                cause = EndCause.SELF_SERVED if self.state is CallState.IN_FLOW else EndCause.ABANDONED
            else:
                cause = EndCause.NO_ANSWER
        return replace(self, state=CallState.ENDED, ended_at=at, end_cause=cause,
                       last_seq=self.last_seq if seq is None else max(self.last_seq, seq))

    @property
    def abandoned(self) -> bool:
        return self.end_cause is EndCause.ABANDONED

    @property
    def wait_seconds(self) -> float | None:
        if self.enqueued_at is None:
            return None
        end = self.answered_at or self.ended_at
        return (end - self.enqueued_at).total_seconds() if end is not None else None

    @property
    def talk_seconds(self) -> int | None:
        if self.answered_at is None or self.ended_at is None:
            return None
        return max(0, round((self.ended_at - self.answered_at).total_seconds()))


# --------------------------------------------------------------------------- what the timeline says

Locale = Literal["en", "es", "it"]
LOCALES: tuple[str, ...] = ("en", "es", "it")

_TEXT: dict[str, dict[str, str]] = {
    "en": {
        "callback": "Callback requested after waiting {wait}",
        "incoming": "Incoming call from {number}",
        "outgoing": "Outgoing call to {number}",
        "answered": "Call, {duration}, answered by {agent}",
        "answered_anon": "Call, {duration}",
        "missed": "Missed call (hung up after waiting {wait})",
        "missed_short": "Missed call",
        "voicemail": "Voicemail {length}",
        "self_served": "Call answered by the IVR, {duration}",
        "no_answer": "Call not answered",
        "busy": "Call not answered (busy)",
        "failed": "Call failed",
        "position": "You are number {position} in the queue.",
        "wait_less": "Your wait is less than a minute.",
        "wait_minutes": "Your estimated wait is about {minutes} minutes.",
        "wait_one": "Your estimated wait is about one minute.",
        "callback_offer": "To be called back instead of waiting, press {key}.",
        "callback_taken": "Thank you. We will call you back at this number when it is your turn. Goodbye.",
        "connecting": "Connecting you to an agent.",
        "closed": "Sorry, nobody can take your call right now. Please leave a message after the tone.",
        "voicemail_prompt": "Please leave a message after the tone, then hang up.",
        "welcome": "Thank you for calling. Please hold for the next available agent.",
    },
    "es": {
        "callback": "Pidió que le llamen tras esperar {wait}",
        "incoming": "Llamada entrante de {number}",
        "outgoing": "Llamada saliente a {number}",
        "answered": "Llamada, {duration}, atendida por {agent}",
        "answered_anon": "Llamada, {duration}",
        "missed": "Llamada perdida (colgó tras esperar {wait})",
        "missed_short": "Llamada perdida",
        "voicemail": "Mensaje de voz {length}",
        "self_served": "Llamada resuelta por el IVR, {duration}",
        "no_answer": "Llamada no contestada",
        "busy": "Llamada no contestada (ocupado)",
        "failed": "La llamada falló",
        "position": "Usted es el número {position} en la cola.",
        "wait_less": "Su espera es de menos de un minuto.",
        "wait_minutes": "Su espera estimada es de unos {minutes} minutos.",
        "wait_one": "Su espera estimada es de un minuto.",
        "callback_offer": "Para que le llamemos en lugar de esperar, pulse {key}.",
        "callback_taken": "Gracias. Le llamaremos a este número cuando sea su turno. Adiós.",
        "connecting": "Le pasamos con un agente.",
        "closed": "Lo sentimos, ahora nadie puede atender su llamada. Deje un mensaje después de la señal.",
        "voicemail_prompt": "Deje su mensaje después de la señal y luego cuelgue.",
        "welcome": "Gracias por llamar. Espere, por favor, al próximo agente disponible.",
    },
    "it": {
        "callback": "Richiamata richiesta dopo {wait} di attesa",
        "incoming": "Chiamata in arrivo da {number}",
        "outgoing": "Chiamata in uscita verso {number}",
        "answered": "Chiamata, {duration}, risposta da {agent}",
        "answered_anon": "Chiamata, {duration}",
        "missed": "Chiamata persa (ha riagganciato dopo {wait} di attesa)",
        "missed_short": "Chiamata persa",
        "voicemail": "Messaggio vocale {length}",
        "self_served": "Chiamata gestita dall'IVR, {duration}",
        "no_answer": "Chiamata senza risposta",
        "busy": "Chiamata senza risposta (occupato)",
        "failed": "Chiamata non riuscita",
        "position": "Lei è il numero {position} in coda.",
        "wait_less": "L'attesa è inferiore a un minuto.",
        "wait_minutes": "L'attesa stimata è di circa {minutes} minuti.",
        "wait_one": "L'attesa stimata è di circa un minuto.",
        "callback_offer": "Per essere richiamato invece di attendere, prema {key}.",
        "callback_taken": "Grazie. La richiameremo a questo numero quando sarà il suo turno. Arrivederci.",
        "connecting": "La mettiamo in contatto con un operatore.",
        "closed": "Siamo spiacenti, al momento nessuno può rispondere. Lasci un messaggio dopo il segnale.",
        "voicemail_prompt": "Lasci un messaggio dopo il segnale, poi riagganci.",
        "welcome": "Grazie per aver chiamato. Attenda il primo operatore disponibile.",
    },
}


def locale_of(tag: str | None) -> str:
    """``es-ES`` → ``es``; anything we do not speak → ``en``."""
    base = (tag or "en").split("-")[0].split("_")[0].lower()
    return base if base in LOCALES else "en"


def text(name: str, locale: str = "en", **values: object) -> str:
    return _TEXT[locale_of(locale)][name].format(**values)


def duration(seconds: float | int | None) -> str:
    """4 min 12 s, 42 s, 1 h 3 min."""
    s = max(0, round(seconds or 0))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s" if s % 60 else f"{s // 60} min"
    return f"{s // 3600} h {(s % 3600) // 60} min"


def clock(seconds: float | int | None) -> str:
    """0:42, 12:05."""
    s = max(0, round(seconds or 0))
    return f"{s // 60}:{s % 60:02d}"


def timeline_text(call: CallFacts, number: str, locale: str = "en") -> str:
    """The line the call leaves in its conversation, as it stands."""
    if call.state is not CallState.ENDED:
        key = "incoming" if call.direction is Direction.INBOUND else "outgoing"
        return text(key, locale, number=number)
    cause = call.end_cause
    if call.answered_at is not None and cause in (EndCause.COMPLETED, None):
        if call.agent_name:
            return text("answered", locale, duration=duration(call.talk_seconds), agent=call.agent_name)
        return text("answered_anon", locale, duration=duration(call.talk_seconds))
    if cause is EndCause.VOICEMAIL:
        return text("voicemail", locale, length=clock(call.voicemail_seconds))
    if cause is EndCause.SELF_SERVED and call.started_at and call.ended_at:
        return text("self_served", locale, duration=duration((call.ended_at - call.started_at).total_seconds()))
    if cause is EndCause.CALLBACK:
        return text("callback", locale, wait=duration(call.wait_seconds))
    if cause is EndCause.ABANDONED:
        wait = call.wait_seconds
        return text("missed", locale, wait=duration(wait)) if wait is not None else text("missed_short", locale)
    return text({EndCause.BUSY: "busy", EndCause.FAILED: "failed"}.get(cause, "no_answer"), locale)  # type: ignore[arg-type]


def announcement(position: int | None, ewt_seconds: float | None, locale: str = "en") -> list[str]:
    """What a queued caller hears at each interval: their place and the estimated wait (rounded up to
    whole minutes; under a minute says so; nothing about the wait when nobody who could answer is
    logged in)."""
    out: list[str] = []
    if position is not None and position >= 1:
        out.append(text("position", locale, position=position))
    if ewt_seconds is not None:
        if ewt_seconds < 60:
            out.append(text("wait_less", locale))
        else:
            minutes = math.ceil(ewt_seconds / 60)
            out.append(text("wait_one", locale) if minutes == 1 else text("wait_minutes", locale, minutes=minutes))
    return out


def conference_name(conversation_id: int, call_id: int) -> str:
    """The named conference a call's parties meet in (hold, transfer and monitoring act on it)."""
    return f"tl-conv-{conversation_id}-call-{call_id}"


def same_secret(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


# --------------------------------------------------------------------------- the queue's call settings

RECORD_POLICIES = ("never", "always", "on_demand")


def record_policy(queue_record: str | None, channel_record: str | None) -> str:
    """Whether a call is recorded: ``always``, ``on_demand`` (the agent starts it) or ``never``. The
    call's queue decides (``QueueSettings.voice.record``) unless it says ``channel`` (or there is no
    queue): then the phone line's setting does, and a line without one records nothing."""
    if queue_record in RECORD_POLICIES:
        return queue_record  # type: ignore[return-value]
    return channel_record if channel_record in RECORD_POLICIES else "never"  # type: ignore[return-value]


def disposition_problem(code: str, allowed: Sequence[str]) -> str | None:
    """Why ``code`` is not a disposition the queue takes (None: it is, or the queue has no list)."""
    if not allowed or code in allowed:
        return None
    return f"{code!r} is not a disposition code of this call's queue; pick one of: {', '.join(allowed)}"


def sensitive_locked(state: str, verified_by: str | None, queue_requires: bool) -> bool:
    """Whether sensitive actions on the caller's contact wait for verification: the call is not over,
    its queue asks for a verified caller, and the IVR has not verified them."""
    return queue_requires and verified_by is None and state != CallState.ENDED


# --------------------------------------------------------------------------- the generic CTI endpoint


class CtiEvent(BaseModel):
    """One event a PBX posts (field names as the generic CTI APIs of help desks use them, e.g. Zammad's):
    ``event`` newCall | answer | hangup, ``callId``, ``direction`` in | out, ``from``, ``to``, ``user`` (the
    answering agent's e-mail or extension name), ``cause`` (hangup: normalClearing, busy, cancel,
    noAnswer, notFound, congestion, voicemail), and an optional ``timestamp`` (ISO 8601 or Unix seconds)
    that orders the events of a call."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    event: Literal["newCall", "answer", "hangup"]
    call_id: str = Field(alias="callId", min_length=1, max_length=200)
    direction: Literal["in", "out"] = "in"
    from_: str = Field(default="", alias="from", max_length=60)
    to: str = Field(default="", max_length=60)
    user: list[str] = Field(default_factory=list, max_length=20)
    cause: str = Field(default="", max_length=60)
    answering_number: str = Field(default="", alias="answeringNumber", max_length=60)
    timestamp: datetime | None = None

    @field_validator("user", mode="before")
    @classmethod
    def _users(cls, v: object) -> object:
        if v is None or v == "":
            return []
        return [v] if isinstance(v, str) else v

    @field_validator("timestamp", mode="before")
    @classmethod
    def _ts(cls, v: object) -> object:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if not 0 <= v < 10_000_000_000:
                raise ValueError("timestamp: Unix seconds between 1970 and 2286")
            return datetime.fromtimestamp(v, tz=UTC)
        return v

    @field_validator("timestamp")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("timestamp: give a time zone (Z or +hh:mm)")
        return v

    @property
    def customer_number(self) -> str:
        return self.from_ if self.direction == "in" else self.to

    def end_cause(self) -> str | None:
        """The hangup cause in Threadline's words (``voice.domain.calls.EndCause`` values)."""
        return CTI_CAUSES.get(self.cause.strip().lower())


CTI_CAUSES: dict[str, str] = {
    "normalclearing": "completed", "busy": "busy", "cancel": "abandoned", "noanswer": "no_answer",
    "notfound": "failed", "congestion": "failed", "voicemail": "voicemail", "rejected": "rejected",
}


# --------------------------------------------------------------------------- Twilio statuses

TWILIO_END = {"completed": None, "busy": EndCause.BUSY, "no-answer": EndCause.NO_ANSWER,
              "failed": EndCause.FAILED, "canceled": EndCause.ABANDONED}


def cti_event(fields: dict[str, object]) -> CtiEvent:
    """A PBX's event from its fields; ValueError naming what is wrong (at most five problems)."""
    try:
        return CtiEvent.model_validate(fields)
    except ValidationError as exc:
        where = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:5])
        raise ValueError(where) from None
