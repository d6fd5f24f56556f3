"""Discrete-event simulation of one queue, driving the production routing code.

Contacts arrive as a Poisson process and become conversations that need a human; the routing driver
(:class:`~threadline.domain.routing.driver.RoutingDriver`, the code the routing worker runs, around the
real engine) enqueues them, offers them, and reports what happened as the same outcome facts
production writes (answered with its wait, abandoned, handled). The simulation only plays the
customers and the agents: an agent answers ``answer_delay`` after an offer, talks for a random time
and resolves the conversation (the queue's wrap-up follows); a customer hangs up if their patience
runs out first. The report is computed from the driver's outcome facts.

Parameters (:class:`SimulationParams`; times in seconds), as in
``threadline simulate --agents 14 --arrival-rate 200 --aht 180 --sl-threshold 20 --duration 28800``
(the command takes the arrival rate per hour):

=================  ===========================================================================
``agents``         number of agents (``--agents N``)
``arrival_rate``   contacts per **second** (``--arrival-rate`` per hour: 200/h = 0.0556/s)
``aht``            mean handle time = talk + wrap-up (``--aht S``)
``patience``       mean patience, exponential; ``None`` = nobody abandons (``--patience S``)
``duration``       simulated time during which contacts arrive (``--duration S``)
``seed``           random seed; the same seed gives the same report (``--seed K``)
``sl_threshold``   the "answered within" time of the service level (``--sl-threshold S``)
``warmup``         contacts arriving before this are simulated but not counted
``channel``        channel class of the contacts (default ``voice``)
``capacity``       concurrent contacts per agent on that channel (default 1)
``handle_time``    ``exponential`` (default), ``fixed`` or ``lognormal`` talk times
``handle_cv``      coefficient of variation for ``lognormal``
``wrap_up``        fixed after-contact work inside ``aht`` (talk mean = aht − wrap_up)
``answer_delay``   seconds an agent's device rings before they answer (slot reserved)
=================  ===========================================================================

Report (:class:`SimulationReport`): service level = answered within the threshold / (answered +
abandoned); ASA = mean wait of answered contacts; P(wait) = share of contacts that waited at all;
abandonment rate = abandoned / (answered + abandoned); occupancy = busy slot time / available slot
time over [warmup, duration]. ``*_se`` are batch-means standard errors (10 batches by arrival
time). With one slot per agent the report carries the Erlang C (no patience) or Erlang A
prediction for comparison.
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..domain import erlang
from ..domain.queues import QueueSettings
from ..domain.routing import EngineConfig, SlaTarget
from ..domain.routing.driver import RoutingDriver
from ..domain.routing.records import (
    AgentRecord,
    ConversationState,
    OfferAnswer,
    OfferStatus,
    OutcomeKind,
    Restore,
    RoundInput,
    RoutingQueue,
)
from ..domain.routing.settings import QueueRouting, queue_config

_ARRIVAL, _ANSWER, _END_TALK, _TICK, _ABANDON = 0, 1, 2, 3, 4
_BATCHES = 10
_EPS = 1e-9


class SimulationParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    agents: int = Field(ge=1, le=100_000)
    arrival_rate: float = Field(gt=0, description="contacts per second")
    aht: float = Field(gt=0, description="mean handle time (talk + wrap-up), seconds")
    patience: float | None = Field(
        default=None, gt=0, description="mean patience in seconds; None = no abandonment"
    )
    duration: float = Field(gt=0, description="seconds during which contacts arrive")
    seed: int = 0
    sl_threshold: float = Field(default=20.0, ge=0)
    warmup: float = Field(default=0.0, ge=0)
    channel: Literal["voice", "chat", "messaging", "email"] = "voice"
    capacity: int = Field(default=1, ge=1, le=50)
    handle_time: Literal["exponential", "fixed", "lognormal"] = "exponential"
    handle_cv: float = Field(default=1.0, gt=0)
    wrap_up: float = Field(default=0.0, ge=0)
    answer_delay: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> SimulationParams:
        if self.warmup >= self.duration:
            raise ValueError("the warm-up must end before the duration")
        if self.wrap_up >= self.aht:
            raise ValueError("wrap-up is part of the handle time, so it must be shorter than the AHT")
        return self


@dataclass(frozen=True, slots=True)
class ErlangPrediction:
    model: str
    p_wait: float
    service_level: float
    asa: float
    abandonment_rate: float
    occupancy: float
    exact: bool  # False when the simulated handle times are not exponential


@dataclass(frozen=True, slots=True)
class SimulationReport:
    params: SimulationParams
    arrivals: int
    answered: int
    abandoned: int
    service_level: float | None
    service_level_se: float | None
    asa: float | None
    asa_se: float | None
    p_wait: float | None
    p_wait_se: float | None
    abandonment_rate: float | None
    abandonment_rate_se: float | None
    mean_wait: float | None
    occupancy: float
    mean_handle_time: float | None
    mean_queue_length: float
    max_queue_length: int
    events: int
    erlang: ErlangPrediction | None


def _sampler(params: SimulationParams, rng: random.Random):
    talk = params.aht - params.wrap_up
    if params.handle_time == "fixed":
        return lambda: talk
    if params.handle_time == "lognormal":
        sigma2 = math.log(1.0 + params.handle_cv**2)
        mu, sigma = math.log(talk) - sigma2 / 2.0, math.sqrt(sigma2)
        return lambda: rng.lognormvariate(mu, sigma)
    rate = 1.0 / talk
    return lambda: rng.expovariate(rate)


def _mean_se(values: list[float]) -> float | None:
    if len(values) < 2:
        return None
    m = sum(values) / len(values)
    var = sum((v - m) ** 2 for v in values) / (len(values) - 1)
    return math.sqrt(var / len(values))


_QUEUE = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class _Run:
    """One simulation: the event heap, the conversations in flight, and the driver that routes them."""

    def __init__(self, params: SimulationParams) -> None:
        self.params = params
        self.rng = random.Random(params.seed)
        self.talk_time = _sampler(params, self.rng)
        routing = QueueRouting(language_required=False, boosts=[], offer_timeout_seconds=86_400,
                               wrap_up_seconds=params.wrap_up)
        settings = QueueSettings()
        config = queue_config(settings, routing).model_copy(
            update={"sla": SlaTarget(threshold_seconds=max(params.sl_threshold, 1e-9))})
        self.driver = RoutingDriver(work_class=lambda kind: params.channel, batch=None, rows=False)
        self.driver.rebuild(Restore(
            queues=[RoutingQueue(_QUEUE, settings, routing, config)],
            settings=EngineConfig(max_consecutive_no_answer=None),
            roster=[AgentRecord(i, f"agent {i}", "agent", {}, [], "available", None, [_QUEUE], [],
                                {params.channel: params.capacity}, {}) for i in range(1, params.agents + 1)],
            tasks=[], offers=[], next_offer_id=1, names={}), 0.0)
        self.events: list[tuple[float, int, int, int]] = []
        self.seq = 0
        self.tick_at = math.inf  # the driver's next timer (wrap-up ends) already scheduled
        self.arrived: dict[int, float] = {}  # conversation -> arrival, until answered or abandoned
        self.agent_of: dict[int, int] = {}  # conversation -> its agent, while talking
        self.waits: list[tuple[float, float, bool]] = []  # (arrival, wait, answered) of counted contacts
        self.handles: list[float] = []
        self.busy = 0

    def schedule(self, at: float, kind: int, data: int) -> None:
        """The clock ticks in microseconds, like the times the driver hands to storage (so a contact
        answered the moment it arrives waited exactly zero)."""
        self.seq += 1
        heapq.heappush(self.events, (round(at, 6), self.seq, kind, data))

    def state(self, cid: int, at: float, *, status: str = "open", agent: int | None = None,
              abandoned: bool = False) -> ConversationState:
        return ConversationState(cid, status, _QUEUE, agent, cid, "", "normal", {}, {}, None,
                                 _EPOCH + timedelta(seconds=at), abandoned)

    def round(self, inp: RoundInput) -> None:
        """One driver round at ``inp.now``; the customers and agents react to what it decided."""
        now = inp.now
        for oid in self.driver.offers_to_check(now, (), False):  # rang too long: it times out
            inp.offers.setdefault(oid, OfferAnswer(OfferStatus.OPEN, None))
        d = self.driver.step(inp)
        delay = self.params.answer_delay
        for offer in d.offers:  # the agent's device rings; they answer after the delay
            self.schedule(now + delay, _ANSWER, offer.offer_id)
        for fact in d.outcomes:
            cid = fact.conversation_id
            if fact.kind == OutcomeKind.ANSWERED:
                arrival = self.arrived.pop(cid)
                self.count(arrival, fact.wait_seconds or 0.0, True)
                self.busy += 1
                self.agent_of[cid] = fact.agent_id  # type: ignore[assignment]
                self.schedule(now + self.talk_time(), _END_TALK, cid)
            elif fact.kind == OutcomeKind.ABANDONED:
                self.count(self.arrived.pop(cid), fact.wait_seconds or 0.0, False)
            elif fact.kind == OutcomeKind.HANDLED:
                self.busy -= 1
                self.handles.append(fact.handle_seconds or 0.0)
        due = self.driver.next_due()
        if due is not None:  # a wrap-up ends then (or an offer rang too long): a round at that moment
            at = round(due, 6)
            if at < due:  # never before the timer, or the round would not fire it
                at = round(due + 1e-6, 6)
            if at < self.tick_at:
                self.tick_at = at
                self.schedule(at, _TICK, -1)

    def count(self, arrival: float, wait: float, answered: bool) -> None:
        if self.params.warmup <= arrival < self.params.duration:
            self.waits.append((arrival, wait, answered))


def run_simulation(params: SimulationParams) -> SimulationReport:
    """Simulate ``params.duration`` seconds of arrivals (then let every contact finish)."""
    run = _Run(params)
    engine = run.driver.engine
    assert engine is not None
    rng = run.rng
    start, end = params.warmup, params.duration
    slots = params.agents * params.capacity
    busy_area = queue_area = 0.0
    max_queue = 0
    last_t = 0.0
    n_events = 0
    next_id = 0
    run.schedule(rng.expovariate(params.arrival_rate), _ARRIVAL, -1)
    while run.events:
        now, _, kind, data = heapq.heappop(run.events)
        n_events += 1
        lo, hi = max(last_t, start), min(now, end)
        if hi > lo:
            busy_area += run.busy * (hi - lo)
            queue_area += engine.waiting_count() * (hi - lo)
        last_t = now
        inp = RoundInput(now=now)
        if kind == _ARRIVAL:
            if now >= end:
                continue
            next_id += 1
            run.arrived[next_id] = now
            inp.conversations[next_id] = run.state(next_id, now)
            if params.patience is not None:
                run.schedule(now + rng.expovariate(1.0 / params.patience), _ABANDON, next_id)
            run.schedule(now + rng.expovariate(params.arrival_rate), _ARRIVAL, -1)
        elif kind == _ANSWER:  # an offer hung up on meanwhile is no longer open: the driver skips it
            inp.offers[data] = OfferAnswer(OfferStatus.ACCEPTED, _EPOCH + timedelta(seconds=now))
        elif kind == _END_TALK:  # the agent resolves the conversation
            inp.conversations[data] = run.state(data, now, status="resolved", agent=run.agent_of.pop(data))
        elif kind == _ABANDON:
            if data not in run.arrived:  # already answered
                continue
            inp.conversations[data] = run.state(data, now, status="resolved", abandoned=True)
        elif kind == _TICK:
            if now != run.tick_at:  # superseded by an earlier one
                continue
            run.tick_at = math.inf
        run.round(inp)
        if kind == _ARRIVAL and start <= now < end:
            max_queue = max(max_queue, engine.waiting_count())

    waits, handles = run.waits, run.handles
    window = end - start
    answered = [w for _, w, ok in waits if ok]
    n_done = len(waits)
    n_ans = len(answered)
    thr = params.sl_threshold

    batch_sl: list[float] = []
    batch_asa: list[float] = []
    batch_pw: list[float] = []
    batch_ab: list[float] = []
    buckets: list[list[tuple[float, bool]]] = [[] for _ in range(_BATCHES)]
    for arrival, wait, ok in waits:
        buckets[min(_BATCHES - 1, int((arrival - start) / window * _BATCHES))].append((wait, ok))
    for b in buckets:
        if not b:
            continue
        batch_sl.append(sum(1 for w, ok in b if ok and w <= thr + _EPS) / len(b))
        batch_pw.append(sum(1 for w, _ in b if w > _EPS) / len(b))
        batch_ab.append(sum(1 for _, ok in b if not ok) / len(b))
        ans = [w for w, ok in b if ok]
        if ans:
            batch_asa.append(sum(ans) / len(ans))

    return SimulationReport(
        params=params,
        arrivals=n_done,
        answered=n_ans,
        abandoned=n_done - n_ans,
        service_level=sum(1 for _, w, ok in waits if ok and w <= thr + _EPS) / n_done if n_done else None,
        service_level_se=_mean_se(batch_sl),
        asa=sum(answered) / n_ans if n_ans else None,
        asa_se=_mean_se(batch_asa),
        p_wait=sum(1 for _, w, _ in waits if w > _EPS) / n_done if n_done else None,
        p_wait_se=_mean_se(batch_pw),
        abandonment_rate=(n_done - n_ans) / n_done if n_done else None,
        abandonment_rate_se=_mean_se(batch_ab),
        mean_wait=sum(w for _, w, _ in waits) / n_done if n_done else None,
        occupancy=busy_area / (slots * window),
        mean_handle_time=sum(handles) / len(handles) if handles else None,
        mean_queue_length=queue_area / window,
        max_queue_length=max_queue,
        events=n_events,
        erlang=predict(params),
    )


def predict(params: SimulationParams) -> ErlangPrediction | None:
    """The queueing-theory figures for the same inputs (one slot per agent, no ringing time)."""
    if params.capacity != 1 or params.answer_delay > 0:
        return None
    exact = params.handle_time == "exponential" and params.wrap_up == 0
    n, rate, aht = params.agents, params.arrival_rate, params.aht
    if params.patience is None:
        load = rate * aht
        return ErlangPrediction(
            model="Erlang C",
            p_wait=erlang.erlang_c(n, load),
            service_level=erlang.service_level(n, load, aht, params.sl_threshold),
            asa=erlang.asa(n, load, aht),
            abandonment_rate=0.0,
            occupancy=erlang.occupancy(n, load),
            exact=exact,
        )
    a = erlang.erlang_a(n, rate, aht, params.patience, params.sl_threshold)
    assert a.service_level is not None
    return ErlangPrediction(
        model="Erlang A",
        p_wait=a.p_wait,
        service_level=a.service_level,
        asa=a.asa,
        abandonment_rate=a.p_abandon,
        occupancy=a.occupancy,
        exact=exact,
    )


def _pct(v: float | None, se: float | None = None) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.1f}%" + (f" ± {100 * 1.96 * se:.1f}" if se is not None else "")


def _secs(v: float | None, se: float | None = None) -> str:
    if v is None:
        return "-"
    if math.isinf(v):
        return "∞"
    return f"{v:.1f} s" + (f" ± {1.96 * se:.1f}" if se is not None else "")


def format_report(report: SimulationReport) -> str:
    """A plain-text table of the simulated figures next to the Erlang prediction (± = 95% CI)."""
    p = report.params
    patience = "none" if p.patience is None else f"{p.patience:g} s"
    head = (
        f"Simulation: {p.agents} agents × {p.capacity} {p.channel}, {p.arrival_rate:g} arrivals/s "
        f"({p.arrival_rate * 3600:,.0f}/h), AHT {p.aht:g} s ({p.handle_time}), patience {patience}, "
        f"{p.duration:g} s (warm-up {p.warmup:g} s), seed {p.seed}"
    )
    e = report.erlang
    model = e.model + ("" if e.exact else " (approx.)") if e else ""
    rows = [
        ("Contacts", f"{report.arrivals:,}", ""),
        ("Answered", f"{report.answered:,}", ""),
        (
            "Abandoned",
            f"{report.abandoned:,} ({_pct(report.abandonment_rate, report.abandonment_rate_se)})",
            _pct(e.abandonment_rate) if e else "",
        ),
        (
            f"Service level ({p.sl_threshold:g} s)",
            _pct(report.service_level, report.service_level_se),
            _pct(e.service_level) if e else "",
        ),
        ("ASA", _secs(report.asa, report.asa_se), _secs(e.asa) if e else ""),
        ("P(wait)", _pct(report.p_wait, report.p_wait_se), _pct(e.p_wait) if e else ""),
        ("Occupancy", _pct(report.occupancy), _pct(e.occupancy) if e else ""),
        ("Mean handle time", _secs(report.mean_handle_time), ""),
        ("Queue length mean / max", f"{report.mean_queue_length:.2f} / {report.max_queue_length}", ""),
    ]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len("simulated"), *(len(r[1]) for r in rows))
    lines = [head, "", f"{'':<{w0}}  {'simulated':>{w1}}  {model}".rstrip()]
    lines += [f"{a:<{w0}}  {b:>{w1}}  {c}".rstrip() for a, b, c in rows]
    return "\n".join(lines)
