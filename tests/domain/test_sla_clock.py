"""The conversation SLA clock (pure): deadlines from a queue's targets, warnings, replies, resolution,
reopening, moving to another queue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from threadline.domain.queues import SlaTargets
from threadline.domain.sla import SlaClock, SlaStage, SlaTarget

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
FIRST, RESOLUTION = SlaTarget.FIRST_RESPONSE, SlaTarget.RESOLUTION
FAST = SlaTargets(first_response_seconds=600, resolution_seconds=3600, near_breach_ratio=0.8)
SLOW = SlaTargets(first_response_seconds=3600, resolution_seconds=86_400)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_a_new_conversation_gets_both_deadlines_with_a_warning_before_each() -> None:
    clock = SlaClock().start(FAST, T0)
    first = clock.deadline(FIRST, FAST)
    assert first is not None and (first.due_at, first.warn_at, first.seconds) == (at(10), at(8), 600)
    assert [first.stage_at(at(m)) for m in (7, 8, 9.9, 10, 30)] == \
        [None, SlaStage.AT_RISK, SlaStage.AT_RISK, SlaStage.BREACHED, SlaStage.BREACHED]
    resolution = clock.deadline(RESOLUTION, FAST)
    assert resolution is not None and (resolution.due_at, resolution.warn_at) == (at(60), at(48))
    assert SlaClock().start(None, T0).deadline(FIRST, None) is None  # no queue, no SLA
    untracked = SlaTargets(first_response_seconds=None)
    assert SlaClock().start(untracked, T0).deadline(FIRST, untracked) is None


def test_a_reply_meets_the_first_response_and_a_resolution_stops_the_clock() -> None:
    clock = SlaClock().start(FAST, T0).replied(at(3))
    assert clock.first_response_at == at(3) and clock.deadline(FIRST, FAST) is None
    assert clock.replied(at(5)).first_response_at == at(3)  # only the first reply counts
    assert clock.deadline(RESOLUTION, FAST) is not None
    stopped = clock.stop()
    assert stopped.deadline(RESOLUTION, FAST) is None and stopped.resolution_due_at == at(60)


def test_a_breach_stays_and_a_reopening_starts_a_new_resolution_deadline() -> None:
    clock = SlaClock().start(FAST, T0).breach(FIRST, at(10)).stop()
    reopened = clock.start(FAST, at(120))
    assert reopened.first_response_breached_at == at(10) and reopened.deadline(FIRST, FAST) is None
    resolution = reopened.deadline(RESOLUTION, FAST)
    assert resolution is not None and resolution.due_at == at(180)
    late = SlaClock().start(FAST, T0).breach(RESOLUTION, at(60)).stop().start(FAST, at(90))
    assert late.resolution_breached_at is None and late.resolution_due_at == at(150)  # a new cycle
    unanswered = SlaClock().start(FAST, T0).stop().start(FAST, at(30))
    assert unanswered.first_response_due_at == at(40)  # never answered: due again from the reopening


def test_moving_to_another_queue_counts_from_the_start_with_its_targets() -> None:
    clock = SlaClock().start(SLOW, T0)
    moved = clock.retarget(FAST)
    assert (moved.first_response_due_at, moved.resolution_due_at) == (at(10), at(60))
    assert moved.deadline(FIRST, FAST).stage_at(at(20)) is SlaStage.BREACHED  # already late there
    assert clock.retarget(None).deadline(FIRST, None) is None  # out of every queue: no clock
    assert SlaClock().retarget(FAST) == SlaClock()  # no cycle runs: nothing to move
