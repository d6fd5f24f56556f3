"""Checks on routing settings, with messages that say why a setting cannot work.

Errors are structurally impossible settings: a level outside 1-5, steps out of order, an overflow
to an unknown queue or an overflow cycle (A -> B -> A bounces a task forever). Warnings depend on
the current roster: a queue no agent serves, a requirement no agent meets (at some or at every
rung of the escalation ladder), a team with nobody in it. The engine refuses errors; warnings are
for the admin screen.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import ValidationError

from .models import Agent, Id, QueueConfig


@dataclass(frozen=True, slots=True)
class ValidationIssue:
    level: Literal["error", "warning"]
    queue_id: Id | None
    message: str


@dataclass(slots=True)
class ValidationReport:
    errors: list[ValidationIssue] = field(default_factory=list)
    warnings: list[ValidationIssue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def error_text(self) -> str:
        return "; ".join(i.message for i in self.errors)


class _AgentLike(Protocol):
    id: Any
    skills: Mapping[str, int]
    languages: Collection[str]
    capacity: Mapping[str, int]


def relaxed_skills(
    base: Mapping[str, int], cfg: QueueConfig, rung: int
) -> tuple[dict[str, int], bool, set[str]]:
    """Skills still required after the first ``rung`` escalation steps, whether the language is
    still required, and the teams added to the pool."""
    skills = dict(base)
    language = cfg.language_required
    teams: set[str] = set()
    for step in cfg.steps[:rung]:
        if step.overflow_to is not None:
            continue
        if step.ignore_skills:
            skills = {}
        for name in step.drop_skills:
            skills.pop(name, None)
        if step.max_level is not None:
            skills = {k: min(v, step.max_level) for k, v in skills.items()}
        if step.ignore_language:
            language = False
        teams.update(step.add_teams)
    return skills, language, teams


def meets(agent: _AgentLike, skills: Mapping[str, int]) -> bool:
    have = agent.skills
    for name, level in skills.items():
        if have.get(name, 0) < level:
            return False
    return True


def explain_no_match(
    pool: Iterable[_AgentLike],
    skills: Mapping[str, int],
    *,
    where: str,
    channel: str | None = None,
    language: str | None = None,
) -> str:
    """Say in words why no agent of ``pool`` (described by ``where``) fits the requirement."""
    agents = list(pool)
    if not agents:
        return f"no agent {where}"
    if channel is not None:
        agents = [a for a in agents if a.capacity.get(channel, 0) > 0]
        if not agents:
            return f"no agent {where} handles {channel}"
    for name, level in sorted(skills.items()):
        best = max((a.skills.get(name, 0) for a in agents), default=0)
        if best == 0:
            return f"no agent {where} has skill {name!r} (level {level} required)"
        if best < level:
            return f"no agent {where} has {name!r} at level {level} or more (the best is {best})"
    fit = [a for a in agents if meets(a, skills)]
    if not fit:
        wanted = ", ".join(f"{k}>={v}" for k, v in sorted(skills.items()))
        return f"no single agent {where} has all of {wanted}"
    if language is not None and not any(language in a.languages for a in fit):
        return f"no agent {where} with the required skills speaks {language!r}"
    return f"no agent {where} fits"


def _overflow_errors(cfgs: Mapping[Id, QueueConfig], report: ValidationReport) -> None:
    nxt: dict[Id, Id] = {}
    for qid, cfg in cfgs.items():
        for step in cfg.steps:
            if step.overflow_to is None:
                continue
            if step.overflow_to == qid:
                report.errors.append(ValidationIssue("error", qid, f"queue {qid!r} overflows to itself"))
            elif step.overflow_to not in cfgs:
                report.errors.append(
                    ValidationIssue(
                        "error", qid, f"queue {qid!r} overflows to unknown queue {step.overflow_to!r}"
                    )
                )
            else:
                nxt[qid] = step.overflow_to
    reported: set[frozenset[Id]] = set()
    for start in nxt:
        path = [start]
        seen = {start}
        cur = start
        while cur in nxt:
            cur = nxt[cur]
            if cur in seen:
                cycle = path[path.index(cur) :] + [cur]
                key = frozenset(cycle)
                if key not in reported:
                    reported.add(key)
                    chain = " -> ".join(repr(q) for q in cycle)
                    report.errors.append(
                        ValidationIssue(
                            "error",
                            cycle[0],
                            f"overflow cycle {chain}: a waiting task would bounce between these "
                            "queues forever",
                        )
                    )
                break
            seen.add(cur)
            path.append(cur)


def validate_routing(
    queues: Mapping[Id, QueueConfig | Mapping[str, Any]],
    agents: Iterable[Agent] | None = None,
) -> ValidationReport:
    """Check queue settings (models or raw dicts) and, given a roster, whether anyone can match."""
    report = ValidationReport()
    cfgs: dict[Id, QueueConfig] = {}
    for qid, raw in queues.items():
        if isinstance(raw, QueueConfig):
            cfgs[qid] = raw
            continue
        try:
            cfgs[qid] = QueueConfig.model_validate(raw)
        except ValidationError as exc:
            for err in exc.errors():
                loc = ".".join(str(p) for p in err["loc"])
                msg = err["msg"].removeprefix("Value error, ")
                report.errors.append(
                    ValidationIssue("error", qid, f"queue {qid!r}: {loc + ': ' if loc else ''}{msg}")
                )
    _overflow_errors(cfgs, report)
    if agents is None:
        return report

    roster = list(agents)
    by_queue: dict[Id, list[Agent]] = {}
    by_team: dict[str, list[Agent]] = {}
    for agent in roster:
        for q in agent.queues:
            by_queue.setdefault(q, []).append(agent)
            if q not in cfgs:
                report.warnings.append(
                    ValidationIssue("warning", q, f"agent {agent.id!r} serves unknown queue {q!r}")
                )
        for t in agent.teams:
            by_team.setdefault(t, []).append(agent)

    for qid, cfg in cfgs.items():
        members = by_queue.get(qid, [])
        overflow = next((s.overflow_to for s in cfg.steps if s.overflow_to is not None), None)
        for step in cfg.steps:
            for team in step.add_teams:
                if not by_team.get(team):
                    report.warnings.append(
                        ValidationIssue("warning", qid, f"queue {qid!r}: team {team!r} has no agents")
                    )
        rungs = [i for i in range(len(cfg.steps) + 1) if i == 0 or cfg.steps[i - 1].overflow_to is None]
        first_ok: int | None = None
        first_reason = ""
        for rung in rungs:
            skills, _, teams = relaxed_skills(cfg.skills, cfg, rung)
            pool = {id(a): a for a in members}
            for team in teams:
                pool.update({id(a): a for a in by_team.get(team, [])})
            if any(meets(a, skills) for a in pool.values()):
                first_ok = rung
                break
            if rung == 0:
                where = f"serving queue {qid!r}"
                first_reason = explain_no_match(pool.values(), skills, where=where)
        if first_ok is None:
            tail = f"; they overflow to {overflow!r}" if overflow is not None else ""
            report.warnings.append(
                ValidationIssue(
                    "warning",
                    qid,
                    f"tasks in queue {qid!r} can never be matched with the current roster: "
                    f"{first_reason}{tail}",
                )
            )
        elif first_ok > 0:
            after = cfg.steps[first_ok - 1].after_seconds
            report.warnings.append(
                ValidationIssue(
                    "warning",
                    qid,
                    f"queue {qid!r}: {first_reason}; tasks wait until escalation step {first_ok} "
                    f"(after {after:g} s)",
                )
            )
    return report
