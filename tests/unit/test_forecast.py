"""Demand forecast: level + trend, a high quantile on the way up, patience on the way down."""

from __future__ import annotations

import math

import pytest

from goodput.planner.forecast import Z_UP, ForecastState, count_noise_var, forecast, update

WINDOW = 60.0
HORIZON = 75.0
PATIENCE = 120.0


def run(rates: list[float], dt: float = 15.0, horizon: float = HORIZON) -> list[float]:
    state: ForecastState | None = None
    out = []
    for i, rate in enumerate(rates):
        state = update(state, rate, i * dt, WINDOW)
        demand, state = forecast(state, rate, horizon, PATIENCE)
        out.append(demand)
    return out


def test_first_observation_plans_for_counting_noise() -> None:
    (demand,) = run([60.0])
    assert demand == pytest.approx(60.0 + Z_UP * math.sqrt(count_noise_var(60.0, WINDOW)))


def test_steady_demand_settles_just_above_the_level() -> None:
    demand = run([50.0] * 40)
    assert demand[-1] == pytest.approx(50.0 + Z_UP * math.sqrt(50.0 / WINDOW), rel=1e-3)


def test_ramp_is_anticipated_over_the_startup_horizon() -> None:
    # +1 req/s every 15 s: the forecast must cover what arrives a horizon later
    rates = [10.0 + i for i in range(40)]
    demand = run(rates)
    ahead = HORIZON / 15.0
    for i in range(10, 40):
        assert demand[i] >= rates[i] + 0.8 * ahead  # trend extrapolated, not just the level
    assert demand[-1] <= rates[-1] + 2 * ahead + 10  # and not wildly above


def test_patient_on_the_way_down() -> None:
    rates = [100.0] * 20 + [20.0] * 20
    demand = run(rates)
    drop = 20
    held = int(PATIENCE // 15.0)
    for i in range(drop, drop + held):
        assert demand[i] >= demand[drop - 1] - 1e-9  # keeps the recent high
    after = demand[drop + held + 1 :]
    assert after == sorted(after, reverse=True)  # then lets go, steadily
    assert after[-1] < 40.0  # down toward the new level (its noise estimate decays too)


def test_the_horizon_is_how_far_ahead_and_zero_means_the_observed_rate() -> None:
    rates = [10.0 + i for i in range(30)]  # rising 1 req/s every 15 s
    now, two, ten = (run(rates, horizon=h) for h in (0.0, 120.0, 600.0))
    assert now == rates  # 0 s: the observed rate, no trend and no noise quantile added
    state: ForecastState | None = None
    for i, rate in enumerate(rates):
        state = update(state, rate, i * 15.0, WINDOW)
        if i >= 10:
            assert rates[i] < two[i] < ten[i]
            # the same path read 8 minutes further along its (rising) trend
            assert ten[i] - two[i] == pytest.approx(480.0 * state.trend, rel=1e-9)
            assert state.trend > 0.5 / 15.0


def test_patience_applies_whatever_the_horizon() -> None:
    rates = [100.0] * 10 + [20.0] * 20
    demand = run(rates, horizon=0.0)
    held = int(PATIENCE // 15.0)  # figures within PATIENCE of the last high one
    assert demand[10 : 10 + held] == [100.0] * held
    assert demand[10 + held :] == [20.0] * (20 - held)  # then the observed rate again
