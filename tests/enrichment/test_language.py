"""Language detection on the golden set in golden/: >= 98 % on messages of 5 words or more for en, es, it
(written for this repository: contact-center messages), the right language or None on short ones."""

from __future__ import annotations

import re
import sys
import threading
from pathlib import Path

import pytest

from threadline.enrichment import language
from threadline.enrichment.apply import Enriched, enrich_inbound
from threadline.enrichment.language import LanguageDetector, LanguageGuess
from threadline.enrichment.redaction import OFF, PCI, Finding, Kind

GOLDEN = Path(__file__).parent / "golden"
MAIN = ("en", "es", "it")
OTHERS = ("fr", "de", "pt")


def messages(code: str) -> list[str]:
    lines = (GOLDEN / f"language_{code}.txt").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip()]


def short_messages() -> list[tuple[str, str]]:
    rows = (GOLDEN / "language_short.tsv").read_text(encoding="utf-8").splitlines()
    return [tuple(r.split("\t", 1)) for r in rows if r and not r.startswith("#")]  # type: ignore[misc]


def words(text: str) -> int:
    return len(re.findall(r"[^\W\d_]+", text))


@pytest.fixture(scope="module")
def low() -> LanguageDetector:
    detector = LanguageDetector()  # the default: six languages, low accuracy
    assert detector.load()
    return detector


def accuracy(detector: LanguageDetector, codes: tuple[str, ...]) -> dict[str, tuple[int, int, list[str]]]:
    out = {}
    for code in codes:
        texts = [t for t in messages(code) if words(t) >= 5]
        wrong = [f"{t!r} -> {detector.detect(t)}" for t in texts if detector.detect(t) != code]
        out[code] = (len(texts) - len(wrong), len(texts), wrong)
    return out


def report(label: str, figures: dict[str, tuple[int, int, list[str]]]) -> None:
    print(f"\nlanguage accuracy, {label}, messages of >= 5 words:")
    for code, (ok, n, wrong) in figures.items():
        print(f"  {code}: {ok}/{n} = {100 * ok / n:.1f} %" + (f"  missed: {wrong}" if wrong else ""))


def test_the_golden_set_has_at_least_100_messages_of_5_words_per_main_language() -> None:
    for code in MAIN:
        texts = messages(code)
        assert len(texts) >= 100 and all(words(t) >= 5 for t in texts), code
        assert len(set(texts)) == len(texts), code


def test_accuracy_at_least_98_percent_per_language_default_mode(low: LanguageDetector) -> None:
    figures = accuracy(low, MAIN + OTHERS)
    report("low-accuracy mode (the default), 6 languages", figures)
    for code in MAIN:
        ok, n, _ = figures[code]
        assert ok / n >= 0.98, code
    for code in OTHERS:  # 20 messages each, to catch confusions with the main three
        ok, n, _ = figures[code]
        assert ok / n >= 0.9, code


def test_accuracy_high_accuracy_mode() -> None:
    detector = LanguageDetector(accuracy="high")
    figures = accuracy(detector, MAIN + OTHERS)
    report("high-accuracy mode, 6 languages", figures)
    for code in MAIN:
        ok, n, _ = figures[code]
        assert ok / n >= 0.98, code
    for code in OTHERS:
        ok, n, _ = figures[code]
        assert ok / n >= 0.9, code
    del detector


@pytest.mark.parametrize("mode", ["low", "high"])
def test_short_messages_get_the_right_language_or_none_never_a_wrong_one(mode: str,
                                                                         low: LanguageDetector) -> None:
    detector = low if mode == "low" else LanguageDetector(accuracy="high")
    rows = short_messages()
    results = [(code, text, detector.detect(text)) for code, text in rows]
    wrong = [r for r in results if r[2] is not None and r[2] != r[0]]
    told = sum(1 for r in results if r[2] == r[0])
    print(f"\nshort messages ({mode}): {len(rows)}, right {told}, unknown {len(rows) - told - len(wrong)}, "
          f"wrong {len(wrong)}")
    assert wrong == []


def test_guess_carries_a_confidence(low: LanguageDetector) -> None:
    found = low.guess("Buongiorno, il mio ordine non è ancora arrivato, potete controllare?")
    assert isinstance(found, LanguageGuess) and found.code == "it" and 0.6 <= found.confidence <= 1
    assert low.guess("ok") is None
    assert low.guess("") is None
    assert low.guess("4111 1111 1111 1111 12/05/2024") is None
    assert low.guess("😡😡😡 !!! ???") is None


def test_a_long_message_is_read_from_its_start(low: LanguageDetector) -> None:
    text = " ".join(messages("it")[:30])
    assert len(text) > 2000
    assert low.detect(text) == "it"
    # the first 400 characters: Spanish, then English
    assert low.detect(" ".join(messages("es")[:4]) + " " + " ".join(messages("en"))) == "es"


def test_the_detector_is_built_lazily_and_once() -> None:
    detector = LanguageDetector(["en", "es", "it"])
    assert not detector.loaded
    assert detector.detect("ok") is None  # too short: answered without building it
    assert not detector.loaded
    results: list[str | None] = []
    threads = [threading.Thread(target=lambda: results.append(
        detector.detect("Hola, mi pedido todavía no ha llegado, ¿me podéis ayudar?"))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert detector.loaded and results == ["es"] * 4


def test_the_process_detector_is_one_and_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(language, "_default", None)
    first = language.default_detector()
    assert language.default_detector() is first
    assert first.languages == language.DEFAULT_LANGUAGES and first.accuracy == "low"
    configured = language.configure(["en", "it"])
    assert language.default_detector() is configured
    assert language.detect("Vorrei disdire il contratto prima del rinnovo, grazie mille") == "it"


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError):
        LanguageDetector(["en"])
    with pytest.raises(ValueError):
        LanguageDetector(["en", "es"], accuracy="medium")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        LanguageDetector(["en", "xx"]).load()


def test_without_lingua_every_answer_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "lingua", None)  # import lingua raises ImportError
    assert not language.available()
    detector = LanguageDetector()
    assert detector.detect("Hola, mi pedido todavía no ha llegado, ¿me podéis ayudar?") is None
    assert not detector.load()
    result = enrich_inbound("my card 4111 1111 1111 1111 was declined twice today", PCI, True, detector)
    assert result.text == "my card **** **** **** 1111 was declined twice today" and result.language is None


# --- apply.enrich_inbound --------------------------------------------------------------------------------

def test_enrich_inbound_redacts_and_detects(low: LanguageDetector) -> None:
    text = "Hola, me han cobrado dos veces en la tarjeta 4111 1111 1111 1111, ¿me lo podéis devolver?"
    result = enrich_inbound(text, PCI, True, low)
    assert result.text == text.replace("4111 1111 1111", "**** **** ****")
    assert result.redactions == (Finding(Kind.CARD, 45, 64),)
    assert result.language == "es" and result.language_confidence is not None
    assert "4111 1111 1111 1111" not in repr(result)


def test_enrich_inbound_without_language_or_redaction(low: LanguageDetector) -> None:
    text = "Hello, my parcel has not arrived yet, can you check?"
    assert enrich_inbound(text, OFF, False, low) == Enriched(text)
    assert enrich_inbound(text, OFF, True, low).language == "en"
    assert enrich_inbound("ok", OFF, True, low).language is None
