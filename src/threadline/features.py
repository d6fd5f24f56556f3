"""The feature packages of this build: bounded contexts that live in a folder of their own
(``threadline/<name>/``, layered inside: domain → models → repo → actions → worker → api). The pattern,
the wiring and a checklist for the next ones are in docs/feature-packages.md.

The core names no feature package except at its wiring points, which are listed here so they are found
in one place (import-linter's layers contract allows exactly these imports, pyproject.toml):

- the web app includes each package's router: ``web/app.py`` (the knowledge base's help center pages too);
- the process runs its loops and hands its logs to retention: ``services.py``;
- the desk's admin pages: ``web/desk/admin.py`` (and the flow builder's form, ``web/desk/flowform.py``);
- Alembic sees its tables: ``db/migrations/env.py`` calls ``import_models()``.

``tests/test_feature_packages.py`` checks every package named here has the layout and its contract, and
that every package with that layout is named here.
"""

from __future__ import annotations

import importlib

FEATURES = (
    "threadline.webhooks",  # outgoing webhooks, the worked example
    "threadline.flows",     # IVR and chat-bot flows: versioned definitions, the pure engine
    "threadline.voice",     # calls: the call model, Twilio call control, the CTI endpoint (uses flows)
    "threadline.kb",        # knowledge base: articles per locale, search, the public help center (/help)
)
# Inside each package, top to bottom; in parentheses the layers a package may go without (import-linter's
# optional layers): a package has a worker, an api or both (tests/test_feature_packages.py). Beside the domain,
# optionally, a wrapper of a model or library that imports nothing of Threadline (voice: speech-to-text).
LAYERS = ("(api)", "(worker)", "actions", "repo", "models", "domain | (transcribe)")


def import_models() -> None:
    """Register every feature package's tables on ``Base.metadata`` (Alembic's env, schema checks)."""
    for package in FEATURES:
        importlib.import_module(f"{package}.models")
