"""Inbound message enrichment as pure building blocks: redaction of structured personal and payment data
(redaction.py), language detection (language.py) and the one function the inbound path calls (apply.py).

No I/O and no database here: text in, values out (docs/enrichment.md).
"""

from threadline.enrichment.redaction import (
    ALL,
    OFF,
    PCI,
    PCI_IDS,
    Category,
    Finding,
    Kind,
    MaskStyle,
    Redacted,
    RedactionPolicy,
    redact,
)

__all__ = [
    "ALL",
    "OFF",
    "PCI",
    "PCI_IDS",
    "Category",
    "Finding",
    "Kind",
    "MaskStyle",
    "Redacted",
    "RedactionPolicy",
    "redact",
]
