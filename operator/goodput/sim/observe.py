"""The twin's in-process ``ObservationSource``: what the operator's metrics layer would
read from Prometheus scraping the twin's vLLM-format exporter, without HTTP or PromQL.

- :class:`TwinPrometheus` keeps what Prometheus would store: one :class:`Scrape` of the
  exporter's collector (goodput.sim.exporter, cumulative counters and histograms in
  vLLM's own bucket bounds, gauges) per scrape time, in twin seconds.
- :class:`InProcessSource` turns the scrapes into an ``Observation`` the way
  ``goodput.metrics.source.PrometheusObservationSource`` does, with the metrics layer's
  own pieces: the policy's preset says which series feed which signal (first
  alternative whose series the pool exports; ``goodput.metrics.presets``), only the
  signals that apply to a pool are read and the optional ones may be absent
  (``goodput.metrics.promql.applicable``/``optional``), windowed signals are
  ``increase()`` over ``spec.metrics.window`` (``counter_increase`` per pod, summed;
  per ``le`` for histograms), and the figures come from ``goodput.metrics.math``:
  ``histogram_from_buckets``, ``latency_summary`` (bucket-interpolated attainment,
  ``histogram_quantile`` quantiles), ``safe_ratio``, ``unit_fraction``,
  ``effective_quality`` and ``fleet_estimate``. Missing stays missing and zero traffic
  is ``0.0``, with the same notes.

What differs from Prometheus, deliberately: the window is exact (the increase between
the scrape at or before ``now - window`` and the one at ``now``, over that span: no
extrapolation to the window edges), a pod born inside the window counts from zero (its
counters start there), and nothing is ever stale or partial (no gaps in simulated
data). Pools are selected by the exporter's ``pool`` label, so ``metrics.selectors``
are not needed; ``metrics.overrides`` are PromQL and are not evaluated (a note says
so). ``quality``, when the policy has a quality query, is the value given to the
source (the twin's configured model quality).

One extra figure, only for baselines that scale on it: the prompt-side pods' busy
fraction from the twin-only ``goodput_twin:busy_seconds_total`` counter, as the note
``prefill_busy_fraction=<x>`` (the sum over the pool's pods); the planner does not
read notes.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from goodput.api.spec import GoodputPolicySpec, parse_duration
from goodput.metrics.math import (
    UNDEFINED_NO_REQUESTS,
    Histogram,
    counter_increase,
    dispersion_index,
    effective_quality,
    fleet_estimate,
    histogram_from_buckets,
    histogram_scv,
    latency_summary,
    non_negative,
    safe_ratio,
    unit_fraction,
)
from goodput.metrics.presets import (
    ARRIVAL_COUNTERS,
    PROMPT_TOKEN_HISTOGRAMS,
    CounterRate,
    GaugeAgg,
    HistogramOf,
    RateRatio,
    Signal,
    Source,
    series_names,
    sources,
)
from goodput.metrics.promql import SHARED_BETWEEN_POOLS, applicable, optional
from goodput.observation import DISPERSION_SPAN_S, Observation, PoolObservation
from goodput.sim.exporter import PodSample, Scrape, VllmTwinCollector

BUSY_COUNTER = "goodput_twin:busy_seconds_total"
BUSY_NOTE = "prefill_busy_fraction="
_FRACTIONS = frozenset({Signal.kv_cache_usage, Signal.prefix_cache_hit_rate})
_HISTOGRAMS = frozenset({Signal.ttft, Signal.itl})


class TwinPrometheus:
    """The scrapes Prometheus would hold for the twin's exporter (twin seconds)."""

    def __init__(self, collector: VllmTwinCollector, retention_s: float = 3600.0) -> None:
        self.collector = collector
        self.retention_s = retention_s
        self.history: deque[Scrape] = deque()

    def scrape(self) -> Scrape:
        s = self.collector.scrape()
        if self.history and s.t <= self.history[-1].t:
            self.history[-1] = s  # same instant: the newer state wins
        else:
            self.history.append(s)
        while len(self.history) > 2 and self.history[1].t <= s.t - self.retention_s:
            self.history.popleft()
        return s

    @property
    def latest(self) -> Scrape | None:
        return self.history[-1] if self.history else None

    def at_or_before(self, t: float) -> Scrape | None:
        """The newest scrape no later than ``t`` (the oldest one if all are later)."""
        best: Scrape | None = None
        for s in self.history:
            if s.t <= t + 1e-9:
                best = s
            else:
                break
        return best if best is not None else (self.history[0] if self.history else None)


def _series(pod: PodSample, name: str) -> float | None:
    """One series of a pod by its Prometheus name (``x_total``, ``h_sum``, ``h_count``,
    a gauge); None when the pod does not expose it."""
    if name in pod.counters:
        return pod.counters[name]
    if name in pod.gauges:
        return pod.gauges[name]
    for suffix in ("_sum", "_count", "_bucket"):
        if name.endswith(suffix):
            h = pod.histograms.get(name.removesuffix(suffix))
            if h is None:
                return None
            return h.sum if suffix == "_sum" else h.count
    return None


class _Missing(Exception):
    pass


@dataclass
class _PoolRead:
    values: dict[str, Any] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class InProcessSource:
    """ObservationSource (goodput.ports) over :class:`TwinPrometheus`; see the module doc."""

    def __init__(
        self,
        spec: GoodputPolicySpec,
        prometheus: TwinPrometheus,
        *,
        quality: float | None = None,
    ) -> None:
        self.spec = spec
        self.prom = prometheus
        self.quality = quality
        self.roles = [p.role.value for p in spec.pools]
        self.window_s = parse_duration(spec.metrics.window)
        self.thresholds = {Signal.ttft: spec.slo.ttft_seconds, Signal.itl: spec.slo.itl_seconds}
        self.prom.retention_s = max(self.prom.retention_s, 2 * self.window_s)

    async def observe(self, now: float) -> Observation:
        return self.observe_now(now)

    def observe_now(self, now: float) -> Observation:
        latest = self.prom.latest
        if latest is None or latest.t < now - 1e-9:
            latest = self.prom.scrape()
        old = self.prom.at_or_before(latest.t - self.window_s)
        assert old is not None
        window = _Window(old, latest, self.thresholds)
        role_set = set(self.roles)
        reads = {r: self._pool(r, role_set, window) for r in self.roles}
        for r, read in reads.items():
            self._variability(r, read, window)
        _copy_shared(reads)
        pools = {r: PoolObservation(role=r, **p.values) for r, p in reads.items()}
        missing = [k for p in reads.values() for k in p.missing]
        notes = [n for p in reads.values() for n in p.notes]
        quality: float | None = None
        if self.spec.quality.query:
            quality = unit_fraction(self.quality)
            if quality is None:
                missing.append("quality")
                notes.append("quality: the twin was given no quality to report")
            q = effective_quality(quality, self.spec.quality.floor)
        else:
            q = 1.0  # no quality signal configured: every on-time token is good
        if self.spec.metrics.overrides:
            notes.append("metrics.overrides are PromQL: not evaluated in-process, preset read")
        busy = window.rate_sum(
            (p for p in latest.pods if p.pool != "decode"), BUSY_COUNTER, require=False
        )
        if busy is not None:
            notes.append(f"{BUSY_NOTE}{busy:.3f}")
        return Observation(
            timestamp=now,
            pools=pools,
            quality=quality,
            estimate=fleet_estimate(pools, q),
            missing=missing,
            notes=notes,
        )

    def _variability(self, role: str, out: _PoolRead, w: _Window) -> None:
        """``arrival_dispersion`` and ``prompt_tokens_scv`` as the metrics layer computes
        them (goodput.metrics.source.variability): the first preset counter with series
        counted per step (a quarter of the window) over ``DISPERSION_SPAN_S``, and the
        first prompt-token histogram over the window. ``None`` with a note, never
        missing."""
        preset = self.spec.metrics.preset
        pods = [p for p in w.new.pods if p.pool == role]
        counter = next(
            (c for c in ARRIVAL_COUNTERS[preset] if any(_series(p, c) is not None for p in pods)),
            None,
        )
        dispersion = None
        if counter is not None:
            # The stored scrapes of the span (one per step: the twin scrapes every
            # quarter window), each consecutive pair one step's request count.
            scrapes = [x for x in self.prom.history if x.t >= w.new.t - DISPERSION_SPAN_S - 1e-9]
            counts: list[float] = []
            for a, b in itertools.pairwise(scrapes):
                if b.t > w.new.t + 1e-9:
                    break
                if b.t - a.t <= 1e-9:
                    continue
                pair = _Window(a, b, w.thresholds)
                try:
                    rate = pair.rate_sum(
                        (p for p in b.pods if p.pool == role), counter, require=False
                    )
                except _Missing:
                    counts = []
                    break
                counts.append((rate or 0.0) * pair.span)
            dispersion = dispersion_index(counts)
        out.values["arrival_dispersion"] = dispersion
        if dispersion is None:
            out.notes.append(f"{role}.arrival_dispersion: not measured")
        base = next(
            (h for h in PROMPT_TOKEN_HISTOGRAMS[preset] if any(h in p.histograms for p in pods)),
            None,
        )
        scv = None
        if base is not None and w.span > 0:
            summary_hist, mean = w.histogram(base, pods)
            scv = histogram_scv(summary_hist, mean) if summary_hist is not None else None
        out.values["prompt_tokens_scv"] = scv
        if scv is None:
            out.notes.append(f"{role}.prompt_tokens_scv: not measured")

    def _pool(self, role: str, roles: set[str], w: _Window) -> _PoolRead:
        out = _PoolRead()
        pods = [p for p in w.new.pods if p.pool == role]
        for signal in Signal:
            if signal is Signal.ready_replicas or not applicable(signal, role, roles):
                continue
            key = f"{role}.{signal.value}"
            alts = sources(self.spec.metrics.preset, signal)
            alt = next(
                (
                    a
                    for a in alts
                    if all(any(_series(p, n) is not None for p in pods) for n in series_names(a))
                ),
                None,
            )
            if alt is None:
                if optional(signal, role, roles):
                    out.values[signal.value] = None
                    out.notes.append(f"{key}: not exported by this pool")
                else:
                    names = ", ".join(_describe(a) for a in alts) or "none configured"
                    out.missing.append(key)
                    out.notes.append(f"{key}: absent: no series for {names}")
                continue
            try:
                value, note = w.evaluate(signal, alt, pods)
            except _Missing as m:
                out.missing.append(key)
                out.notes.append(f"{key}: {m}")
                continue
            out.values[signal.value] = value
            if note:
                out.notes.append(f"{key}: {note}")
        return out


class _Window:
    """The increase of every series between two scrapes (``old`` at or before
    ``new.t - window``), as rate()/increase() over the window would give it."""

    def __init__(self, old: Scrape, new: Scrape, thresholds: dict[Signal, float]) -> None:
        self.old, self.new = old, new
        self.span = new.t - old.t
        self.thresholds = thresholds
        self._old = {p.pod: p for p in old.pods}

    def increase(self, pod: PodSample, value: Callable[[PodSample], float | None]) -> float:
        now = value(pod)
        if now is None:
            return 0.0
        before = self._old.get(pod.pod)
        then = value(before) if before is not None else None
        inc = counter_increase([(self.old.t, 0.0 if then is None else then), (self.new.t, now)])
        if inc is None:
            raise _Missing(f"garbage: {pod.pod} = {now!r}")
        return inc

    def rate_sum(self, pods: Iterable[PodSample], name: str, require: bool = True) -> float | None:
        """``sum(rate(name[window]))`` over the pods; None when no pod exposes it."""
        pods = [p for p in pods if _series(p, name) is not None]
        if not pods:
            if require:
                raise _Missing(f"absent: no series {name}")
            return None
        if self.span <= 0:
            raise _Missing("no rate yet: one scrape only")
        return sum(self.increase(p, lambda q: _series(q, name)) for p in pods) / self.span

    def evaluate(
        self, signal: Signal, alt: Source, pods: list[PodSample]
    ) -> tuple[Any, str | None]:
        match alt:
            case HistogramOf(base):
                return self.latency(signal, base, pods)
            case RateRatio(num, den):
                n = non_negative(self.rate_sum(pods, num))
                d = non_negative(self.rate_sum(pods, den))
                if n is None or d is None:
                    raise _Missing(f"garbage: {num} / {den}")
                if d == 0:
                    if n == 0:
                        return None, UNDEFINED_NO_REQUESTS
                    raise _Missing(f"garbage: {num} / {den} = {n!r} / 0")
                value: float | None = safe_ratio(n, d)
            case CounterRate(metric):
                value = non_negative(self.rate_sum(pods, metric))
            case GaugeAgg(metric, agg):
                vals = [v for p in pods if (v := _series(p, metric)) is not None]
                total = sum(vals)
                value = non_negative(total / len(vals) if agg == "avg" else total)
        if value is None:
            raise _Missing(f"garbage: {_describe(alt)}")
        if signal in _FRACTIONS:
            value = unit_fraction(value)
            if value is None:
                raise _Missing(f"garbage: {_describe(alt)} is not a fraction in [0, 1]")
        return value, None

    def histogram(self, base: str, pods: list[PodSample]) -> tuple[Histogram | None, float | None]:
        """The histogram's increase over the window summed over the pods, and its mean."""
        totals: dict[float, float] = {}
        total_sum = total_count = 0.0
        for p in pods:
            h = p.histograms.get(base)
            if h is None:
                continue
            for j, bound in enumerate(h.bounds):
                inc = self.increase(p, partial(_bucket, base=base, j=j))
                totals[bound] = totals.get(bound, 0.0) + inc
            total_sum += self.increase(p, lambda q: _series(q, f"{base}_sum"))
            total_count += self.increase(p, lambda q: _series(q, f"{base}_count"))
        if not totals:
            return None, None
        return histogram_from_buckets(totals.items()), safe_ratio(total_sum, total_count)

    def latency(self, signal: Signal, base: str, pods: list[PodSample]) -> tuple[Any, str | None]:
        if self.span <= 0:
            raise _Missing("no rate yet: one scrape only")
        totals: dict[float, float] = {}
        total_sum = total_count = 0.0
        for p in pods:
            h = p.histograms.get(base)
            if h is None:
                continue
            for j, bound in enumerate(h.bounds):
                inc = self.increase(p, partial(_bucket, base=base, j=j))
                totals[bound] = totals.get(bound, 0.0) + inc
            total_sum += self.increase(p, lambda q: _series(q, f"{base}_sum"))
            total_count += self.increase(p, lambda q: _series(q, f"{base}_count"))
        hist = histogram_from_buckets(totals.items())
        if hist is None:
            raise _Missing(f"garbage: {base} buckets are not a histogram")
        if hist.total == 0:
            return latency_summary(hist, self.thresholds[signal]), UNDEFINED_NO_REQUESTS
        mean = safe_ratio(total_sum / self.span, total_count / self.span)
        return latency_summary(hist, self.thresholds[signal], mean), None


def _bucket(pod: PodSample, base: str, j: int) -> float | None:
    h = pod.histograms.get(base)
    return h.cumulative[j] if h is not None else None


def _describe(alt: Source) -> str:
    match alt:
        case CounterRate(m) | GaugeAgg(m, _):
            return m
        case RateRatio(n, d):
            return f"{n} / {d}"
        case HistogramOf(b):
            return b


def _copy_shared(reads: dict[str, _PoolRead]) -> None:
    """Disaggregated pools see the same requests: a per-request quantity one pool does not
    export (None, not missing) is the sibling's (as goodput.metrics.source does)."""
    pairs = [("prefill", "decode"), ("decode", "prefill")]
    for role, sibling in pairs:
        if role not in reads or sibling not in reads:
            continue
        mine, theirs = reads[role], reads[sibling]
        for signal in SHARED_BETWEEN_POOLS:
            key = f"{role}.{signal.value}"
            if key in mine.missing or mine.values.get(signal.value) is not None:
                continue
            value = theirs.values.get(signal.value)
            if value is not None:
                mine.values[signal.value] = value
                mine.notes.append(f"{key}: taken from {sibling} (same requests)")


def source_factory(
    prometheus: TwinPrometheus, quality: float | None = None
) -> Callable[[GoodputPolicySpec, str], Any]:
    """The ``Reconciler``'s source factory: every source it builds reads ``prometheus``."""

    async def build(spec: GoodputPolicySpec, namespace: str) -> InProcessSource:
        del namespace  # the twin's pods are selected by their pool label
        return InProcessSource(spec, prometheus, quality=quality)

    return build
