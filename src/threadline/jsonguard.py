"""JSON from strangers, parsed safely: a nesting depth limit, so a body of ``[[[[…]]]]`` is a clear
"bad input" answer instead of a RecursionError (a 500 with a traceback). Shared by the web chat's
anonymous endpoints and by the hook route (adapters parse provider JSON)."""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64


class JsonTooDeep(ValueError):
    """The JSON nests deeper than allowed (a ValueError, like any other malformed JSON)."""


def depth_of(value: Any, limit: int = MAX_DEPTH) -> int:
    """How deeply ``value`` nests lists and objects (iterative; stops counting past ``limit``)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def loads(raw: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` that raises ``JsonTooDeep`` (a ValueError) for JSON nested deeper than ``max_depth``."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise JsonTooDeep(f"the JSON is nested too deeply (at most {max_depth} levels)") from None
    if depth_of(value, max_depth) > max_depth:
        raise JsonTooDeep(f"the JSON is nested too deeply (at most {max_depth} levels)")
    return value
