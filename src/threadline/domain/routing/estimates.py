"""Service-level state of a waiting task and the estimated wait time (EWT) formula.

EWT for the task at 1-based ``position`` k in its queue and channel::

    EWT = max(0, k − F) · AHT / S

* S, the slots that could serve it: the channel capacity summed over the logged-in agents of
  the task's current requirement group (the agents who meet its skills and language now);
* F, how many of those slots are free right now;
* AHT, the mean handle time (talk + wrap-up) of the last ``aht_window`` tasks completed in that
  queue and channel, or the configured figure until the first one completes.

Once every slot is busy, slots free up at about S/AHT per second (each slot finishes a task every
AHT seconds on average), and the task needs k − F of them. The estimate is optimistic when those
agents also serve other queues, and pessimistic when an escalation step is about to widen the
pool; it is ``None`` when nobody who could take the task is logged in.
"""

from __future__ import annotations

from .models import SlaState, SlaTarget


def sla_state(waited_seconds: float, target: SlaTarget) -> SlaState:
    """``breached`` at the threshold, ``near_breach`` from ``near_breach_ratio`` of it."""
    if waited_seconds >= target.threshold_seconds:
        return "breached"
    if waited_seconds >= target.near_breach_ratio * target.threshold_seconds:
        return "near_breach"
    return "ok"


def estimated_wait(position: int, free_slots: int, total_slots: int, aht_seconds: float) -> float | None:
    """The EWT formula above; ``None`` when ``total_slots`` is 0."""
    if position < 1:
        raise ValueError("positions start at 1")
    if total_slots <= 0:
        return None
    return max(0, position - free_slots) * aht_seconds / total_slots
