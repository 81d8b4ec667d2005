"""Metric names of each serving stack, per signal, newest name first.

A signal lists *alternatives*: the first one whose series exist (and are fresh) is
read, so one preset covers engine versions before and after a rename. Every name
was checked against the upstream source cited next to it. Names with ``:`` are
also tried with ``_`` last (see :func:`escaped`).

Sources (repository + path):

- vLLM: vllm-project/vllm ``vllm/v1/metrics/loggers.py`` (``PrometheusStatLogger``).
  Counters are created without ``_total`` and exposed by prometheus_client with it.
  Deprecated names kept as fallbacks: ``vllm:gpu_cache_usage_perc`` ("Deprecated in
  0.9 - Renamed as vllm:kv_cache_usage_perc"), ``vllm:gpu_prefix_cache_queries`` /
  ``vllm:gpu_prefix_cache_hits`` (renamed ``vllm:prefix_cache_queries`` / ``_hits``),
  ``vllm:time_per_output_token_seconds`` (superseded by
  ``vllm:inter_token_latency_seconds``). The v0 gauge ``vllm:gpu_prefix_cache_hit_rate``
  is listed in vllm-project/vllm ``docs/source/design/v1/metrics.md`` ("v0 Metrics").
- SGLang: sgl-project/sglang ``python/sglang/srt/metrics/collector.py``
  (``SchedulerMetricsCollector``, ``TokenizerMetricsCollector``).
- NVIDIA Dynamo frontend: ai-dynamo/dynamo ``lib/runtime/src/metrics/prometheus_names.rs``
  (``name_prefix::FRONTEND = "dynamo_frontend"``, ``frontend_service::*``,
  ``kvstats::*`` under ``name_prefix::COMPONENT = "dynamo_component"``) and
  ``lib/llm/src/http/service/metrics.rs`` (the histograms and counters).

ITL: DESIGN section 2 defines a request's ITL as its *mean* time per output token.
vLLM's ``vllm:request_time_per_output_token_seconds`` (newer releases) is exactly that
per-request figure, so it is preferred; ``vllm:inter_token_latency_seconds`` and the
older ``vllm:time_per_output_token_seconds`` observe every token gap, a close but
token-weighted proxy. SGLang and Dynamo only export the per-gap histogram.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from goodput.api.spec import Preset


class Signal(StrEnum):
    """Per-pool signals, named after the ``PoolObservation`` fields they fill; with
    :class:`FleetSignal` they are the keys of ``spec.metrics.overrides`` (the API's
    ``goodput.api.spec.Signal``). ``ready_replicas`` has no preset query: it is read
    only from an override (the operator otherwise takes it from /scale)."""

    arrival_rate_rps = "arrival_rate_rps"
    mean_input_tokens = "mean_input_tokens"
    mean_output_tokens = "mean_output_tokens"
    prompt_tokens_per_s = "prompt_tokens_per_s"
    generation_tokens_per_s = "generation_tokens_per_s"
    ttft = "ttft"
    itl = "itl"
    running_requests = "running_requests"
    waiting_requests = "waiting_requests"
    kv_cache_usage = "kv_cache_usage"
    prefix_cache_hit_rate = "prefix_cache_hit_rate"
    ready_replicas = "ready_replicas"


class FleetSignal(StrEnum):
    """Policy-wide signals, read only from user PromQL: ``quality`` from
    ``spec.quality.query``, ``good_tokens_per_s`` from an override when the stack
    counts SLO-meeting tokens exactly (it then replaces the estimate's G)."""

    quality = "quality"
    good_tokens_per_s = "good_tokens_per_s"


@dataclass(frozen=True)
class CounterRate:
    """``sum(rate(metric[w]))``: per-second increase of a counter."""

    metric: str


@dataclass(frozen=True)
class GaugeAgg:
    """``sum(metric)`` or ``avg(metric)`` over the pool's replicas."""

    metric: str
    agg: Literal["sum", "avg"]


@dataclass(frozen=True)
class RateRatio:
    """``rate(numerator) / rate(denominator)``, divided client-side so 0/0 is explicit."""

    numerator: str
    denominator: str


@dataclass(frozen=True)
class HistogramOf:
    """A histogram family: bucket rates by ``le`` plus ``_sum``/``_count`` rates for the mean."""

    base: str


Source = CounterRate | GaugeAgg | RateRatio | HistogramOf


def series_names(source: Source) -> tuple[str, ...]:
    """The raw series a source reads: the ones whose freshness decides if it is usable."""
    match source:
        case CounterRate(metric) | GaugeAgg(metric, _):
            return (metric,)
        case RateRatio(num, den):
            return (num, den)
        case HistogramOf(base):
            return (f"{base}_bucket", f"{base}_count", f"{base}_sum")


def _hist_mean(base: str) -> RateRatio:
    return RateRatio(f"{base}_sum", f"{base}_count")


# vllm-project/vllm vllm/v1/metrics/loggers.py (PrometheusStatLogger); the v0 gauge
# vllm:gpu_prefix_cache_hit_rate: vllm-project/vllm docs/source/design/v1/metrics.md.
_VLLM: dict[Signal, tuple[Source, ...]] = {
    # Completions per second: the demand the fleet served (arrivals at steady state).
    Signal.arrival_rate_rps: (CounterRate("vllm:request_success_total"),),
    Signal.mean_input_tokens: (
        _hist_mean("vllm:request_prompt_tokens"),
        RateRatio("vllm:prompt_tokens_total", "vllm:request_success_total"),
    ),
    Signal.mean_output_tokens: (
        _hist_mean("vllm:request_generation_tokens"),
        RateRatio("vllm:generation_tokens_total", "vllm:request_success_total"),
    ),
    Signal.prompt_tokens_per_s: (CounterRate("vllm:prompt_tokens_total"),),
    Signal.generation_tokens_per_s: (CounterRate("vllm:generation_tokens_total"),),
    Signal.ttft: (HistogramOf("vllm:time_to_first_token_seconds"),),
    Signal.itl: (
        HistogramOf("vllm:request_time_per_output_token_seconds"),
        HistogramOf("vllm:inter_token_latency_seconds"),
        HistogramOf("vllm:time_per_output_token_seconds"),
    ),
    Signal.running_requests: (GaugeAgg("vllm:num_requests_running", "sum"),),
    Signal.waiting_requests: (GaugeAgg("vllm:num_requests_waiting", "sum"),),
    Signal.kv_cache_usage: (
        GaugeAgg("vllm:kv_cache_usage_perc", "avg"),
        GaugeAgg("vllm:gpu_cache_usage_perc", "avg"),
    ),
    Signal.prefix_cache_hit_rate: (
        RateRatio("vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total"),
        RateRatio("vllm:gpu_prefix_cache_hits_total", "vllm:gpu_prefix_cache_queries_total"),
        GaugeAgg("vllm:gpu_prefix_cache_hit_rate", "avg"),
    ),
}

# sgl-project/sglang python/sglang/srt/metrics/collector.py
# (SchedulerMetricsCollector: gauges; TokenizerMetricsCollector: counters, histograms).
_SGLANG: dict[Signal, tuple[Source, ...]] = {
    Signal.arrival_rate_rps: (CounterRate("sglang:num_requests_total"),),
    Signal.mean_input_tokens: (
        _hist_mean("sglang:prompt_tokens_histogram"),
        RateRatio("sglang:prompt_tokens_total", "sglang:num_requests_total"),
    ),
    Signal.mean_output_tokens: (
        _hist_mean("sglang:generation_tokens_histogram"),
        RateRatio("sglang:generation_tokens_total", "sglang:num_requests_total"),
    ),
    Signal.prompt_tokens_per_s: (CounterRate("sglang:prompt_tokens_total"),),
    Signal.generation_tokens_per_s: (CounterRate("sglang:generation_tokens_total"),),
    Signal.ttft: (HistogramOf("sglang:time_to_first_token_seconds"),),
    Signal.itl: (HistogramOf("sglang:inter_token_latency_seconds"),),
    Signal.running_requests: (GaugeAgg("sglang:num_running_reqs", "sum"),),
    Signal.waiting_requests: (GaugeAgg("sglang:num_queue_reqs", "sum"),),
    # "The token usage": fraction of the KV token pool in use.
    Signal.kv_cache_usage: (GaugeAgg("sglang:token_usage", "avg"),),
    Signal.prefix_cache_hit_rate: (
        RateRatio("sglang:cached_tokens_total", "sglang:prompt_tokens_total"),
        GaugeAgg("sglang:cache_hit_rate", "avg"),
    ),
}

# ai-dynamo/dynamo lib/runtime/src/metrics/prometheus_names.rs (frontend_service::*,
# kvstats::*) and lib/llm/src/http/service/metrics.rs (Metrics::new).
_DYNAMO: dict[Signal, tuple[Source, ...]] = {
    Signal.arrival_rate_rps: (CounterRate("dynamo_frontend_requests_total"),),
    Signal.mean_input_tokens: (_hist_mean("dynamo_frontend_input_sequence_tokens"),),
    Signal.mean_output_tokens: (_hist_mean("dynamo_frontend_output_sequence_tokens"),),
    Signal.prompt_tokens_per_s: (CounterRate("dynamo_frontend_input_sequence_tokens_sum"),),
    Signal.generation_tokens_per_s: (
        CounterRate("dynamo_frontend_output_tokens_total"),
        CounterRate("dynamo_frontend_output_sequence_tokens_sum"),
    ),
    Signal.ttft: (HistogramOf("dynamo_frontend_time_to_first_token_seconds"),),
    Signal.itl: (HistogramOf("dynamo_frontend_inter_token_latency_seconds"),),
    Signal.running_requests: (GaugeAgg("dynamo_frontend_inflight_requests", "sum"),),
    Signal.waiting_requests: (GaugeAgg("dynamo_frontend_queued_requests", "sum"),),
    # Worker (component) metrics: the frontend exports no KV usage of its own.
    Signal.kv_cache_usage: (GaugeAgg("dynamo_component_kvstats_gpu_cache_usage_percent", "avg"),),
    Signal.prefix_cache_hit_rate: (
        RateRatio("dynamo_frontend_cached_tokens_sum", "dynamo_frontend_input_sequence_tokens_sum"),
        GaugeAgg("dynamo_component_kvstats_gpu_prefix_cache_hit_rate", "avg"),
    ),
}


def escaped(source: Source) -> Source:
    """The same source with ``:`` in names turned into ``_``.

    prometheus_client's OpenMetrics exposition (negotiated by Prometheus 2.x scrapes)
    writes ``vllm:x`` samples as ``vllm_x`` under ``escaping=underscores``
    (prometheus/client_python issue #1177, fix proposed in PR #1180), so engines using
    an affected client land in Prometheus under the escaped names.
    """
    match source:
        case CounterRate(m):
            return CounterRate(m.replace(":", "_"))
        case GaugeAgg(m, agg):
            return GaugeAgg(m.replace(":", "_"), agg)
        case RateRatio(n, d):
            return RateRatio(n.replace(":", "_"), d.replace(":", "_"))
        case HistogramOf(b):
            return HistogramOf(b.replace(":", "_"))


def _with_escaped_fallbacks(
    table: dict[Signal, tuple[Source, ...]],
) -> dict[Signal, tuple[Source, ...]]:
    out = {}
    for signal, alts in table.items():
        extra = tuple(e for e in (escaped(a) for a in alts) if e not in alts)
        out[signal] = alts + extra
    return out


PRESETS: dict[Preset, dict[Signal, tuple[Source, ...]]] = {
    Preset.vllm: _with_escaped_fallbacks(_VLLM),
    Preset.sglang: _with_escaped_fallbacks(_SGLANG),
    Preset.dynamo: _DYNAMO,
}


def sources(preset: Preset, signal: Signal) -> tuple[Source, ...]:
    return PRESETS[preset].get(signal, ())


# ---- per-pod load (drain-aware scale-down, issue 15 item 3) ---------------------------

#: The label naming the pod a series was scraped from. The Prometheus Operator's
#: PodMonitor and ServiceMonitor add it (``pod``, from ``__meta_kubernetes_pod_name``),
#: as does the usual ``kubernetes_sd_configs`` relabelling; the engines do not export it
#: themselves.
POD_LABEL = "pod"

#: Per preset, the gauge of requests running on one engine, read ``sum by (pod)`` to
#: rank a pool's pods before a scale-down (newest name first, ``_``-escaped last, as
#: for the pool signal). Dynamo has none: its in-flight gauge is the frontend's, not a
#: worker pod's, so a Dynamo pool's pods are never ranked (nothing is marked).
PER_POD_RUNNING: dict[Preset, tuple[str, ...]] = {
    Preset.vllm: ("vllm:num_requests_running", "vllm_num_requests_running"),
    Preset.sglang: ("sglang:num_running_reqs", "sglang_num_running_reqs"),
    Preset.dynamo: (),
}


# ---- demand variability (issue 12: inputs of the planner's G/G/c prefill model) ------

#: Per preset, the counters whose per-step increases give a pool's request counts for
#: the index of dispersion of arrivals (``PoolObservation.arrival_dispersion``), first
#: with series wins: a prompt-side pool's own prefills (the prompt-token histogram's
#: ``_count``, closest to arrivals), else completions, the counter ``arrival_rate_rps``
#: reads. Not a signal: absent means "not measured", and the planner then assumes
#: Poisson arrivals and says so.
ARRIVAL_COUNTERS: dict[Preset, tuple[str, ...]] = {
    Preset.vllm: (
        "vllm:request_prompt_tokens_count",
        "vllm:request_success_total",
        "vllm_request_prompt_tokens_count",
        "vllm_request_success_total",
    ),
    Preset.sglang: (
        "sglang:prompt_tokens_histogram_count",
        "sglang:num_requests_total",
        "sglang_prompt_tokens_histogram_count",
        "sglang_num_requests_total",
    ),
    Preset.dynamo: (
        "dynamo_frontend_input_sequence_tokens_count",
        "dynamo_frontend_requests_total",
    ),
}

#: Per preset, the prompt-token histogram whose buckets give the spread of prompt
#: lengths (``PoolObservation.prompt_tokens_scv``), first with series wins; the same
#: histogram ``mean_input_tokens`` prefers.
PROMPT_TOKEN_HISTOGRAMS: dict[Preset, tuple[str, ...]] = {
    Preset.vllm: ("vllm:request_prompt_tokens", "vllm_request_prompt_tokens"),
    Preset.sglang: ("sglang:prompt_tokens_histogram", "sglang_prompt_tokens_histogram"),
    Preset.dynamo: ("dynamo_frontend_input_sequence_tokens",),
}
