"""Demand forecast: Holt's level + trend over irregular intervals, read at a high
quantile over the policy's ``behavior.forecastHorizon``, and patient on the way down
(the highest recent figure is kept for the scale-down stabilization window before it
is let go)."""

from __future__ import annotations

import math
from dataclasses import dataclass

ALPHA = 0.5  # level smoothing per observation
BETA = 0.2  # trend smoothing per observation
RESID = 0.2  # smoothing of the squared one-step error
Z_UP = 1.645  # one-sided 95 % quantile


@dataclass(frozen=True)
class ForecastState:
    level: float
    trend: float  # req/s per second
    resid_var: float
    last_t: float
    recent: tuple[tuple[float, float], ...] = ()  # (time, figure) within the patience window


def count_noise_var(rate: float, window_s: float) -> float:
    """Variance of a rate measured by counting Poisson arrivals over a window."""
    return max(rate, 0.0) / max(window_s, 1.0)


def update(state: ForecastState | None, rate: float, now: float, window_s: float) -> ForecastState:
    if state is None:
        return ForecastState(rate, 0.0, count_noise_var(rate, window_s), now)
    dt = max(now - state.last_t, 1e-3)
    predicted = state.level + state.trend * dt
    err = rate - predicted
    level = ALPHA * rate + (1 - ALPHA) * predicted
    trend = BETA * (level - state.level) / dt + (1 - BETA) * state.trend
    resid = (1 - RESID) * state.resid_var + RESID * err * err
    resid = max(resid, count_noise_var(rate, window_s))
    return ForecastState(level, trend, resid, now, state.recent)


def forecast(
    state: ForecastState, observed: float, horizon_s: float, patience_s: float
) -> tuple[float, ForecastState]:
    """Demand to plan for, and the state that remembers it.

    ``horizon_s`` (``behavior.forecastHorizon``) is how far ahead the figure looks:

    - ``0``: the observed rate itself. No trend is extrapolated and no noise quantile is
      added: "the current load" is the rate measured over the metrics window now.
    - ``> 0``: the level + trend path ``horizon_s`` ahead (on a rising trend the level
      plus ``trend * horizon_s``, the highest point of the path; on a falling one its
      end, ``level + trend * horizon_s``, floored at 0), plus a one-sided 95 % quantile
      (``Z_UP``) of the one-step error, and never below the observed rate.

    ``patience_s`` (the scale-down stabilization window): the figure is never lower
    than any figure of the last ``patience_s`` seconds, so demand is let go only after
    it stayed low that long. One-shot planning (no history) has nothing to keep."""
    if horizon_s <= 0:
        high = max(observed, 0.0)
    else:
        ahead = state.level + max(state.trend, 0.0) * horizon_s
        if state.trend < 0:
            ahead = max(state.level + state.trend * horizon_s, 0.0)
        high = max(ahead, 0.0) + Z_UP * math.sqrt(state.resid_var)
        high = max(high, observed)
    now = state.last_t
    recent = (*((t, v) for t, v in state.recent if now - t <= patience_s), (now, high))
    demand = max(v for _, v in recent)
    return demand, ForecastState(state.level, state.trend, state.resid_var, now, recent)
