"""Query building: presets, selectors, windows, overrides, freshness, coverage."""

from __future__ import annotations

import re
from typing import Any

import pytest

from goodput.api import spec as api
from goodput.api.spec import GoodputPolicySpec, Preset
from goodput.metrics.presets import (
    PRESETS,
    CounterRate,
    FleetSignal,
    GaugeAgg,
    HistogramOf,
    RateRatio,
    Signal,
    series_names,
)
from goodput.metrics.promql import (
    applicable,
    build_plan,
    coverage_queries,
    coverage_step_ms,
    coverage_terms,
    freshness_queries,
    freshness_query,
    normalize_selector,
    override_errors,
    queries_for,
    window_literal,
)


def policy(**metrics: Any) -> GoodputPolicySpec:
    return GoodputPolicySpec.model_validate(
        {
            "gpuBudget": 8,
            "pools": [
                {"role": "prefill", "targetRef": {"name": "p"}, "maxReplicas": 4},
                {"role": "decode", "targetRef": {"name": "d"}, "maxReplicas": 4},
            ],
            "slo": {"ttft": "500ms", "itl": "50ms"},
            "metrics": metrics,
        }
    )


def test_window_is_passed_in_milliseconds() -> None:
    assert window_literal("1m") == "60000ms"
    assert window_literal("1.5m") == "90000ms"  # valid in the API, not as a PromQL literal
    assert window_literal("500ms") == "500ms"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{job="a", pool="p"}', 'job="a", pool="p"'),
        (' job="a",', 'job="a"'),
        ("", ""),
        (None, ""),
    ],
)
def test_normalize_selector(raw: str | None, expected: str) -> None:
    assert normalize_selector(raw) == expected


def test_queries_of_each_source_shape() -> None:
    sel, w = 'job="x"', "60000ms"
    assert queries_for(CounterRate("a_total"), sel, w).queries == {
        "value": 'sum(rate(a_total{job="x"}[60000ms]))'
    }
    assert queries_for(GaugeAgg("g", "avg"), sel, w).queries == {"value": 'avg(g{job="x"})'}
    assert queries_for(RateRatio("n", "d"), "", w).queries == {
        "num": "sum(rate(n[60000ms]))",
        "den": "sum(rate(d[60000ms]))",
    }
    h = queries_for(HistogramOf("h"), sel, w)
    assert h.kind == "histogram"
    assert h.queries["buckets"] == 'sum by (le) (rate(h_bucket{job="x"}[60000ms]))'
    assert h.queries["sum"] == 'sum(rate(h_sum{job="x"}[60000ms]))'
    assert h.series == ("h_bucket", "h_count", "h_sum")


def test_freshness_query_labels_each_series_with_its_name() -> None:
    q = freshness_query(["a", "b:c"], 'job="x"')
    assert q == (
        'label_replace(max(timestamp(a{job="x"})), "name", "a", "", "") or '
        'label_replace(max(timestamp(b:c{job="x"})), "name", "b:c", "", "")'
    )
    assert freshness_query([], "") is None


def test_freshness_is_split_into_url_sized_queries() -> None:
    names = [f"metric_{i:03d}" for i in range(100)]
    queries = freshness_queries(names, 'job="x"', max_chars=1000)
    assert len(queries) > 1 and all(len(q) <= 1000 for q in queries)
    found = [n for q in queries for n in names if f'"name", "{n}"' in q]
    assert found == names  # every name once, in order


def test_disaggregated_reads_ttft_at_prefill_and_itl_at_decode() -> None:
    both = {"prefill", "decode"}
    assert not applicable(Signal.itl, "prefill", both)
    assert not applicable(Signal.ttft, "decode", both)
    assert applicable(Signal.ttft, "prefill", both)
    assert applicable(Signal.itl, "aggregated", {"aggregated"})
    assert applicable(Signal.ttft, "decode", {"decode"})  # a lone pool reads both


def test_plan_inserts_each_pools_selector() -> None:
    spec = policy(selectors={"prefill": 'pool="p"', "decode": '{pool="d"}'}, window="30s")
    plan = build_plan(spec.metrics, ["prefill", "decode"])
    pre, dec = plan.pools["prefill"], plan.pools["decode"]
    assert Signal.itl not in pre.signals and Signal.ttft not in dec.signals
    assert Signal.ready_replicas not in pre.signals  # no preset query, no override
    ttft = pre.signals[Signal.ttft].alternatives[0].queries["buckets"]
    assert ttft == 'sum by (le) (rate(vllm:time_to_first_token_seconds_bucket{pool="p"}[30000ms]))'
    kv = [a.queries["value"] for a in dec.signals[Signal.kv_cache_usage].alternatives]
    assert kv == [
        'avg(vllm:kv_cache_usage_perc{pool="d"})',
        'avg(vllm:gpu_cache_usage_perc{pool="d"})',
        # last: the same names as prometheus_client's OpenMetrics escaping stores them
        'avg(vllm_kv_cache_usage_perc{pool="d"})',
        'avg(vllm_gpu_cache_usage_perc{pool="d"})',
    ]
    assert pre.freshness_queries and all('pool="p"' in q for q in pre.freshness_queries)
    assert dec.signals[Signal.itl].key == "decode.itl"


def test_override_replaces_the_preset_with_placeholders_filled() -> None:
    spec = policy(
        selectors={"decode": 'pool="d"'},
        window="2m",
        overrides={
            "kv_cache_usage": "max(my_kv{$selector})",
            "ready_replicas": "count(up{$selector} == 1)",
            "good_tokens_per_s": "sum(rate(good_tokens_total[$window]))",
        },
    )
    plan = build_plan(spec.metrics, ["prefill", "decode"], quality_query="avg(q)")
    kv = plan.pools["decode"].signals[Signal.kv_cache_usage]
    assert kv.override
    assert kv.alternatives[0].queries == {"value": 'max(my_kv{pool="d"})'}
    assert kv.alternatives[0].series == ()
    assert plan.pools["prefill"].signals[Signal.ready_replicas].alternatives[0].queries == {
        "value": "count(up{} == 1)"
    }
    assert plan.fleet == {
        FleetSignal.quality: "avg(q)",
        FleetSignal.good_tokens_per_s: "sum(rate(good_tokens_total[120000ms]))",
    }


def test_override_errors_name_unknown_keys() -> None:
    m = api.Metrics.model_construct(overrides={"ttft": "x", "decode.itl": "y", "bogus": "z"})
    errs = override_errors(m)
    assert len(errs) == 1 and "bogus" in errs[0]


def test_signal_names_match_the_api() -> None:
    """Override keys the API accepts are exactly the signals this layer reads."""
    api_signal = getattr(api, "Signal", None)
    if api_signal is None:
        pytest.skip("goodput.api.spec has no Signal enum")
    ours = {s.value for s in Signal} | {FleetSignal.good_tokens_per_s.value}
    assert ours == {s.value for s in api_signal}


@pytest.mark.parametrize(
    ("preset", "signal", "names"),
    [
        (Preset.vllm, Signal.ttft, ["vllm:time_to_first_token_seconds_bucket"]),
        (
            Preset.vllm,
            Signal.itl,
            [
                "vllm:request_time_per_output_token_seconds_bucket",
                "vllm:inter_token_latency_seconds_bucket",
                "vllm:time_per_output_token_seconds_bucket",
            ],
        ),
        (
            Preset.vllm,
            Signal.kv_cache_usage,
            ["vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"],
        ),
        (
            Preset.vllm,
            Signal.prefix_cache_hit_rate,
            ["vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total"],
        ),
        (Preset.sglang, Signal.itl, ["sglang:inter_token_latency_seconds_bucket"]),
        (Preset.sglang, Signal.waiting_requests, ["sglang:num_queue_reqs"]),
        (Preset.dynamo, Signal.ttft, ["dynamo_frontend_time_to_first_token_seconds_bucket"]),
        (Preset.dynamo, Signal.running_requests, ["dynamo_frontend_inflight_requests"]),
    ],
)
def test_preset_names_newest_first(preset: Preset, signal: Signal, names: list[str]) -> None:
    firsts = [series_names(s)[0] for s in PRESETS[preset][signal]]
    assert firsts[: len(names)] == names


def test_every_preset_covers_every_prometheus_signal() -> None:
    for preset, table in PRESETS.items():
        missing = set(Signal) - {Signal.ready_replicas} - set(table)
        assert not missing, (preset, missing)


def test_coverage_terms_of_one_series_name() -> None:
    terms = coverage_terms("a_total", 'job="x"', 60000, 1000, 1059.5)
    newest = 'max(timestamp(a_total{job="x"}))'

    def labelled(expr: str, stat: str) -> str:
        return f'label_replace({expr}, "coverage", "{stat}/a_total", "", "")'

    assert terms == [
        labelled(
            f"max_over_time((time() - {newest} > time() - 1059.500)[60000ms:1000ms])",
            "silence",
        ),
        labelled(f"count_over_time({newest}[60000ms:1000ms])", "present"),
        labelled('max(timestamp(a_total{job="x"} offset 60000ms))', "start"),
        labelled('max(count_over_time(a_total{job="x"}[60000ms]))', "samples"),
    ]


def test_coverage_step_is_a_sixtieth_of_the_window_at_least_100ms() -> None:
    assert coverage_step_ms(60000) == 1000
    assert coverage_step_ms(3000) == 100
    assert coverage_step_ms(300000) == 5000


def test_coverage_is_split_into_url_sized_queries_each_with_the_step_count() -> None:
    newest = {f"metric_{i:03d}_total": 1000.0 + i for i in range(20)}
    queries = coverage_queries(newest, 'job="x"', 20000, max_chars=2500)
    assert len(queries) > 1 and all(len(q) <= 2500 for q in queries)
    assert all(
        q.startswith(
            'label_replace(count_over_time(vector(1)[20000ms:333ms]), "coverage", "steps", "", "")'
        )
        for q in queries
    )
    found = [n for q in queries for n in re.findall(r'"coverage", "\w+/([^"]+)"', q)]
    assert found == [n for n in newest for _ in range(4)]  # four terms per name, in order
    assert coverage_queries({}, "", 20000) == ()


def test_windowed_series_one_per_family() -> None:
    assert queries_for(CounterRate("a_total"), "", "1ms").windowed == ("a_total",)
    assert queries_for(GaugeAgg("g", "sum"), "", "1ms").windowed == ()
    assert queries_for(HistogramOf("h"), "", "1ms").windowed == ("h_count",)
    assert queries_for(RateRatio("h_sum", "h_count"), "", "1ms").windowed == ("h_count",)
    assert queries_for(RateRatio("n_total", "d_total"), "", "1ms").windowed == (
        "n_total",
        "d_total",
    )


def test_windowed_signals_and_overrides() -> None:
    spec = policy(
        window="20s",
        overrides={
            "arrival_rate_rps": "sum(rate(x{$selector}[$window]))",
            "kv_cache_usage": "max(kv{$selector})",
            "good_tokens_per_s": "sum(rate(good[$window]))",
        },
    )
    plan = build_plan(spec.metrics, ["prefill", "decode"], "avg(quality_score)")
    dec = plan.pools["decode"].signals
    assert plan.window_ms == 20000
    assert dec[Signal.arrival_rate_rps].windowed  # override with $window
    assert not dec[Signal.kv_cache_usage].windowed  # override without
    assert dec[Signal.itl].windowed and dec[Signal.mean_output_tokens].windowed
    assert not dec[Signal.running_requests].windowed
    assert dec[Signal.generation_tokens_per_s].windowed
    assert plan.fleet_windowed == frozenset({FleetSignal.good_tokens_per_s})
