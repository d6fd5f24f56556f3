"""Feature packages (docs/feature-packages.md) stay what the import contracts think they are: every package
named in ``threadline.features`` has the layered layout and is in each contract that guards it, and a new
folder with that layout that nobody listed is caught here instead of escaping the contracts silently."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import threadline
from threadline import features

PYPROJECT = Path(__file__).parents[1] / "pyproject.toml"
LAYOUT = ("domain", "models", "repo", "actions")  # every feature package has these; worker and api if it needs


def contract(name_start: str) -> dict:
    contracts = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]["contracts"]
    return next(c for c in contracts if c["name"].startswith(name_start))


def test_every_package_with_the_layout_is_listed() -> None:
    laid_out = {f"threadline.{m.name}" for m in pkgutil.iter_modules(threadline.__path__) if m.ispkg
                and all((Path(threadline.__path__[0]) / m.name / f"{layer}.py").exists()
                        or (Path(threadline.__path__[0]) / m.name / layer / "__init__.py").exists() for layer in LAYOUT)}
    assert "threadline.webhooks" in laid_out
    assert laid_out == set(features.FEATURES)


@pytest.mark.parametrize("package", features.FEATURES)
def test_a_feature_package_has_its_layers(package: str) -> None:
    present = [m.name for m in pkgutil.iter_modules(importlib.import_module(package).__path__)]
    assert set(LAYOUT) <= set(present)
    assert {"worker", "api"} & set(present), f"{package} contributes neither a worker nor an api"
    for name in present:
        importlib.import_module(f"{package}.{name}")


def test_the_contracts_name_every_feature_package() -> None:
    listed = set(features.FEATURES)
    inside = contract("Feature packages are layered inside")
    assert set(inside["containers"]) == listed
    assert inside["layers"] == list(features.LAYERS)
    assert set(contract("The core names no feature package")["forbidden_modules"]) == listed
    layers = contract("Layers: each package")["layers"]
    assert listed <= set(layers)
    # above the web layer: the core imports a feature package only at the wiring points it ignores
    assert all(layers.index(p) < layers.index("threadline.web") for p in listed)
    assert {f"{p}.domain" for p in listed} <= set(contract("The domain is pure")["source_modules"])


def test_a_feature_package_imports_nothing_on_its_own() -> None:
    """Importing one layer must not drag in the others (or the core's web layer) through ``__init__``."""
    for package in features.FEATURES:
        code = (f"import sys, {package}.domain\n"
                f"loaded = sorted(m for m in sys.modules if m.startswith(('{package}', 'threadline.web.', "
                f"'threadline.db.', 'sqlalchemy')))\n"
                f"assert loaded == ['{package}', '{package}.domain'], loaded")
        subprocess.run([sys.executable, "-c", code], check=True)


def test_alembic_sees_the_feature_tables() -> None:
    """``db/migrations/env.py`` calls ``import_models``: without it autogenerate would drop these tables."""
    code = ("from threadline.db.models import Base\n"
            "from threadline import features\n"
            "features.import_models()\n"
            "assert {'webhook_endpoints', 'webhook_deliveries', 'flows', 'flow_versions', 'kb_articles', "
            "'kb_translations'} <= set(Base.metadata.tables), "
            "Base.metadata.tables")
    subprocess.run([sys.executable, "-c", code], check=True)
    env = (Path(threadline.__path__[0]) / "db" / "migrations" / "env.py").read_text()
    assert "features.import_models()" in env
