"""A queue's call settings (``QueueSettings.voice``) at work: its recording policy over the line's, its
disposition codes at wrap-up, and sensitive contact actions that wait for a caller the IVR verified.
Through the real interface: FakeTwilio calls the running server, the agent uses the REST API."""

from __future__ import annotations

import pytest

from threadline.voice.domain.calls import disposition_problem, record_policy, sensitive_locked

# --------------------------------------------------------------------------- the pure rules


@pytest.mark.parametrize(("queue", "channel", "expected"), [
    ("always", "never", "always"), ("never", "always", "never"), ("on_demand", "never", "on_demand"),
    ("channel", "always", "always"), (None, "on_demand", "on_demand"), ("channel", None, "never"),
    (None, None, "never"), ("bogus", "always", "always"),
])
def test_the_queue_decides_the_recording_unless_it_defers_to_the_line(queue, channel, expected) -> None:
    assert record_policy(queue, channel) == expected


def test_a_disposition_must_be_one_of_the_queues_codes_when_it_has_some() -> None:
    assert disposition_problem("anything", []) is None
    assert disposition_problem("resolved", ["resolved", "escalated"]) is None
    problem = disposition_problem("lost", ["resolved", "escalated"])
    assert problem is not None and "resolved, escalated" in problem and "'lost'" in problem


def test_sensitive_actions_wait_only_for_an_unverified_caller_on_a_call_that_is_not_over() -> None:
    assert sensitive_locked("connected", None, True)
    assert sensitive_locked("wrap_up", None, True)
    assert not sensitive_locked("connected", "pin", True)
    assert not sensitive_locked("ended", None, True)
    assert not sensitive_locked("connected", None, False)
