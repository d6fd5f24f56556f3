"""Which channel adapters exist, by kind: the adapters of every integration package (plugins/registry.py).
Kept for the callers that only need an adapter class; the core never names a channel kind."""

from __future__ import annotations

from threadline.plugins.registry import adapters, get_adapter_class

__all__ = ["adapters", "get_adapter_class"]
