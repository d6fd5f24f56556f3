"""Voice loops: the connector follows the outbox for conversations an agent has just taken (an offer
accepted, a pick, an assignment by hand) and schedules the ``voice.connect`` job for each waiting call of
theirs; the job tells the provider to bring the caller and the agent together (a named conference per
call: the caller is redirected into it, the agent's softphone or phone is added as a participant) or,
for a callback, dials the customer into it. A job retries with backoff, so a provider that is down for
a moment does not lose the caller, and a restart between the accept and the REST call loses nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions import guards
from threadline.actions.scheduler import schedule_job
from threadline.adapters import AdapterFactory
from threadline.db.models import ChannelInstanceRow
from threadline.db.session import Database
from threadline.db.types import utcnow
from threadline.domain.events import ConversationUpdated
from threadline.files.store import FileStore
from threadline.voice import actions
from threadline.voice import repo as voice_repo
from threadline.voice.browser.media import MediaHub
from threadline.voice.domain import twiml
from threadline.voice.domain.calls import CallState, conference_name
from threadline.voice.transcribe import Transcriber
from threadline.voice.worker import ari
from threadline.voice.worker.transcripts import Transcripts
from threadline.workers.follower import Clock, Followed, OutboxFollower
from threadline.workers.scheduler import Job, TimerWorker

log = structlog.get_logger(__name__)


class VoiceConnector(OutboxFollower):
    """Follows ``conversation.updated`` events that give a conversation an agent."""

    name = "voice-connector"
    follows = (ConversationUpdated,)

    def __init__(self, db: Database, *, poll_seconds: float = 2.0, clock: Clock = utcnow) -> None:
        super().__init__(db, "voice", poll_seconds=poll_seconds, clock=clock)

    async def prepare(self, session: AsyncSession) -> bool:
        """Without a phone line that Threadline connects (Twilio, Asterisk) or a call in a browser waiting for
        an agent, nothing can be wanted: the
        cursor skips ahead and no event is read (the busy inbox of a text-only deployment pays nothing)."""
        return await voice_repo.has_connected_lines(session) or await voice_repo.has_live_browser_calls(session)

    def relevant(self, event: Followed) -> bool:
        conv = event.payload.get("conversation") or {}
        return "assignee_id" in (event.payload.get("changes") or ()) and conv.get("assignee_id") is not None

    async def handle(self, session: AsyncSession, events: list[Followed]) -> None:
        agent_of: dict[int, int] = {}
        for e in events:
            conv = e.payload["conversation"]
            agent_of[int(conv["id"])] = int(conv["assignee_id"])
        await actions.accepted(session, sorted(agent_of), agent_of, self.clock())


def agent_label(agent_id: int) -> str:
    return f"agent-{agent_id}"


async def _adapter(session: AsyncSession, factory: AdapterFactory, call: Any) -> Any | None:
    channel = await session.get(ChannelInstanceRow, call.channel_instance_id)
    if channel is None or not channel.enabled:
        return None
    return factory.for_row(channel)


def connect_job(factory: AdapterFactory):  # type: ignore[no-untyped-def]
    async def connect(session: AsyncSession, job: Job, now: datetime) -> None:
        if await ari.connect_job(session, job, now, factory):  # Asterisk: a bridge and the agent's endpoint
            return
        call = await voice_repo.get(session, int(job.key), for_update=True)
        if call is None:
            return
        adapter = await _adapter(session, factory, call)
        if adapter is None:
            return
        agent_id = int(job.payload["agent_id"])
        urls = twiml.Urls(adapter.hook_url + "/voice", call.id)
        name = conference_name(call.conversation_id, call.id)
        joined = twiml.conference(urls, name, music_url=adapter.config.hold_music_url, locale=call.locale)
        if job.payload.get("callback"):
            if call.details.get("callback_done"):
                return
            voice = (await actions.queue_voices(session, [call.queue_id])).get(call.queue_id) if call.queue_id else None
            if voice is None or voice.callback_order == "customer_first" or call.direction == "outbound":
                # the customer first: the agent is added when they answer (the conference hook asks for it)
                sid = await adapter.dial(actions.customer_number(call), joined, urls.callback_status)
                call.details = {**call.details, "callback_done": True, "callback_sid": sid, "conference": name,
                                "agent_id": agent_id, "callback_waiting": "agent"}
                if call.direction == "outbound":  # an agent's own click-to-call: both ring at once
                    call.details = {k: v for k, v in call.details.items() if k != "callback_waiting"}
                else:
                    log.info("voice_callback_customer_first", call_id=call.id, agent_id=agent_id)
                    return
            else:  # the agent first: the customer is dialled once the agent is in the conference
                call.details = {**call.details, "callback_done": True, "callback_waiting": "customer"}
        else:
            if call.state not in (CallState.QUEUED, CallState.OFFERED):
                return  # the caller left meanwhile
            await adapter.redirect(call.provider_ref, joined)
        agent_sid = await adapter.add_participant(name, adapter.config.agent_to(agent_id), label=agent_label(agent_id),
                                                  status_callback=urls.agent_status,
                                                  conference_events=urls.conference_events)
        call.details = {**call.details, "conference": name, "agent_call_sid": agent_sid, "agent_id": agent_id}
        log.info("voice_connect", call_id=call.id, agent_id=agent_id, conference=name)

    return connect


async def watch_job(session: AsyncSession, job: Job, now: datetime) -> None:
    """A browser call whose visitor went quiet ends; one its agent does not answer rings the next."""
    call = await voice_repo.get(session, int(job.key), for_update=True)
    if call is None:
        return
    why = await actions.browser_watch(session, call, now)
    if why:
        log.info("browser_call_ended", call_id=call.id, why=why)


def command_job(factory: AdapterFactory):  # type: ignore[no-untyped-def]
    """Provider commands that follow from a webhook (they must not wait in it): start the recording when
    the agent joins, take the customer off hold, remove an agent who handed over, end the call."""
    async def command(session: AsyncSession, job: Job, now: datetime) -> None:
        call = await voice_repo.get(session, int(str(job.key).split(":")[0]), for_update=True)
        op = job.payload.get("op")
        if call is None or (call.state == CallState.ENDED and op not in ("hangup_agent", "add_agent", "dial_customer")):
            return
        adapter = await _adapter(session, factory, call)
        if adapter is None:
            return
        name = call.details.get("conference") or conference_name(call.conversation_id, call.id)
        urls = twiml.Urls(adapter.hook_url + "/voice", call.id)
        customer = call.details.get("callback_sid") or call.provider_ref
        if op == "record" and not call.details.get("recording_sid"):
            sid = await adapter.start_recording(customer, urls.recording)
            call.details = {**call.details, "recording_sid": sid, "recording_started_at": now.isoformat()}
        elif op == "unhold":
            await adapter.update_participant(name, "customer", {"Hold": "false"})
        elif op == "remove":
            await adapter.remove_participant(name, str(job.payload["who"]))
        elif op == "hangup":
            await adapter.end_call(customer)
        elif op == "add_agent" and call.agent_id is not None:  # a callback's customer answered: now the agent
            agent_sid = await adapter.add_participant(name, adapter.config.agent_to(call.agent_id),
                                                      label=agent_label(call.agent_id), status_callback=urls.agent_status,
                                                      conference_events=urls.conference_events)
            call.details = {**call.details, "agent_call_sid": agent_sid}
        elif op == "dial_customer":  # a callback's agent is in the conference: now the customer
            joined = twiml.conference(urls, name, music_url=adapter.config.hold_music_url, locale=call.locale)
            sid = await adapter.dial(actions.customer_number(call), joined, urls.callback_status)
            call.details = {**call.details, "callback_sid": sid}
        elif op == "hangup_agent" and call.agent_id is not None:  # nobody answered the agent's own call
            await adapter.remove_participant(name, agent_label(call.agent_id))

    return command


def recordings_job(factory: AdapterFactory, days: int | None):  # type: ignore[no-untyped-def]
    """Delete recordings older than the retention (at the provider, then here), 100 a round, daily."""
    async def prune(session: AsyncSession, job: Job, now: datetime) -> None:
        done = 0
        if days is not None:
            for call in await voice_repo.recordings_older_than(session, now - timedelta(days=days)):
                adapter = await _adapter(session, factory, call)
                if adapter is not None and hasattr(adapter, "delete_recording"):
                    await adapter.delete_recording(call.recording_url)
                await actions.recording_deleted(session, call, now)
                done += 1
            if done:
                log.info("voice_recordings_deleted", count=done)
        again = now if done >= 100 else now + timedelta(days=1)
        await schedule_job(session, job.kind, job.key, again)
    return prune


class Voice:
    """The voice loops of one process."""

    name = "voice"

    def __init__(self, db: Database, factory: AdapterFactory, timers: TimerWorker, *,
                 files: FileStore | None = None, recording_days: int | None = None,
                 ice_servers: list[dict[str, Any]] | None = None, max_relayed_calls: int = 20,
                 stt_model_dir: str | None = None, stt_language: str | None = None) -> None:
        self.connector = VoiceConnector(db)
        self.media = MediaHub(ice_servers=ice_servers, max_calls=max_relayed_calls)  # browser calls the server relays (voice/browser)
        # Asterisk channels (connects only if one exists)
        self.ari = ari.AriLoop(db, factory, files=files, transcribe=bool(stt_model_dir))
        # recordings transcribed by a local model, if one is configured (voice.transcribe)
        self.transcripts = Transcripts(db, factory, files, Transcriber(stt_model_dir, language=stt_language)
                                       if stt_model_dir else None)
        timers.register(actions.TRANSCRIBE_JOB, self.transcripts.job)
        timers.register(actions.WATCH_JOB, watch_job)
        timers.register(actions.CONNECT_JOB, connect_job(factory))
        timers.register(actions.COMMAND_JOB, command_job(factory))
        timers.register(actions.RECORDINGS_JOB, recordings_job(factory, recording_days))
        timers.every(actions.RECORDINGS_JOB, "all", first_after=300.0)
        # a caller on the line whose queue asks for it must be verified before sensitive contact actions
        guards.register_sensitive("voice.verified_caller", actions.check_verified_caller)

    def on_event(self, env: Any) -> None:
        self.connector.on_event(env)
        self.ari.on_event(env)

    @property
    def parts(self) -> tuple[OutboxFollower | ari.AriLoop | Transcripts, ...]:
        return (self.connector, self.ari, self.transcripts)

    def wake(self) -> None:
        self.connector.wake()

    async def start(self) -> None:
        await self.connector.start()
        await self.ari.start()
        await self.transcripts.start()

    async def stop(self) -> None:
        await self.media.stop()
        await self.transcripts.stop()
        await self.ari.stop()
        await self.connector.stop()
