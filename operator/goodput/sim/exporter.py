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
  queue split evenly over its serving pods), KV-cache usage.

Bucket bounds are vLLM's (vllm/v1/metrics/loggers.py, as cited in
goodput.metrics.presets). `serve` advances the twin with the wall clock (optionally
faster) in a thread and serves `/metrics` over HTTP.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Iterator, Sequence

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


class VllmTwinCollector(Collector):
    """A prometheus_client collector reading the twin at scrape time."""

    def __init__(self, twin: Twin, lock: threading.Lock | None = None) -> None:
        self.twin = twin
        self.lock = lock or threading.Lock()

    def collect(self) -> Iterator[Metric]:
        with self.lock:
            return iter(list(self._families()))

    def _families(self) -> Iterable[Metric]:
        tw = self.twin
        tr = tw.trace
        labels = ["pod", "pool", "model_name"]
        finish = np.asarray(tw.finish)
        first = np.asarray(tw.first_token)
        done = ~np.isnan(finish)
        started = ~np.isnan(first)
        served = np.asarray(tw.served_by)
        prefilled = np.asarray(tw.prefilled_by)
        n_in = tr.input_tokens.astype(np.float64)
        n_out = tr.output_tokens.astype(np.float64)
        ttft = first - tr.arrival_s
        with np.errstate(invalid="ignore", divide="ignore"):
            tpot = np.where(n_out > 1, (finish - first) / np.maximum(n_out - 1, 1), 0.0)

        success = CounterMetricFamily("vllm:request_success", "Finished requests.", labels=labels)
        prompt = CounterMetricFamily("vllm:prompt_tokens", "Prefilled tokens.", labels=labels)
        gen = CounterMetricFamily("vllm:generation_tokens", "Generated tokens.", labels=labels)
        hits = CounterMetricFamily(
            "vllm:prefix_cache_hits", "Prompt tokens served from cache.", labels=labels
        )
        queries = CounterMetricFamily(
            "vllm:prefix_cache_queries", "Prompt tokens looked up in cache.", labels=labels
        )
        ttft_h = HistogramMetricFamily(
            "vllm:time_to_first_token_seconds", "Time to first token.", labels=labels
        )
        tpot_h = HistogramMetricFamily(
            "vllm:request_time_per_output_token_seconds",
            "Mean time per output token of each finished request.",
            labels=labels,
        )
        ptok_h = HistogramMetricFamily(
            "vllm:request_prompt_tokens", "Prompt tokens per request.", labels=labels
        )
        gtok_h = HistogramMetricFamily(
            "vllm:request_generation_tokens", "Generated tokens per request.", labels=labels
        )
        running = GaugeMetricFamily("vllm:num_requests_running", "Running.", labels=labels)
        waiting = GaugeMetricFamily("vllm:num_requests_waiting", "Waiting.", labels=labels)
        kv = GaugeMetricFamily("vllm:kv_cache_usage_perc", "KV-cache usage.", labels=labels)
        cached = np.asarray(tw.cached, dtype=np.float64)

        serving_by_role: dict[str, int] = {}
        for r in tw.replicas:
            if r.state not in (GONE, STARTING):
                serving_by_role[r.role] = serving_by_role.get(r.role, 0) + 1
        for r in tw.replicas:
            if r.state == STARTING:
                continue
            lv = [f"{r.role}-{r.id}", r.role, r.profile.model]
            pre = started & (prefilled == r.id)
            fin = done & (served == r.id)
            if r.role != DECODE:  # prompt side: prefill or aggregated
                prompt.add_metric(lv, float(np.sum(n_in[pre])))
                hits.add_metric(lv, float(np.sum(cached[pre])))
                queries.add_metric(lv, float(np.sum(n_in[pre])))
                v = ttft[pre]
                ttft_h.add_metric(lv, _buckets(v, TTFT_BUCKETS), float(np.sum(v)))
                ptok_h.add_metric(lv, _buckets(n_in[pre], TOKEN_BUCKETS), float(np.sum(n_in[pre])))
            if r.role != PREFILL:  # output side: decode or aggregated
                success.add_metric(lv, float(np.sum(fin)))
                gen.add_metric(lv, float(np.sum(n_out[fin])))
                multi = fin & (n_out > 1)
                v = tpot[multi]
                tpot_h.add_metric(lv, _buckets(v, TPOT_BUCKETS), float(np.sum(v)))
                gtok_h.add_metric(
                    lv, _buckets(n_out[fin], TOKEN_BUCKETS), float(np.sum(n_out[fin]))
                )
            if r.state == GONE:
                continue  # counters stay; a gone pod has no live gauges
            share = max(1, serving_by_role.get(r.role, 1))
            queue = tw.prefill_q if r.role != DECODE else tw.decode_q
            busy = len(r.prefill_batch) if r.role == PREFILL else r.n
            running.add_metric(lv, float(busy))
            waiting.add_metric(lv, len(queue) / share)
            cap = r.profile.kv_capacity_tokens
            kv.add_metric(lv, min(1.0, r.reserved / cap) if cap else math.nan)
        yield from (success, prompt, gen, hits, queries, ttft_h, tpot_h, ptok_h, gtok_h)
        yield from (running, waiting, kv)


def registry_for(twin: Twin, lock: threading.Lock | None = None) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(VllmTwinCollector(twin, lock))
    return reg


def serve(
    twin: Twin, port: int, addr: str = "127.0.0.1", speed: float = 1.0, tick_s: float = 0.1
) -> tuple[threading.Event, threading.Thread]:
    """Serve `/metrics` for the twin and advance it `speed` x the wall clock in a
    background thread. Set the returned event to stop the clock (the HTTP server is a
    daemon thread of prometheus_client and ends with the process)."""
    lock = threading.Lock()
    start_http_server(port, addr=addr, registry=registry_for(twin, lock))
    stop = threading.Event()
    t0 = time.monotonic()

    def clock() -> None:
        while not stop.wait(tick_s):
            with lock:
                twin.run_until((time.monotonic() - t0) * speed)

    thread = threading.Thread(target=clock, name="twin-clock", daemon=True)
    thread.start()
    return stop, thread
