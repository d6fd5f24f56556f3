"""A small IVR used by the flow tests (and shown in docs/flows.md): language → hours → menu → order
number → queue."""

from __future__ import annotations

import copy
from typing import Any

IVR: dict[str, Any] = {
    "start": "welcome",
    "locales": ["en", "es"],
    "default_locale": "en",
    "nodes": {
        "welcome": {"type": "say", "text": {"en": "Welcome to Acme.", "es": "Bienvenido a Acme."},
                    "audio": {"en": "file-41"}, "next": "language"},
        "language": {"type": "language", "prompt": {"en": "For English press 1. Para español marque 2.",
                                                    "es": "For English press 1. Para español marque 2."},
                     "options": {"1": "en", "2": "es"}, "next": "hours", "no_match": "hours"},
        "hours": {"type": "hours", "timezone": "Europe/Madrid",
                  "weekly": {"mon": [["09:00", "13:00"], ["14:00", "18:00"]], "tue": [["09:00", "18:00"]],
                             "wed": [["09:00", "18:00"]], "thu": [["09:00", "18:00"]], "fri": [["09:00", "15:00"]]},
                  "holidays": ["2025-12-25"], "open": "main", "closed": "closed"},
        "closed": {"type": "voicemail", "prompt": {"en": "We are closed. Leave a message.",
                                                   "es": "Estamos cerrados. Deje un mensaje."}, "max_seconds": 60},
        "main": {"type": "menu", "prompt": {"en": "Billing 1, orders 2.", "es": "Facturación 1, pedidos 2."},
                 "options": [
                     {"key": "1", "label": {"en": "Billing", "es": "Facturación"}, "keywords": ["invoice", "bill"],
                      "next": "billing"},
                     {"key": "2", "label": {"en": "Orders", "es": "Pedidos"}, "keywords": ["order", "delivery"],
                      "next": "order"},
                 ],
                 "max_tries": 3, "no_match": "agent"},
        "billing": {"type": "queue", "queue_id": 2, "skills": ["billing"], "priority": 5},
        "order": {"type": "collect", "prompt": {"en": "Key in your order number.", "es": "Marque su pedido."},
                  "attribute": "order_number", "min_digits": 6, "max_digits": 8, "validator": "digits",
                  "next": "tag", "fail": "agent"},
        "tag": {"type": "set", "attributes": {"last_order": "{order_number}", "ivr": True}, "next": "orders"},
        "orders": {"type": "queue", "queue_id": 1, "skills": ["orders"], "priority": 3,
                   "callback_after_seconds": 120, "callback_key": "9"},
        "agent": {"type": "handoff"},
    },
}


def ivr() -> dict[str, Any]:
    return copy.deepcopy(IVR)
