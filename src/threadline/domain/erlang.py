"""Workforce maths: Erlang B, Erlang C (M/M/N) and Erlang A (M/M/N+M, callers abandon).

Pure functions over floats; the standard library only. Notation (all times in seconds):

* ``arrival_rate`` λ (contacts per second), ``aht`` h (average handle time, talk + wrap-up),
  ``load`` A = λ·h in Erlangs, ``agents`` N, ``threshold`` T (the "answered within" time of a
  service-level target), ``patience`` the mean time a caller waits before hanging up (θ = 1/patience).

Erlang C is computed through the Erlang B recursion (B₀ = 1, B_k = A·B_{k−1}/(k + A·B_{k−1})),
then C = N·B/(N − A(1 − B)); this is stable for thousands of agents. From the probability of
waiting P_w:

* service level  SL(T) = 1 − P_w·e^{−(N−A)·T/h}
* speed of answer ASA  = P_w·h/(N − A)
* occupancy           = A/N

When N ≤ A the queue grows without bound: P_w = 1, SL = 0, ASA = ∞ and occupancy is 1.

Erlang A has no closed form. :func:`erlang_a` solves the birth–death chain (births λ, deaths
min(x, N)/h + max(0, x − N)·θ) and follows one arriving caller through the queue to get the
probability of abandoning, the mean wait and the service level (see the function's docstring).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "ErlangAResult",
    "Staffing",
    "agents_needed",
    "asa",
    "average_speed_of_answer",
    "erlang_a",
    "erlang_b",
    "erlang_c",
    "offered_load",
    "occupancy",
    "probability_of_wait",
    "service_level",
    "staffing",
    "with_shrinkage",
]

_MAX_AGENTS = 1_000_000


def _check(agents: int, load: float) -> None:
    if agents < 0:
        raise ValueError(f"agents must be 0 or more, got {agents}")
    if load < 0 or math.isnan(load):
        raise ValueError(f"the offered load must be 0 or more Erlangs, got {load}")


def offered_load(arrival_rate: float, aht: float) -> float:
    """Offered load in Erlangs: arrivals per second × average handle time in seconds."""
    if arrival_rate < 0 or aht < 0:
        raise ValueError("the arrival rate and the handle time must be 0 or more")
    return arrival_rate * aht


def erlang_b(agents: int, load: float) -> float:
    """Blocking probability of an M/M/N/N system (lost calls cleared)."""
    _check(agents, load)
    b = 1.0
    for k in range(1, agents + 1):
        b = load * b / (k + load * b)
    return b


def erlang_c(agents: int, load: float) -> float:
    """Probability that a contact has to wait (M/M/N with an infinite queue)."""
    _check(agents, load)
    if load == 0:
        return 0.0
    if agents <= load:
        return 1.0
    b = erlang_b(agents, load)
    return agents * b / (agents - load * (1.0 - b))


probability_of_wait = erlang_c


def service_level(agents: int, load: float, aht: float, threshold: float) -> float:
    """Fraction of contacts answered within ``threshold`` seconds (Erlang C)."""
    if aht <= 0:
        raise ValueError("the average handle time must be positive")
    if threshold < 0:
        raise ValueError("the threshold must be 0 or more seconds")
    pw = erlang_c(agents, load)
    if pw == 0.0:
        return 1.0
    if agents <= load:
        return 0.0
    return 1.0 - pw * math.exp(-(agents - load) * threshold / aht)


def average_speed_of_answer(agents: int, load: float, aht: float) -> float:
    """Mean wait over all contacts (Erlang C); ``math.inf`` when the queue is unstable."""
    if aht <= 0:
        raise ValueError("the average handle time must be positive")
    pw = erlang_c(agents, load)
    if pw == 0.0:
        return 0.0
    if agents <= load:
        return math.inf
    return pw * aht / (agents - load)


asa = average_speed_of_answer


def occupancy(agents: int, load: float) -> float:
    """Share of logged-in agent time spent handling contacts, capped at 1."""
    _check(agents, load)
    if agents == 0:
        return 1.0 if load > 0 else 0.0
    return min(1.0, load / agents)


def with_shrinkage(agents: int, shrinkage: float) -> int:
    """Agents to schedule so that ``agents`` remain after breaks, training and absence."""
    if not 0 <= shrinkage < 1:
        raise ValueError(f"shrinkage is a fraction from 0 to below 1, got {shrinkage}")
    return math.ceil(agents / (1.0 - shrinkage) - 1e-9)


def agents_needed(
    arrival_rate: float,
    aht: float,
    target_sl: float,
    threshold: float,
    *,
    max_occupancy: float | None = None,
) -> int:
    """Smallest N whose Erlang C service level reaches ``target_sl`` (a fraction, e.g. 0.8)
    within ``threshold`` seconds, and whose occupancy stays at or below ``max_occupancy``."""
    if not 0 < target_sl < 1:
        raise ValueError(f"target_sl is a fraction between 0 and 1 (0.8 for 80%), got {target_sl}")
    if max_occupancy is not None and not 0 < max_occupancy <= 1:
        raise ValueError(f"max_occupancy is a fraction in (0, 1], got {max_occupancy}")
    load = offered_load(arrival_rate, aht)
    if load == 0:
        return 0
    n = max(1, math.floor(load) + 1)
    if max_occupancy is not None:
        n = max(n, math.ceil(load / max_occupancy - 1e-9))
    while service_level(n, load, aht, threshold) < target_sl:
        n += 1
        if n > _MAX_AGENTS:  # pragma: no cover - defensive
            raise ValueError("no staffing below a million agents reaches that target")
    return n


@dataclass(frozen=True, slots=True)
class Staffing:
    """A staffing answer: ``agents`` on the phones, ``scheduled`` once shrinkage is added."""

    agents: int
    scheduled: int
    load: float
    p_wait: float
    service_level: float
    asa: float
    occupancy: float


def staffing(
    arrival_rate: float,
    aht: float,
    target_sl: float,
    threshold: float,
    *,
    max_occupancy: float | None = None,
    shrinkage: float = 0.0,
) -> Staffing:
    """:func:`agents_needed` plus the resulting figures and the shrinkage-adjusted head count."""
    n = agents_needed(arrival_rate, aht, target_sl, threshold, max_occupancy=max_occupancy)
    load = offered_load(arrival_rate, aht)
    return Staffing(
        agents=n,
        scheduled=with_shrinkage(n, shrinkage),
        load=load,
        p_wait=erlang_c(n, load),
        service_level=service_level(n, load, aht, threshold),
        asa=average_speed_of_answer(n, load, aht),
        occupancy=occupancy(n, load),
    )


@dataclass(frozen=True, slots=True)
class ErlangAResult:
    """Steady state of M/M/N+M. ``mean_wait`` is over every arrival (abandoned ones count with
    the time they waited); ``asa`` is over answered contacts only; ``service_level`` is the share
    of all arrivals answered within the threshold (abandoned contacts count as misses)."""

    agents: int
    load: float
    p_wait: float
    p_abandon: float
    mean_wait: float
    asa: float
    mean_queue: float
    occupancy: float
    service_level: float | None


def _log_add(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    hi, lo = (a, b) if a > b else (b, a)
    return hi + math.log1p(math.exp(lo - hi))


def erlang_a(
    agents: int,
    arrival_rate: float,
    aht: float,
    patience: float,
    threshold: float | None = None,
) -> ErlangAResult:
    """Erlang A: N agents, Poisson arrivals, exponential handle times and patience.

    The state probabilities p_x come from the birth–death chain (computed in log space so that
    thousands of agents do not overflow). An arrival sees p_x (PASTA). With j callers ahead of it
    the caller moves through phases i = j … 0; in phase i the line advances at rate
    a_i = N/h + i·θ and the caller hangs up at rate θ, so it is answered with probability
    Π a_i/(a_i + θ) and its expected answered wait is that product × Σ 1/(a_i + θ). The chance
    of being answered within T is found by uniformising that phase chain. P(abandon) = θ·E[Q]/λ
    and the mean wait over all arrivals is E[Q]/λ (Little's law).
    """
    _check(agents, 0.0)
    if arrival_rate <= 0 or aht <= 0 or patience <= 0:
        raise ValueError("arrival_rate, aht and patience must be positive")
    if agents == 0:
        raise ValueError("Erlang A needs at least one agent")
    lam, mu, theta = arrival_rate, 1.0 / aht, 1.0 / patience
    load = lam * aht

    # log p_x, unnormalised, until the tail is negligible.
    logs = [0.0]
    log_lam = math.log(lam)
    x = 0
    peak = 0.0
    while True:
        x += 1
        death = min(x, agents) * mu + max(0, x - agents) * theta
        nxt = logs[-1] + log_lam - math.log(death)
        logs.append(nxt)
        peak = max(peak, nxt)
        if x > agents and x > load and nxt < peak - 46.0:  # e^-46 ≈ 1e-20 of the mode
            break
    total = -math.inf
    for v in logs:
        total = _log_add(total, v)
    p = [math.exp(v - total) for v in logs]

    p_wait = math.fsum(p[agents:])
    mean_queue = math.fsum((k - agents) * p[k] for k in range(agents + 1, len(p)))
    p_abandon = theta * mean_queue / lam
    mean_wait = mean_queue / lam

    # Answered-wait sums per number of callers ahead j.
    served_wait = 0.0
    prod = 1.0
    inv_sum = 0.0
    n_ahead = len(p) - agents
    for j in range(n_ahead):
        a_j = agents * mu + j * theta
        prod *= a_j / (a_j + theta)
        inv_sum += 1.0 / (a_j + theta)
        served_wait += p[agents + j] * prod * inv_sum
    p_served = 1.0 - p_abandon
    asa_value = served_wait / p_served if p_served > 0 else math.inf

    sl: float | None = None
    if threshold is not None:
        if threshold < 0:
            raise ValueError("the threshold must be 0 or more seconds")
        sl = math.fsum(p[:agents]) + _answered_within(p[agents:], agents * mu, theta, threshold)

    return ErlangAResult(
        agents=agents,
        load=load,
        p_wait=p_wait,
        p_abandon=p_abandon,
        mean_wait=mean_wait,
        asa=asa_value,
        mean_queue=mean_queue,
        occupancy=min(1.0, load * p_served / agents),
        service_level=sl,
    )


def _answered_within(p_ahead: list[float], service_rate: float, theta: float, threshold: float) -> float:
    """Σ_j p_ahead[j] · P(caller with j ahead is answered within ``threshold``), by uniformisation.

    g_k(i) is the probability of being answered within k jumps of the uniformised chain from phase
    i; g_k(i) = (a_i/Λ)·g_{k−1}(i−1) + (1 − (a_i+θ)/Λ)·g_{k−1}(i), with g(−1) = 1 (answered).
    """
    if threshold == 0 or not p_ahead:
        return 0.0
    n = len(p_ahead)
    rates = [service_rate + i * theta for i in range(n)]
    big = rates[-1] + theta
    lt = big * threshold
    advance = [r / big for r in rates]
    stay = [1.0 - (r + theta) / big for r in rates]
    k_max = int(lt + 10.0 * math.sqrt(lt) + 30)
    g = [0.0] * n
    acc = [0.0] * n
    log_lt = math.log(lt)
    for k in range(k_max + 1):
        w = math.exp(-lt + k * log_lt - math.lgamma(k + 1))
        if k > 0:
            new = [0.0] * n
            new[0] = advance[0] + stay[0] * g[0]
            for i in range(1, n):
                new[i] = advance[i] * g[i - 1] + stay[i] * g[i]
            g = new
        if w > 0.0:
            for i in range(n):
                acc[i] += w * g[i]
    return math.fsum(p_ahead[i] * acc[i] for i in range(n))
