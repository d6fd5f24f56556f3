"""Routing actions, one module per concern:

* :mod:`.offers`: agents answer offers, pick a task by hand, end a wrap-up ("Ready");
* :mod:`.settings`: queue routing settings, agent profiles and engine settings (validated against every
  queue and the roster), and their reads;
* :mod:`.figures`: today's figures per queue, from the outcome facts;
* :mod:`.decisions`: what a router round decided (``Decisions`` from the routing driver), written in one
  transaction with its events.

Every change emits its event in the same transaction. The database is the referee between the router
and the agents: an offer row changes from ``open`` only once (rows are locked on PostgreSQL; SQLite
serialises writers), and at most one offer per conversation is open (a partial unique index). The
router applies answers it reads back from the database, so an accept racing a timeout has exactly one
winner.
"""

from .decisions import record_decisions
from .figures import local_midnight, today_figures
from .offers import accept_offer, end_wrap_up, my_wrap_ups, pick_task, reject_offer
from .settings import (
    ENGINE_KEY,
    check_queue_routing,
    engine_settings,
    queue_parts,
    routing_queues,
    set_agent_profile,
    set_engine_settings,
    set_queue_routing,
)

__all__ = [
    "ENGINE_KEY",
    "accept_offer",
    "check_queue_routing",
    "end_wrap_up",
    "engine_settings",
    "local_midnight",
    "my_wrap_ups",
    "pick_task",
    "queue_parts",
    "record_decisions",
    "reject_offer",
    "routing_queues",
    "set_agent_profile",
    "set_engine_settings",
    "set_queue_routing",
    "today_figures",
]
