"""Simulated pods' metrics in vLLM's Prometheus format, for end-to-end tests: the
operator's real metrics layer can scrape a twin-driven fleet as if it were vLLM.

Each replica of the twin is one pod (labels ``pod``, ``pool`` (role) and
``model_name``). Counters and histograms are cumulative over the requests the pod has
finished, so ``rate()`` and ``histogram_quantile()`` behave as on a real server:

- the prefill replica that ran a request's prompt reports its prompt tokens and TTFT;
- the replica that decoded it (the aggregated replica, in an aggregated fleet)
  reports ``vllm:request_success_total``, generation tokens and the request's mean
  time per output token;
- gauges are instantaneous: running requests, waiting requests (the pool's shared
  queue split evenly over its serving pods), KV-cache usage;
- one twin-only counter, ``goodput_twin:busy_seconds_total`` (prompt-side pods: seconds
  spent on prefill batches), stands in for a GPU-utilisation exporter, for the
  baselines that scale on a busy fraction; the operator does not read it.

``VllmTwinCollector.scrape()`` returns the same numbers as a :class:`Scrape` without
HTTP, for the twin's in-process metrics path (goodput.sim.observe).

Bucket bounds are vLLM's (vllm/v1/metrics/loggers.py, as cited in
goodput.metrics.presets). `serve` advances the twin with the wall clock (optionally
faster) in a thread and serves `/metrics` over HTTP.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from goodput.sim.engine import DECODE, GONE, PREFILL, STARTING, Twin

TTFT_BUCKETS: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
    7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
TPOT_BUCKETS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
    10.0, 20.0, 40.0, 80.0,
)  # fmt: skip
TOKEN_BUCKETS: tuple[float, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)


def _buckets(values: npt.NDArray[np.float64], bounds: Sequence[float]) -> list[tuple[str, float]]:
    """Cumulative bucket counts in the exposition format's (le, count) pairs."""
    v = np.sort(values)
    out = [(repr(float(b)), float(np.searchsorted(v, b, side="right"))) for b in bounds]
    out.append(("+Inf", float(len(v))))
    return out


#: Sample names as Prometheus stores them (counters with ``_total``), per side of a pod.
PROMPT_COUNTERS = (
    "vllm:prompt_tokens_total",
    "vllm:prefix_cache_hits_total",
    "vllm:prefix_cache_queries_total",
    "goodput_twin:busy_seconds_total",
)
OUTPUT_COUNTERS = ("vllm:request_success_total", "vllm:generation_tokens_total")
HISTOGRAM_BOUNDS: dict[str, tuple[float, ...]] = {
    "vllm:time_to_first_token_seconds": TTFT_BUCKETS,
    "vllm:request_time_per_output_token_seconds": TPOT_BUCKETS,
    "vllm:request_prompt_tokens": TOKEN_BUCKETS,
    "vllm:request_generation_tokens": TOKEN_BUCKETS,
}
PROMPT_HISTOGRAMS = ("vllm:time_to_first_token_seconds", "vllm:request_prompt_tokens")
OUTPUT_HISTOGRAMS = ("vllm:request_time_per_output_token_seconds", "vllm:request_generation_tokens")
GAUGES = ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc")


@dataclass(frozen=True)
class HistogramSample:
    """One pod's cumulative histogram: counts at or below each bound (the last bound is
    +Inf, so the last count is ``_count``) and ``_sum``."""

    bounds: tuple[float, ...]
    cumulative: tuple[float, ...]
    sum: float

    @property
    def count(self) -> float:
        return self.cumulative[-1]


@dataclass(frozen=True)
class PodSample:
    """What one simulated pod exposes at one instant: its labels, cumulative counters
    (sample names with ``_total``), cumulative histograms and gauges (a gone pod keeps
    its counters and has no gauges; a starting pod exposes nothing)."""

    pod: str
    pool: str
    model_name: str
    counters: dict[str, float]
    histograms: dict[str, HistogramSample]
    gauges: dict[str, float]


@dataclass(frozen=True)
class Scrape:
    """Every pod's sample at twin time ``t``: what one Prometheus scrape would store."""

    t: float
    pods: tuple[PodSample, ...]


def _per_pod_histograms(
    ids: npt.NDArray[np.int64], values: npt.NDArray[np.float64], bounds: Sequence[float], n: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(cumulative counts per pod and bound, +Inf last; sums per pod) in one pass: a value
    belongs to the first bound at or above it (``le`` semantics)."""
    nb = len(bounds) + 1
    idx = np.searchsorted(np.asarray(bounds, dtype=np.float64), values, side="left")
    counts = np.bincount(ids * nb + idx, minlength=n * nb).reshape(n, nb)
    sums = np.asarray(np.bincount(ids, weights=values, minlength=n), dtype=np.float64)
    return np.cumsum(counts, axis=1).astype(np.float64), sums


class VllmTwinCollector(Collector):
    """A prometheus_client collector reading the twin at scrape time. ``scrape()`` gives
    the same numbers in-process (no HTTP, no text format) for the twin's own metrics
    path (goodput.sim.observe)."""

    def __init__(self, twin: Twin, lock: threading.Lock | None = None) -> None:
        self.twin = twin
        self.lock = lock or threading.Lock()

    def collect(self) -> Iterator[Metric]:
        with self.lock:
            return iter(list(self._families(self._pods())))

    def scrape(self) -> Scrape:
        with self.lock:
            return Scrape(self.twin.now, tuple(self._pods()))

    def _pods(self) -> list[PodSample]:
        tw = self.twin
        tr = tw.trace
        n = tw._next_arrival  # requests that have arrived; later ones have no figures yet
        reps = tw.replicas
        r_n = len(reps)
        finish = np.asarray(tw.finish[:n], dtype=np.float64)
        first = np.asarray(tw.first_token[:n], dtype=np.float64)
        done = ~np.isnan(finish)
        started = ~np.isnan(first)
        served = np.asarray(tw.served_by[:n], dtype=np.int64)
        prefilled = np.asarray(tw.prefilled_by[:n], dtype=np.int64)
        n_in = tr.input_tokens[:n].astype(np.float64)
        n_out = tr.output_tokens[:n].astype(np.float64)
        cached = np.asarray(tw.cached[:n], dtype=np.float64)
        ttft = first - tr.arrival_s[:n]
        with np.errstate(invalid="ignore", divide="ignore"):
            tpot = np.where(n_out > 1, (finish - first) / np.maximum(n_out - 1, 1), 0.0)
        pi, fi = prefilled[started], served[done]
        multi = done & (n_out > 1)

        def per(ids: npt.NDArray[np.int64], w: npt.NDArray[np.float64] | None = None) -> Any:
            return np.bincount(ids, weights=w, minlength=r_n).astype(np.float64)

        prompt = per(pi, n_in[started])
        hits = per(pi, cached[started])
        success = per(fi)
        gen = per(fi, n_out[done])
        hists = {
            "vllm:time_to_first_token_seconds": _per_pod_histograms(
                pi, ttft[started], TTFT_BUCKETS, r_n
            ),
            "vllm:request_prompt_tokens": _per_pod_histograms(
                pi, n_in[started], TOKEN_BUCKETS, r_n
            ),
            "vllm:request_time_per_output_token_seconds": _per_pod_histograms(
                served[multi], tpot[multi], TPOT_BUCKETS, r_n
            ),
            "vllm:request_generation_tokens": _per_pod_histograms(
                fi, n_out[done], TOKEN_BUCKETS, r_n
            ),
        }

        def hist(name: str, k: int) -> HistogramSample:
            cum, sums = hists[name]
            return HistogramSample(
                HISTOGRAM_BOUNDS[name] + (math.inf,), tuple(cum[k].tolist()), float(sums[k])
            )

        serving_by_role: dict[str, int] = {}
        for r in reps:
            if r.state not in (GONE, STARTING):
                serving_by_role[r.role] = serving_by_role.get(r.role, 0) + 1
        out: list[PodSample] = []
        for r in reps:
            if r.state == STARTING:
                continue
            k = r.id
            counters: dict[str, float] = {}
            histograms: dict[str, HistogramSample] = {}
            if r.role != DECODE:  # prompt side: prefill or aggregated
                counters["vllm:prompt_tokens_total"] = float(prompt[k])
                counters["vllm:prefix_cache_hits_total"] = float(hits[k])
                counters["vllm:prefix_cache_queries_total"] = float(prompt[k])
                counters["goodput_twin:busy_seconds_total"] = float(r.busy_s)
                for name in PROMPT_HISTOGRAMS:
                    histograms[name] = hist(name, k)
            if r.role != PREFILL:  # output side: decode or aggregated
                counters["vllm:request_success_total"] = float(success[k])
                counters["vllm:generation_tokens_total"] = float(gen[k])
                for name in OUTPUT_HISTOGRAMS:
                    histograms[name] = hist(name, k)
            gauges: dict[str, float] = {}
            if r.state != GONE:  # counters stay; a gone pod has no live gauges
                share = max(1, serving_by_role.get(r.role, 1))
                queue = tw.prefill_q if r.role != DECODE else tw.decode_q
                busy = len(r.prefill_batch) if r.role == PREFILL else r.n
                cap = r.profile.kv_capacity_tokens
                gauges = {
                    "vllm:num_requests_running": float(busy),
                    "vllm:num_requests_waiting": len(queue) / share,
                    "vllm:kv_cache_usage_perc": min(1.0, r.reserved / cap) if cap else math.nan,
                }
            out.append(
                PodSample(f"{r.role}-{r.id}", r.role, r.profile.model, counters, histograms, gauges)
            )
        return out

    def _families(self, pods: Iterable[PodSample]) -> Iterable[Metric]:
        labels = ["pod", "pool", "model_name"]
        counters = {
            "vllm:request_success_total": CounterMetricFamily(
                "vllm:request_success", "Finished requests.", labels=labels
            ),
            "vllm:prompt_tokens_total": CounterMetricFamily(
                "vllm:prompt_tokens", "Prefilled tokens.", labels=labels
            ),
            "vllm:generation_tokens_total": CounterMetricFamily(
                "vllm:generation_tokens", "Generated tokens.", labels=labels
            ),
            "vllm:prefix_cache_hits_total": CounterMetricFamily(
                "vllm:prefix_cache_hits", "Prompt tokens served from cache.", labels=labels
            ),
            "vllm:prefix_cache_queries_total": CounterMetricFamily(
                "vllm:prefix_cache_queries", "Prompt tokens looked up in cache.", labels=labels
            ),
        }
        busy = CounterMetricFamily(
            "goodput_twin:busy_seconds",
            "Seconds the pod spent on prefill batches (twin only, not a vLLM metric: a"
            " stand-in for a GPU utilisation exporter such as DCGM's).",
            labels=labels,
        )
        hists = {
            "vllm:time_to_first_token_seconds": HistogramMetricFamily(
                "vllm:time_to_first_token_seconds", "Time to first token.", labels=labels
            ),
            "vllm:request_time_per_output_token_seconds": HistogramMetricFamily(
                "vllm:request_time_per_output_token_seconds",
                "Mean time per output token of each finished request.",
                labels=labels,
            ),
            "vllm:request_prompt_tokens": HistogramMetricFamily(
                "vllm:request_prompt_tokens", "Prompt tokens per request.", labels=labels
            ),
            "vllm:request_generation_tokens": HistogramMetricFamily(
                "vllm:request_generation_tokens", "Generated tokens per request.", labels=labels
            ),
        }
        gauges = {
            "vllm:num_requests_running": GaugeMetricFamily(
                "vllm:num_requests_running", "Running.", labels=labels
            ),
            "vllm:num_requests_waiting": GaugeMetricFamily(
                "vllm:num_requests_waiting", "Waiting.", labels=labels
            ),
            "vllm:kv_cache_usage_perc": GaugeMetricFamily(
                "vllm:kv_cache_usage_perc", "KV-cache usage.", labels=labels
            ),
        }
        for p in pods:
            lv = [p.pod, p.pool, p.model_name]
            for name, value in p.counters.items():
                (busy if name == "goodput_twin:busy_seconds_total" else counters[name]).add_metric(
                    lv, value
                )
            for name, h in p.histograms.items():
                buckets = [
                    ("+Inf" if b == math.inf else repr(float(b)), c)
                    for b, c in zip(h.bounds, h.cumulative, strict=True)
                ]
                hists[name].add_metric(lv, buckets, h.sum)
            for name, value in p.gauges.items():
                gauges[name].add_metric(lv, value)
        yield counters["vllm:request_success_total"]
        yield counters["vllm:prompt_tokens_total"]
        yield counters["vllm:generation_tokens_total"]
        yield counters["vllm:prefix_cache_hits_total"]
        yield counters["vllm:prefix_cache_queries_total"]
        yield from hists.values()
        yield from gauges.values()
        yield busy


def registry_for(twin: Twin, lock: threading.Lock | None = None) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(VllmTwinCollector(twin, lock))
    return reg


def serve(
    twin: Twin,
    port: int,
    addr: str = "127.0.0.1",
    speed: float = 1.0,
    tick_s: float = 0.1,
    collector: VllmTwinCollector | None = None,
) -> tuple[threading.Event, threading.Thread]:
    """Serve `/metrics` for the twin and advance it `speed` x the wall clock in a
    background thread. Set the returned event to stop the clock (the HTTP server is a
    daemon thread of prometheus_client and ends with the process). ``collector``: serve
    this one (e.g. one that also keeps what each scrape saw); its lock guards the clock."""
    if collector is None:
        collector = VllmTwinCollector(twin, threading.Lock())
    lock = collector.lock
    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector)
    start_http_server(port, addr=addr, registry=reg)
    stop = threading.Event()
    t0 = time.monotonic()

    def clock() -> None:
        while not stop.wait(tick_s):
            with lock:
                twin.run_until((time.monotonic() - t0) * speed)

    thread = threading.Thread(target=clock, name="twin-clock", daemon=True)
    thread.start()
    return stop, thread
