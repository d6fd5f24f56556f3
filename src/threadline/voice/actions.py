"""Voice actions: the only code that writes calls, and what a call changes in the conversation core.

* ``open_call``: a call from (or to) a number becomes a timeline entry of the caller's open conversation
  (or of a new one): the caller is recognised by the E.164 identity of their number (a hint, never
  proof of who speaks), exactly as an SMS from that number would be.
* ``run_flow``: the IVR (``threadline.flows``: the same engine as the chat bot) talks with the caller;
  its instructions that touch the core are applied here (contact attributes, verification, the queue).
* ``enqueue``: the conversation gets the queue (and priority) the flow chose, so the routing engine
  offers it as a ``voice`` task (the channel declares the work class); the caller waits in music and
  hears their place and estimated wait from the routing task (``wait_figures``).
* ``provider_event``: the provider's status and conference events, each applied once and in the
  provider's order (``call_events`` keeps their keys); a caller who hangs up while queued is
  **abandoned**: the conversation is resolved with ``abandoned_at`` so routing drops the task as
  abandoned (SL, abandonment rate), and the timeline says "Missed call (hung up after waiting 1 min 5 s)".
* ``finish``: the timeline entry becomes "Call, 4 min 12 s, answered by Alice" (``message.updated``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions import conversations as conversation_actions
from threadline.actions.contacts import resolve_senders
from threadline.actions.conversations import audience_for
from threadline.actions.events import emit
from threadline.actions.scheduler import schedule_job
from threadline.actions.views import conversation_views, message_view
from threadline.db.models import ChannelInstanceRow, ConversationRow, MessageRow
from threadline.db.repos import contacts as contacts_repo
from threadline.db.repos import conversations as conversation_repo
from threadline.db.repos import routing as routing_repo
from threadline.db.repos import users as users_repo
from threadline.db.types import utcnow
from threadline.domain.contacts import IdentityKind, IdentityValue, normalise_phone
from threadline.domain.conversations import ConversationStatus, Priority
from threadline.domain.errors import Conflict, NotFound, ValidationFailed
from threadline.domain.events import (
    CallChanged,
    CallMedia,
    ConversationCreated,
    ConversationUpdated,
    MessageCreated,
    MessageUpdated,
)
from threadline.domain.messages import Direction as MessageDirection
from threadline.domain.messages import Sender
from threadline.domain.queues import QueueSettings, QueueVoice
from threadline.flows import actions as flows
from threadline.flows import domain as flow
from threadline.voice import repo
from threadline.voice.domain.calls import (
    TWILIO_END,
    CallFacts,
    CallState,
    CtiEvent,
    Direction,
    EndCause,
    disposition_problem,
    locale_of,
    record_policy,
    sensitive_locked,
    timeline_text,
)
from threadline.voice.models import CallRow

CONNECT_JOB = "voice.connect"  # connect a waiting call (or a callback) to the agent who accepted it
COMMAND_JOB = "voice.command"  # a provider command that follows from a webhook (record, unhold, remove…)
CALLBACK_ATTEMPTS = 3  # a callback nobody answers is tried this many times
CALLBACK_RETRY = timedelta(minutes=2)
BROWSER = "webrtc"  # the provider of calls made in the browser (the web chat widget)
WATCH_JOB = "voice.browser_watch"  # a browser call whose visitor or agent is gone ends (every 15 s while live)
WATCH_EVERY = timedelta(seconds=15)
BROWSER_SILENT = timedelta(seconds=45)  # a visitor whose widget has not been heard from this long is gone
BROWSER_RING = timedelta(seconds=40)  # an agent who does not answer a ringing call this long: next agent
BROWSER_MAX = timedelta(hours=4)  # the longest browser call


def facts(call: CallRow, agent_name: str | None = None) -> CallFacts:
    return CallFacts(state=CallState(call.state), direction=Direction(call.direction), started_at=call.started_at,
                     enqueued_at=call.enqueued_at, answered_at=call.answered_at, ended_at=call.ended_at,
                     end_cause=EndCause(call.end_cause) if call.end_cause else None, last_seq=call.last_seq,
                     agent_name=agent_name, voicemail_seconds=call.recording_seconds,
                     callback=call.callback_requested)


def _store(call: CallRow, f: CallFacts) -> None:
    call.state, call.last_seq = f.state.value, f.last_seq
    call.enqueued_at, call.answered_at, call.ended_at = f.enqueued_at, f.answered_at, f.ended_at
    call.end_cause = f.end_cause.value if f.end_cause else None


def customer_number(call: CallRow) -> str:
    return call.from_number if call.direction == Direction.INBOUND else call.to_number


def _priority(rank: int) -> str:
    """A flow's 0–100 priority as the conversation's level."""
    if rank >= 75:
        return Priority.URGENT.value
    if rank >= 50:
        return Priority.HIGH.value
    if rank >= 25:
        return Priority.NORMAL.value
    return Priority.LOW.value if rank > 0 else Priority.NORMAL.value


# --------------------------------------------------------------------------- a call begins


async def open_call(session: AsyncSession, channel: ChannelInstanceRow, *, ref: str, direction: Direction,
                    customer: str, ours: str, locale: str, now: datetime, name: str = "",
                    details: dict[str, Any] | None = None,
                    conversation: ConversationRow | None = None, identity: IdentityValue | None = None,
                    provider: str | None = None) -> tuple[CallRow, bool]:
    """The call with this provider reference on this channel, created with its timeline entry when new
    (``True``). The customer's number must be a phone number (E.164 after normalising): an anonymous
    or withheld caller gets a contact of their own per call. A browser call names the visitor's own
    ``identity`` (the web chat's), and ``customer`` is then only how the call shows them."""
    existing = await repo.by_ref(session, channel.id, ref, for_update=True)
    if existing is not None:
        return existing, False
    if identity is not None:
        number, ident = customer.strip()[:60] or "web visitor", identity
    else:
        try:
            number = normalise_phone(customer)
            ident = IdentityValue(IdentityKind.PHONE, number)
        except ValidationFailed:  # "anonymous", "+266696687" withheld, a SIP URI…
            number = customer.strip()[:60] or "unknown"
            ident = IdentityValue(IdentityKind.HANDLE, f"call:{ref}"[:300], str(channel.id))
    [(contact, identity, _)] = await resolve_senders(session, [Sender((ident,), name=name)])
    conv = conversation
    if conv is None:
        conv = (await conversation_repo.latest_open_for_contacts(session, [contact.id])).get(contact.id)
    created = conv is None
    if conv is None:
        conv = ConversationRow(contact_id=contact.id, priority=Priority.NORMAL.value, attributes={}, queue_id=None,
                               status=ConversationStatus.OPEN.value, last_activity_at=now)
        session.add(conv)
    conv.last_channel_instance_id, conv.last_identity_id = channel.id, identity.id
    conv.last_activity_at = conv.updated_at = now
    await session.flush()
    call = CallRow(channel_instance_id=channel.id, provider=provider or channel.kind, provider_ref=ref[:200],
                   conversation_id=conv.id, contact_id=contact.id, direction=direction.value,
                   from_number=number if direction is Direction.INBOUND else ours,
                   to_number=ours if direction is Direction.INBOUND else number, state=CallState.RINGING.value,
                   locale=locale_of(locale), started_at=now, details=dict(details or {}), last_seq=-1,
                   callback_requested=False)
    msg = MessageRow(conversation_id=conv.id, direction=MessageDirection.IN.value if direction is Direction.INBOUND
                     else MessageDirection.ACTIVITY.value, text=timeline_text(facts(call), number),
                     attachments=[], channel_instance_id=channel.id, identity_id=identity.id,
                     provider_id=f"call:{ref}"[:200], meta={}, created_at=now)
    session.add_all([call, msg])
    await session.flush()
    call.message_id = msg.id
    msg.meta = {"call": {"id": call.id, "state": call.state, "direction": call.direction}}
    [view] = await conversation_views(session, [conv], unlabelled=[conv.id] if created else ())
    audience = audience_for(conv, customer=True)
    if created:
        emit(session, ConversationCreated(conversation=view), audience)
    emit(session, MessageCreated(message=message_view(msg)), audience)
    if not created:
        emit(session, ConversationUpdated(conversation=view, changes=["last_activity_at"]), audience)
    return call, True


async def get_call(session: AsyncSession, call_id: int, channel_id: int, *, lock: bool = True) -> CallRow:
    call = await repo.get(session, call_id, for_update=lock)
    if call is None or call.channel_instance_id != channel_id:
        raise NotFound(f"call {call_id} does not exist on this channel")
    return call


# --------------------------------------------------------------------------- the IVR


@dataclass
class FlowTurn:
    """What the caller hears next: sayings, then a question, a queue, a voicemail or the end."""

    says: list[flow.Say]
    ask: flow.Ask | None = None
    enqueue: flow.Enqueue | None = None
    voicemail: flow.Voicemail | None = None
    hangup: flow.Hangup | None = None
    locale: str = "en"


async def load_flow(session: AsyncSession, call: CallRow, flow_id: int | None) -> flow.FlowDefinition | None:
    """The call's flow, pinned on its first turn to the version current then."""
    if call.flow_id is not None and call.flow_version is not None:
        return await flows.get_version(session, call.flow_id, call.flow_version)
    if flow_id is None:
        return None
    version, definition = await flows.current_definition(session, flow_id)
    call.flow_id, call.flow_version = flow_id, version
    return definition


async def run_flow(session: AsyncSession, call: CallRow, definition: flow.FlowDefinition, reply: flow.Reply | None,
                   now: datetime) -> FlowTurn:
    """One turn of the IVR: the first (``reply`` None) or the answer to its last question."""
    conv = await conversation_repo.get_conversation(session, call.conversation_id, for_update=True)
    contact_attrs: dict[str, Any] = {}
    if call.contact_id is not None:
        contact = await contacts_repo.get_contact(session, call.contact_id)
        contact_attrs = dict(contact.attributes or {}) if contact is not None else {}
    ctx = flow.FlowContext(now=now, attributes={**contact_attrs, **((conv.attributes or {}) if conv else {})},
                           locale=call.locale)
    if reply is None or call.flow_state is None:
        turn = flow.start(definition, ctx)
    else:
        turn = flow.answer(definition, flow.FlowState.model_validate(call.flow_state), reply, ctx)
    state = turn.state.model_dump(mode="json")
    # a sensitive capture (a card number) is not kept past the turn that took it: masked in what is stored
    secret = {n.attribute for n in definition.nodes.values() if n.type == "collect" and n.sensitive}
    state["variables"] = {k: ("•••" if k in secret else v) for k, v in (state.get("variables") or {}).items()}
    call.flow_state = state
    call.locale = locale_of(turn.state.locale)
    if call.state == CallState.RINGING:
        _store(call, facts(call).move(CallState.IN_FLOW, now))
    out = FlowTurn(says=[], locale=call.locale)
    for ins in turn.instructions:
        if isinstance(ins, flow.Say):
            out.says.append(ins)
        elif isinstance(ins, flow.Ask):
            out.ask = ins
        elif isinstance(ins, flow.SetAttributes) and conv is not None:
            conv.attributes = {**(conv.attributes or {}), **ins.attributes}
        elif isinstance(ins, flow.Verified):
            call.verified_by = ins.attribute if ins.ok else None
            call.details = {**call.details, "verification": {"attribute": ins.attribute, "ok": ins.ok}}
            await refresh_entry(session, call)  # the agent's screen says verified (or not) from now on
        elif isinstance(ins, flow.Enqueue):
            out.enqueue = ins
        elif isinstance(ins, flow.Handoff):
            out.enqueue = flow.Enqueue(queue_id=ins.queue_id or 0, skills=[], priority=0, callback_after_seconds=None,
                                       callback_key=None, variables={})
        elif isinstance(ins, flow.Voicemail):
            out.voicemail = ins
        elif isinstance(ins, flow.Hangup):
            out.hangup = ins
    return out


# --------------------------------------------------------------------------- waiting for an agent


async def enqueue(session: AsyncSession, call: CallRow, queue_id: int | None, now: datetime, *, priority: int = 0,
                  callback_key: str | None = None) -> bool:
    """Put the call's conversation in ``queue_id`` for routing; False when there is no such queue (the
    caller is then offered voicemail). A conversation assigned to an agent is given back to routing,
    which prefers the customer's last agent when they are free."""
    if queue_id is None or await users_repo.get_queue(session, queue_id) is None:
        return False
    _store(call, facts(call).move(CallState.QUEUED, now))
    call.queue_id = queue_id
    if callback_key:
        call.details = {**call.details, "callback_key": callback_key}
    conv = await conversation_repo.get_conversation(session, call.conversation_id, for_update=True)
    if conv is not None and conv.attributes and "abandoned_at" in conv.attributes:
        conv.attributes = {k: v for k, v in conv.attributes.items() if k != "abandoned_at"}
    changes: dict[str, Any] = {"queue_id": queue_id, "assignee_id": None, "status": ConversationStatus.OPEN.value}
    if priority:
        changes["priority"] = _priority(priority)
    await conversation_actions.update_conversation(session, None, call.conversation_id, **changes)
    return True


@dataclass(frozen=True)
class WaitFigures:
    position: int | None
    ewt_seconds: float | None


async def wait_figures(session: AsyncSession, call: CallRow) -> WaitFigures:
    """The caller's place and estimated wait, as the routing engine last computed them."""
    task = await routing_repo.get_task(session, call.conversation_id)
    if task is None:
        return WaitFigures(None, None)
    position = task.position
    if position is None and task.status in ("waiting", "offered"):
        # the router stores positions every few seconds: until then, count who entered the queue first
        ahead = [t for t in await routing_repo.tasks(session, task.queue_id, limit=2000)
                 if t.status in ("waiting", "offered") and t.enqueued_at < task.enqueued_at]
        position = len(ahead) + 1
    return WaitFigures(position, task.ewt_seconds)


async def request_callback(session: AsyncSession, call: CallRow, now: datetime) -> None:
    """The caller prefers to be called back: their task keeps its place; when an agent accepts it,
    Threadline calls them (``CONNECT_JOB``)."""
    call.callback_requested = True
    call.details = {**call.details, "callback_requested_at": now.isoformat()}


async def accepted(session: AsyncSession, conversation_ids: list[int], agent_of: dict[int, int], now: datetime) -> int:
    """Agents took these conversations: each waiting call of theirs is connected (by a job, which
    retries, so a provider hiccup does not lose the caller). Returns how many were scheduled."""
    n = 0
    for call in await repo.live_for_conversations(session, conversation_ids, waiting=True):
        agent = agent_of.get(call.conversation_id)
        if agent is None:
            continue
        if call.provider == BROWSER and call.state == CallState.OFFERED and call.agent_id != agent:
            call.agent_id = agent  # the conversation moved to another agent while it rang: it rings there now
            call.details = {**call.details, "offered_at": now.isoformat()}
            await refresh_entry(session, call)
            n += 1
            continue
        if call.state != CallState.QUEUED and not (call.callback_requested and call.state == CallState.ENDED):
            continue
        _store(call, facts(call).move(CallState.OFFERED, now))
        if call.provider == BROWSER:
            call.details = {**call.details, "offered_at": now.isoformat()}
        call.agent_id = agent
        if call.provider == BROWSER:  # nothing to dial: the agent's desk rings and answers in the browser
            await refresh_entry(session, call)
            n += 1
            continue
        await schedule_job(session, CONNECT_JOB, call.id, now, {"agent_id": agent})
        n += 1
    # callbacks: the customer's leg ended while they kept their place
    for call in await _callbacks_for(session, conversation_ids):
        agent = agent_of.get(call.conversation_id)
        if agent is None:
            continue
        call.agent_id = agent
        call.details = {**call.details, "callback_agent": agent}
        await schedule_job(session, CONNECT_JOB, call.id, now, {"agent_id": agent, "callback": True})
        n += 1
    return n


async def _callbacks_for(session: AsyncSession, conversation_ids: list[int]) -> list[CallRow]:
    calls = []
    for cid in conversation_ids:
        for call in await repo.for_conversation(session, cid, limit=5):
            if call.callback_requested and call.state == CallState.ENDED and not call.details.get("callback_done"):
                calls.append(call)
                break
    return calls


RECORDINGS_JOB = "voice.recordings"  # the retention of call recordings (periodic)
TRANSCRIBE_JOB = "voice.transcribe"  # a recording transcribed by the local model (worker/transcripts.py)


async def recording_deleted(session: AsyncSession, call: CallRow, now: datetime) -> None:
    """The recording was deleted by retention: the call keeps its facts, the timeline loses the player."""
    call.recording_url = None
    call.details = {**call.details, "recording_deleted_at": now.isoformat()}
    await refresh_entry(session, call)


async def transcript(session: AsyncSession, call: CallRow, text_: str, source: str) -> None:
    """A transcript of the call's voicemail or recording (from the provider, or a local model), kept with
    the call and shown in the timeline, marked with where it came from."""
    call.details = {**call.details, "transcript": text_, "transcript_source": source}
    await _note(session, call, f"Transcript ({source}): {text_}")


# --------------------------------------------------------------------------- click-to-call


async def place_call(session: AsyncSession, channel: ChannelInstanceRow, *, conversation_id: int, agent_id: int,
                     number: str, ours: str, now: datetime) -> CallRow:
    """An agent calls a customer from their conversation: the call is an entry of that conversation; the
    worker rings the agent's softphone and the customer into the call's conference (``CONNECT_JOB``)."""
    import secrets  # noqa: PLC0415
    conv = await conversation_repo.get_conversation(session, conversation_id, for_update=True)
    if conv is None:
        raise NotFound(f"conversation {conversation_id} does not exist")
    call, _ = await open_call(session, channel, ref=f"out-{secrets.token_hex(12)}", direction=Direction.OUTBOUND,
                              customer=number, ours=ours, locale="en", now=now, conversation=conv)
    call.agent_id = agent_id
    await schedule_job(session, CONNECT_JOB, call.id, now, {"agent_id": agent_id, "callback": True})
    return call


# --------------------------------------------------------------------------- in the call: the agent's controls


async def command(session: AsyncSession, call: CallRow, op: str, now: datetime, **payload: Any) -> None:
    """Ask the worker to give the provider a command (retried with backoff; never inside a webhook). It is
    due at once by our clock (``now`` may be the provider's time of the event that asked for it)."""
    await schedule_job(session, COMMAND_JOB, f"{call.id}:{op}:{payload.get('who', '')}", utcnow(),
                       {"op": op, **payload})


async def participant_joined(session: AsyncSession, call: CallRow, label: str, now: datetime,
                             record: bool = False) -> None:
    """Someone joined the call's conference: the agent (connected; the recording starts when the queue's
    policy records every call), a transfer's target (the call is theirs now), a supervisor (nothing)."""
    if not label.startswith("agent-") or not label[6:].isdigit():
        return
    who = int(label[6:])
    transfer = call.details.get("transfer")
    if call.agent_id in (None, who) or transfer is None or int(transfer.get("agent_id") or 0) != who:
        call.agent_id = who
        await agent_joined(session, call, now)
        if record:
            await command(session, call, "record", now)
        return
    # a transfer's target answered: the call is theirs; a blind transfer lets the first agent go
    before = call.agent_id
    call.agent_id = who
    call.details = {**{k: v for k, v in call.details.items() if k != "transfer"}, "agent_id": who}
    await conversation_actions.update_conversation(session, None, call.conversation_id, assignee_id=who)
    if transfer.get("mode") == "blind" and before is not None:
        await command(session, call, "remove", now, who=f"agent-{before}")
        await command(session, call, "unhold", now)
        _store(call, facts(call).move(CallState.CONNECTED, now))
    name = (await users_repo.get_user(session, who))
    await _note(session, call, f"The call was transferred to {name.name if name else 'another agent'}")
    await refresh_entry(session, call)


async def participant_left(session: AsyncSession, call: CallRow, label: str, now: datetime) -> None:
    """The agent who has the call left it with nobody to take over: the call ends for the customer too."""
    if label == f"agent-{call.agent_id}" and call.details.get("transfer") is None and call.state in (
            CallState.CONNECTED, CallState.ON_HOLD):
        await command(session, call, "hangup", now)


async def start_transfer(session: AsyncSession, call: CallRow, *, by: int, mode: str, now: datetime,
                         agent_id: int | None = None, number: str | None = None) -> None:
    call.details = {**call.details, "transfer": {"by": by, "mode": mode, "agent_id": agent_id, "number": number,
                                                 "at": now.isoformat()}}
    if mode == "blind":
        _store(call, facts(call).move(CallState.ON_HOLD, now))


async def transfer_failed(session: AsyncSession, call: CallRow, status: str, now: datetime) -> None:
    """The target did not answer: the call stays with the agent, who is told why."""
    transfer = call.details.get("transfer")
    if transfer is None:
        return
    call.details = {k: v for k, v in call.details.items() if k != "transfer"}
    target = transfer.get("number")
    if transfer.get("agent_id"):
        user = await users_repo.get_user(session, int(transfer["agent_id"]))
        target = user.name if user is not None else "the agent"
    await _note(session, call, f"Transfer to {target} failed ({status}): the call is back with you")
    if transfer.get("mode") == "blind":
        await command(session, call, "unhold", now)
        _store(call, facts(call).move(CallState.CONNECTED, now))
    await refresh_entry(session, call)


async def transfer_to_queue(session: AsyncSession, call: CallRow, queue_id: int, now: datetime, *, by: int) -> bool:
    """A blind transfer to a queue: the customer waits again (routing offers the call anew)."""
    call.agent_id = None
    ok = await enqueue(session, call, queue_id, now)  # connected/on hold → queued: the model allows it
    if ok:
        await _note(session, call, "The call was transferred to another queue")
    return ok


def recording_marks(call: CallRow, status: str, now: datetime) -> None:
    """A pause and its resume mark a gap in the recording (seconds from the start of the recording)."""
    started = call.details.get("recording_started_at")
    base = datetime.fromisoformat(started) if started else (call.answered_at or now)
    offset = round((now - base).total_seconds(), 1)
    gaps = [list(g) for g in call.details.get("recording_gaps", [])]
    if status == "paused" and (not gaps or gaps[-1][1] is not None):
        gaps.append([offset, None])
    elif status == "in-progress" and gaps and gaps[-1][1] is None:
        gaps[-1][1] = offset
    call.details = {**call.details, "recording_gaps": gaps, "recording_paused": status == "paused"}


async def wrap_up(session: AsyncSession, call: CallRow, *, disposition: str, notes: str, by: int) -> None:
    """The agent's disposition code and notes for the call, kept with it and shown in the timeline."""
    call.details = {**call.details, "disposition": disposition, "disposition_notes": notes, "disposition_by": by}
    line = f"Call disposition: {disposition}" + (f" — {notes}" if notes else "")
    await _note(session, call, line)


# --------------------------------------------------------------------------- provider events


async def provider_event(session: AsyncSession, call: CallRow, *, key: str, kind: str, seq: int | None,
                         data: dict[str, Any], now: datetime) -> bool:
    """Record a provider event once; False for a repeat (then nothing else may change)."""
    return await repo.record_event(session, call.id, key, kind, seq, data)


async def call_status(session: AsyncSession, call: CallRow, status: str, seq: int | None, now: datetime, *,
                      duration_seconds: int | None = None) -> None:
    """Twilio's CallStatus for the customer's leg (ringing, in-progress, completed, busy…), in order."""
    f = facts(call)
    if not f.fresh(seq):
        return
    if status in TWILIO_END:
        await hang_up(session, call, now, seq=seq, cause=TWILIO_END[status])
        return
    _store(call, f.move(f.state, now, seq))


async def agent_joined(session: AsyncSession, call: CallRow, now: datetime, seq: int | None = None) -> None:
    f = facts(call)
    if f.state is CallState.ENDED:
        return
    _store(call, f.move(CallState.CONNECTED, now, seq))
    await refresh_entry(session, call)


async def hold(session: AsyncSession, call: CallRow, on: bool, now: datetime) -> None:
    f = facts(call)
    _store(call, f.move(CallState.ON_HOLD if on else CallState.CONNECTED, now))
    await refresh_entry(session, call)  # the desk's call bar follows (call.changed)


async def hang_up(session: AsyncSession, call: CallRow, now: datetime, *, seq: int | None = None,
                  cause: EndCause | None = None) -> None:
    """The customer's leg ended. While waiting, it was abandoned: the conversation is resolved (routing
    drops the task as abandoned) unless the caller asked to be called back, which keeps their place."""
    f = facts(call)
    if f.state is CallState.ENDED:
        return
    ended = f.hang_up(now, seq, cause)
    _store(call, ended)
    if call.provider == BROWSER:
        await _browser_call_over(session, call)
    elif ended.abandoned and f.state in (CallState.QUEUED, CallState.OFFERED) and not call.callback_requested:
        conv = await conversation_repo.get_conversation(session, call.conversation_id, for_update=True)
        if conv is not None and conv.status != ConversationStatus.RESOLVED.value:
            conv.attributes = {**(conv.attributes or {}), "abandoned_at": now.isoformat()}
            await conversation_actions.update_conversation(session, None, conv.id,
                                                           status=ConversationStatus.RESOLVED.value)
    await refresh_entry(session, call)


async def recording(session: AsyncSession, call: CallRow, *, url: str, seconds: int | None,
                    gaps: list[list[float]] | None = None, transcribe: bool = False) -> None:
    """A recording of the call (or its voicemail) is ready at the provider. ``transcribe``: a local model is
    configured (``THREADLINE_STT_MODEL_DIR``): the ``voice.transcribe`` job transcribes it, unless the call
    has a transcript already."""
    call.recording_url, call.recording_seconds = url, seconds
    if gaps:
        call.details = {**call.details, "recording_gaps": gaps}
    if transcribe and not call.details.get("transcript"):
        await schedule_job(session, TRANSCRIBE_JOB, call.id, utcnow())
    await refresh_entry(session, call)


async def start_voicemail(session: AsyncSession, call: CallRow, now: datetime) -> None:
    _store(call, facts(call).move(CallState.VOICEMAIL, now))


async def refresh_entry(session: AsyncSession, call: CallRow) -> None:
    """The call's timeline entry says what the call is now (and carries its facts for the desk)."""
    if call.message_id is None:
        return
    msg = await session.get(MessageRow, call.message_id)
    if msg is None:
        return
    agent_name = None
    if call.agent_id is not None:
        user = await users_repo.get_user(session, call.agent_id)
        agent_name = user.name if user is not None else None
    f = facts(call, agent_name)
    new_text = timeline_text(f, customer_number(call))
    meta = {"call": {"id": call.id, "state": call.state, "direction": call.direction, "end_cause": call.end_cause,
                     "agent": agent_name, "agent_id": call.agent_id, "talk_seconds": f.talk_seconds,
                     "wait_seconds": f.wait_seconds,
                     "recording": bool(call.recording_url), "recording_seconds": call.recording_seconds,
                     "verified_by": call.verified_by, "callback": call.callback_requested}}
    if msg.text == new_text and msg.meta == meta:
        return
    msg.text, msg.meta = new_text, meta
    await session.flush()
    conv = await conversation_repo.get_conversation(session, call.conversation_id)
    emit(session, MessageUpdated(message=message_view(msg), changes=["text", "meta"]),
         audience_for(conv, customer=True))
    browser = call.provider == BROWSER  # the visitor's widget follows its call too
    emit(session, CallChanged(call_id=call.id, conversation_id=call.conversation_id, contact_id=call.contact_id,
                              state=call.state, direction=call.direction, number=customer_number(call),
                              agent_id=call.agent_id, end_cause=call.end_cause, verified_by=call.verified_by,
                              provider=call.provider, video=bool(call.details.get("video"))),
         audience_for(conv, customer=browser, extra_users=(call.agent_id,)))


async def _note(session: AsyncSession, call: CallRow, line: str) -> None:
    """A line in the conversation's timeline (activity, not sent to anyone)."""
    conv = await conversation_repo.get_conversation(session, call.conversation_id)
    if conv is None:
        return
    msg = conversation_actions.add_activity(session, conv, line, None)
    await session.flush()
    emit(session, MessageCreated(message=message_view(msg)), audience_for(conv, customer=True))


async def agent_missed(session: AsyncSession, call: CallRow, now: datetime, status: str) -> None:
    """The agent who accepted did not pick up their leg: the caller goes back to waiting (still in the
    conference's music) and routing offers the call again."""
    agent = call.agent_id
    call.agent_id = None
    _store(call, facts(call).move(CallState.QUEUED, now))
    await _note(session, call, f"The agent's phone did not answer ({status}): the call waits for the next agent")
    if agent is not None:
        await conversation_actions.update_conversation(session, None, call.conversation_id, assignee_id=None)


async def callback_failed(session: AsyncSession, call: CallRow, now: datetime, status: str) -> None:
    """The customer did not answer our callback: try again later, up to ``CALLBACK_ATTEMPTS``; then
    the conversation says so and stays with the agent."""
    if call.direction == Direction.OUTBOUND:  # an agent's own call: it simply was not answered
        await _note(session, call, f"Nobody answered ({status})")
        await hang_up(session, call, now, cause=EndCause.BUSY if status == "busy" else EndCause.NO_ANSWER)
        await command(session, call, "hangup_agent", now)
        return
    tries = int(call.details.get("callback_attempts", 0)) + 1
    call.details = {**call.details, "callback_attempts": tries, "callback_done": False,
                    "callback_last": status}
    if tries < CALLBACK_ATTEMPTS and call.agent_id is not None:
        await _note(session, call, f"Callback not answered ({status}), attempt {tries} of {CALLBACK_ATTEMPTS}: "
                                   f"trying again in {int(CALLBACK_RETRY.total_seconds() // 60)} min")
        await schedule_job(session, CONNECT_JOB, call.id, now + CALLBACK_RETRY,
                           {"agent_id": call.agent_id, "callback": True})
    else:
        call.details = {**call.details, "callback_done": True, "callback_failed": True}
        await _note(session, call, f"Callback failed after {tries} attempts ({status})")


async def voicemail_left(session: AsyncSession, call: CallRow, now: datetime) -> None:
    """A voicemail becomes a task: the conversation waits in the channel's queue for someone to listen
    and call back."""
    call.details = {**call.details, "voicemail": True}
    channel = await session.get(ChannelInstanceRow, call.channel_instance_id)
    queue = call.queue_id or (channel.default_queue_id if channel is not None else None)
    if queue is not None:
        await conversation_actions.update_conversation(session, None, call.conversation_id, queue_id=queue,
                                                       status=ConversationStatus.OPEN.value)


# --------------------------------------------------------------------------- any PBX (generic CTI)


async def cti_event(session: AsyncSession, channel: ChannelInstanceRow, event: CtiEvent,
                    now: datetime) -> dict[str, Any]:
    """Apply a PBX's newCall / answer / hangup. Each kind is applied once per call (a repeat is
    acknowledged as a duplicate); an answer or a hangup for a call never announced creates it; events
    carry their own time, so an answer that arrives after the hangup still records who answered."""
    at = event.timestamp or now
    direction = Direction.INBOUND if event.direction == "in" else Direction.OUTBOUND
    call, _ = await open_call(session, channel, ref=event.call_id, direction=direction,
                              customer=event.customer_number, ours=event.to if direction is Direction.INBOUND
                              else event.from_, locale="en", now=at)
    fresh = await repo.record_event(session, call.id, f"cti:{event.event}", event.event, None,
                                    event.model_dump(mode="json", by_alias=True))
    out = {"call_id": call.id, "conversation_id": call.conversation_id, "state": call.state, "duplicate": not fresh}
    if not fresh:
        return out
    f = facts(call)
    if event.event == "answer":
        agent = await _user_by_names(session, event.user)
        if agent is not None:
            call.agent_id = agent
            conv = await conversation_repo.get_conversation(session, call.conversation_id)
            if conv is not None and conv.assignee_id is None:  # the agent on the phone has the conversation
                await conversation_actions.update_conversation(session, None, conv.id, assignee_id=agent)
        if f.state is CallState.ENDED:  # the answer arrived late: the call was answered after all
            call.answered_at = call.answered_at or at
            if call.end_cause in (EndCause.ABANDONED.value, EndCause.NO_ANSWER.value):
                call.end_cause = EndCause.COMPLETED.value
        else:
            _store(call, f.move(CallState.CONNECTED, at))
    elif event.event == "hangup":
        named = event.end_cause()
        await hang_up(session, call, at, cause=EndCause.COMPLETED if call.answered_at is not None
                      else EndCause(named) if named else None)
        if call.answered_at is None and direction is Direction.INBOUND and call.end_cause != EndCause.VOICEMAIL:
            await _missed_becomes_task(session, channel, call)
        out["state"] = call.state
        return out
    await refresh_entry(session, call)
    out["state"] = call.state
    return out


async def _missed_becomes_task(session: AsyncSession, channel: ChannelInstanceRow, call: CallRow) -> None:
    """A missed call (the PBX rang nobody free) becomes a callback task in the channel's queue."""
    call.callback_requested = True
    conv = await conversation_repo.get_conversation(session, call.conversation_id, for_update=True)
    if conv is not None and conv.attributes and "abandoned_at" in conv.attributes:
        conv.attributes = {k: v for k, v in conv.attributes.items() if k != "abandoned_at"}
    await _note(session, call, f"Missed call from {customer_number(call)}: call the customer back")
    if channel.default_queue_id is not None:
        await conversation_actions.update_conversation(session, None, call.conversation_id,
                                                       queue_id=channel.default_queue_id, assignee_id=None,
                                                       status=ConversationStatus.OPEN.value)
    await refresh_entry(session, call)


async def _user_by_names(session: AsyncSession, names: list[str]) -> int | None:
    """The desk user a PBX names (their e-mail address; the first one known)."""
    for name in names:
        user = await users_repo.get_user_by_email(session, name.strip().lower()) if "@" in name else None
        if user is not None:
            return user.id
    return None


# --------------------------------------------------------------------------- calls in the browser (WebRTC)


def browser_media_mode(record: str, video: bool) -> str:
    """``relay`` when the server must take part in the media (the queue records its calls, always or on
    demand), else ``p2p`` (the browsers talk directly; Threadline only relays their session descriptions).
    Video calls stay peer to peer (the server relays and records audio only)."""
    return "relay" if record in ("always", "on_demand") and not video else "p2p"


async def open_browser_call(session: AsyncSession, channel: ChannelInstanceRow, *, identity: IdentityValue,
                            name: str, video: bool, locale: str, now: datetime,
                            record_policy: Any) -> CallRow:
    """A visitor calls from the web chat widget: the call is an entry of their open conversation (or of a
    new one), rung on the desk of the agent who has the conversation, or queued for routing as a
    ``voice`` task (the conversation's ``channel_class`` says so while the call lasts).
    ``record_policy(queue_id)`` gives the queue's recording policy (it decides the media mode)."""
    import secrets  # noqa: PLC0415
    call, _ = await open_call(session, channel, ref=f"web-{secrets.token_hex(12)}", direction=Direction.INBOUND,
                              customer=name or "web visitor", ours="", locale=locale, now=now, identity=identity,
                              provider=BROWSER, details={"video": video})
    conv = await conversation_repo.get_conversation(session, call.conversation_id, for_update=True)
    assert conv is not None
    queue_id = conv.queue_id or channel.default_queue_id
    record = await record_policy(session, queue_id)
    call.details = {**call.details, "media": browser_media_mode(record, video), "record": record}
    await schedule_job(session, WATCH_JOB, call.id, now + WATCH_EVERY)
    assignee = await users_repo.get_user(session, conv.assignee_id) if conv.assignee_id is not None else None
    if assignee is not None and assignee.active and assignee.presence == "available":
        call.agent_id = assignee.id  # the agent already talking with them takes the call
        call.queue_id = conv.queue_id
        call.details = {**call.details, "offered_at": now.isoformat()}
        _store(call, facts(call).move(CallState.OFFERED, now))
    else:  # routing offers it as a voice task (an agent who is away is not rung: the call goes to the queue)
        before = (conv.attributes or {}).get("channel_class")
        if before is not None:
            call.details = {**call.details, "channel_class_before": before}
        conv.attributes = {**(conv.attributes or {}), "channel_class": "voice"}
        if not await enqueue(session, call, queue_id, now):
            _store(call, facts(call).hang_up(now, cause=EndCause.FAILED))
            await _browser_call_over(session, call)
            await refresh_entry(session, call)
            raise ValidationFailed("nobody takes calls here: the chat has no queue", field="channel")
    await refresh_entry(session, call)
    return call


async def browser_offer(session: AsyncSession, call: CallRow, sdp: str) -> None:
    """The visitor's session description (peer to peer: kept for the agent who answers)."""
    call.details = {**call.details, "offer": sdp}


async def browser_answered(session: AsyncSession, call: CallRow, agent_id: int, now: datetime,
                           sdp: str | None = None) -> None:
    """The agent answered in the desk: connected; peer to peer, their answer goes to the visitor's widget.
    A queue that records every call starts recording now."""
    call.agent_id = agent_id
    if sdp is not None:
        call.details = {**call.details, "answer": sdp}
        conv = await conversation_repo.get_conversation(session, call.conversation_id)
        emit(session, CallMedia(call_id=call.id, conversation_id=call.conversation_id, to="visitor",
                                sdp_type="answer", sdp=sdp), audience_for(conv, customer=True))
    if call.details.get("media") == "relay" and call.details.get("record") == "always" \
            and not call.details.get("recording_sid"):  # (an agent who reconnects keeps the recording going)
        browser_recording(call, "start", now)
    conv = await conversation_repo.get_conversation(session, call.conversation_id)
    if conv is not None and conv.assignee_id != agent_id:
        await conversation_actions.update_conversation(session, None, conv.id, assignee_id=agent_id)
    await agent_joined(session, call, now)


def browser_recording(call: CallRow, action: str, now: datetime) -> None:
    """Start, pause or resume a relayed browser call's recording (the server records; a pause leaves a
    marked gap of silence)."""
    if action == "start":
        call.details = {**call.details, "recording_sid": "local", "recording_started_at": now.isoformat()}
    else:
        recording_marks(call, "paused" if action == "pause" else "in-progress", now)


async def _browser_call_over(session: AsyncSession, call: CallRow) -> None:
    """The call is over: the conversation goes back to being a chat (routing counts it as chat work again)."""
    conv = await conversation_repo.get_conversation(session, call.conversation_id, for_update=True)
    if conv is not None and (conv.attributes or {}).get("channel_class") == "voice":
        before = call.details.get("channel_class_before")  # what it was before the call, if anything
        conv.attributes = {**{k: v for k, v in conv.attributes.items() if k != "channel_class"},
                           **({"channel_class": before} if before else {})}
        await session.flush()
        [view] = await conversation_views(session, [conv])
        emit(session, ConversationUpdated(conversation=view, changes=["attributes"]), audience_for(conv, customer=True))


# --------------------------------------------------------------------------- the queue's call settings


async def queue_voices(session: AsyncSession, queue_ids: Iterable[int | None]) -> dict[int, QueueVoice]:
    """The call settings (``QueueSettings.voice``) of these queues, by id; a queue that is gone is absent."""
    out: dict[int, QueueVoice] = {}
    for queue_id in {q for q in queue_ids if q is not None}:
        queue = await users_repo.get_queue(session, queue_id)
        if queue is not None:
            out[queue_id] = QueueSettings.model_validate(queue.settings or {}).voice
    return out


def queue_fields(call: CallRow, voices: dict[int, QueueVoice]) -> dict[str, Any]:
    """What a call's JSON says of its queue: the disposition codes, whether sensitive actions wait."""
    voice = voices.get(call.queue_id) if call.queue_id is not None else None
    if voice is None:
        return {}
    return {"dispositions": list(voice.dispositions),
            "sensitive_locked": sensitive_locked(call.state, call.verified_by, voice.verified_for_sensitive)}


async def recording_policy(session: AsyncSession, call: CallRow, channel_record: str | None) -> str:
    """Whether this call is recorded (always, on_demand, never): its queue's policy, else its line's."""
    voice = (await queue_voices(session, [call.queue_id])).get(call.queue_id) if call.queue_id else None
    return record_policy(voice.record if voice is not None else None, channel_record)


async def check_disposition(session: AsyncSession, call: CallRow, code: str) -> None:
    """Refuse (422) a disposition code the call's queue does not list (a queue with no list takes any)."""
    voice = (await queue_voices(session, [call.queue_id])).get(call.queue_id) if call.queue_id else None
    problem = disposition_problem(code, voice.dispositions if voice is not None else [])
    if problem is not None:
        raise ValidationFailed(problem, field="disposition")


async def check_verified_caller(session: AsyncSession, contact_ids: Sequence[int], what: str) -> None:
    """The guard of sensitive contact actions voice registers (``threadline.actions.guards``): while a call
    of one of these contacts is not over, its queue asks for a verified caller
    (``verified_for_sensitive``) and the IVR has not verified them, the action is refused (409)."""
    calls = await repo.unverified_for_contacts(session, contact_ids)
    voices = await queue_voices(session, [c.queue_id for c in calls])
    for call in calls:
        voice = voices.get(call.queue_id) if call.queue_id is not None else None
        if sensitive_locked(call.state, call.verified_by, voice is not None and voice.verified_for_sensitive):
            raise Conflict(f"the caller is not verified: verify them (PIN or another IVR check) before {what} "
                           f"(call {call.id}, whose queue asks for a verified caller)")


async def browser_seen(session: AsyncSession, call: CallRow, now: datetime) -> None:
    """The visitor's widget is still there (it asks for its call every few seconds while in one)."""
    call.details = {**call.details, "seen_at": now.isoformat()}


async def browser_declined(session: AsyncSession, call: CallRow, now: datetime, why: str) -> None:
    """The agent it rang declined it or did not answer in time: the call waits in the queue again, routing
    offers it to the next agent (the conversation leaves the agent)."""
    conv = await conversation_repo.get_conversation(session, call.conversation_id, for_update=True)
    queue_id = call.queue_id or (conv.queue_id if conv is not None else None)
    if queue_id is None:
        channel = await session.get(ChannelInstanceRow, call.channel_instance_id)
        queue_id = channel.default_queue_id if channel is not None else None
    agent = call.agent_id
    call.agent_id = None
    call.details = {k: v for k, v in call.details.items() if k != "offered_at"}
    if conv is not None and (conv.attributes or {}).get("channel_class") != "voice":
        if (conv.attributes or {}).get("channel_class") is not None:
            call.details = {**call.details, "channel_class_before": conv.attributes["channel_class"]}
        conv.attributes = {**(conv.attributes or {}), "channel_class": "voice"}
    name = (await users_repo.get_user(session, agent)) if agent is not None else None
    await _note(session, call, f"{name.name if name else 'The agent'} {why}: the call waits for the next agent")
    if not await enqueue(session, call, queue_id, now):
        await hang_up(session, call, now, cause=EndCause.NO_ANSWER)
        return
    await refresh_entry(session, call)


async def browser_watch(session: AsyncSession, call: CallRow, now: datetime) -> str | None:
    """Every ``WATCH_EVERY`` while a browser call lives: why it ends now (the visitor's widget went
    quiet, or it is too long), or rings the next agent when this one does not answer. None: it goes on."""
    if call.state == CallState.ENDED:
        return None
    seen = call.details.get("seen_at")
    last = datetime.fromisoformat(seen) if seen else call.started_at
    if now - last > BROWSER_SILENT:
        await hang_up(session, call, now)
        return "the visitor's widget is gone"
    if now - call.started_at > BROWSER_MAX:
        await hang_up(session, call, now)
        return "the call reached the longest a browser call may last"
    offered = call.details.get("offered_at")
    if call.state == CallState.OFFERED and offered and now - datetime.fromisoformat(offered) > BROWSER_RING:
        await browser_declined(session, call, now, "did not answer")
    await schedule_job(session, WATCH_JOB, call.id, now + WATCH_EVERY)
    return None


async def browser_transfer(session: AsyncSession, call: CallRow, now: datetime, *, by: int,
                           agent_id: int | None = None, queue_id: int | None = None) -> None:
    """A blind transfer of a browser call: it rings the target agent (who takes the conversation) or waits
    in the queue; the visitor hears music (relayed) or their widget reconnects to whoever answers (peer to
    peer: the old session descriptions are dropped, the widget offers again)."""
    call.details = {k: v for k, v in call.details.items() if k not in ("offer", "answer")}
    giver = await users_repo.get_user(session, by)
    if agent_id is not None:
        target = await users_repo.get_user(session, agent_id)
        call.agent_id = agent_id
        call.details = {**call.details, "offered_at": now.isoformat()}
        _store(call, facts(call).move(CallState.QUEUED, now).move(CallState.OFFERED, now))
        await conversation_actions.update_conversation(session, None, call.conversation_id, assignee_id=agent_id,
                                                       transfer=True)
        await _note(session, call, f"{giver.name if giver else 'The agent'} transferred the call to "
                                   f"{target.name if target else 'another agent'}")
    else:
        call.agent_id = None
        conv = await conversation_repo.get_conversation(session, call.conversation_id, for_update=True)
        if conv is not None and (conv.attributes or {}).get("channel_class") != "voice":
            conv.attributes = {**(conv.attributes or {}), "channel_class": "voice"}
        if not await enqueue(session, call, queue_id, now):
            raise NotFound(f"queue {queue_id} does not exist")
        await _note(session, call, "The call was transferred to another queue")
    await refresh_entry(session, call)
