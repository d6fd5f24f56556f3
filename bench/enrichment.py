"""Inbound enrichment, per message: redaction (each preset) and language detection, p50/p99 in µs, and the
load time and resident memory the language detector adds.

    python -m bench.enrichment            # default detector (low-accuracy mode)
    python -m bench.enrichment --high     # high-accuracy mode too (in a child process, for its memory)

Messages: the golden sets in tests/enrichment/golden (chat-sized, 40-130 characters) and the same padded to
1 KB with a secret or two in them.
"""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "enrichment" / "golden"


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def percentiles(samples: list[float]) -> tuple[float, float]:
    samples = sorted(samples)
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))]


def pad_to_1kb(texts: list[str], rng: random.Random, count: int = 300, must: list[str] | None = None) -> list[str]:
    out = []
    for _ in range(count):
        parts: list[str] = [rng.choice(must)] if must else []
        while sum(len(p) + 1 for p in parts) < 1024:
            parts.insert(rng.randrange(len(parts) + 1), rng.choice(texts))
        out.append(" ".join(parts)[:1024])
    return out


def corpora() -> dict[str, list[str]]:
    """chat: the language golden set (no secret); pii: the redaction golden set (secrets and near-misses);
    1 KB: chat padded to 1 KB; 1 KB+pii: the same with one message of the pii set in it."""
    chat: list[str] = []
    for code in ("en", "es", "it", "fr", "de", "pt"):
        chat += [t for t in (GOLDEN / f"language_{code}.txt").read_text(encoding="utf-8").splitlines() if t]
    data = json.loads((GOLDEN / "pii.json").read_text(encoding="utf-8"))
    pii = [e["text"] for e in data["secrets"] + data["near_misses"] + data["optional"]]
    rng = random.Random(1)
    return {"chat": chat, "pii": pii, "1 KB": pad_to_1kb(chat, rng), "1 KB+pii": pad_to_1kb(chat, rng, must=pii)}


def corpus() -> tuple[list[str], list[str]]:
    c = corpora()
    return c["chat"], c["1 KB"]


def time_each(fn, texts: list[str], rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        for t in texts:
            t0 = time.perf_counter_ns()
            fn(t)
            out.append((time.perf_counter_ns() - t0) / 1000)
    return out


def detector_figures(accuracy: str) -> dict[str, float]:
    from threadline.enrichment.language import LanguageDetector

    before = rss_mb()
    t0 = time.perf_counter()
    detector = LanguageDetector(accuracy=accuracy)  # type: ignore[arg-type]
    detector.load()
    load_s = time.perf_counter() - t0
    added = rss_mb() - before
    chat, kb = corpus()
    p50, p99 = percentiles(time_each(detector.guess, chat, 3))
    k50, k99 = percentiles(time_each(detector.guess, kb, 1))
    return {"load_s": load_s, "rss_added_mb": added, "chat_p50": p50, "chat_p99": p99, "kb_p50": k50, "kb_p99": k99}


def main() -> None:
    if "--child" in sys.argv:
        print(json.dumps(detector_figures(sys.argv[-1])))
        return
    from threadline.enrichment.redaction import RedactionPolicy, redact

    sets = corpora()
    print("messages: " + ", ".join(f"{name} {len(texts)} (mean {statistics.mean(map(len, texts)):.0f} chars)"
                                   for name, texts in sets.items()))
    print("redaction, µs per message, p50 / p99")
    print("  policy   " + "".join(f"{name:>18}" for name in sets))
    for preset in ("pci", "pci+ids", "all"):
        policy = RedactionPolicy.preset(preset, region="ES")
        cells = []
        for texts in sets.values():
            time_each(lambda t, p=policy: redact(t, p), texts, 1)  # warm
            p50, p99 = percentiles(time_each(lambda t, p=policy: redact(t, p), texts, 5))
            cells.append(f"{p50:7.1f} / {p99:7.1f}")
        print(f"  {preset:<8} " + "".join(f"{c:>18}" for c in cells))
    modes = ["low", "high"] if "--high" in sys.argv else ["low"]
    print("language detection (each mode in a fresh process, 6 languages)")
    for mode in modes:
        out = subprocess.run([sys.executable, "-m", "bench.enrichment", "--child", mode], capture_output=True,
                             text=True, check=True, cwd=ROOT).stdout
        f = json.loads(out.strip().splitlines()[-1])
        print(f"  {mode:<5} load {f['load_s']:.2f} s, RSS added {f['rss_added_mb']:.0f} MB; µs per message: chat "
              f"p50 {f['chat_p50']:.0f} p99 {f['chat_p99']:.0f}, 1 KB p50 {f['kb_p50']:.0f} p99 {f['kb_p99']:.0f}")


if __name__ == "__main__":
    main()
