"""An integration package's manifest: what the package is, what it brings, how it is set up.

A package (bundled under ``threadline/channels/<name>/`` or installed with an entry point in the group
``threadline.integrations``) exposes one ``Integration``::

    integration = Integration(name="email", type=PluginType.CHANNEL, title="Email",
                              adapters=(EmailChannel,), setup=setup)

``setup(host)`` runs once per process when the services are built; it receives the package's ``Host``
(plugins/host.py) and contributes routes, loops and event subscriptions through it. It may return a
runtime object, which the process keeps (for diagnostics and tests). ``migrations`` is an Alembic versions
folder the package owns; it is added to Alembic's ``version_locations`` (a branch of its own: its first
revision has ``branch_labels`` and a core revision as ``down_revision``; ``threadline migrate`` upgrades
every head).

The manifest is validated when it is built and again when the registry loads it; every error names the
field, and the registry adds the package it came from.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from threadline.channels.base import ChannelAdapter
from threadline.plugins.host import Host

NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
NAME_RULE = "a lowercase id: a letter, then letters, digits or _, at most 40 characters"


class PluginType(StrEnum):
    CHANNEL = "channel"  # customer messages in and out (ChannelAdapter)
    TELEPHONY = "telephony"  # calls: call control, IVR (may bring ChannelAdapters too)
    AUTH = "auth"  # sign-in providers (OIDC, SAML)
    CRM = "crm"  # contact lookup and sync
    KB = "kb"  # knowledge bases
    BOT = "bot"  # virtual agents
    IMPORTER = "importer"  # data from other help desks


ADAPTER_TYPES = frozenset({PluginType.CHANNEL, PluginType.TELEPHONY})


class PluginError(RuntimeError):
    """An integration package was refused at start: its manifest is invalid, it cannot be imported, or it
    claims a name or a channel kind another package has. The message names the packages."""


class Integration(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True,
                              revalidate_instances="always")

    name: str  # unique across integrations; never renamed
    type: PluginType
    title: str
    adapters: tuple[type[ChannelAdapter], ...] = ()
    setup: Callable[[Host], object] | None = None
    migrations: Path | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not {NAME_RULE}")
        return value

    @field_validator("title")
    @classmethod
    def _title(cls, value: str) -> str:
        if not value.strip() or len(value) > 80:
            raise ValueError("give a title of 1 to 80 characters (admins see it)")
        return value

    @field_validator("adapters")
    @classmethod
    def _adapters(cls, value: tuple[type[ChannelAdapter], ...]) -> tuple[type[ChannelAdapter], ...]:
        seen: set[str] = set()
        for adapter in value:
            kind = getattr(adapter, "kind", None)
            if not isinstance(kind, str) or not NAME.fullmatch(kind):
                raise ValueError(f"{adapter.__name__}.kind must be {NAME_RULE} (got {kind!r})")
            if not isinstance(getattr(adapter, "title", None), str):
                raise ValueError(f"{adapter.__name__}.title must be set")
            if kind in seen:
                raise ValueError(f"two adapters have the kind {kind!r}")
            seen.add(kind)
        return value

    @field_validator("migrations")
    @classmethod
    def _migrations(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError(f"{value} is not a folder (it should hold the package's Alembic versions)")
        return value

    @model_validator(mode="after")
    def _adapters_fit_type(self) -> Integration:
        if self.adapters and self.type not in ADAPTER_TYPES:
            raise ValueError(f"a {self.type.value} integration brings no channel adapters (adapters: only for "
                             f"{' and '.join(sorted(t.value for t in ADAPTER_TYPES))})")
        if self.type is PluginType.CHANNEL and not self.adapters:
            raise ValueError("adapters: a channel integration brings at least one ChannelAdapter")
        return self


def describe(error: ValidationError) -> str:
    """A manifest's validation errors in one line each: ``field: what is wrong``."""
    out = []
    for err in error.errors():
        where = ".".join(str(p) for p in err["loc"]) or "manifest"
        msg = str(err["msg"]).removeprefix("Value error, ")
        out.append(f"{where}: {msg}")
    return "; ".join(out)
