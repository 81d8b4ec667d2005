"""The planner's TTFT prediction against the twin on the bundled (bursty) traces, at
fixed allocations: each interval the planner predicts the attainment of the requests
of that interval from what it observed (rate, token means, the measured dispersion of
arrivals and spread of prompt lengths) with the correction factors it learned from
the intervals *before* it; the request-weighted mean of those predictions is compared
with the twin's attainment over the run. Tolerance 0.05 (issue 12). The uncorrected
G/G/c model's figure and the old M/G/c (Poisson, exponential) figure are computed too
and reported on failure, not asserted: the correction is part of the prediction."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from goodput.api.spec import GoodputPolicySpec
from goodput.observation import Observation
from goodput.plan import Allocation, Plan
from goodput.planner import GoodputPlanner
from goodput.planner.correction import Factors
from goodput.planner.model import CacheEffect, Demand, decode_curve, prefill_curve
from goodput.planner.planner import demand_signal, variability
from goodput.profiles import PerformanceProfile, load_profile

bench = pytest.importorskip("goodput.sim.bench")
harness = pytest.importorskip("goodput.sim.harness")
scenario = pytest.importorskip("goodput.sim.scenario")
shared = pytest.importorskip("goodput.profiles.shared_data")

TOLERANCE = 0.05


def _traces() -> Path:
    """The bundled traces; the test fails (not skips) without them, as the profile
    tests do: an agreement that was not checked must not look like one that held."""
    try:
        return Path(shared.require_shared_data("traces"))
    except shared.SharedDataMissing as err:
        why = str(err)
    pytest.fail(f"this test needs the shared traces: {why}", pytrace=False)


def fixed(spec: GoodputPolicySpec, p: int, d: int) -> GoodputPolicySpec:
    """The bench case's policy with both pools pinned (minReplicas = maxReplicas)."""
    pools = []
    for pool, n in zip(spec.pools, (p, d), strict=True):
        pools.append(pool.model_copy(update={"min_replicas": n, "max_replicas": n}))
    return spec.model_copy(update={"pools": pools})


@dataclass
class Recorder:
    """The goodput planner at a pinned allocation, recording before each decision the
    TTFT attainment it predicts for the interval just observed."""

    spec: GoodputPolicySpec
    prof: PerformanceProfile
    replicas: int
    name: str = "recorder"
    rows: list[tuple[float, float, float, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.planner = GoodputPlanner(self.spec)

    def predict(self, obs: Observation, factor: float, measured: bool, *, poisson: bool) -> float:
        rate = demand_signal(obs, "arrival_rate_rps") or 0.0
        var = variability(obs)
        demand = Demand(
            rate,
            demand_signal(obs, "mean_input_tokens") or 0.0,
            max(demand_signal(obs, "mean_output_tokens") or 1.0, 1.0),
            1.0 if poisson else var.arrival_scv,
            1.0 if poisson else var.input_scv,
        )
        n = self.replicas
        curve = prefill_curve(
            self.prof, factor, demand, CacheEffect(), self.spec.slo.ttft_seconds, n
        )
        return float(curve.attainment[n]) * min(1.0, float(curve.served[n]) / max(rate, 1e-12))

    def decide(self, obs: Observation, current: Allocation, now: float) -> Plan:
        rate = demand_signal(obs, "arrival_rate_rps") or 0.0
        if rate > 0 and demand_signal(obs, "mean_input_tokens") is not None:
            learned = self.planner.state.factors.get("prefill", Factors()).prefill
            self.rows.append(
                (
                    now,
                    self.predict(obs, learned, True, poisson=False),
                    self.predict(obs, 1.0, True, poisson=False),
                    self.predict(obs, 1.0, False, poisson=True),
                )
            )
        return self.planner.decide(obs, current, now)


def _fixed_run(case_key: str, p: int, itl: bool) -> tuple[Any, Any, Any, Any, Any]:
    """A bench case's trace through the twin at p prefill replicas and the rest of the
    budget on decode, recorded by a Recorder (or an ItlRecorder): (trace, spec,
    scenario, recorder, run)."""
    case = next(c for c in bench.cases() if c.key == case_key)
    trace = case.load(_traces())
    prof = load_profile(case.spec.pools[0].profile or "")
    d = case.spec.gpu_budget // prof.gpus_per_replica - p
    spec = fixed(case.spec, p, d)
    sc = scenario.build_scenario(spec)
    rec = ItlRecorder(spec, prof, p, decode=d) if itl else Recorder(spec, prof, p)
    run = harness.run(sc, trace, rec, initial={"prefill": p, "decode": d})
    return trace, spec, sc, rec, run


@cache
def agreement(case_key: str, p: int) -> dict[str, float]:
    trace, spec, sc, rec, run = _fixed_run(case_key, p, itl=False)
    o = run.outcomes
    slo = spec.slo.ttft_seconds
    ok = (~np.isnan(o.ttft)) & (o.ttft <= slo)
    interval = sc.interval_s
    weights = pred = raw = old = twin = 0.0
    for now, corrected, uncorrected, mgc in rec.rows:
        lo, hi = np.searchsorted(trace.arrival_s, [now - interval, now], side="left")
        k = float(hi - lo)
        weights += k
        pred += k * corrected
        raw += k * uncorrected
        old += k * mgc
        twin += float(np.sum(ok[lo:hi]))
    assert weights > 0
    return {
        "twin": twin / weights,
        "planner": pred / weights,
        "model": raw / weights,
        "mgc": old / weights,
    }


# (bench case, prefill replicas): budget 32 GPUs of TP4 replicas, the rest decode. The
# splits around each case's static best, plus one overloaded split (azure-conv 3).
# Not met, measured and left failing visibly (strict: it must fail until fixed): at 3
# prefill replicas azure-conv is overloaded for long stretches (twin mean TTFT 4.2 s)
# and the planner predicts 0.506 against the twin's 0.563 (0.057 below; the
# uncorrected G/G/c 0.452, the old M/G/c 0.625).
OVERLOADED = pytest.mark.xfail(
    strict=True, reason="azure-conv at 3 prefill replicas: planner 0.506 vs twin 0.563"
)
PAIRS = [
    ("azure-conv", 3),
    ("azure-conv", 4),
    ("azure-conv", 5),
    ("azure-code", 4),
    ("azure-code", 6),
    ("servegen-day", 3),
    ("servegen-day", 4),
]
CASES = [
    pytest.param(c, p, marks=OVERLOADED if (c, p) == ("azure-conv", 3) else (), id=f"{c}-p{p}")
    for c, p in PAIRS
]


@pytest.mark.parametrize(("case", "p"), CASES)
def test_predicted_ttft_attainment_matches_the_twin_on_bursty_traces(case: str, p: int) -> None:
    got = agreement(case, p)
    assert math.isfinite(got["planner"])
    assert abs(got["planner"] - got["twin"]) <= TOLERANCE, got


def test_the_measured_variability_moves_the_model_toward_the_twin() -> None:
    """Without correction, measuring burstiness and prompt spread brings the model
    closer to the twin than the Poisson/exponential assumption, summed over the cases."""
    old = new = 0.0
    for case, p in PAIRS:
        got = agreement(case, p)
        old += abs(got["mgc"] - got["twin"])
        new += abs(got["model"] - got["twin"])
    assert new < old, (new, old)


@dataclass
class ItlRecorder(Recorder):
    """As ``Recorder``, for the decode pool: the ITL attainment the planner predicts
    (its learned decode factor) for the requests of the interval just observed."""

    decode: int = 0
    itl_rows: list[tuple[float, float]] = field(default_factory=list)

    def decide(self, obs: Observation, current: Allocation, now: float) -> Plan:
        rate = demand_signal(obs, "arrival_rate_rps") or 0.0
        if rate > 0 and demand_signal(obs, "mean_input_tokens") is not None:
            var = variability(obs)
            demand = Demand(
                rate,
                demand_signal(obs, "mean_input_tokens") or 0.0,
                max(demand_signal(obs, "mean_output_tokens") or 1.0, 1.0),
                var.arrival_scv,
                var.input_scv,
            )
            learned = self.planner.state.factors.get("decode", Factors()).decode
            d = self.decode
            curve = decode_curve(self.prof, learned, demand, self.spec.slo.itl_seconds, d)
            share = min(1.0, float(curve.served[d]) / rate)
            self.itl_rows.append((now, float(curve.attainment[d]) * share))
        return self.planner.decide(obs, current, now)


@cache
def itl_agreement(case_key: str, p: int) -> tuple[float, float]:
    """(planner, twin) ITL attainment over the run, request-weighted by interval."""
    trace, spec, sc, rec, run = _fixed_run(case_key, p, itl=True)
    o = run.outcomes
    ok = (o.output_tokens <= 1) | (np.nan_to_num(o.itl, nan=math.inf) <= spec.slo.itl_seconds)
    weights = pred = twin = 0.0
    for now, predicted in rec.itl_rows:
        lo, hi = np.searchsorted(trace.arrival_s, [now - sc.interval_s, now], side="left")
        k = float(hi - lo)
        weights += k
        pred += k * predicted
        twin += float(np.sum(ok[lo:hi]))
    assert weights > 0
    return pred / weights, twin / weights


# azure-conv-fp8's ITL SLO (20 ms) is 1.2x the one-sequence step: at 5 and 4 decode
# replicas (the static best's split and one replica fewer) the ITL tail decides the
# split. Before the per-request ITL spread averaged the step noise over a request's
# steps and shared the batch spread between load-balanced replicas the planner read
# 0.71 and 0.59 where the twin measures 0.995 and 0.880.
@pytest.mark.parametrize("p", [11, 12], ids=["azure-conv-fp8-d5", "azure-conv-fp8-d4"])
def test_predicted_itl_attainment_matches_the_twin_at_a_tight_itl_slo(p: int) -> None:
    planner, twin = itl_agreement("azure-conv-fp8", p)
    assert abs(planner - twin) <= TOLERANCE, (planner, twin)
