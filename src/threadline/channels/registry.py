"""Which channel adapters exist: the built-ins plus any package registering the entry-point group
``threadline.channels`` (``kind = "package.module:AdapterClass"``). The core never names a channel."""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

from threadline.channels.api import ApiChannel
from threadline.channels.base import ChannelAdapter

BUILTINS: tuple[type[ChannelAdapter], ...] = (ApiChannel,)


@cache
def adapters() -> dict[str, type[ChannelAdapter]]:
    found: dict[str, type[ChannelAdapter]] = {cls.kind: cls for cls in BUILTINS}
    for ep in entry_points(group="threadline.channels"):
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, ChannelAdapter)):
            raise TypeError(f"entry point {ep.name!r} is not a ChannelAdapter subclass")
        found.setdefault(cls.kind, cls)
    return found


def get_adapter_class(kind: str) -> type[ChannelAdapter] | None:
    return adapters().get(kind)
