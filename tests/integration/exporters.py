"""A test exporter that serves a serving stack's metrics (vLLM, SGLang or Dynamo
frontend format, names as cited in goodput.metrics.presets) with *known* values, over
real HTTP on 127.0.0.1, for Prometheus to scrape.

An :class:`ExporterHub` is one HTTP endpoint (one scrape target) serving any number
of :class:`ServingExporter` scenarios, each series labelled ``scenario=<name>`` and
``pool=<role>``: registering a target costs Prometheus seconds (its service-discovery
update is throttled), so a test file registers one hub and adds scenarios to it.

Counters grow linearly at the true rates (starting from 1000 s worth of traffic so
``rate()``'s extrapolation is never clamped at zero), so ``rate()`` recovers them
exactly. Histogram buckets hold ``count * F(le)`` where F is a piecewise-linear CDF
(``*_KNOTS``); the attainment at a threshold is F(threshold), exact whenever
F is linear inside the bucket holding it.

Bad-data switches: ``omit`` (series never exported), ``garbage`` (a value replaced,
e.g. NaN), ``freeze()`` (values and explicit sample timestamps stop moving: a stuck
exporter Prometheus keeps seeing), ``reset_counters()`` (a process restart),
``set_traffic()`` (e.g. arrivals to zero) and ``hide()``/``show()`` (the scenario's
series vanish from the scrape and come back, counters having kept counting: with
``explicit_timestamps=False`` Prometheus writes staleness markers, as for a real
engine's series). ``freeze()`` needs ``explicit_timestamps``.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder

# Piecewise-linear CDFs (x seconds, P(X <= x)).
TTFT_KNOTS = ((0.0, 0.0), (0.1, 0.2), (0.25, 0.5), (0.5, 0.8), (1.0, 0.95), (2.5, 1.0))
ITL_KNOTS = ((0.0, 0.0), (0.025, 0.3), (0.05, 0.6), (0.075, 0.9), (0.1, 1.0))

# Bucket bounds as each stack defines them (see the presets' citations).
VLLM_TTFT_BUCKETS: tuple[float, ...] = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
)
VLLM_TTFT_BUCKETS += (7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
VLLM_ITL_BUCKETS: tuple[float, ...] = (
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    2.5,
)
VLLM_ITL_BUCKETS += (5.0, 7.5, 10.0, 20.0, 40.0, 80.0)
VLLM_TOKEN_BUCKETS: tuple[float, ...] = (
    1,
    2,
    5,
    10,
    20,
    50,
    100,
    200,
    500,
    1000,
    2000,
    5000,
    10000,
)
SGLANG_TTFT_BUCKETS: tuple[float, ...] = (
    0.1,
    0.2,
    0.4,
    0.6,
    0.8,
    1,
    2,
    4,
    6,
    8,
    10,
    20,
    40,
    60,
    80,
    100,
    200,
    400,
)
SGLANG_ITL_BUCKETS: tuple[float, ...] = (
    0.002,
    0.004,
    0.006,
    0.008,
    0.010,
    0.015,
    0.020,
    0.025,
    0.030,
    0.035,
)
SGLANG_ITL_BUCKETS += (0.040, 0.060, 0.080, 0.100, 0.200, 0.400, 0.600, 0.800, 1.0, 2.0, 4.0)
# Dynamo: generate_log_buckets(0.001, 480, 18) and (0.001, 2.0, 13), 2 significant figures.
DYNAMO_TTFT_BUCKETS: tuple[float, ...] = (
    0.0,
    0.0022,
    0.0047,
    0.01,
    0.022,
    0.047,
    0.1,
    0.22,
    0.47,
    1.0,
    2.2,
    4.7,
)
DYNAMO_TTFT_BUCKETS += (10.0, 22.0, 48.0, 100.0, 220.0, 480.0)
DYNAMO_ITL_BUCKETS: tuple[float, ...] = (
    0.0,
    0.0019,
    0.0035,
    0.0067,
    0.013,
    0.024,
    0.045,
    0.084,
    0.16,
    0.3,
)
DYNAMO_ITL_BUCKETS += (0.56, 1.1, 2.0)
DYNAMO_TOKEN_BUCKETS: tuple[float, ...] = (
    0.0,
    50.0,
    100.0,
    200.0,
    500.0,
    1000.0,
    2000.0,
    5000.0,
    10000.0,
    128000.0,
)

WARM_START_S = 1000.0


def cdf(knots: tuple[tuple[float, float], ...], x: float) -> float:
    if x <= knots[0][0]:
        return knots[0][1]
    for (x0, y0), (x1, y1) in itertools.pairwise(knots):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return knots[-1][1]


def mean(knots: tuple[tuple[float, float], ...]) -> float:
    """Mean of the piecewise-uniform distribution: probability mass times midpoint."""
    return sum((y1 - y0) * (x0 + x1) / 2 for (x0, y0), (x1, y1) in itertools.pairwise(knots))


@dataclass(frozen=True)
class PoolTruth:
    arrival_rps: float = 4.0
    mean_input_tokens: float = 800.0
    mean_output_tokens: float = 150.0
    running: float = 12.0
    waiting: float = 3.0
    kv_usage: float = 0.42
    prefix_hit: float = 0.35
    ttft_knots: tuple[tuple[float, float], ...] = TTFT_KNOTS
    itl_knots: tuple[tuple[float, float], ...] = ITL_KNOTS


@dataclass
class _Totals:
    requests: float = 0.0
    prompt: float = 0.0
    generation: float = 0.0
    cached: float = 0.0

    def advance(self, t: PoolTruth, dt: float) -> None:
        self.requests += t.arrival_rps * dt
        self.prompt += t.arrival_rps * t.mean_input_tokens * dt
        self.generation += t.arrival_rps * t.mean_output_tokens * dt
        self.cached += t.arrival_rps * t.mean_input_tokens * t.prefix_hit * dt


@dataclass(eq=False)
class ServingExporter:
    """``preset`` in vllm | sglang | dynamo; one label set per pool (label ``pool``)."""

    preset: str
    scenario: str = "default"
    pools: dict[str, PoolTruth] = field(default_factory=lambda: {"aggregated": PoolTruth()})
    legacy_names: bool = False  # vLLM: the deprecated names only
    omit: frozenset[str] = frozenset()  # abstract signals never exported: "kv", "itl", ...
    garbage: dict[str, float] = field(default_factory=dict)  # abstract signal -> value
    quality_score: float | None = None  # served as gauge test:answer_quality_score
    # Stamp every sample with the collection time. Needed before freeze(): Prometheus
    # writes staleness markers for series that switch from implicit to explicit
    # timestamps, and would then drop the frozen samples as out of order.
    explicit_timestamps: bool = True

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._last = time.time()
        self._totals = {p: _Totals() for p in self.pools}
        for p, t in self.pools.items():
            self._totals[p].advance(t, WARM_START_S)
        self._frozen: tuple[float, list[Metric]] | None = None
        self._hidden = False

    # ---- control --------------------------------------------------------------------

    def hide(self) -> None:
        """Serve none of this scenario's series (they keep counting meanwhile)."""
        with self._lock:
            self._hidden = True

    def show(self) -> None:
        with self._lock:
            self._hidden = False

    def set_traffic(self, pool: str, **changes: Any) -> None:
        with self._lock:
            self._advance()
            self.pools[pool] = replace(self.pools[pool], **changes)

    def reset_counters(self) -> None:
        with self._lock:
            self._last = time.time()
            self._totals = {p: _Totals() for p in self.pools}

    def freeze(self) -> float:
        """From now on serve the current values with this instant as explicit timestamp."""
        with self._lock:
            now = time.time()
            self._frozen = (now, list(self._families(now)))
            return now

    # ---- prometheus_client collector ------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            if self._hidden:
                return
            if self._frozen is not None:
                yield from self._frozen[1]
                return
            yield from self._families(time.time() if self.explicit_timestamps else None)

    def _advance(self) -> None:
        now = time.time()
        for p, t in self.pools.items():
            self._totals[p].advance(t, now - self._last)
        self._last = now

    def _families(self, ts: float | None) -> list[Metric]:
        self._advance()
        fams: dict[str, Metric] = {}
        for pool, truth in self.pools.items():
            for kind, name, value in self._series(pool, truth):
                self._add(fams, kind, name, pool, value, ts)
            if self.quality_score is not None:
                self._add(fams, "gauge", "test:answer_quality_score", pool, self.quality_score, ts)
        return list(fams.values())

    def _add(
        self, fams: dict[str, Metric], kind: str, name: str, pool: str, value: Any, ts: float | None
    ) -> None:
        labels = ["model_name", "pool", "scenario"]
        if name not in fams:
            cls = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily}.get(kind)
            fams[name] = (cls or HistogramMetricFamily)(name, f"test {name}", labels=labels)
        fam = fams[name]
        lv = ["test-model", pool, self.scenario]
        if kind == "histogram":
            buckets, total = value
            assert isinstance(fam, HistogramMetricFamily)
            fam.add_metric(lv, buckets=buckets, sum_value=total, timestamp=ts)
        else:
            assert isinstance(fam, CounterMetricFamily | GaugeMetricFamily)
            fam.add_metric(lv, value, timestamp=ts)

    def _value(self, signal: str, v: float) -> float:
        return self.garbage.get(signal, v)

    def _hist(
        self, signal: str, bounds: tuple[float, ...], count: float, knots: Any, mean_value: float
    ) -> tuple[list[tuple[str, float]], float]:
        buckets = [(_le(b), self._value(signal, count * cdf(knots, b))) for b in bounds]
        buckets.append(("+Inf", count))
        return buckets, count * mean_value

    def _token_hist(
        self, bounds: tuple[float, ...], count: float, mean_value: float
    ) -> tuple[list[tuple[str, float]], float]:
        # Only the mean matters for the observation: put every request in the bucket
        # holding the mean, which keeps the buckets a valid histogram.
        buckets = [(_le(b), count if b >= mean_value else 0.0) for b in bounds]
        buckets.append(("+Inf", count))
        return buckets, count * mean_value

    def _series(self, pool: str, t: PoolTruth) -> Iterator[tuple[str, str, Any]]:
        tot = self._totals[pool]
        ttft_mean, itl_mean = mean(t.ttft_knots), mean(t.itl_knots)

        def want(signal: str) -> bool:
            return signal not in self.omit

        if self.preset == "vllm":
            legacy = self.legacy_names
            if want("arrival"):
                yield "counter", "vllm:request_success", tot.requests
            yield "counter", "vllm:prompt_tokens", tot.prompt
            yield "counter", "vllm:generation_tokens", tot.generation
            yield (
                "histogram",
                "vllm:request_prompt_tokens",
                self._token_hist(VLLM_TOKEN_BUCKETS, tot.requests, t.mean_input_tokens),
            )
            yield (
                "histogram",
                "vllm:request_generation_tokens",
                self._token_hist(VLLM_TOKEN_BUCKETS, tot.requests, t.mean_output_tokens),
            )
            if want("ttft"):
                yield (
                    "histogram",
                    "vllm:time_to_first_token_seconds",
                    self._hist("ttft", VLLM_TTFT_BUCKETS, tot.requests, t.ttft_knots, ttft_mean),
                )
            if want("itl"):
                itl_name = (
                    "vllm:time_per_output_token_seconds"
                    if legacy
                    else "vllm:inter_token_latency_seconds"
                )
                yield (
                    "histogram",
                    itl_name,
                    self._hist("itl", VLLM_ITL_BUCKETS, tot.generation, t.itl_knots, itl_mean),
                )
            yield "gauge", "vllm:num_requests_running", self._value("running", t.running)
            yield "gauge", "vllm:num_requests_waiting", self._value("waiting", t.waiting)
            if want("kv"):
                kv = "vllm:gpu_cache_usage_perc" if legacy else "vllm:kv_cache_usage_perc"
                yield "gauge", kv, self._value("kv", t.kv_usage)
            prefix = "vllm:gpu_prefix_cache" if legacy else "vllm:prefix_cache"
            yield "counter", f"{prefix}_queries", tot.prompt
            yield "counter", f"{prefix}_hits", tot.cached
        elif self.preset == "sglang":
            if want("arrival"):
                yield "counter", "sglang:num_requests", tot.requests
            yield "counter", "sglang:prompt_tokens", tot.prompt
            yield "counter", "sglang:generation_tokens", tot.generation
            yield "counter", "sglang:cached_tokens", tot.cached
            if want("ttft"):
                yield (
                    "histogram",
                    "sglang:time_to_first_token_seconds",
                    self._hist("ttft", SGLANG_TTFT_BUCKETS, tot.requests, t.ttft_knots, ttft_mean),
                )
            if want("itl"):
                yield (
                    "histogram",
                    "sglang:inter_token_latency_seconds",
                    self._hist("itl", SGLANG_ITL_BUCKETS, tot.generation, t.itl_knots, itl_mean),
                )
            yield "gauge", "sglang:num_running_reqs", self._value("running", t.running)
            yield "gauge", "sglang:num_queue_reqs", self._value("waiting", t.waiting)
            if want("kv"):
                yield "gauge", "sglang:token_usage", self._value("kv", t.kv_usage)
            yield "gauge", "sglang:cache_hit_rate", t.prefix_hit
        elif self.preset == "dynamo":
            if want("arrival"):
                yield "counter", "dynamo_frontend_requests", tot.requests
            yield (
                "histogram",
                "dynamo_frontend_input_sequence_tokens",
                self._token_hist(DYNAMO_TOKEN_BUCKETS, tot.requests, t.mean_input_tokens),
            )
            yield (
                "histogram",
                "dynamo_frontend_output_sequence_tokens",
                self._token_hist(DYNAMO_TOKEN_BUCKETS, tot.requests, t.mean_output_tokens),
            )
            yield "counter", "dynamo_frontend_output_tokens", tot.generation
            cached_mean = t.mean_input_tokens * t.prefix_hit
            yield (
                "histogram",
                "dynamo_frontend_cached_tokens",
                self._token_hist(DYNAMO_TOKEN_BUCKETS, tot.requests, cached_mean),
            )
            if want("ttft"):
                yield (
                    "histogram",
                    "dynamo_frontend_time_to_first_token_seconds",
                    self._hist("ttft", DYNAMO_TTFT_BUCKETS, tot.requests, t.ttft_knots, ttft_mean),
                )
            if want("itl"):
                yield (
                    "histogram",
                    "dynamo_frontend_inter_token_latency_seconds",
                    self._hist("itl", DYNAMO_ITL_BUCKETS, tot.generation, t.itl_knots, itl_mean),
                )
            yield "gauge", "dynamo_frontend_inflight_requests", self._value("running", t.running)
            yield "gauge", "dynamo_frontend_queued_requests", self._value("waiting", t.waiting)
            if want("kv"):
                yield (
                    "gauge",
                    "dynamo_component_kvstats_gpu_cache_usage_percent",
                    self._value("kv", t.kv_usage),
                )
        else:
            raise ValueError(f"unknown preset {self.preset}")


def _le(b: float) -> str:
    return "+Inf" if math.isinf(b) else repr(float(b))


class ExporterHub:
    """One scrape target serving many scenarios (families of the same name merged).

    ``negotiate=False`` always answers in the text format 0.0.4 (names as written);
    ``True`` negotiates like prometheus_client's own server, whose OpenMetrics output
    turns ':' into '_' in sample names (prometheus/client_python#1177) when a
    Prometheus 2.x scrape asks for OpenMetrics.
    """

    def __init__(self, *, negotiate: bool = False) -> None:
        self.negotiate = negotiate
        self.scenarios: list[ServingExporter] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.up_at = 0.0  # set by the test once Prometheus scrapes it

    def add(self, exporter: ServingExporter) -> ServingExporter:
        with self._lock:
            self.scenarios.append(exporter)
        return exporter

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        with self._lock:
            scenarios = list(self.scenarios)
        for sc in scenarios:
            for fam in sc.collect():
                if fam.name in merged:
                    merged[fam.name].samples.extend(fam.samples)
                else:
                    copy = Metric(fam.name, fam.documentation, fam.type)
                    copy.samples = list(fam.samples)
                    merged[fam.name] = copy
        yield from merged.values()

    def start(self) -> ExporterHub:
        registry = CollectorRegistry()
        registry.register(self)
        negotiate = self.negotiate

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if negotiate:
                    encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                    body = encoder(registry)
                else:
                    body, content_type = generate_latest(registry), "text/plain; version=0.0.4"
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def target(self) -> str:
        assert self._server is not None
        return f"127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
