"""PrometheusObservationSource against a scripted Prometheus: the documented result of
every good and bad data case, without a server (the integration tests use a real one)."""

from __future__ import annotations

import asyncio
import math
import re
from typing import Any

import pytest

from goodput.api.spec import GoodputPolicySpec
from goodput.metrics.client import QueryError, Sample
from goodput.metrics.source import (
    UNDEFINED_NO_REQUESTS,
    FailureMemory,
    PrometheusObservationSource,
)
from goodput.observation import LatencySummary, Observation

NOW = 1_000_000.0
INF = math.inf
# The point estimate of the joint attainment for the healthy fleet (a_ttft 0.7, a_itl
# 0.8): min(a, b) * sqrt(max(a, b)), goodput.metrics.math.goodput_estimate.
A_EST = 0.7 * 0.8**0.5
_NAME = re.compile(r"([a-zA-Z_:][\w:]*)(?=[{\[)])")

# 100 TTFT observations per second: 70 <= 0.5 s (the SLO), see test_metrics_math.
TTFT = [(0.1, 10.0), (0.25, 30.0), (0.5, 70.0), (1.0, 90.0), (INF, 100.0)]
# ITL: 80 of 100 <= 0.05 s (the SLO).
ITL = [(0.025, 50.0), (0.05, 80.0), (0.075, 95.0), (INF, 100.0)]


# A window of 1m fully covered by 1 s scrapes (61 coverage steps of 1 s); "start" is
# the newest sample's timestamp at the window start, relative to the evaluation time.
HEALTHY_COVERAGE: dict[str, float | None] = {
    "silence": 1.0,
    "present": 61.0,
    "samples": 60.0,
    "start": -60.5,
}
COVERAGE_STEPS = 61.0


class FakeProm:
    """Answers by the first metric name in the query; the freshness query from ``fresh``
    (series name -> newest sample timestamp); coverage queries with a fully covered
    window unless ``coverage`` (series name -> stat -> value) says otherwise."""

    any_time = False  # accept any evaluation time (answering as at NOW otherwise)

    def __init__(
        self,
        fresh: dict[str, float],
        values: dict[str, Any],
        coverage: dict[str, dict[str, float | None]] | None = None,
        coverage_error: Exception | None = None,
    ) -> None:
        self.fresh = fresh
        self.values = values
        self.coverage = coverage or {}
        self.coverage_error = coverage_error
        self.calls: list[str] = []

    async def query(self, promql: str, at: float, *, deadline: float | None = None) -> list[Sample]:
        self.calls.append(promql)
        assert self.any_time or at == NOW
        if '"coverage", "steps"' in promql:
            if self.coverage_error is not None:
                raise self.coverage_error
            out = [Sample({"coverage": "steps"}, at, COVERAGE_STEPS)]
            for n in dict.fromkeys(re.findall(r'"coverage", "\w+/([^"]+)"', promql)):
                stats = HEALTHY_COVERAGE | self.coverage.get(n, {})
                if stats["start"] is not None and stats["start"] < 0:
                    stats["start"] += at
                out += [
                    Sample({"coverage": f"{k}/{n}"}, at, v)
                    for k, v in stats.items()
                    if v is not None
                ]
            return out
        if promql.startswith("label_replace("):
            names = re.findall(r'"name", "([^"]+)"', promql)
            return [Sample({"name": n}, at, self.fresh[n]) for n in names if n in self.fresh]
        names = [n for n in _NAME.findall(promql) if n != "le"]
        assert names, promql
        v = self.values.get(names[0])
        if isinstance(v, Exception):
            raise v
        if v is None:
            return []
        if isinstance(v, list):
            return [Sample({"le": "+Inf" if le == INF else str(le)}, at, c) for le, c in v]
        return [Sample({}, at, float(v))]


def hist_values(base: str, buckets: list[tuple[float, float]], mean: float) -> dict[str, Any]:
    count = buckets[-1][1]
    return {f"{base}_bucket": buckets, f"{base}_count": count, f"{base}_sum": mean * count}


def healthy_values(scale: float = 1.0) -> dict[str, Any]:
    v: dict[str, Any] = {
        "vllm:request_success_total": 2.0 * scale,
        "vllm:prompt_tokens_total": 2000.0 * scale,
        "vllm:generation_tokens_total": 400.0 * scale,
        "vllm:num_requests_running": 5.0,
        "vllm:num_requests_waiting": 1.0,
        "vllm:kv_cache_usage_perc": 0.5,
        "vllm:prefix_cache_hits_total": 30.0 * scale,
        "vllm:prefix_cache_queries_total": 100.0 * scale,
    }
    v |= hist_values("vllm:request_prompt_tokens", [(INF, 2.0 * scale)], 1000.0)
    v |= hist_values("vllm:request_generation_tokens", [(INF, 2.0 * scale)], 200.0)
    v |= hist_values("vllm:time_to_first_token_seconds", [(le, c * scale) for le, c in TTFT], 0.4)
    v |= hist_values("vllm:inter_token_latency_seconds", [(le, c * scale) for le, c in ITL], 0.04)
    return v


def fresh_for(values: dict[str, Any], age: float = 1.0) -> dict[str, float]:
    return {name: NOW - age for name in values}


def spec(roles: tuple[str, ...] = ("aggregated",), **extra: Any) -> GoodputPolicySpec:
    doc: dict[str, Any] = {
        "gpuBudget": 8,
        "pools": [{"role": r, "targetRef": {"name": r}, "maxReplicas": 4} for r in roles],
        "slo": {"ttft": "500ms", "itl": "50ms"},
        "metrics": {"window": "1m", "maxStaleness": "2m"},
    }
    for k, v in extra.items():
        doc[k] = doc.get(k, {}) | v if isinstance(v, dict) else v
    return GoodputPolicySpec.model_validate(doc)


def observe(s: GoodputPolicySpec, prom: Any) -> Observation:
    return asyncio.run(PrometheusObservationSource(s, prom).observe(NOW))


def test_healthy_fleet() -> None:
    values = healthy_values()
    obs = observe(spec(), FakeProm(fresh_for(values), values))
    p = obs.pools["aggregated"]
    assert obs.missing == [] and obs.stale == [] and not obs.unreachable
    assert obs.partial == [] and obs.covered_seconds == {}
    assert obs.timestamp == NOW
    assert p.arrival_rate_rps == 2.0
    assert p.mean_input_tokens == pytest.approx(1000.0)
    assert p.mean_output_tokens == pytest.approx(200.0)
    assert p.prompt_tokens_per_s == 2000.0
    assert p.generation_tokens_per_s == 400.0
    assert p.running_requests == 5.0 and p.waiting_requests == 1.0
    assert p.kv_cache_usage == 0.5
    assert p.prefix_cache_hit_rate == pytest.approx(0.3)
    assert p.ttft is not None and p.itl is not None
    assert p.ttft.attainment == pytest.approx(0.7)
    assert p.ttft.p50_s == pytest.approx(0.375)
    assert p.ttft.mean_s == pytest.approx(0.4)
    assert p.itl.attainment == pytest.approx(0.8)
    assert p.ttft.threshold_between_coarse_buckets is False
    # A = min * sqrt(max) = 0.7 * sqrt(0.8); bounds [0.7 + 0.8 - 1, min]; G = 400 * A * q(=1).
    assert obs.estimate.attainment == pytest.approx(A_EST)
    assert obs.estimate.attainment_lower == pytest.approx(0.5)
    assert obs.estimate.attainment_upper == pytest.approx(0.7)
    assert obs.estimate.goodput_tokens_per_s == pytest.approx(400.0 * A_EST)
    # ITL came from the second vLLM name (the per-request TPOT histogram is absent).
    assert any("aggregated.itl: read fallback" in n for n in obs.notes)


def test_zero_traffic_is_zero_demand_not_missing() -> None:
    values = healthy_values(scale=0.0)
    values["vllm:num_requests_running"] = 0.0
    values["vllm:num_requests_waiting"] = 0.0
    obs = observe(spec(), FakeProm(fresh_for(values), values))
    p = obs.pools["aggregated"]
    assert obs.missing == [] and obs.partial == []  # flat counters cover their window
    assert p.arrival_rate_rps == 0.0
    assert p.generation_tokens_per_s == 0.0 and p.prompt_tokens_per_s == 0.0
    assert p.running_requests == 0.0
    assert p.mean_input_tokens is None and p.prefix_cache_hit_rate is None  # 0/0: undefined
    assert p.ttft == LatencySummary()  # present, nothing to summarise
    assert obs.estimate.goodput_tokens_per_s == 0.0
    assert obs.estimate.attainment is None
    assert f"aggregated.mean_input_tokens: {UNDEFINED_NO_REQUESTS}" in obs.notes


def test_stale_series_are_missing_and_listed_stale() -> None:
    values = healthy_values()
    fresh = fresh_for(values)
    fresh["vllm:kv_cache_usage_perc"] = NOW - 121.0  # maxStaleness is 2m
    obs = observe(spec(), FakeProm(fresh, values))
    assert obs.pools["aggregated"].kv_cache_usage is None
    assert obs.missing == ["aggregated.kv_cache_usage"]
    assert obs.stale == ["aggregated.kv_cache_usage"]
    assert any(
        "stale: newest sample of vllm:kv_cache_usage_perc is 121s old" in n for n in obs.notes
    )


def test_stale_new_name_falls_back_to_fresh_old_name() -> None:
    values = healthy_values() | {"vllm:gpu_cache_usage_perc": 0.25}
    fresh = fresh_for(values)
    fresh["vllm:kv_cache_usage_perc"] = NOW - 500.0
    obs = observe(spec(), FakeProm(fresh, values))
    assert obs.pools["aggregated"].kv_cache_usage == 0.25
    assert obs.missing == []


def test_absent_series_are_missing_never_zero() -> None:
    values = healthy_values()
    for name in ["vllm:kv_cache_usage_perc", "vllm:inter_token_latency_seconds_bucket"]:
        del values[name]
    obs = observe(spec(), FakeProm(fresh_for(values), values))
    p = obs.pools["aggregated"]
    assert p.kv_cache_usage is None and p.itl is None
    assert sorted(obs.missing) == ["aggregated.itl", "aggregated.kv_cache_usage"]
    assert obs.stale == []
    assert obs.estimate.attainment is None and obs.estimate.goodput_tokens_per_s is None


def test_old_vllm_names_are_read_as_fallbacks() -> None:
    values = healthy_values()
    values["vllm:gpu_cache_usage_perc"] = values.pop("vllm:kv_cache_usage_perc")
    values["vllm:gpu_prefix_cache_hits_total"] = values.pop("vllm:prefix_cache_hits_total")
    values["vllm:gpu_prefix_cache_queries_total"] = values.pop("vllm:prefix_cache_queries_total")
    for suffix in ("_bucket", "_count", "_sum"):
        old = "vllm:time_per_output_token_seconds" + suffix
        values[old] = values.pop("vllm:inter_token_latency_seconds" + suffix)
    obs = observe(spec(), FakeProm(fresh_for(values), values))
    p = obs.pools["aggregated"]
    assert obs.missing == []
    assert p.kv_cache_usage == 0.5
    assert p.prefix_cache_hit_rate == pytest.approx(0.3)
    assert p.itl is not None and p.itl.attainment == pytest.approx(0.8)


@pytest.mark.parametrize(
    ("name", "value", "key"),
    [
        ("vllm:kv_cache_usage_perc", 7.5, "kv_cache_usage"),  # a percentage, not a fraction
        ("vllm:num_requests_running", -3.0, "running_requests"),
        ("vllm:num_requests_waiting", math.nan, "waiting_requests"),
        ("vllm:request_success_total", math.inf, "arrival_rate_rps"),
        ("vllm:time_to_first_token_seconds_bucket", [(0.5, math.nan), (INF, 3.0)], "ttft"),
        ("vllm:time_to_first_token_seconds_bucket", [(0.5, 1.0), (1.0, 2.0)], "ttft"),  # no +Inf
        ("vllm:prefix_cache_queries_total", 0.0, "prefix_cache_hit_rate"),  # 30 hits / 0 queries
    ],
)
def test_garbage_is_missing(name: str, value: Any, key: str) -> None:
    values = healthy_values() | {name: value}
    obs = observe(spec(), FakeProm(fresh_for(values), values))
    assert getattr(obs.pools["aggregated"], key) is None
    assert obs.missing == [f"aggregated.{key}"]
    assert any(n.startswith(f"aggregated.{key}: garbage") for n in obs.notes)


def test_failed_query_makes_that_signal_missing() -> None:
    values = healthy_values()
    values["vllm:num_requests_waiting"] = QueryError(
        "HTTP Status Code 400 (bad_data)", transient=False
    )
    obs = observe(spec(), FakeProm(fresh_for(values), values))
    assert obs.pools["aggregated"].waiting_requests is None
    assert obs.missing == ["aggregated.waiting_requests"]
    assert obs.pools["aggregated"].running_requests == 5.0


class Down:
    def __init__(self, error: Exception) -> None:
        self.error = error

    async def query(self, promql: str, at: float, *, deadline: float | None = None) -> list[Sample]:
        raise self.error


def test_unreachable_prometheus_gives_all_missing() -> None:
    s = spec(("prefill", "decode"), quality={"query": "avg(quality_score)"})
    obs = observe(s, Down(QueryError("ConnectionError: refused", transient=True)))
    assert obs.unreachable
    assert (
        "prefill.ttft" in obs.missing and "decode.itl" in obs.missing and "quality" in obs.missing
    )
    assert all(v is None for v in obs.pools["decode"].model_dump(exclude={"role"}).values())
    assert obs.estimate.goodput_tokens_per_s is None


def test_unexpected_error_never_escapes() -> None:
    obs = observe(spec(), Down(RuntimeError("boom")))
    assert obs.pools["aggregated"].arrival_rate_rps is None
    assert "aggregated.arrival_rate_rps" in obs.missing
    assert any("internal error" in n for n in obs.notes)


def disaggregated_values() -> tuple[dict[str, float], dict[str, Any]]:
    return fresh_for(healthy_values()), healthy_values()


class PoolAware(FakeProm):
    """Prefill and decode pools answer differently (selected by the pool label)."""

    def __init__(self, per_pool: dict[str, dict[str, Any]]) -> None:
        super().__init__({}, {})
        self.per_pool = per_pool

    async def query(self, promql: str, at: float, *, deadline: float | None = None) -> list[Sample]:
        pool = re.search(r'pool="(\w+)"', promql)
        assert pool, f"selector not inserted: {promql}"
        self.values = self.per_pool[pool.group(1)]
        self.fresh = fresh_for(self.values)
        return await super().query(promql, at, deadline=deadline)


def test_disaggregated_estimate_takes_ttft_from_prefill_and_itl_from_decode() -> None:
    prefill = healthy_values()
    decode = healthy_values()
    # Decode's own TTFT histogram would say 10%: it must not be used (and is not queried).
    decode["vllm:time_to_first_token_seconds_bucket"] = [(0.5, 10.0), (INF, 100.0)]
    prefill["vllm:inter_token_latency_seconds_bucket"] = [(0.05, 1.0), (INF, 100.0)]
    decode["vllm:generation_tokens_total"] = 1000.0
    prom = PoolAware({"p": prefill, "d": decode})
    s = spec(
        ("prefill", "decode"), metrics={"selectors": {"prefill": 'pool="p"', "decode": 'pool="d"'}}
    )
    obs = observe(s, prom)
    assert obs.missing == []
    assert obs.pools["prefill"].itl is None and obs.pools["decode"].ttft is None
    assert obs.estimate.attainment == pytest.approx(A_EST)
    assert obs.estimate.goodput_tokens_per_s == pytest.approx(1000.0 * A_EST)


def test_quality_weights_goodput_and_floor_zeroes_it() -> None:
    values = healthy_values() | {"quality_score": 0.5}
    prom = FakeProm(fresh_for(values), values)
    obs = observe(spec(quality={"query": "avg(quality_score{})"}), prom)
    assert obs.quality == 0.5
    assert obs.estimate.goodput_tokens_per_s == pytest.approx(400.0 * A_EST * 0.5)
    floored = observe(spec(quality={"query": "avg(quality_score{})", "floor": 0.6}), prom)
    assert floored.quality == 0.5
    assert floored.estimate.goodput_tokens_per_s == 0.0


def test_missing_quality_makes_goodput_unknown() -> None:
    values = healthy_values()
    obs = observe(
        spec(quality={"query": "avg(quality_score{})"}), FakeProm(fresh_for(values), values)
    )
    assert obs.quality is None and "quality" in obs.missing
    assert obs.estimate.goodput_tokens_per_s is None
    assert obs.estimate.attainment == pytest.approx(A_EST)


def test_overrides_replace_preset_queries() -> None:
    values = healthy_values() | {"my_kv": 0.9, "good_tokens_total": 300.0, "kube_ready": 3.0}
    overrides = {
        "kv_cache_usage": "max(my_kv{$selector})",
        "good_tokens_per_s": "sum(rate(good_tokens_total{}[$window]))",
        "ready_replicas": "sum(kube_ready{$selector})",
    }
    s = spec(metrics={"overrides": overrides, "selectors": {"aggregated": 'job="x"'}})
    prom = FakeProm(fresh_for(healthy_values()), values)
    obs = observe(s, prom)
    assert obs.pools["aggregated"].kv_cache_usage == 0.9
    assert obs.pools["aggregated"].ready_replicas == 3
    assert obs.estimate.goodput_tokens_per_s == 300.0  # exact counter replaces the estimate
    assert obs.estimate.attainment == pytest.approx(A_EST)
    assert 'max(my_kv{job="x"})' in prom.calls
    assert "sum(rate(good_tokens_total{}[60000ms]))" in prom.calls


def test_disaggregated_pools_export_only_their_side() -> None:
    """As in the twin's exporter: prefill pods count prompts and TTFT, decode pods
    completions, generated tokens and ITL. Nothing is missing; per-request figures
    are shared."""
    prefill = healthy_values()
    decode = healthy_values()
    for name in [
        "vllm:request_success_total",
        "vllm:generation_tokens_total",
        "vllm:request_generation_tokens_bucket",
        "vllm:request_generation_tokens_count",
        "vllm:request_generation_tokens_sum",
    ]:
        del prefill[name]
    for name in [
        "vllm:prompt_tokens_total",
        "vllm:prefix_cache_hits_total",
        "vllm:prefix_cache_queries_total",
        "vllm:request_prompt_tokens_bucket",
        "vllm:request_prompt_tokens_count",
        "vllm:request_prompt_tokens_sum",
    ]:
        del decode[name]
    prom = PoolAware({"p": prefill, "d": decode})
    selectors = {"prefill": 'pool="p"', "decode": 'pool="d"'}
    obs = observe(spec(("prefill", "decode"), metrics={"selectors": selectors}), prom)
    assert obs.missing == []
    pre, dec = obs.pools["prefill"], obs.pools["decode"]
    assert pre.generation_tokens_per_s is None and dec.prompt_tokens_per_s is None
    assert dec.prefix_cache_hit_rate is None
    assert pre.arrival_rate_rps == dec.arrival_rate_rps == 2.0
    assert dec.mean_input_tokens == pytest.approx(1000.0)
    assert pre.mean_output_tokens == pytest.approx(200.0)
    assert "prefill.arrival_rate_rps: taken from decode (same requests)" in obs.notes
    assert obs.estimate.goodput_tokens_per_s == pytest.approx(400.0 * A_EST)


def test_optional_signal_still_missing_when_garbage() -> None:
    prefill, decode = healthy_values(), healthy_values()
    prefill["vllm:generation_tokens_total"] = math.nan
    prom = PoolAware({"p": prefill, "d": decode})
    selectors = {"prefill": 'pool="p"', "decode": 'pool="d"'}
    obs = observe(spec(("prefill", "decode"), metrics={"selectors": selectors}), prom)
    assert obs.missing == ["prefill.generation_tokens_per_s"]


# ---- partial windows (issue 10) ---------------------------------------------------

#: The windowed signals of a single vLLM pool, i.e. all but the gauges.
WINDOWED = [
    "aggregated." + k
    for k in (
        "arrival_rate_rps",
        "mean_input_tokens",
        "mean_output_tokens",
        "prompt_tokens_per_s",
        "generation_tokens_per_s",
        "ttft",
        "itl",
        "prefix_cache_hit_rate",
    )
]
# Prometheus came back 20 s ago after a 70 s outage that began 30 s before the window:
# 20 samples; the newest sample was 70 s old just before the first new one.
AFTER_OUTAGE: dict[str, float | None] = {
    "silence": 70.0,
    "present": 61.0,
    "samples": 20.0,
    "start": -90.0,
}


def test_gap_in_the_window_makes_rates_partial_and_keeps_their_values() -> None:
    values = healthy_values()
    names = [n for n in values if n.endswith(("_total", "_count"))]
    prom = FakeProm(fresh_for(values), values, coverage={n: AFTER_OUTAGE for n in names})
    obs = observe(spec(), prom)
    assert sorted(obs.partial) == sorted(WINDOWED)
    assert obs.missing == []  # disjoint: the values are there, just not fresh
    assert obs.pools["aggregated"].arrival_rate_rps == 2.0
    assert obs.pools["aggregated"].running_requests == 5.0  # gauges are never partial
    assert obs.covered_seconds["aggregated.arrival_rate_rps"] == pytest.approx(20.0)
    assert any(
        n.startswith("aggregated.arrival_rate_rps: partial: about 20s of the 60s window covered")
        for n in obs.notes
    )


def test_only_the_signals_reading_the_gapped_series_are_partial() -> None:
    values = healthy_values()
    # 30 s of steps with the series stale-marked, from before the window start
    stale_marked: dict[str, float | None] = {"present": 31.0, "start": None}
    prom = FakeProm(
        fresh_for(values), values, coverage={"vllm:request_success_total": stale_marked}
    )
    obs = observe(spec(), prom)
    # mean tokens come from the token histograms, not the request counter
    assert obs.partial == ["aggregated.arrival_rate_rps"]
    assert obs.covered_seconds["aggregated.arrival_rate_rps"] == pytest.approx(30.0)


def test_coverage_is_asked_only_for_the_windowed_series_read() -> None:
    values = healthy_values()
    prom = FakeProm(fresh_for(values), values)
    observe(spec(), prom)
    coverage = [q for q in prom.calls if '"coverage", "steps"' in q]
    asked = {n for q in coverage for n in re.findall(r'"coverage", "\w+/([^"]+)"', q)}
    assert asked == {
        "vllm:request_success_total",
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
        "vllm:request_prompt_tokens_count",
        "vllm:request_generation_tokens_count",
        "vllm:time_to_first_token_seconds_count",
        "vllm:inter_token_latency_seconds_count",
        "vllm:prefix_cache_hits_total",
        "vllm:prefix_cache_queries_total",
    }
    assert all(len(q) <= 2500 for q in coverage)


class ClockFree(FakeProm):
    """A FakeProm that answers at any evaluation time and can be made unreachable."""

    any_time = True
    down = False

    async def query(self, promql: str, at: float, *, deadline: float | None = None) -> list[Sample]:
        if self.down:
            raise QueryError("ConnectionError: refused", transient=True)
        return await super().query(promql, at, deadline=deadline)


def at(source: PrometheusObservationSource, now: float) -> Observation:
    return asyncio.run(source.observe(now))


def test_a_failed_observation_makes_windows_that_contain_it_partial() -> None:
    """The data may not show an outage (Prometheus lost it, or only the operator's path
    to Prometheus failed): the source remembers its own failure."""
    values = healthy_values()
    prom = ClockFree(fresh_for(values), values)
    s = spec(quality={"query": "avg_over_time(quality_score[$window])"})
    source = PrometheusObservationSource(s, prom)
    values["quality_score"] = 0.9
    assert at(source, NOW).partial == []
    prom.down = True
    failed = at(source, NOW + 10)
    assert failed.unreachable and failed.partial == []  # missing, not partial
    assert source.failures.last_failure_at == NOW + 10
    prom.down = False
    back = at(source, NOW + 40)
    assert sorted(back.partial) == sorted([*WINDOWED, "quality"])
    assert back.covered_seconds["aggregated.arrival_rate_rps"] == pytest.approx(30.0)
    assert back.pools["aggregated"].running_requests == 5.0
    assert "aggregated.running_requests" not in back.partial
    assert any(
        "overlaps an observation that found Prometheus unreachable 30s ago" in n for n in back.notes
    )
    assert at(source, NOW + 70).partial != []  # the window [10, 70] still holds it
    assert at(source, NOW + 70.5).partial == []  # a full window has passed since


def test_failure_memory_can_outlive_a_source() -> None:
    memory = FailureMemory()
    memory.record(NOW)
    memory.record(NOW - 100)  # an older failure does not move it back
    assert memory.last_failure_at == NOW
    values = healthy_values()
    source = PrometheusObservationSource(
        spec(), ClockFree(fresh_for(values), values), failures=memory
    )
    assert "aggregated.arrival_rate_rps" in at(source, NOW + 30).partial
    assert memory.overlaps(NOW + 60, 60.0) and not memory.overlaps(NOW + 61, 60.0)
    assert not memory.overlaps(NOW - 1, 60.0)  # not inside a window that ended before it
    assert not FailureMemory().overlaps(NOW, 60.0)


def test_windowed_overrides_are_partial_only_from_the_failure_memory() -> None:
    values = healthy_values() | {"my_rate": 3.0, "my_kv": 0.4}
    overrides = {
        "arrival_rate_rps": "sum(rate(my_rate{$selector}[$window]))",
        "kv_cache_usage": "max(my_kv{$selector})",
    }
    prom = ClockFree(fresh_for(healthy_values()), values)
    source = PrometheusObservationSource(spec(metrics={"overrides": overrides}), prom)
    assert at(source, NOW).partial == []
    source.failures.record(NOW - 5)
    obs = at(source, NOW)
    assert "aggregated.arrival_rate_rps" in obs.partial
    assert "aggregated.kv_cache_usage" not in obs.partial  # no $window: an instant value


def test_refused_coverage_query_reads_as_covered_with_a_note() -> None:
    values = healthy_values()
    refused = QueryError("HTTP Status Code 400 (bad_data: subqueries disabled)", transient=False)
    obs = observe(spec(), FakeProm(fresh_for(values), values, coverage_error=refused))
    assert obs.partial == [] and obs.missing == []
    assert any("coverage query refused" in n for n in obs.notes)


def test_failed_coverage_query_is_partial_not_fresh() -> None:
    values = healthy_values()
    flaky = QueryError("Timeout: read timed out", transient=True)
    obs = observe(spec(), FakeProm(fresh_for(values), values, coverage_error=flaky))
    assert sorted(obs.partial) == sorted(WINDOWED)
    assert obs.pools["aggregated"].arrival_rate_rps == 2.0
    assert any("window coverage unknown" in n for n in obs.notes)


def test_missing_signals_are_not_partial() -> None:
    values = healthy_values()
    values["vllm:request_success_total"] = math.nan
    names = [n for n in values if n.endswith(("_total", "_count"))]
    obs = observe(
        spec(), FakeProm(fresh_for(values), values, coverage={n: AFTER_OUTAGE for n in names})
    )
    assert "aggregated.arrival_rate_rps" in obs.missing
    assert "aggregated.arrival_rate_rps" not in obs.partial
    assert "aggregated.generation_tokens_per_s" in obs.partial


def test_shared_per_request_values_carry_their_partial_flag() -> None:
    prefill, decode = healthy_values(), healthy_values()
    for name in [
        "vllm:request_success_total",
        "vllm:generation_tokens_total",
        "vllm:request_generation_tokens_bucket",
        "vllm:request_generation_tokens_count",
        "vllm:request_generation_tokens_sum",
    ]:
        del prefill[name]

    class Gapped(PoolAware):
        async def query(
            self, promql: str, at: float, *, deadline: float | None = None
        ) -> list[Sample]:
            self.coverage = (
                {"vllm:request_success_total": AFTER_OUTAGE} if 'pool="d"' in promql else {}
            )
            return await super().query(promql, at, deadline=deadline)

    selectors = {"prefill": 'pool="p"', "decode": 'pool="d"'}
    obs = observe(
        spec(("prefill", "decode"), metrics={"selectors": selectors}),
        Gapped({"p": prefill, "d": decode}),
    )
    assert "decode.arrival_rate_rps" in obs.partial
    assert "prefill.arrival_rate_rps" in obs.partial  # copied from decode
    assert obs.pools["prefill"].arrival_rate_rps == 2.0
