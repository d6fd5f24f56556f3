"""Erlang maths against published values and independent computations."""

from __future__ import annotations

import math

import pytest

from threadline.domain import erlang


def test_classic_example_100_calls_per_half_hour():
    # 100 calls / 30 min, AHT 180 s, 80% in 20 s (pyworkforce's test suite, high-precision truth)
    rate, aht = 100 / 1800, 180.0
    load = erlang.offered_load(rate, aht)
    assert load == pytest.approx(10.0)
    assert erlang.agents_needed(rate, aht, 0.8, 20) == 14
    assert erlang.erlang_c(14, load) == pytest.approx(0.174132, abs=1e-6)
    assert erlang.service_level(14, load, aht, 20) == pytest.approx(0.888350, abs=1e-6)
    assert erlang.asa(14, load, aht) == pytest.approx(7.836, abs=1e-3)
    assert erlang.occupancy(14, load) == pytest.approx(0.714, abs=1e-3)
    plan = erlang.staffing(rate, aht, 0.8, 20, shrinkage=0.3)
    assert (plan.agents, plan.scheduled) == (14, 20)


def test_250_calls_an_hour_needs_28_advisors():
    # jonesthenet "Erlang uplift": 250 calls/h, AHT 330 s, 80/30 -> 28 advisors (naive 22.9)
    rate, aht = 250 / 3600, 330.0
    load = erlang.offered_load(rate, aht)
    assert load == pytest.approx(22.917, abs=1e-3)
    assert erlang.agents_needed(rate, aht, 0.8, 30) == 28
    assert erlang.erlang_c(28, load) == pytest.approx(0.227241, abs=1e-6)
    assert erlang.service_level(28, load, aht, 30) == pytest.approx(0.856850, abs=1e-6)
    assert erlang.asa(28, load, aht) == pytest.approx(14.752, abs=1e-3)


def test_erlang_b_table_value():
    assert erlang.erlang_b(10, 5.0) == pytest.approx(0.018385, abs=1e-6)
    assert erlang.erlang_b(0, 3.0) == 1.0


def _erlang_c_by_the_textbook(n: int, a: float) -> float:
    top = a**n / math.factorial(n) * n / (n - a)
    return top / (sum(a**k / math.factorial(k) for k in range(n)) + top)


@pytest.mark.parametrize(("n", "a"), [(1, 0.5), (3, 2.2), (14, 10.0), (40, 35.5)])
def test_erlang_c_matches_the_closed_formula(n: int, a: float):
    assert erlang.erlang_c(n, a) == pytest.approx(_erlang_c_by_the_textbook(n, a), rel=1e-12)


def test_large_centres_do_not_overflow():
    pw = erlang.erlang_c(2000, 1950.0)
    assert 0 < pw < 1
    assert erlang.agents_needed(1950 / 300, 300, 0.8, 20) > 1950


def test_overloaded_and_idle_edges():
    assert erlang.erlang_c(5, 5.0) == 1.0
    assert erlang.service_level(5, 6.0, 100, 20) == 0.0
    assert erlang.asa(5, 6.0, 100) == math.inf
    assert erlang.occupancy(5, 6.0) == 1.0
    assert erlang.erlang_c(5, 0.0) == 0.0
    assert erlang.service_level(5, 0.0, 100, 20) == 1.0
    assert erlang.agents_needed(0.0, 100, 0.8, 20) == 0
    with pytest.raises(ValueError, match="fraction"):
        erlang.agents_needed(1, 100, 80, 20)


def test_agents_needed_is_the_smallest_that_works_and_honours_max_occupancy():
    rate, aht = 0.2, 240.0
    load = rate * aht
    n = erlang.agents_needed(rate, aht, 0.9, 15)
    assert erlang.service_level(n, load, aht, 15) >= 0.9 > erlang.service_level(n - 1, load, aht, 15)
    capped = erlang.agents_needed(rate, aht, 0.5, 15, max_occupancy=0.75)
    assert load / capped <= 0.75 < load / (capped - 1)


def _birth_death(n: int, lam: float, aht: float, patience: float, states: int = 600) -> list[float]:
    p = [1.0]
    for x in range(1, states):
        p.append(p[-1] * lam / (min(x, n) / aht + max(0, x - n) / patience))
    total = sum(p)
    return [v / total for v in p]


@pytest.mark.parametrize(
    ("n", "lam", "aht", "patience"), [(1, 0.02, 60, 30), (10, 0.1, 100, 60), (30, 0.12, 300, 90)]
)
def test_erlang_a_against_a_plain_birth_death_chain(n, lam, aht, patience):
    p = _birth_death(n, lam, aht, patience)
    queue = sum((x - n) * p[x] for x in range(n + 1, len(p)))
    got = erlang.erlang_a(n, lam, aht, patience, threshold=20)
    assert got.p_wait == pytest.approx(sum(p[n:]), rel=1e-9)
    assert got.p_abandon == pytest.approx(queue / patience / lam, rel=1e-9)
    assert got.mean_wait == pytest.approx(queue / lam, rel=1e-9)
    busy = sum(min(x, n) * p[x] for x in range(len(p)))
    assert got.occupancy == pytest.approx(busy / n, rel=1e-9)  # carried load: flow balance
    assert 0 < got.service_level < 1 - got.p_abandon
    # answered callers' mean wait: E[W; answered] <= E[W], so ASA <= mean wait / P(answered)
    assert 0 < got.asa <= got.mean_wait / (1 - got.p_abandon)


def test_erlang_a_with_endless_patience_is_erlang_c():
    got = erlang.erlang_a(14, 100 / 1800, 180, patience=1e12, threshold=20)
    assert got.p_wait == pytest.approx(0.174132, abs=1e-6)
    assert got.asa == pytest.approx(7.836, abs=1e-3)
    assert got.service_level == pytest.approx(0.888350, abs=1e-6)
    assert got.p_abandon < 1e-9


def test_erlang_a_single_agent_service_level_closed_form():
    # One agent, nobody ahead ever matters when arrivals are very rare: an arrival that waits
    # finds exactly one call in service; it is answered within T with probability
    # mu/(mu+theta) * (1 - exp(-(mu+theta) T)).
    lam, aht, patience, t = 1e-7, 60.0, 30.0, 20.0
    mu, theta = 1 / aht, 1 / patience
    got = erlang.erlang_a(1, lam, aht, patience, threshold=t)
    within = mu / (mu + theta) * (1 - math.exp(-(mu + theta) * t))
    # compare the miss probability, which is small, so that the check has teeth
    assert 1 - got.service_level == pytest.approx(got.p_wait * (1 - within), rel=1e-6)
