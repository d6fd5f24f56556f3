"""The one access rule (domain/access.py): conversations, event audiences, queues and routing tasks."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from threadline.domain.access import Actor, Visibility
from threadline.domain.errors import NotFound, PermissionDenied
from threadline.domain.events import Audience
from threadline.domain.users import Role


@dataclass
class Conv:
    assignee_id: int | None = None
    queue_id: int | None = None
    team_id: int | None = None


AGENT = Actor(user_id=7, role=Role.AGENT, queue_ids=[1, 2], team_ids=[10])
LONER = Actor(user_id=8, role=Role.AGENT)
SUPERVISOR = Actor(user_id=9, role=Role.SUPERVISOR)
ADMIN = Actor(user_id=1, role=Role.ADMIN)


def test_visibility_is_built_once_from_role_queues_and_teams() -> None:
    vis = AGENT.visibility
    assert vis == Visibility(user_id=7, everything=False, queue_ids=frozenset({1, 2}), team_ids=frozenset({10}))
    assert vis is AGENT.visibility and vis.limited
    assert SUPERVISOR.visibility.everything and ADMIN.visibility.everything and not SUPERVISOR.visibility.limited
    assert replace(AGENT, role=Role.SUPERVISOR).visibility.everything  # an elevated copy gets its own


@pytest.mark.parametrize(("conv", "seen"), [
    (Conv(assignee_id=7), True),            # assigned to me
    (Conv(queue_id=2), True),               # in a queue I serve
    (Conv(team_id=10), True),               # of my team
    (Conv(assignee_id=3, queue_id=5, team_id=11), False),
    (Conv(), False),                        # nowhere: only supervisors
    (Conv(assignee_id=None, queue_id=None, team_id=None), False),
])
def test_an_agent_sees_conversations_assigned_to_them_or_in_their_queues_or_teams(conv: Conv, seen: bool) -> None:
    assert AGENT.visibility.allows(conv) is seen
    assert AGENT.can_see(conv) is seen
    assert SUPERVISOR.visibility.allows(conv) and ADMIN.visibility.allows(conv)


def test_an_agent_without_queues_or_teams_sees_only_their_own() -> None:
    assert LONER.visibility.allows(Conv(assignee_id=8))
    assert not LONER.visibility.allows(Conv(queue_id=1, team_id=10))


def test_a_conversation_they_may_not_see_is_reported_missing() -> None:
    with pytest.raises(NotFound, match="conversation 4 does not exist"):
        AGENT.check_can_see(Conv(queue_id=5), 4)
    with pytest.raises(NotFound):
        AGENT.check_can_see(None, 4)
    conv = Conv(queue_id=1)
    assert AGENT.check_can_see(conv, 4) is conv


@pytest.mark.parametrize(("audience", "agent", "supervisor"), [
    (Audience(users=[7]), True, True),
    (Audience(queues=[2]), True, True),
    (Audience(teams=[10]), True, True),
    (Audience(users=[3], queues=[5], teams=[11]), False, True),
    (Audience(), False, True),
    (Audience(supervisors=False), False, False),           # e.g. one agent's wrap-up: not every supervisor's
    (Audience(users=[9], supervisors=False), False, True),  # ...unless named
    (Audience(queues=[5], supervisors=False), False, False),
])
def test_an_event_reaches_whom_its_audience_names(audience: Audience, agent: bool, supervisor: bool) -> None:
    assert AGENT.visibility.allows(audience) is agent
    assert SUPERVISOR.visibility.allows(audience) is supervisor
    # the audience as stored with the event in the outbox (a dict) answers the same
    assert AGENT.visibility.allows(audience.model_dump()) is agent
    assert SUPERVISOR.visibility.allows(audience.model_dump()) is supervisor


def test_a_stored_audience_with_missing_keys_reaches_supervisors_only() -> None:
    assert not AGENT.visibility.allows({})
    assert SUPERVISOR.visibility.allows({})


def test_queues_served_and_tasks_that_may_be_picked() -> None:
    vis = AGENT.visibility
    assert vis.serves(1) and not vis.serves(5) and not vis.serves(None)
    assert SUPERVISOR.visibility.serves(5) and SUPERVISOR.visibility.serves(None)
    assert vis.may_pick(2)
    assert vis.may_pick(5, origin_queue_id=1)      # overflowed out of my queue: still mine to take
    assert not vis.may_pick(5, origin_queue_id=6)
    assert not vis.may_pick(5)
    assert SUPERVISOR.visibility.may_pick(5)


def test_a_routing_task_is_seen_in_a_served_queue_or_when_it_is_offered_to_me() -> None:
    vis = AGENT.visibility
    assert vis.sees_task(1, None) and vis.sees_task(5, 7)
    assert not vis.sees_task(5, 3) and not vis.sees_task(None, None)
    assert SUPERVISOR.visibility.sees_task(None, None)


def test_require_names_the_role_needed() -> None:
    SUPERVISOR.require(Role.SUPERVISOR)
    with pytest.raises(PermissionDenied, match="only a admin or above may delete"):
        SUPERVISOR.require(Role.ADMIN, "delete")
