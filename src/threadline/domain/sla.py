"""Conversation SLA: first-response and resolution deadlines from the queue's targets (pure).

A conversation in a queue runs an SLA *cycle* from its creation (or from a reopening after a
resolution): the first agent reply is due ``first_response_seconds`` after the cycle starts, the
resolution ``resolution_seconds`` after it (``queues.SlaTargets``). A reply (an outbound message, never an
internal note) meets the first-response deadline; resolving the conversation stops the cycle (a deadline
not met by then is simply no longer watched). A deadline that passes unmet is *breached*, which stays on
the conversation. A warning (*at risk*) comes at ``near_breach_ratio`` of the time allowed, like the
routing SLA's near-breach. Moving the conversation to another queue re-counts both deadlines from the
cycle's start with that queue's targets (so a late one may breach at once); no queue, no SLA.

Times are calendar time: pending and snoozed conversations keep their clocks running, and business
hours are not taken out (a later refinement; see docs/sla.md).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from threadline.domain.queues import SlaTargets


class SlaTarget(enum.StrEnum):
    FIRST_RESPONSE = "first_response"
    RESOLUTION = "resolution"


class SlaStage(enum.StrEnum):
    AT_RISK = "at_risk"
    BREACHED = "breached"


@dataclass(frozen=True, slots=True)
class Deadline:
    """A deadline still watched: warn at ``warn_at``, breach at ``due_at``."""

    target: SlaTarget
    due_at: datetime
    warn_at: datetime
    seconds: int  # the target it comes from

    def stage_at(self, now: datetime) -> SlaStage | None:
        """What is due at ``now``: nothing yet, the warning, or the breach."""
        if now >= self.due_at:
            return SlaStage.BREACHED
        if now >= self.warn_at:
            return SlaStage.AT_RISK
        return None


@dataclass(frozen=True, slots=True)
class SlaClock:
    """A conversation's SLA state (its typed columns)."""

    started_at: datetime | None = None  # None: no cycle runs (no queue, resolved, or from before SLAs)
    first_response_due_at: datetime | None = None
    first_response_at: datetime | None = None
    first_response_breached_at: datetime | None = None
    resolution_due_at: datetime | None = None
    resolution_breached_at: datetime | None = None

    def start(self, targets: SlaTargets | None, at: datetime) -> SlaClock:
        """A new cycle at ``at`` (created, or reopened after a resolution). A first response already
        given (or already late) stays as it was; the resolution is due again."""
        if targets is None:
            return replace(self, started_at=None)
        clock = replace(self, started_at=at, resolution_breached_at=None)
        return clock._due(targets)

    def retarget(self, targets: SlaTargets | None) -> SlaClock:
        """The conversation moved to another queue (``targets`` None: to no queue)."""
        if self.started_at is None:
            return self
        if targets is None:
            return replace(self, started_at=None)
        return self._due(targets)

    def _due(self, targets: SlaTargets) -> SlaClock:
        assert self.started_at is not None
        first = self.first_response_due_at
        if self.first_response_at is None and self.first_response_breached_at is None:
            first = _after(self.started_at, targets.first_response_seconds)
        resolution = self.resolution_due_at
        if self.resolution_breached_at is None:
            resolution = _after(self.started_at, targets.resolution_seconds)
        return replace(self, first_response_due_at=first, resolution_due_at=resolution)

    def replied(self, at: datetime) -> SlaClock:
        """An agent's reply to the customer (the first one meets the first-response deadline)."""
        if self.first_response_at is not None:
            return self
        return replace(self, first_response_at=at)

    def stop(self) -> SlaClock:
        """Resolved: the cycle ends (what was met or breached stays)."""
        return replace(self, started_at=None)

    def breach(self, target: SlaTarget, at: datetime) -> SlaClock:
        if target is SlaTarget.FIRST_RESPONSE:
            return replace(self, first_response_breached_at=at)
        return replace(self, resolution_breached_at=at)

    def deadline(self, target: SlaTarget, targets: SlaTargets | None) -> Deadline | None:
        """The deadline of ``target`` if it is still watched (cycle running, not met, not breached)."""
        if self.started_at is None or targets is None:
            return None
        if target is SlaTarget.FIRST_RESPONSE:
            due, seconds = self.first_response_due_at, targets.first_response_seconds
            if self.first_response_at is not None or self.first_response_breached_at is not None:
                return None
        else:
            due, seconds = self.resolution_due_at, targets.resolution_seconds
            if self.resolution_breached_at is not None:
                return None
        if due is None or seconds is None:
            return None
        allowed = max(due - self.started_at, timedelta(0))
        return Deadline(target, due, self.started_at + allowed * targets.near_breach_ratio, seconds)


def _after(start: datetime, seconds: int | None) -> datetime | None:
    return None if seconds is None else start + timedelta(seconds=seconds)
