"""The planners' memory as JSON, for the policy's status (``status.plannerState``).

What a planner remembers between intervals (the demand forecast and the figures its
patience window keeps, the correction factors, the token means, the replicas recent
plans wanted) decides what it plans next. Kept only in memory, an operator restart
forgot it and the same policy under the same load decided differently; written to the
status each tick and read back when a planner is built, a restarted operator decides as
the old one would have. Floats go through JSON unchanged (shortest round-trip repr), so
the restored planner is the same planner, not an approximation of it.

``load`` refuses (``ValueError``) what it cannot read whole: a planner started from a
half-read memory would be neither the old one nor a fresh one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from goodput.planner.correction import Factors
from goodput.planner.forecast import ForecastState
from goodput.planner.planner import PlannerState
from goodput.planner.variants import VariantPlannerState

KIND_SINGLE = "single"
KIND_VARIANTS = "variants"
VERSION = 1


def _forecast(f: ForecastState | None) -> dict[str, Any] | None:
    if f is None:
        return None
    return {
        "level": f.level,
        "trend": f.trend,
        "residVar": f.resid_var,
        "lastT": f.last_t,
        "recent": [[t, v] for t, v in f.recent],
    }


def _forecast_from(raw: Any) -> ForecastState | None:
    if raw is None:
        return None
    return ForecastState(
        level=float(raw["level"]),
        trend=float(raw["trend"]),
        resid_var=float(raw["residVar"]),
        last_t=float(raw["lastT"]),
        recent=tuple((float(t), float(v)) for t, v in raw["recent"]),
    )


def _factors(f: Factors) -> dict[str, float]:
    return {k: float(v) for k, v in dataclasses.asdict(f).items()}


def _factors_from(raw: Mapping[str, Any]) -> Factors:
    names = {f.name for f in dataclasses.fields(Factors)}
    unknown = set(raw) - names
    if unknown:
        raise ValueError(f"unknown correction factors {sorted(unknown)}")
    return Factors(**{k: float(v) for k, v in raw.items()})


def _traffic(t: tuple[float, float, float, float] | None) -> list[float] | None:
    return None if t is None else [float(x) for x in t]


def _traffic_from(raw: Any) -> tuple[float, float, float, float] | None:
    if raw is None:
        return None
    a, b, c, d = (float(x) for x in raw)
    return (a, b, c, d)


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    """Absent, not null: how the API server keeps a null inside a preserved object is
    not this module's to guess."""
    return {k: v for k, v in d.items() if v is not None}


def dump(state: PlannerState) -> dict[str, Any]:
    """The single-model planner's memory as a JSON object."""
    return _drop_none(
        {
            "kind": KIND_SINGLE,
            "version": VERSION,
            "forecast": _forecast(state.forecast),
            "factors": {r: _factors(f) for r, f in sorted(state.factors.items())},
            "lastTraffic": _traffic(state.last_traffic),
            "patient": state.patient,
            "started": state.started,
            "recentDesired": [
                {"time": t, "replicas": {r: n for r, n in d}} for t, d in state.recent_desired
            ],
        }
    )


def load(raw: Mapping[str, Any]) -> PlannerState:
    """``dump``'s inverse; ValueError when ``raw`` is not a whole single-model memory."""
    try:
        if raw.get("kind") != KIND_SINGLE or raw.get("version") != VERSION:
            raise ValueError(f"not a {KIND_SINGLE} planner memory, version {VERSION}")
        started = raw.get("started")
        return PlannerState(
            forecast=_forecast_from(raw.get("forecast")),
            factors={str(r): _factors_from(f) for r, f in raw["factors"].items()},
            last_traffic=_traffic_from(raw.get("lastTraffic")),
            patient=bool(raw["patient"]),
            started=None if started is None else float(started),
            recent_desired=tuple(
                (
                    float(e["time"]),
                    tuple(sorted((str(r), int(n)) for r, n in e["replicas"].items())),
                )
                for e in raw["recentDesired"]
            ),
        )
    except (KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"unreadable planner memory: {err!r}") from err


def dump_variants(state: VariantPlannerState) -> dict[str, Any]:
    """The variant planner's memory as a JSON object."""
    return _drop_none(
        {
            "kind": KIND_VARIANTS,
            "version": VERSION,
            "demand": _forecast(state.demand),
            "lastTraffic": _traffic(state.last_traffic),
            "factors": {
                v: {r: _factors(f) for r, f in sorted(fs.items())}
                for v, fs in sorted(state.factors.items())
            },
            "rates": {v: float(r) for v, r in sorted(state.rates.items())},
            "shares": {v: int(s) for v, s in state.shares.items()},
        }
    )


def load_variants(raw: Mapping[str, Any]) -> VariantPlannerState:
    """``dump_variants``'s inverse; ValueError when ``raw`` is not a whole memory."""
    try:
        if raw.get("kind") != KIND_VARIANTS or raw.get("version") != VERSION:
            raise ValueError(f"not a {KIND_VARIANTS} planner memory, version {VERSION}")
        return VariantPlannerState(
            demand=_forecast_from(raw.get("demand")),
            last_traffic=_traffic_from(raw.get("lastTraffic")),
            factors={
                str(v): {str(r): _factors_from(f) for r, f in fs.items()}
                for v, fs in raw["factors"].items()
            },
            rates={str(v): float(r) for v, r in raw["rates"].items()},
            shares={str(v): int(s) for v, s in raw["shares"].items()},
        )
    except (KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"unreadable planner memory: {err!r}") from err
