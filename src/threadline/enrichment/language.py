"""Which language a message is written in, among a configured set, with lingua-language-detector.

The models are inside lingua's wheel: nothing is downloaded. The detector is built lazily, once per process,
on the first message (``default_detector``), not at import, so a process that never detects pays nothing.

Accuracy mode (measured in docs/enrichment.md, 6 languages): ``low`` (trigram models only) adds 20-30 MB of
resident memory and builds in ~0.1 s; ``high`` adds 160-240 MB and builds in 1-2 s. A web process is
~125-155 MB and the budget is < 300 MB, so the default is ``low``; ``high`` is for a process of its own. Both
reach the 98 % the golden set asks on messages of 5 words or more (tests/enrichment/test_language.py).

A text too short or too ambiguous to tell gets ``None`` (unknown), never a guess: fewer than ``min_words``
words, or a best confidence under ``min_confidence``, or a gap to the second under ``min_gap``. The caller
falls back to the contact's or the inbox's locale.

Only the first ``max_chars`` (400) characters are read: the time is linear in the length, and a long
message's first sentences tell its language.

If lingua is not installed every answer is ``None`` (``available()`` says why).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

DEFAULT_LANGUAGES: tuple[str, ...] = ("en", "es", "it", "fr", "de", "pt")

Accuracy = Literal["low", "high"]

_WORD = re.compile(r"[^\W\d_]{2,}")


@dataclass(frozen=True, slots=True)
class LanguageGuess:
    """An ISO 639-1 code and lingua's confidence for it (0..1, relative to the configured languages)."""

    code: str
    confidence: float


def available() -> bool:
    """Whether lingua-language-detector can be imported here (it is a dependency; a trimmed install may
    lack it, and then every detection answers None)."""
    try:
        import lingua  # noqa: F401
    except ImportError:
        return False
    return True


class LanguageDetector:
    """A detector over ``languages`` (ISO 639-1 codes), built on first use, thread-safe."""

    def __init__(self, languages: Iterable[str] = DEFAULT_LANGUAGES, *, accuracy: Accuracy = "low",
                 min_words: int = 3, min_confidence: float = 0.6, min_gap: float = 0.25,
                 max_chars: int = 400) -> None:
        codes = tuple(dict.fromkeys(c.strip().lower() for c in languages))
        if len(codes) < 2:
            raise ValueError("language detection needs at least two languages to choose between")
        if accuracy not in ("low", "high"):
            raise ValueError(f"accuracy is 'low' or 'high', not {accuracy!r}")
        self.languages = codes
        self.accuracy = accuracy
        self.min_words = min_words
        self.min_confidence = min_confidence
        self.min_gap = min_gap
        self.max_chars = max_chars
        self._lock = threading.Lock()
        self._detector: Any = None
        self._failed = False

    @property
    def loaded(self) -> bool:
        return self._detector is not None

    def load(self) -> bool:
        """Build the detector now (a worker may want to pay this at start, not on its first message).
        False when lingua is missing."""
        if self._detector is not None:
            return True
        if self._failed:
            return False
        with self._lock:
            if self._detector is None and not self._failed:
                try:
                    from lingua import IsoCode639_1, Language, LanguageDetectorBuilder
                except ImportError:
                    self._failed = True
                    return False
                try:
                    langs = [Language.from_iso_code_639_1(getattr(IsoCode639_1, c.upper()))
                             for c in self.languages]
                except AttributeError as exc:
                    raise ValueError(f"unknown ISO 639-1 code in {self.languages}") from exc
                builder = LanguageDetectorBuilder.from_languages(*langs)
                if self.accuracy == "low":
                    builder = builder.with_low_accuracy_mode()
                self._detector = builder.with_preloaded_language_models().build()
        return self._detector is not None

    def guess(self, text: str) -> LanguageGuess | None:
        """The language and its confidence, or None when the text is too short or ambiguous to tell."""
        if len(_WORD.findall(text)) < self.min_words:
            return None
        if not self.load():
            return None
        if len(text) > self.max_chars:
            # The time is linear in the length (~1 ms per KB); the first few sentences tell the language.
            cut = text.rfind(" ", 0, self.max_chars)
            text = text[:cut if cut > 0 else self.max_chars]
        values = self._detector.compute_language_confidence_values(text)
        if not values:
            return None
        best = values[0]
        second = values[1].value if len(values) > 1 else 0.0
        if best.value < self.min_confidence or best.value - second < self.min_gap:
            return None
        return LanguageGuess(best.language.iso_code_639_1.name.lower(), round(best.value, 3))

    def detect(self, text: str) -> str | None:
        found = self.guess(text)
        return found.code if found else None


_default: LanguageDetector | None = None
_default_lock = threading.Lock()


def configure(languages: Iterable[str] = DEFAULT_LANGUAGES, *, accuracy: Accuracy = "low") -> LanguageDetector:
    """Set the process's detector (at start, from settings). Not built until first used."""
    global _default
    with _default_lock:
        _default = LanguageDetector(languages, accuracy=accuracy)
        return _default


def default_detector() -> LanguageDetector:
    """The one detector of this process (configured, or the default languages in low-accuracy mode)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = LanguageDetector()
    return _default


def guess(text: str) -> LanguageGuess | None:
    return default_detector().guess(text)


def detect(text: str) -> str | None:
    """ISO 639-1 code of ``text``'s language among the configured ones, or None (unknown)."""
    return default_detector().detect(text)
