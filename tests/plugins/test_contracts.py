"""The import contracts that keep the core free of channel packages name every bundled package: a new
folder under threadline/channels/ that the lists forgot would escape them silently."""

from __future__ import annotations

import pkgutil
import tomllib
from pathlib import Path

import threadline.channels

PYPROJECT = Path(__file__).parents[2] / "pyproject.toml"


def contract(name_start: str) -> dict:
    contracts = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]["contracts"]
    return next(c for c in contracts if c["name"].startswith(name_start))


def test_the_core_and_host_contracts_name_every_bundled_package() -> None:
    bundled = {f"threadline.channels.{m.name}" for m in pkgutil.iter_modules(threadline.channels.__path__)
               if m.ispkg}
    assert bundled >= {"threadline.channels.email", "threadline.channels.webchat"}
    assert set(contract("The core names no bundled channel package")["forbidden_modules"]) == bundled
    assert set(contract("Integration packages reach the running process")["source_modules"]) == bundled


def test_the_layers_contract_keeps_the_whole_core_order() -> None:
    """cli > web > services > workers > actions > bus > db > domain, in that order (issue 13 item 10);
    other modules may sit between them, none of these may be dropped or swapped."""
    layers = contract("Layers: each package")["layers"]
    core = ["threadline.cli", "threadline.web", "threadline.services", "threadline.workers", "threadline.actions",
            "threadline.bus", "threadline.db", "threadline.domain"]
    assert [layer for layer in layers if layer in core] == core
