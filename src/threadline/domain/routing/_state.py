"""Mutable engine state: slotted classes, not part of the public API.

Data structures (see engine.py for the algorithm):

* ``_Bucket``: one requirement group = (queue, channel, required skills with levels, language,
  extra teams, exclusive agent). It holds a heap of its waiting tasks ordered by
  (−priority, enqueue time, sequence), its member agents (a set) and the cells they sit in.
* ``_Cell``: the agents of one queue and channel that belong to exactly the same buckets of that
  queue and channel (their *signature*: e.g. with required levels 1-3, the agents of level 1, of
  level 2 and of level 3 or more form three cells; the level-2 bucket is the union of the last two).
  Buckets partition into cells, and each agent sits in one cell per queue and channel. A cell holds
  a heap of its agents ordered by (load ratio on the channel, last idle time, agent index) with lazy
  deletion: an agent entry is valid only while the agent's ``version`` is unchanged, and every
  change to an agent bumps the version and pushes a fresh entry into each of its cells where it
  still has room. The best agent of a bucket is the best of its cells' heads. An agent with skills
  in 5 queues at various levels is in 5 heaps instead of one per bucket (up to 15 with 3 levels).
* ``_Agent``: profile, per-channel load (external + tracked) and its bucket memberships.
* ``_Task``: runtime state of a work item.
* ``_Queue``: config, the cumulative relaxation at each escalation rung, members and counters.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from .models import CHANNELS, Id, QueueConfig

WAITING = "waiting"
OFFERED = "offered"
ASSIGNED = "assigned"
WRAPPING = "wrapping"
GONE = "gone"

TIMER_ESCALATE, TIMER_WAKE, TIMER_WRAP = 0, 1, 2  # same-time timers fire in this order

# Bucket key: (queue id, channel, ((skill, level), ...), language, frozenset(teams), only agent id)
BucketKey = tuple[Any, str, tuple[tuple[str, int], ...], str | None, frozenset[str], Any]


class _Relax:
    __slots__ = ("ignore_skills", "drop", "max_level", "ignore_language", "teams", "boost")

    def __init__(self) -> None:
        self.ignore_skills = False
        self.drop: frozenset[str] = frozenset()
        self.max_level: int | None = None
        self.ignore_language = False
        self.teams: frozenset[str] = frozenset()
        self.boost = 0


class _Rolling:
    """Mean of the last ``size`` samples."""

    __slots__ = ("values", "total")

    def __init__(self, size: int) -> None:
        self.values: deque[float] = deque(maxlen=size)
        self.total = 0.0

    def add(self, v: float) -> None:
        if len(self.values) == self.values.maxlen:
            self.total -= self.values[0]
        self.values.append(v)
        self.total += v

    def mean(self) -> float | None:
        return self.total / len(self.values) if self.values else None


class _Queue:
    __slots__ = (
        "id",
        "cfg",
        "times",
        "relax",
        "overflow_index",
        "overflow_to",
        "members",
        "buckets",
        "waiting",
        "n_offered",
        "answered",
        "answered_within",
        "abandoned",
        "wait_sum",
        "aht",
    )

    def __init__(self, qid: Id, cfg: QueueConfig, window: int) -> None:
        self.id = qid
        self.members: set[_Agent] = set()
        self.buckets: set[_Bucket] = set()
        self.waiting: set[_Task] = set()
        self.n_offered = 0
        self.answered = 0
        self.answered_within = 0
        self.abandoned = 0
        self.wait_sum = 0.0
        self.aht: dict[str, _Rolling] = {c: _Rolling(window) for c in CHANNELS}
        self.configure(cfg)

    def configure(self, cfg: QueueConfig) -> None:
        self.cfg = cfg
        self.times = [s.after_seconds for s in cfg.steps]
        self.overflow_index: int | None = None
        self.overflow_to: Id | None = None
        relax = [_Relax()]
        for i, step in enumerate(cfg.steps):
            prev = relax[-1]
            r = _Relax()
            r.ignore_skills = prev.ignore_skills or step.ignore_skills
            r.drop = prev.drop | frozenset(step.drop_skills)
            levels = [x for x in (prev.max_level, step.max_level) if x is not None]
            r.max_level = min(levels) if levels else None
            r.ignore_language = prev.ignore_language or step.ignore_language
            r.teams = prev.teams | frozenset(step.add_teams)
            r.boost = prev.boost + step.priority_boost
            relax.append(r)
            if step.overflow_to is not None:
                self.overflow_index = i
                self.overflow_to = step.overflow_to
        self.relax = relax


class _Agent:
    __slots__ = (
        "idx",
        "id",
        "skills",
        "languages",
        "teams",
        "queues",
        "available",
        "capacity",
        "blocked_by",
        "external",
        "load",
        "last_idle",
        "streak",
        "version",
        "buckets",
        "cells",
        "removed",
        "n_tasks",
    )

    def __init__(self, idx: int, agent_id: Id) -> None:
        self.idx = idx
        self.id = agent_id
        self.skills: dict[str, int] = {}
        self.languages: frozenset[str] = frozenset()
        self.teams: frozenset[str] = frozenset()
        self.queues: frozenset[Id] = frozenset()
        self.available = False
        self.capacity: dict[str, int] = dict.fromkeys(CHANNELS, 0)
        self.blocked_by: dict[str, tuple[str, ...]] = {}
        self.external: dict[str, int] = dict.fromkeys(CHANNELS, 0)
        self.load: dict[str, int] = dict.fromkeys(CHANNELS, 0)
        self.last_idle = 0.0
        self.streak = 0
        self.version = 0
        self.buckets: dict[str, set[_Bucket]] = {c: set() for c in CHANNELS}
        self.cells: dict[str, dict[Id, _Cell]] = {c: {} for c in CHANNELS}  # channel -> queue -> cell
        self.removed = False
        self.n_tasks = 0

    def __lt__(self, other: _Agent) -> bool:  # heap entries never tie up to the agent; be safe anyway
        return self.idx < other.idx

    def can_take(self, channel: str) -> bool:
        if not self.available or self.removed:
            return False
        load = self.load
        if load[channel] >= self.capacity[channel]:
            return False
        for other in self.blocked_by.get(channel, ()):
            if load[other]:
                return False
        return True


class _Task:
    __slots__ = (
        "seq",
        "id",
        "channel",
        "queue",
        "origin",
        "enqueued_at",
        "queue_entered_at",
        "skills",
        "skills_key",
        "language",
        "priority",
        "preferred",
        "sticky_until",
        "preferred_only",
        "attributes",
        "status",
        "agent",
        "bucket",
        "hno",
        "neg",
        "step",
        "timer_no",
        "excluded",
        "offer",
        "accepted_at",
        "wrap_until",
        "talk",
        "next_at",
    )

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.status = WAITING
        self.agent: _Agent | None = None
        self.bucket: _Bucket | None = None
        self.hno = -1
        self.neg = 0
        self.step = 0
        self.timer_no = -1
        self.excluded: dict[Id, float] = {}
        self.offer: Any = None
        self.accepted_at: float | None = None
        self.wrap_until: float | None = None
        self.talk = 0.0
        self.next_at: float | None = None


class _Bucket:
    __slots__ = (
        "key",
        "queue",
        "channel",
        "skills",
        "language",
        "teams",
        "only",
        "members",
        "cells",
        "tasks",
        "n_tasks",
        "ready_no",
        "in_ready",
        "ready_key",
    )

    def __init__(self, key: BucketKey) -> None:
        self.key = key
        self.queue, self.channel, skills, self.language, self.teams, self.only = key
        self.skills = dict(skills)
        self.members: set[_Agent] = set()
        self.cells: list[_Cell] = []
        self.tasks: list[tuple[int, float, int, int, _Task]] = []
        self.n_tasks = 0
        self.ready_no = -1
        self.in_ready = False
        self.ready_key: tuple[int, float, int] = (0, 0.0, 0)

    def fits(self, a: _Agent) -> bool:
        """Static eligibility: pool (queue or extra team), channel, skills, language, exclusivity."""
        if a.removed:
            return False
        if self.only is not None and a.id != self.only:
            return False
        if self.queue not in a.queues and not (self.teams and self.teams & a.teams):
            return False
        if a.capacity[self.channel] <= 0:
            return False
        have = a.skills
        for name, level in self.skills.items():
            if have.get(name, 0) < level:
                return False
        return self.language is None or self.language in a.languages


class _Cell:
    __slots__ = ("key", "channel", "buckets", "members", "agents", "limit")

    def __init__(self, key: tuple[Id, str, frozenset[_Bucket]]) -> None:
        self.key = key
        self.channel = key[1]
        self.buckets: tuple[_Bucket, ...] = tuple(key[2])
        self.members: set[_Agent] = set()
        # (load ratio, last idle, agent index, version, agent)
        self.agents: list[tuple[float, float, int, int, _Agent]] = []
        self.limit = 64  # compact the heap beyond this many entries: 2 per member + 64
