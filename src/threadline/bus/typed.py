"""Typed subscriptions: a handler names the event class it wants and receives the parsed model.

One bus subscription serves every typed handler of a process; an envelope is parsed once (and only when
somebody subscribed to its name) into its class from ``domain/events.py``, then handed to each handler as a
``Published`` (event, seq, emission time). A handler must not block (it runs on the bus's delivery path)
and a handler that raises is logged, never allowed to stop the others.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import structlog
from pydantic import BaseModel, ValidationError

from threadline.bus.base import Bus, Envelope
from threadline.domain.stream import Published

log = structlog.get_logger(__name__)
E = TypeVar("E", bound=BaseModel)
Handler = Callable[[Published[Any]], None]


def event_name(cls: type[BaseModel]) -> str:
    """The dotted name of an event class (its ``name`` literal), e.g. ``message.created``."""
    field = cls.model_fields.get("name")
    if field is None or not isinstance(field.default, str):
        raise TypeError(f"{cls.__name__} is not an event class of threadline.domain.events")
    return field.default


class TypedSubscriptions:
    def __init__(self, bus: Bus) -> None:
        self._classes: dict[str, type[BaseModel]] = {}
        self._handlers: dict[str, list[Handler]] = {}
        bus.subscribe(self._deliver)

    def subscribe(self, cls: type[E], handler: Callable[[Published[E]], None]) -> Callable[[], None]:
        """Call ``handler`` with every published ``cls`` event; returns a function that unsubscribes."""
        name = event_name(cls)
        self._classes[name] = cls
        handlers = self._handlers.setdefault(name, [])
        handlers.append(handler)

        def unsubscribe() -> None:
            if handler in handlers:
                handlers.remove(handler)

        return unsubscribe

    def _deliver(self, env: Envelope) -> None:
        handlers = self._handlers.get(env.name)
        if not handlers:
            return
        try:
            event = self._classes[env.name].model_validate(env.payload)
        except ValidationError:
            log.exception("typed_event_invalid", name=env.name, seq=env.seq)
            return
        published = Published(event, env.seq, env.created_at)
        for handler in list(handlers):
            try:
                handler(published)
            except Exception:  # noqa: BLE001 - one subscriber's bug must not starve the others
                log.exception("typed_event_handler_failed", name=env.name, seq=env.seq)
