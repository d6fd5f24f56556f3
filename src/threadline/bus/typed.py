"""Typed subscriptions: a handler names the event class it wants and receives the parsed model.

One bus subscription serves every typed handler of a process; an envelope is parsed once (and only when
somebody subscribed to its name) into its class from ``domain/events.py``, then handed to each handler as a
``Published`` (event, seq, emission time). Consumers never match ``env.name`` strings or index
``env.payload``: they subscribe to classes (``events.subscribe(OfferEnded, fn)``), so a renamed event or
field breaks at type-check time instead of silently matching nothing. A handler must not block (it runs on
the bus's delivery path) and a handler that raises is logged, never allowed to stop the others. An
envelope that does not parse as its class is logged and handed to the ``on_invalid`` callbacks given at
subscription (the router then reconciles everything, so nothing it missed stays missed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import structlog
from pydantic import BaseModel, ValidationError

from threadline.bus.base import Bus, Envelope
from threadline.domain.events import event_name
from threadline.domain.stream import Published

__all__ = ["Invalid", "TypedSubscriptions", "event_name"]

log = structlog.get_logger(__name__)
E = TypeVar("E", bound=BaseModel)
Handler = Callable[[Published[Any]], None]
Invalid = Callable[[Envelope], None]


class TypedSubscriptions:
    def __init__(self, bus: Bus) -> None:
        self._classes: dict[str, type[BaseModel]] = {}
        self._handlers: dict[str, list[Handler]] = {}
        self._invalid: dict[str, list[Invalid]] = {}
        bus.subscribe(self.deliver)

    def subscribe(self, cls: type[E], handler: Callable[[Published[E]], None], *,
                  on_invalid: Invalid | None = None) -> Callable[[], None]:
        """Call ``handler`` with every published ``cls`` event (and ``on_invalid`` with an envelope of that
        name that does not parse); returns a function that unsubscribes."""
        name = event_name(cls)
        self._classes[name] = cls
        handlers = self._handlers.setdefault(name, [])
        handlers.append(handler)
        invalid = self._invalid.setdefault(name, [])
        if on_invalid is not None:
            invalid.append(on_invalid)

        def unsubscribe() -> None:
            if handler in handlers:
                handlers.remove(handler)
            if on_invalid is not None and on_invalid in invalid:
                invalid.remove(on_invalid)

        return unsubscribe

    def deliver(self, env: Envelope) -> None:
        """The bus subscriber: parse ``env`` if its name is subscribed and hand it to the handlers."""
        handlers = self._handlers.get(env.name)
        if not handlers:
            return
        try:
            event = self._classes[env.name].model_validate(env.payload)
        except ValidationError:
            log.exception("typed_event_invalid", name=env.name, seq=env.seq)
            for fn in list(self._invalid.get(env.name, ())):
                try:
                    fn(env)
                except Exception:  # noqa: BLE001 - same rule as handlers
                    log.exception("typed_event_invalid_handler_failed", name=env.name, seq=env.seq)
            return
        published = Published(event, env.seq, env.created_at)
        for handler in list(handlers):
            try:
                handler(published)
            except Exception:  # noqa: BLE001 - one subscriber's bug must not starve the others
                log.exception("typed_event_handler_failed", name=env.name, seq=env.seq)
