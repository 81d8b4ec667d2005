"""The demand-variability figures the metrics layer adds to an observation (issue 12):
the index of dispersion of per-step request counts (trend removed) and the spread of
prompt lengths from the prompt-token histogram; through PromQL (a scripted
Prometheus) and in the twin's in-process source."""

from __future__ import annotations

import asyncio
import math
import re
from typing import Any, ClassVar

import numpy as np
import pytest

from goodput.api.spec import GoodputPolicySpec
from goodput.metrics.client import QueryError, Sample
from goodput.metrics.math import (
    MIN_DISPERSION_STEPS,
    dispersion_from_moments,
    dispersion_index,
    histogram_from_buckets,
    histogram_scv,
)
from goodput.metrics.promql import build_plan, dispersion_query
from goodput.metrics.source import PrometheusObservationSource

NOW = 1_000_000.0
VLLM_TOKEN_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000)


def hist_of(lengths: np.ndarray) -> list[tuple[float, float]]:
    bounds = [*map(float, VLLM_TOKEN_BUCKETS), math.inf]
    return [(b, float(np.sum(lengths <= b))) for b in bounds]


def test_poisson_counts_have_dispersion_one_and_bursts_more() -> None:
    rng = np.random.default_rng(5)
    assert dispersion_index(rng.poisson(30.0, 400).tolist()) == pytest.approx(1.0, abs=0.15)
    # Clumps of 8 requests arriving together (compound Poisson): E[K^2]/E[K] = 8.
    clumps = rng.poisson(30.0 / 8, 400) * 8
    assert dispersion_index(clumps.tolist()) == pytest.approx(8.0, rel=0.2)


def test_a_trend_is_not_burstiness() -> None:
    rng = np.random.default_rng(6)
    ramp = rng.poisson(np.linspace(10.0, 50.0, 200))
    # Raw variance / mean would count the ramp (about 4.5 here); detrended it is Poisson.
    raw = float(np.var(ramp) / np.mean(ramp))
    assert raw > 3.0
    assert dispersion_index(ramp.tolist()) == pytest.approx(1.0, abs=0.2)


def test_dispersion_from_moments_equals_the_direct_computation() -> None:
    rng = np.random.default_rng(7)
    counts = rng.poisson(np.linspace(5.0, 25.0, 20)) * 3.0
    t = np.arange(len(counts), dtype=float)
    slope = float(np.polyfit(t, counts, 1)[0])
    got = dispersion_from_moments(float(np.mean(counts)), float(np.var(counts)), slope, 20)
    assert got == pytest.approx(dispersion_index(counts.tolist()), rel=1e-9)


def test_dispersion_is_not_measured_without_enough_steps_or_requests() -> None:
    assert dispersion_index([3.0] * (MIN_DISPERSION_STEPS - 1)) is None
    assert dispersion_index([0.0] * 20) is None
    assert dispersion_index([1.0, float("nan")] * 5) is None
    assert dispersion_from_moments(None, 1.0, 0.0, 20) is None


@pytest.mark.parametrize("scv", [0.3, 1.0, 2.0])
def test_the_prompt_histogram_gives_the_gamma_scv(scv: float) -> None:
    rng = np.random.default_rng(8)
    lengths = rng.gamma(1.0 / scv, 1500.0 * scv, 50000)
    hist = histogram_from_buckets(hist_of(lengths))
    assert hist is not None
    assert histogram_scv(hist, float(np.mean(lengths))) == pytest.approx(scv, rel=0.1)


def test_an_empty_prompt_histogram_measures_nothing() -> None:
    hist = histogram_from_buckets([(10.0, 0.0), (math.inf, 0.0)])
    assert hist is not None and histogram_scv(hist, 100.0) is None


def test_the_dispersion_query_is_one_subquery_over_the_span() -> None:
    q = dispersion_query("vllm:request_success_total", 'pod=~"p-.*"', 60_000)
    inner = 'sum(increase(vllm:request_success_total{pod=~"p-.*"}[15000ms]))'
    for stat, fn in (("mean", "avg_over_time"), ("var", "stdvar_over_time"), ("slope", "deriv")):
        assert f'label_replace({fn}({inner}[300000ms:15000ms]), "stat", "{stat}"' in q


class ScriptedProm:
    """Answers the dispersion query with ``stats`` and the prompt-token histogram with
    ``buckets``; every other query with nothing (the signals are not under test)."""

    def __init__(
        self,
        stats: dict[str, float] | None,
        buckets: list[tuple[float, float]] | None,
        mean: float = 1500.0,
        fail: bool = False,
    ) -> None:
        self.stats, self.buckets, self.mean, self.fail = stats, buckets, mean, fail

    async def query(self, promql: str, at: float, *, deadline: float | None = None) -> list[Sample]:
        if '"stat", "mean"' in promql and "request_prompt_tokens_count" in promql:
            if self.fail:
                raise QueryError("boom", transient=True)
            return [Sample({"stat": k}, at, v) for k, v in (self.stats or {}).items()]
        if re.match(r"sum by \(le\) \(rate\(vllm:request_prompt_tokens_bucket", promql):
            return [
                Sample({"le": "+Inf" if le == math.inf else str(le)}, at, c)
                for le, c in (self.buckets or [])
            ]
        if self.buckets and promql.startswith("sum(rate(vllm:request_prompt_tokens_"):
            count = self.buckets[-1][1]
            value = count if "_count" in promql else count * self.mean
            return [Sample({}, at, value)]
        return []


def spec() -> GoodputPolicySpec:
    return GoodputPolicySpec.model_validate(
        {
            "gpuBudget": 8,
            "pools": [{"role": "aggregated", "targetRef": {"name": "a"}, "maxReplicas": 4}],
            "slo": {"ttft": "500ms", "itl": "50ms"},
            "metrics": {"window": "1m"},
        }
    )


def observe(prom: Any) -> Any:
    return asyncio.run(PrometheusObservationSource(spec(), prom).observe(NOW))


def test_prometheus_source_fills_the_figures() -> None:
    rng = np.random.default_rng(9)
    lengths = rng.gamma(0.5, 3000.0, 20000)  # SCV 2
    # 20 steps of 15 s, mean 10 requests, variance 50, rising 1 request per step.
    slope_per_s = 1.0 / 15.0
    var = 50.0 + 1.0 * (20 * 20 - 1) / 12.0
    stats = {"mean": 10.0, "var": var, "slope": slope_per_s, "steps": 20.0}
    obs = observe(ScriptedProm(stats, hist_of(lengths), float(np.mean(lengths))))
    p = obs.pools["aggregated"]
    assert p.arrival_dispersion == pytest.approx(50.0 * 20 / 18 / 10.0)
    assert p.prompt_tokens_scv == pytest.approx(2.0, rel=0.1)
    assert "aggregated.arrival_dispersion" not in obs.missing


def test_prometheus_source_says_when_it_measured_nothing() -> None:
    obs = observe(ScriptedProm(None, None))
    p = obs.pools["aggregated"]
    assert p.arrival_dispersion is None and p.prompt_tokens_scv is None
    assert not any("dispersion" in m or "scv" in m for m in obs.missing)  # figures, not signals
    assert any("arrival_dispersion: not measured" in n for n in obs.notes)
    assert any("prompt_tokens_scv: not measured" in n for n in obs.notes)
    failed = observe(ScriptedProm({"mean": 1.0}, None, fail=True))
    assert failed.pools["aggregated"].arrival_dispersion is None
    assert any("arrival_dispersion: query failed" in n for n in failed.notes)


def test_the_plan_reads_every_preset_counter_in_order() -> None:
    plan = build_plan(spec().metrics, ["aggregated"])
    qs = plan.pools["aggregated"].dispersion
    assert "vllm:request_prompt_tokens_count" in qs[0]
    assert "vllm:request_success_total" in qs[1]
    assert plan.dispersion_step_s == pytest.approx(15.0)


def _twin_observations(clump: int) -> list[Any]:
    """The twin's own observations (goodput.sim.observe) of 10 minutes of 8 req/s,
    arriving one by one (Poisson) or in clumps of ``clump`` at the same instant."""
    harness = pytest.importorskip("goodput.sim.harness")
    scenario = pytest.importorskip("goodput.sim.scenario")
    traces = pytest.importorskip("goodput.sim.traces")
    from goodput.sim.controllers import FixedController

    rng = np.random.default_rng(11)
    n = int(8.0 * 600 / clump)
    starts = np.cumsum(rng.exponential(clump / 8.0, n))
    arrivals = np.repeat(starts, clump)
    m = len(arrivals)
    trace = traces.Trace(
        name="clumps",
        arrival_s=arrivals,
        input_tokens=np.maximum(1, rng.gamma(0.5, 2000.0, m)).astype(np.int64),
        output_tokens=np.maximum(2, rng.exponential(100.0, m)).astype(np.int64),
    )
    policy = GoodputPolicySpec.model_validate(
        {
            "gpuBudget": 8,
            "pools": [
                {
                    "role": r,
                    "targetRef": {"name": r},
                    "minReplicas": 4,
                    "maxReplicas": 4,
                    "profile": "llama-3.1-8b-h100-tp1",
                }
                for r in ("prefill", "decode")
            ],
            "slo": {"ttft": "500ms", "itl": "50ms"},
        }
    )
    sc = scenario.build_scenario(policy)

    class Recorder(FixedController):
        observes = True  # the fixed baseline does not look; this one records
        seen: ClassVar[list[Any]] = []

        def decide(self, obs: Any, current: Any, now: float) -> Any:
            self.seen.append(obs)
            return super().decide(obs, current, now)

    rec = Recorder(sc, {"prefill": 4, "decode": 4})
    rec.seen = []
    harness.run(sc, trace, rec, initial={"prefill": 4, "decode": 4})
    return rec.seen[25:]  # after the first dispersion span


def test_the_twin_measures_burstiness_and_prompt_spread() -> None:
    poisson = [o.pools["prefill"] for o in _twin_observations(1)]
    clumps = [o.pools["prefill"] for o in _twin_observations(10)]
    d_poisson = np.median([p.arrival_dispersion for p in poisson])
    d_clumps = np.median([p.arrival_dispersion for p in clumps])
    assert d_poisson == pytest.approx(1.0, abs=0.5)
    # Clumps of 10 have dispersion 10 at arrival; counted where prefills complete (the
    # counter the metrics layer reads) the batching smooths them, to about 4 here.
    assert d_clumps > 3.0 * d_poisson
    # Gamma lengths with SCV 2 (vLLM's 1-2-5 buckets, fitted with the exact mean).
    scv = np.median([p.prompt_tokens_scv for p in poisson])
    assert scv == pytest.approx(2.0, rel=0.25)
