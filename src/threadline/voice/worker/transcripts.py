"""Transcripts of call recordings by a local model (``THREADLINE_STT_MODEL_DIR``, ``voice/transcribe.py``).

``actions.recording(..., transcribe=True)`` schedules the ``voice.transcribe`` job for the call. The job
itself is short (it runs in a write transaction, which on SQLite holds the process's write lock): it
checks the call still wants a transcript and hands it to the ``voice-transcripts`` loop, moving the job
``rerun_after`` later as a safety net (a process that dies mid-way leaves the job to run again). The loop,
outside any transaction, gets the audio into memory, runs the model on a worker thread and stores the
text with ``actions.transcript(..., source="local model")`` in a short write transaction that ends the job.

Where the audio comes from (``CallRow.recording_url``):
* ``file:{sha256}``: a recording kept in Threadline's own file store;
* any other URL: the provider, through the channel's adapter ``fetch_recording`` (Twilio's REST API; the
  ARI stored recording of an Asterisk voicemail), and only from that provider's own host.

A provider transcript wins: a call that has one when the job runs is left alone, and a Twilio voicemail
(for which Threadline asks Twilio to transcribe) waits ``provider_grace`` first. A model that cannot be
used (missing directory, the ``stt`` extra not installed) is logged at start-up and each call it should
have transcribed is marked with the reason (``details["transcript_error"]``) instead of failing again
and again.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions.scheduler import cancel_job, schedule_job
from threadline.adapters import AdapterFactory
from threadline.db.models import ChannelInstanceRow
from threadline.db.session import Database
from threadline.files.store import FileStore
from threadline.loop import BackgroundLoop
from threadline.voice import actions
from threadline.voice import repo as voice_repo
from threadline.voice.models import CallRow
from threadline.voice.transcribe import Transcriber, TranscriberUnavailable
from threadline.workers.scheduler import Job

log = structlog.get_logger(__name__)

SOURCE = "local model"
FILE_PREFIX = "file:"  # a recording in Threadline's file store: file:{sha256}
MAX_TRIES = 3  # attempts at one recording (fetch or model errors) before the call is marked


class AudioUnavailable(RuntimeError):
    """The recording's audio cannot be had (gone, or from a host that is not the channel's provider)."""


def provider_transcribes(call: CallRow) -> bool:
    """Threadline asks Twilio to transcribe voicemails (``twiml.voicemail``): its transcript may follow."""
    return call.provider == "twilio_voice" and bool(call.details.get("voicemail"))


class Transcripts(BackgroundLoop):
    """The ``voice.transcribe`` job's handler and the loop that runs the model, one recording at a time."""

    name = "voice-transcripts"

    def __init__(self, db: Database, factory: AdapterFactory, files: FileStore | None,
                 transcriber: Transcriber | None, *, provider_grace: timedelta = timedelta(minutes=5),
                 rerun_after: timedelta = timedelta(minutes=30), interval: float = 60.0) -> None:
        super().__init__(interval=interval)
        self.db = db
        self.factory = factory
        self.files = files
        self.transcriber = transcriber
        self.provider_grace = provider_grace
        self.rerun_after = rerun_after
        self.problem: str | None = None  # why the configured model cannot be used (checked at start)
        self.done = 0  # recordings transcribed (tests, diagnostics)
        self._queue: deque[int] = deque()
        self._pending: set[int] = set()
        self._halt = threading.Event()  # seen by the model's thread between two segments

    # --- the job (in the timer worker's write transaction: short) -----------------------------------

    async def job(self, session: AsyncSession, job: Job, now: datetime) -> None:
        call = await voice_repo.get(session, int(job.key), for_update=True)
        if call is None or not call.recording_url or call.details.get("transcript"):
            return
        if self.transcriber is None:
            return  # transcription was switched off since the recording landed
        if self.problem is not None:
            call.details = {**call.details, "transcript_error": self.problem}
            return
        if provider_transcribes(call) and not job.payload.get("waited"):
            await schedule_job(session, job.kind, job.key, now + self.provider_grace, {"waited": True})
            return
        tries = int(job.payload.get("tries", 0)) + (0 if call.id in self._pending else 1)
        if tries > MAX_TRIES:
            log.warning("voice_transcript_given_up", call_id=call.id, tries=tries - 1)
            call.details = {**call.details,
                            "transcript_error": call.details.get("transcript_error") or "gave up"}
            return
        await schedule_job(session, job.kind, job.key, now + self.rerun_after, {**job.payload, "tries": tries})
        self.want(call.id)

    def want(self, call_id: int) -> None:
        """Transcribe this call's recording (once it is this call's turn)."""
        if call_id not in self._pending:
            self._pending.add(call_id)
            self._queue.append(call_id)
            self.wake()

    # --- the loop (no transaction while the model runs) ---------------------------------------------

    async def check(self) -> str | None:
        """Check the configured model at start-up (logged); the reason it cannot be used, if it cannot."""
        if self.transcriber is not None:
            try:
                path = await asyncio.to_thread(self.transcriber.check)
                self.problem = None
                log.info("voice_transcripts_ready", model_dir=str(path), language=self.transcriber.language)
            except TranscriberUnavailable as exc:
                self.problem = str(exc)
                log.error("voice_transcripts_unavailable", error=self.problem)
        return self.problem

    async def start(self) -> None:
        """Check the model and run the loop; without a model configured there is nothing to run."""
        if self.transcriber is not None:
            await self.check()
            await super().start()

    async def stop(self, grace: float = 10.0) -> None:
        self._halt.set()
        await super().stop(grace)

    async def tick(self) -> float | None:
        while self._queue and not self._stopping.is_set():
            call_id = self._queue.popleft()
            try:
                await self.run_one(call_id)
            finally:
                self._pending.discard(call_id)
        return None

    async def run_one(self, call_id: int) -> None:
        """Fetch, transcribe and store one call's recording; a failure is logged and noted on the call (the
        job runs again later, up to ``MAX_TRIES`` times)."""
        assert self.transcriber is not None
        async with self.db.transaction(write=False) as s:
            call = await voice_repo.get(s, call_id)
            channel = await s.get(ChannelInstanceRow, call.channel_instance_id) if call is not None else None
        if call is None or not call.recording_url or call.details.get("transcript"):
            return
        try:
            audio = await self.audio(call, channel)
            text = await self.transcriber.transcribe(audio, stop=self._halt)
        except Exception as exc:  # any failure is noted on the call, and the job runs again
            if self._halt.is_set():
                return
            error = f"{exc.__class__.__name__}: {exc}"[:500]
            log.warning("voice_transcript_failed", call_id=call_id, error=error)
            async with self.db.transaction(write=True) as s:
                row = await voice_repo.get(s, call_id, for_update=True)
                if row is not None:
                    row.details = {**row.details, "transcript_error": error}
            return
        async with self.db.transaction(write=True) as s:
            row = await voice_repo.get(s, call_id, for_update=True)
            if row is None or row.details.get("transcript") or row.recording_url != call.recording_url:
                return  # a provider transcript came meanwhile, or the recording was deleted
            if text:
                await actions.transcript(s, row, text, SOURCE)
                row.details = {k: v for k, v in row.details.items() if k != "transcript_error"}
            else:
                row.details = {**row.details, "transcript_error": "no speech recognised"}
            await cancel_job(s, actions.TRANSCRIBE_JOB, call_id)
        self.done += 1
        log.info("voice_transcript_stored", call_id=call_id, chars=len(text),
                 recording_seconds=call.recording_seconds)

    async def audio(self, call: CallRow, channel: ChannelInstanceRow | None) -> bytes:
        """The recording's bytes, in memory."""
        url = call.recording_url or ""
        if url.startswith(FILE_PREFIX):
            if self.files is None:
                raise AudioUnavailable("no file store in this process")
            try:
                return await asyncio.to_thread(self.files.read, url.removeprefix(FILE_PREFIX))
            except (ValueError, OSError) as exc:
                raise AudioUnavailable(f"the recording is not in the file store ({exc.__class__.__name__})") from None
        if channel is None:
            raise AudioUnavailable("the call's phone line was deleted")
        adapter: Any = self.factory.for_row(channel)
        fetch = getattr(adapter, "fetch_recording", None)
        if fetch is None:
            raise AudioUnavailable(f"a {channel.kind} line gives no recordings to fetch")
        # the URL came from the provider; still, only ever fetch it from the provider's own host
        own = getattr(adapter.config, "api_base_url", None) or getattr(adapter.config, "ari_url", None)
        if not own or urlsplit(url).netloc != urlsplit(own).netloc:
            raise AudioUnavailable("the recording is not on the channel's provider")
        data, _ctype = await fetch(url)
        return bytes(data)

