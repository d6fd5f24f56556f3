"""The simulator (driving the real engine) against queueing theory, within sampling error.

Each comparison pools several seeds; the standard error comes from batch means (10 batches per
run, so 40-50 batches in all) and the tolerance is 4 standard errors. Each test also checks that
the tolerance is tight enough to tell N agents from N - 1.
"""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from threadline.domain import erlang
from threadline.sim import SimulationParams, SimulationReport, format_report, run_simulation


def pooled(reports: list[SimulationReport], name: str) -> tuple[float, float]:
    values = [getattr(r, name) for r in reports]
    ses = [getattr(r, name + "_se") for r in reports]
    mean = sum(values) / len(values)
    se = math.sqrt(sum(s * s for s in ses)) / len(ses)
    return mean, se


def test_mm_n_agrees_with_erlang_c():
    n, rate, aht, thr = 8, 0.1, 60.0, 15.0  # 6 Erlangs on 8 agents: occupancy 75%
    reports = [
        run_simulation(
            SimulationParams(
                agents=n,
                arrival_rate=rate,
                aht=aht,
                duration=250_000,
                warmup=5_000,
                seed=seed,
                sl_threshold=thr,
            )
        )
        for seed in range(4)
    ]
    load = rate * aht
    theory = {
        "p_wait": erlang.erlang_c(n, load),
        "service_level": erlang.service_level(n, load, aht, thr),
        "asa": erlang.asa(n, load, aht),
    }
    worse = {
        "p_wait": erlang.erlang_c(n - 1, load),
        "service_level": erlang.service_level(n - 1, load, aht, thr),
        "asa": erlang.asa(n - 1, load, aht),
    }
    for name, expected in theory.items():
        mean, se = pooled(reports, name)
        assert abs(mean - expected) <= 4 * se, (name, mean, expected, se)
        assert abs(mean - worse[name]) > 4 * se, (name, "cannot tell N from N-1")
    for r in reports:
        assert r.abandoned == 0
        assert r.occupancy == pytest.approx(load / n, abs=0.03)
        assert r.mean_handle_time == pytest.approx(aht, rel=0.05)
        assert r.erlang is not None and r.erlang.model == "Erlang C"
        assert r.erlang.p_wait == theory["p_wait"]


def test_mm_n_plus_m_agrees_with_erlang_a():
    n, rate, aht, patience, thr = 10, 0.1, 100.0, 60.0, 20.0
    reports = [
        run_simulation(
            SimulationParams(
                agents=n,
                arrival_rate=rate,
                aht=aht,
                patience=patience,
                duration=150_000,
                warmup=3_000,
                seed=10 + seed,
                sl_threshold=thr,
            )
        )
        for seed in range(4)
    ]
    theory = erlang.erlang_a(n, rate, aht, patience, thr)
    worse = erlang.erlang_a(n - 1, rate, aht, patience, thr)
    for name, attr in (("p_wait", "p_wait"), ("service_level", "service_level"), ("asa", "asa")):
        mean, se = pooled(reports, name)
        assert abs(mean - getattr(theory, attr)) <= 4 * se, (name, mean, getattr(theory, attr), se)
        assert abs(mean - getattr(worse, attr)) > 4 * se, (name, "cannot tell N from N-1")
    abandon, se = pooled(reports, "abandonment_rate")
    assert abs(abandon - theory.p_abandon) <= 4 * se, (abandon, theory.p_abandon, se)
    assert abs(abandon - worse.p_abandon) > 4 * se


def test_chat_slots_and_wrap_up_keep_the_flow_balance():
    # Without abandonment every contact is handled, so busy slot time / slot time = λ·AHT / slots.
    params = SimulationParams(
        agents=4,
        capacity=3,
        channel="chat",
        arrival_rate=0.2,
        aht=40.0,
        wrap_up=10.0,
        handle_time="lognormal",
        handle_cv=0.5,
        duration=60_000,
        seed=7,
    )
    r = run_simulation(params)
    assert r.abandoned == 0 and r.erlang is None
    assert r.occupancy == pytest.approx(0.2 * 40.0 / 12, abs=0.02)
    assert r.mean_handle_time == pytest.approx(40.0, rel=0.03)


def test_same_seed_same_report_and_other_seed_differs():
    base = dict(agents=3, arrival_rate=0.05, aht=50.0, patience=40.0, duration=5_000)
    a = run_simulation(SimulationParams(**base, seed=1))
    b = run_simulation(SimulationParams(**base, seed=1))
    c = run_simulation(SimulationParams(**base, seed=2))
    assert a == b
    assert (a.arrivals, a.asa) != (c.arrivals, c.asa)


def test_format_report_shows_simulated_and_predicted_figures():
    r = run_simulation(SimulationParams(agents=14, arrival_rate=100 / 1800, aht=180, duration=36_000, seed=3))
    text = format_report(r)
    assert "14 agents × 1 voice" in text and "200/h" in text
    assert "Erlang C" in text
    sl_line = next(line for line in text.splitlines() if line.startswith("Service level (20 s)"))
    assert "88.8%" in sl_line  # the Erlang C prediction of the classic example
    assert f"{100 * r.service_level:.1f}%" in sl_line


def test_params_are_checked():
    with pytest.raises(ValidationError, match="warm-up"):
        SimulationParams(agents=1, arrival_rate=1, aht=1, duration=10, warmup=10)
    with pytest.raises(ValidationError, match="wrap-up"):
        SimulationParams(agents=1, arrival_rate=1, aht=10, duration=10, wrap_up=10)
    with pytest.raises(ValidationError):
        SimulationParams(agents=0, arrival_rate=1, aht=1, duration=10)
