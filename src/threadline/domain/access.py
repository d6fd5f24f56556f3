"""Who is acting, and the one rule for what they may see.

The rule, written once here and nowhere else: supervisors and admins see every conversation and every
event; an agent sees a conversation assigned to them, or one in a queue they serve, or one of a team
they are in. An event reaches an agent when its audience names them, a queue they serve or a team they
are in; it reaches supervisors and admins unless its audience says ``supervisors=False``. A routing
task may be taken from a queue the agent serves, or from the queue it overflowed out of.

``Visibility`` is that rule as a value, built once from the actor's role, queues and teams. It answers
for one object in memory (``allows``); ``db/repos/access.py`` translates it into one SQL condition for
lists and counts. Pure: no I/O, no SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol, TypeVar

from threadline.domain.errors import NotFound, PermissionDenied
from threadline.domain.events import Audience
from threadline.domain.users import Role


class Placed(Protocol):
    """Where a conversation sits, as far as seeing it goes (a row, a view, a test double)."""

    @property
    def assignee_id(self) -> int | None: ...

    @property
    def queue_id(self) -> int | None: ...

    @property
    def team_id(self) -> int | None: ...


C = TypeVar("C", bound=Placed)


@dataclass(frozen=True, slots=True)
class Visibility:
    """What one actor may see. ``everything``: a supervisor or admin (no limit at all)."""

    user_id: int
    everything: bool = False
    queue_ids: frozenset[int] = frozenset()
    team_ids: frozenset[int] = frozenset()

    @classmethod
    def of(cls, user_id: int, role: Role, queue_ids: Iterable[int] = (), team_ids: Iterable[int] = ()
           ) -> Visibility:
        return cls(user_id=user_id, everything=role.at_least(Role.SUPERVISOR), queue_ids=frozenset(queue_ids),
                   team_ids=frozenset(team_ids))

    @property
    def limited(self) -> bool:
        """True for an agent: lists must be filtered (``db/repos/access.py``)."""
        return not self.everything

    def allows(self, target: Placed | Audience | Mapping[str, Any]) -> bool:
        """May the actor see this conversation (anything with assignee_id, queue_id, team_id), or this
        event (its ``Audience``, or the audience as stored with the event: a dict)?"""
        if isinstance(target, Audience):
            return self._hears(target.users, target.queues, target.teams, target.supervisors)
        if isinstance(target, Mapping):
            return self._hears(target.get("users", ()), target.get("queues", ()), target.get("teams", ()),
                               bool(target.get("supervisors", True)))
        return self.sees(target.assignee_id, target.queue_id, target.team_id)

    def sees(self, assignee_id: int | None, queue_id: int | None, team_id: int | None) -> bool:
        """The conversation rule on its three placing fields."""
        return (self.everything
                or (assignee_id is not None and assignee_id == self.user_id)
                or (queue_id is not None and queue_id in self.queue_ids)
                or (team_id is not None and team_id in self.team_ids))

    def _hears(self, users: Iterable[int], queues: Iterable[int], teams: Iterable[int], supervisors: bool) -> bool:
        if self.everything and supervisors:
            return True
        return (self.user_id in users or any(q in self.queue_ids for q in queues)
                or any(t in self.team_ids for t in teams))

    def serves(self, queue_id: int | None) -> bool:
        """Does the actor work this queue (supervisors and admins: every queue)?"""
        return self.everything or (queue_id is not None and queue_id in self.queue_ids)

    def may_pick(self, queue_id: int | None, origin_queue_id: int | None = None) -> bool:
        """May the actor take a routing task waiting in ``queue_id`` by hand? Also when it overflowed out
        of a queue they serve (``origin_queue_id``): the agents of the first queue keep it in view."""
        return self.serves(queue_id) or (origin_queue_id is not None and origin_queue_id in self.queue_ids)

    def sees_task(self, queue_id: int | None, agent_id: int | None) -> bool:
        """A routing task: in a queue the actor serves, or offered/assigned to them."""
        return self.serves(queue_id) or (agent_id is not None and agent_id == self.user_id)


@dataclass(frozen=True)
class Actor:
    """A signed-in user (or API token) doing something; ``visibility`` is what they may see."""

    user_id: int
    role: Role
    name: str = ""
    queue_ids: list[int] = field(default_factory=list)
    team_ids: list[int] = field(default_factory=list)
    via_token: bool = False

    @cached_property
    def visibility(self) -> Visibility:
        return Visibility.of(self.user_id, self.role, self.queue_ids, self.team_ids)

    @property
    def sees_everything(self) -> bool:
        return self.visibility.everything

    def require(self, role: Role, what: str = "do this") -> None:
        if not self.role.at_least(role):
            raise PermissionDenied(f"only a {role.value} or above may {what}")

    def can_see(self, conv: Placed) -> bool:
        return self.visibility.allows(conv)

    def check_can_see(self, conv: C | None, conversation_id: int) -> C:
        # An agent learns nothing about conversations outside their queues: same answer as a missing one.
        if conv is None or not self.can_see(conv):
            raise NotFound(f"conversation {conversation_id} does not exist")
        return conv
