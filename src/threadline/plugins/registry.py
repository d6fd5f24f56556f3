"""Which integration packages exist: the bundled ones plus those installed with an entry point.

- Bundled: every package under ``threadline/channels/`` that defines ``integration`` (an ``Integration``).
  They are found by folder, so a source tree that is not pip-installed has every bundled channel, and the
  core names none of them.
- Installed: the entry-point group ``threadline.integrations`` (``name = "package.module:integration"``).
- Older packages: the group ``threadline.channels`` (``kind = "package.module:AdapterClass"``) still works;
  each adapter becomes a channel integration of its own.

Loading refuses, with one message naming every package involved, a manifest that is invalid, a package
that cannot be imported, and two packages claiming the same integration name or channel kind: a process
never starts with a channel that would silently shadow another. The result is cached per process.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint
from importlib.metadata import entry_points as installed_entry_points
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pydantic import ValidationError

from threadline.channels.base import ChannelAdapter
from threadline.plugins.base import Integration, PluginError, PluginType, describe

GROUP = "threadline.integrations"
CHANNELS_GROUP = "threadline.channels"  # adapter classes only, from before integration packages
BUNDLED = ("threadline.channels",)  # namespaces whose sub-packages may define ``integration``

EntryPoints = Callable[[str], Iterable[EntryPoint]]


def entry_points(group: str) -> Iterable[EntryPoint]:
    return installed_entry_points(group=group)


@dataclass(frozen=True)
class Registered:
    integration: Integration
    origin: str  # where it came from, in words: "threadline.channels.email (bundled)", an entry point…

    @property
    def name(self) -> str:
        return self.integration.name


@dataclass(frozen=True)
class Registry:
    entries: tuple[Registered, ...]
    adapters: Mapping[str, type[ChannelAdapter]]  # channel kind -> adapter class

    @property
    def integrations(self) -> tuple[Integration, ...]:
        return tuple(e.integration for e in self.entries)

    def migration_locations(self) -> list[Path]:
        return [e.integration.migrations for e in self.entries if e.integration.migrations is not None]


def _origin(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    installed = f" from {dist.name} {dist.version}" if dist is not None else ""
    return f"entry point {ep.name!r} = {ep.value!r} (group {ep.group}{installed})"


def _bundled(namespaces: Iterable[str], problems: list[str]) -> list[tuple[Any, str]]:
    found: list[tuple[Any, str]] = []
    for namespace in namespaces:
        package = importlib.import_module(namespace)
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
            if not info.ispkg:
                continue
            module_name = f"{namespace}.{info.name}"
            try:
                module = importlib.import_module(module_name)
            except Exception as exc:  # noqa: BLE001 - reported with every other problem
                problems.append(f"{module_name} (bundled) cannot be imported: {exc}")
                continue
            manifest = getattr(module, "integration", None)
            if manifest is not None:  # a package without one is a library (e.g. channels/meta)
                found.append((manifest, f"{module_name} (bundled)"))
    return found


def _load(ep: EntryPoint, problems: list[str]) -> Any:
    try:
        return ep.load()
    except ValidationError as exc:
        problems.append(f"{_origin(ep)}: invalid manifest: {describe(exc)}")
    except Exception as exc:  # noqa: BLE001 - reported with every other problem
        problems.append(f"{_origin(ep)} cannot be loaded: {type(exc).__name__}: {exc}")
    return None


def _validated(manifest: Any, origin: str, problems: list[str]) -> Integration | None:
    if not isinstance(manifest, Integration):
        problems.append(f"{origin} is not an Integration manifest (it is {type(manifest).__name__})")
        return None
    try:
        return Integration.model_validate(manifest)  # again: it may have been built without validation
    except ValidationError as exc:
        problems.append(f"integration {getattr(manifest, 'name', '?')!r} ({origin}): {describe(exc)}")
        return None


def discover(*, bundled: Iterable[str] = BUNDLED, source: EntryPoints | None = None) -> Registry:
    """Find, validate and index every integration; raise ``PluginError`` naming every refused package.
    ``source(group)`` lists the entry points of a group (default: the installed distributions')."""
    eps = source or entry_points
    problems: list[str] = []
    candidates = _bundled(bundled, problems)
    candidates += [(obj, _origin(ep)) for ep in eps(GROUP) if (obj := _load(ep, problems)) is not None]

    entries: list[Registered] = []
    seen: set[int] = set()
    for manifest, origin in candidates:
        if id(manifest) in seen:  # the same manifest twice (an entry point to a bundled package)
            continue
        seen.add(id(manifest))
        integration = _validated(manifest, origin, problems)
        if integration is not None:
            entries.append(Registered(integration, origin))

    known = {adapter for e in entries for adapter in e.integration.adapters}
    for ep in eps(CHANNELS_GROUP):
        cls = _load(ep, problems)
        if cls is None or cls in known:  # an older install's entry for an adapter a package brings
            continue
        if not (isinstance(cls, type) and issubclass(cls, ChannelAdapter)):
            problems.append(f"{_origin(ep)} is not a ChannelAdapter subclass")
            continue
        known.add(cls)
        try:
            integration = Integration(name=str(getattr(cls, "kind", "")), type=PluginType.CHANNEL,
                                      title=str(getattr(cls, "title", "") or getattr(cls, "kind", "")),
                                      adapters=(cls,))
        except ValidationError as exc:
            problems.append(f"{_origin(ep)}: invalid channel adapter: {describe(exc)}")
            continue
        entries.append(Registered(integration, _origin(ep)))

    by_name: dict[str, Registered] = {}
    by_kind: dict[str, Registered] = {}
    adapters: dict[str, type[ChannelAdapter]] = {}
    for entry in entries:
        other = by_name.setdefault(entry.name, entry)
        if other is not entry:
            problems.append(f"the integration name {entry.name!r} is claimed by {other.origin} and by {entry.origin}")
            continue
        for adapter in entry.integration.adapters:
            owner = by_kind.setdefault(adapter.kind, entry)
            if owner is not entry:
                problems.append(f"the channel kind {adapter.kind!r} is claimed by integration {owner.name!r} "
                                f"({owner.origin}) and by integration {entry.name!r} ({entry.origin})")
                continue
            adapters[adapter.kind] = adapter
    if problems:
        raise PluginError("integration packages refused at start:\n- " + "\n- ".join(problems))
    return Registry(tuple(by_name.values()), MappingProxyType(adapters))


_current: Registry | None = None


def load() -> Registry:
    """The process's registry, discovered on first use (raises ``PluginError``, again on every call, until
    the packages are fixed)."""
    global _current
    if _current is None:
        _current = discover()
    return _current


def reset() -> None:
    """Forget the discovered registry (tests that install fake entry points)."""
    global _current
    _current = None


def integrations() -> tuple[Integration, ...]:
    return load().integrations


def adapters() -> Mapping[str, type[ChannelAdapter]]:
    return load().adapters


def get_adapter_class(kind: str) -> type[ChannelAdapter] | None:
    return load().adapters.get(kind)
