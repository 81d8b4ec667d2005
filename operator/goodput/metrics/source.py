"""``PrometheusObservationSource``: one policy's signals, read from Prometheus, as one
typed, timestamped :class:`~goodput.observation.Observation`.

How a signal is read, per pool (see :mod:`goodput.metrics.promql` for the queries):

1. *Freshness* queries (one, or a few when the URL would grow too long) give, for
   every raw series the preset may read, the timestamp of its newest sample
   (``timestamp()`` of the selector itself).
2. The signal's first alternative whose series all exist **and** are fresh (newest
   sample no older than ``spec.metrics.maxStaleness`` before ``now``) is read; older
   names are thus fallbacks. Exists but too old: the signal is *stale*.
3. Counters and histograms go through ``rate()`` over ``spec.metrics.window``
   (which already copes with counter resets); histogram bucket rates are fetched
   ``sum by (le)`` and the SLO attainment interpolated client-side.

What comes out (documented in docs/metrics.md too):

- **Missing** (``None`` and listed in ``Observation.missing`` as ``<role>.<signal>``,
  with the reason in ``notes``): the query failed, the series are absent, the samples
  are stale (also listed in ``Observation.stale``), or the value is garbage (NaN,
  ±Inf, negative, a fraction outside [0, 1], a histogram without ``+Inf`` bucket).
  Never zero.
- **Zero traffic** (series present, counters flat): rates are ``0.0``, gauges read
  as exported, generation is 0 so estimated goodput is ``0.0``; ratios that need a
  request (mean tokens, prefix-hit rate) and the latency figures (attainment,
  quantiles, mean) are ``None`` *without* being listed as missing - a note says
  "undefined: no requests in window" - so the planner can scale down rather than hold.
- **Prometheus unreachable**: every signal missing, ``Observation.unreachable`` set.
- **Partial** (value kept, listed in ``Observation.partial``, not in ``missing``): a
  signal computed over ``spec.metrics.window`` whose window overlaps a gap in the
  data, so its rate is biased low (issue 10). Two detectors:

  1. *Coverage* queries (batched per pool like the freshness ones, only for the
     series of the alternatives chosen) tell how much of the window has samples; a
     silence longer than two sampling intervals inside it is a gap, whether
     Prometheus was down (the newest sample ages) or the target's series were gone
     (staleness markers: absent steps). See :func:`goodput.metrics.math.window_coverage`.
  2. The source remembers when its own last observation found Prometheus
     unreachable (:class:`FailureMemory`); a window containing that instant is
     partial, for every windowed signal, overrides and fleet signals included.

  A counter that exists and does not increase covers its window: zero traffic is
  ``0.0``, not partial.
- Nothing raises: any unexpected error yields an all-missing observation with a note.

``PoolObservation.running_requests_by_pod`` (drain-aware scale-down) is read with one
query per pool (:func:`goodput.metrics.promql.per_pod_running_query`): fresh, valid
values only; ``None`` when no series exist. It is not a signal (never in ``missing``).

``PoolObservation.arrival_dispersion`` and ``prompt_tokens_scv`` (the planner's G/G/c
inputs) are figures, not signals, read per pool after the signals: the index of
dispersion of per-step request counts over ``DISPERSION_SPAN_S``
(:func:`goodput.metrics.promql.dispersion_query`: mean, variance and trend of
``sum(increase(c[step]))`` in one subquery, combined by
:func:`goodput.metrics.math.dispersion_from_moments`) and the prompt-length SCV of the
prompt-token histogram over the window (:func:`goodput.metrics.math.histogram_scv`).
Absent, failed or undefined: ``None`` with a note, never missing.

``PoolObservation.ready_replicas`` is read only when a ``ready_replicas`` override
gives its PromQL; otherwise it stays ``None`` (not missing) and the operator fills
it from the /scale subresource (``observation.pools[role].model_copy(update=...)``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from goodput.api.spec import GoodputPolicySpec, PoolRole, parse_duration
from goodput.metrics.client import QueryError, Sample
from goodput.metrics.math import (
    UNDEFINED_NO_REQUESTS,
    Coverage,
    dispersion_from_moments,
    effective_quality,
    fleet_estimate,
    histogram_from_buckets,
    histogram_scv,
    latency_summary,
    non_negative,
    safe_ratio,
    unit_fraction,
    window_coverage,
    window_overlaps,
    worst_coverage,
)
from goodput.metrics.presets import POD_LABEL, FleetSignal, Signal
from goodput.metrics.promql import (
    SHARED_BETWEEN_POOLS,
    Alternative,
    PoolPlan,
    QueryPlan,
    SignalPlan,
    build_plan,
    coverage_queries,
    coverage_step_ms,
)
from goodput.observation import GoodputEstimate, LatencySummary, Observation, PoolObservation

log = logging.getLogger(__name__)

__all__ = ["UNDEFINED_NO_REQUESTS", "FailureMemory", "PrometheusObservationSource"]

_FRACTION_SIGNALS = frozenset({Signal.kv_cache_usage, Signal.prefix_cache_hit_rate})


class Querier(Protocol):
    async def query(
        self, promql: str, at: float, *, deadline: float | None = None
    ) -> list[Sample]: ...


@dataclass
class _Read:
    """Outcome of reading one signal: a value, undefined (None, not missing) or missing."""

    value: Any = None
    missing: bool = False
    stale: bool = False
    note: str | None = None
    alt: Alternative | None = None  # the alternative read, when one was


class _Missing(Exception):
    def __init__(self, note: str, *, stale: bool = False, absent: bool = False) -> None:
        super().__init__(note)
        self.stale = stale
        self.absent = absent


@dataclass
class _PoolResult:
    obs: PoolObservation
    missing: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unreachable: bool = False
    partial: dict[str, float] = field(default_factory=dict)  # key -> covered seconds


@dataclass
class _Coverage:
    """One pool's coverage query results: per series name, or why there are none."""

    by_name: dict[str, Coverage] = field(default_factory=dict)
    failed: str | None = None  # the query failed transiently: coverage unknown
    refused: str | None = None  # the query was refused: not checked from data


class FailureMemory:
    """When a source's observation last found Prometheus unreachable.

    A rate window containing that instant may span an outage the data no longer
    shows (e.g. samples lost with Prometheus' WAL, or a querier that was failing), so
    every windowed signal is partial until a full window has passed since. Pass one
    instance to successive sources of the same policy to keep the memory across
    rebuilds (the operator rebuilds its source when credentials rotate).
    """

    def __init__(self) -> None:
        self.last_failure_at: float | None = None

    def record(self, at: float) -> None:
        if self.last_failure_at is None or at > self.last_failure_at:
            self.last_failure_at = at

    def overlaps(self, now: float, window_s: float) -> bool:
        return window_overlaps(now, window_s, self.last_failure_at)


class PrometheusObservationSource:
    """ObservationSource (goodput.ports) reading one policy's signals from Prometheus.

    ``client`` is a :class:`~goodput.metrics.client.PrometheusClient` (or anything with
    its async ``query``). ``deadline_s`` bounds one whole observation; ``concurrency``
    bounds the queries in flight.
    """

    def __init__(
        self,
        spec: GoodputPolicySpec,
        client: Querier,
        *,
        concurrency: int = 8,
        deadline_s: float = 10.0,
        failures: FailureMemory | None = None,
    ) -> None:
        self.spec = spec
        self.client = client
        self.concurrency = concurrency
        self.deadline_s = deadline_s
        self.roles = [p.role.value for p in spec.pools]
        self.plan: QueryPlan = build_plan(spec.metrics, self.roles, spec.quality.query)
        self.max_staleness_s = parse_duration(spec.metrics.max_staleness)
        self.window_s = self.plan.window_ms / 1000
        self.thresholds = {Signal.ttft: spec.slo.ttft_seconds, Signal.itl: spec.slo.itl_seconds}
        self.failures = failures if failures is not None else FailureMemory()

    async def observe(self, now: float) -> Observation:
        try:
            obs = await _Observer(self, now).run()
        except Exception as e:  # the control loop must always get an observation
            log.exception("observation failed")
            return self._all_missing(now, f"internal error while observing: {e!r}")
        if obs.unreachable:
            self.failures.record(now)
        return obs

    def _all_missing(self, now: float, note: str) -> Observation:
        missing = [s.key for p in self.plan.pools.values() for s in p.signals.values()]
        missing += [f.value for f in self.plan.fleet]
        return Observation(
            timestamp=now,
            pools={r: PoolObservation(role=r) for r in self.roles},
            missing=missing,
            notes=[note],
        )


class _Observer:
    """The state of one observation (its clock, deadline and query budget)."""

    def __init__(self, source: PrometheusObservationSource, now: float) -> None:
        self.src = source
        self.now = now
        self.deadline = time.monotonic() + source.deadline_s
        self.sem = asyncio.Semaphore(source.concurrency)

    async def q(self, promql: str) -> list[Sample]:
        async with self.sem:
            return await self.src.client.query(promql, self.now, deadline=self.deadline)

    async def run(self) -> Observation:
        pools = self.src.plan.pools
        results = await asyncio.gather(*(self.pool(p) for p in pools.values()))
        by_role = dict(zip(pools, results, strict=True))
        _copy_shared(by_role, self.src.plan)
        missing = [k for r in results for k in r.missing]
        stale = [k for r in results for k in r.stale]
        notes = [n for r in results for n in r.notes] + list(self.src.plan.notes)
        unreachable = bool(results) and all(r.unreachable for r in results)
        partial = {k: v for r in results for k, v in r.partial.items()}

        fleet: dict[FleetSignal, float | None] = {}
        for f, promql in self.src.plan.fleet.items():
            if unreachable:
                fleet[f] = None
                missing.append(f.value)
                continue
            read = await self.fleet_value(f, promql)
            fleet[f] = read.value
            if read.missing:
                missing.append(f.value)
                if read.stale:
                    stale.append(f.value)
            elif f in self.src.plan.fleet_windowed and self.failure_in_window():
                partial[f.value] = self.covered_since_failure()
                notes.append(f"{f.value}: {self.failure_note()}")
            if read.note:
                notes.append(f"{f.value}: {read.note}")

        estimate = self.estimate({r: p.obs for r, p in by_role.items()}, fleet)
        return Observation(
            timestamp=self.now,
            pools={r: p.obs for r, p in by_role.items()},
            quality=fleet.get(FleetSignal.quality),
            estimate=estimate,
            missing=missing,
            stale=stale,
            notes=notes,
            unreachable=unreachable,
            partial=list(partial),
            covered_seconds=partial,
        )

    # ---- partial windows ------------------------------------------------------------

    def failure_in_window(self) -> bool:
        return self.src.failures.overlaps(self.now, self.src.window_s)

    def covered_since_failure(self) -> float:
        at = self.src.failures.last_failure_at
        assert at is not None
        return round(max(0.0, min(self.src.window_s, self.now - at)), 3)

    def failure_note(self) -> str:
        at = self.src.failures.last_failure_at
        assert at is not None
        return (
            f"partial: the {self.src.window_s:g}s window overlaps an observation that found "
            f"Prometheus unreachable {self.now - at:.0f}s ago"
        )

    async def coverage(self, plan: PoolPlan, newest: dict[str, float]) -> _Coverage:
        """Coverage of the rate window for the given series names (never raises)."""
        out = _Coverage()
        if not newest:
            return out
        window_ms = self.src.plan.window_ms
        queries = coverage_queries(newest, plan.selector, window_ms)
        try:
            chunks = await asyncio.gather(*(self.q(cq) for cq in queries))
        except QueryError as e:
            if e.transient:
                out.failed = str(e)
            else:
                out.refused = str(e)
            return out
        stats: dict[str, dict[str, float]] = {n: {} for n in newest}
        steps: float | None = None
        for samples in chunks:
            for s in samples:
                stat, _, name = s.labels.get("coverage", "").partition("/")
                if stat == "steps":
                    steps = s.value
                elif name in stats:
                    stats[name][stat] = s.value
        step_s = coverage_step_ms(window_ms) / 1000
        start = self.now - window_ms / 1000
        for name, st in stats.items():
            start_ts = st.get("start")
            out.by_name[name] = window_coverage(
                window_s=self.src.window_s,
                step_s=step_s,
                steps=steps,
                present_steps=st.get("present"),
                longest_silence_s=st.get("silence"),
                start_age_s=None if start_ts is None else start - start_ts,
                samples=st.get("samples"),
                trailing_s=self.now - newest[name],
            )
        return out

    def mark_partial(
        self, res: _PoolResult, plan: PoolPlan, reads: list[_Read], cov: _Coverage | None
    ) -> None:
        """List the windowed signals read (value or undefined, not missing) whose window
        overlaps a gap: from the data's coverage, or the failure memory."""
        failed = self.failure_in_window()
        for sp, read in zip(plan.signals.values(), reads, strict=True):
            if read.missing or not sp.windowed or read.alt is None:
                continue
            covered: float | None = None
            note: str | None = None
            if failed:
                covered, note = self.covered_since_failure(), self.failure_note()
            names = read.alt.windowed
            if cov is not None and names:
                if cov.failed is not None:
                    covered = 0.0
                    note = f"partial: window coverage unknown ({cov.failed})"
                elif cov.refused is None:
                    worst = worst_coverage(cov.by_name[n] for n in names if n in cov.by_name)
                    if worst is not None and worst.partial:
                        c = round(worst.covered_s, 3)
                        if covered is None or c < covered:
                            covered = c
                            start = "" if worst.starts_covered else "no data at its start, "
                            note = (
                                f"partial: about {c:.0f}s of the {worst.window_s:g}s window "
                                f"covered ({start}longest stretch without samples "
                                f"{worst.silence_s:.1f}s, tolerated {worst.tolerance_s:.1f}s; "
                                f"{worst.samples} samples)"
                            )
            if covered is not None:
                res.partial[sp.key] = covered
                res.notes.append(f"{sp.key}: {note}")

    # ---- one pool -------------------------------------------------------------------

    async def pool(self, plan: PoolPlan) -> _PoolResult:
        freshness: dict[str, float] | None = None
        res = _PoolResult(PoolObservation(role=plan.role))
        if plan.freshness_queries:
            try:
                chunks = await asyncio.gather(*(self.q(fq) for fq in plan.freshness_queries))
                freshness = {
                    s.labels.get("name", ""): s.value
                    for samples in chunks
                    for s in samples
                    if math.isfinite(s.value)
                }
            except QueryError as e:
                if e.transient:
                    res.unreachable = True
                    res.missing = [s.key for s in plan.signals.values()]
                    res.notes.append(f"{plan.role}: Prometheus unreachable: {e}")
                    return res
                res.notes.append(f"{plan.role}: freshness query refused ({e}); reading blind")
        cov_result, reads, by_pod, variability = await asyncio.gather(
            self.coverage(plan, self.coverage_names(plan, freshness)),
            asyncio.gather(*(self.signal(s, freshness) for s in plan.signals.values())),
            self.per_pod(plan),
            self.variability(plan),
        )
        cov: _Coverage | None = cov_result if freshness is not None else None
        if cov is not None and cov.refused is not None:
            res.notes.append(
                f"{plan.role}: coverage query refused ({cov.refused}); gaps in rate windows "
                "detected only from failed observations"
            )
        values: dict[str, Any] = {}
        for sp, read in zip(plan.signals.values(), reads, strict=True):
            values[sp.signal.value] = read.value
            if read.missing:
                res.missing.append(sp.key)
                if read.stale:
                    res.stale.append(sp.key)
            if read.note:
                res.notes.append(f"{sp.key}: {read.note}")
        by_pod_values, by_pod_note = by_pod
        if by_pod_note:
            res.notes.append(f"{plan.role}.running_requests_by_pod: {by_pod_note}")
        dispersion, scv, var_notes = variability
        res.notes.extend(f"{plan.role}.{n}" for n in var_notes)
        res.obs = PoolObservation(
            role=plan.role,
            running_requests_by_pod=by_pod_values,
            arrival_dispersion=dispersion,
            prompt_tokens_scv=scv,
            **values,
        )
        self.mark_partial(res, plan, reads, cov)
        return res

    async def per_pod(self, plan: PoolPlan) -> tuple[dict[str, float] | None, str | None]:
        """Running requests per pod, for drain-aware scale-down (never raises).

        The first gauge name with series wins. A pod is listed only with a finite,
        non-negative value whose newest sample is within ``maxStaleness``: an absent,
        stale or garbage value leaves the pod out (its load is unknown, not zero), and
        the actuator marks nothing for a pool whose pods it cannot all rank."""
        oldest_ok = self.now - self.src.max_staleness_s
        for promql in plan.per_pod_running:
            try:
                samples = await self.q(promql)
            except QueryError as e:
                return None, f"query failed ({e}); pods not ranked"
            running: dict[str, float] = {}
            newest: dict[str, float] = {}
            for smp in samples:
                pod = smp.labels.get(POD_LABEL)
                if not pod:
                    continue
                stat = smp.labels.get("stat")
                if stat == "running":
                    running[pod] = smp.value
                elif stat == "newest":
                    newest[pod] = smp.value
            if not running:
                continue
            out = {
                pod: v
                for pod, v in running.items()
                if math.isfinite(v) and v >= 0 and newest.get(pod, -math.inf) >= oldest_ok
            }
            dropped = sorted(set(running) - set(out))
            note = (
                f"no fresh, valid value for pod(s) {', '.join(dropped)}: their load is unknown"
                if dropped
                else None
            )
            return out, note
        return None, None

    async def variability(self, plan: PoolPlan) -> tuple[float | None, float | None, list[str]]:
        """(index of dispersion of request counts, prompt-length SCV, notes): figures,
        not signals, so a failure or absence is ``None`` with a note, never missing, and
        never raises (the planner then assumes Poisson / exponential and says so)."""
        notes: list[str] = []
        dispersion: float | None = None
        for promql in plan.dispersion:
            try:
                samples = await self.q(promql)
            except QueryError as e:
                notes.append(f"arrival_dispersion: query failed ({e}); not measured")
                break
            stats = {smp.labels.get("stat", ""): smp.value for smp in samples}
            if "steps" not in stats:
                continue
            dispersion = dispersion_from_moments(
                stats.get("mean"),
                stats.get("var"),
                # deriv() is per second; the moments are per step
                (stats["slope"] * self.src.plan.dispersion_step_s) if "slope" in stats else None,
                int(stats["steps"]) if math.isfinite(stats["steps"]) else 0,
            )
            if dispersion is None:
                notes.append(
                    "arrival_dispersion: not measured (too few steps or no requests in "
                    f"{int(stats['steps']) if math.isfinite(stats['steps']) else 0} steps)"
                )
            break
        else:
            if plan.dispersion:
                notes.append("arrival_dispersion: not measured (no request counter series)")
        scv: float | None = None
        for buckets_q, sum_q, count_q in plan.prompt_histogram:
            try:
                samples = await self.q(buckets_q)
                if not samples:
                    continue
                pairs = [(float(smp.labels.get("le", "nan")), smp.value) for smp in samples]
                total, count = await asyncio.gather(self.one_value(sum_q), self.one_value(count_q))
            except (QueryError, _Missing, ValueError) as e:
                notes.append(f"prompt_tokens_scv: {e}; not measured")
                break
            hist = histogram_from_buckets(pairs)
            scv = histogram_scv(hist, safe_ratio(total, count)) if hist is not None else None
            if scv is None:
                notes.append("prompt_tokens_scv: not measured (no prompts in window or garbage)")
            break
        else:
            if plan.prompt_histogram:
                notes.append("prompt_tokens_scv: not measured (no prompt-token histogram series)")
        return dispersion, scv, notes

    def coverage_names(
        self, plan: PoolPlan, freshness: dict[str, float] | None
    ) -> dict[str, float]:
        """The windowed series of the alternatives that will be read, with their newest
        sample's timestamp."""
        if freshness is None:
            return {}
        names: dict[str, float] = {}
        for sp in plan.signals.values():
            if sp.override or not sp.windowed:
                continue
            try:
                alt, _ = self.choose(sp, freshness)
            except _Missing:
                continue
            for n in alt.windowed:
                if n in freshness:
                    names[n] = freshness[n]
        return names

    async def signal(self, plan: SignalPlan, freshness: dict[str, float] | None) -> _Read:
        try:
            if plan.override or freshness is None:
                return await self.first_with_data(plan)
            alt, index = self.choose(plan, freshness)
            read = await self.evaluate(plan.signal, alt)
            read.alt = alt
            if index > 0 and read.note is None and not read.missing:
                read.note = f"read fallback {alt.description}"
            return read
        except _Missing as m:
            if m.absent and plan.optional:
                return _Read(None, note="not exported by this pool")
            return _Read(missing=True, stale=m.stale, note=str(m))
        except QueryError as e:
            return _Read(missing=True, note=f"query failed: {e}")

    def choose(self, plan: SignalPlan, freshness: dict[str, float]) -> tuple[Alternative, int]:
        present = [
            (i, a) for i, a in enumerate(plan.alternatives) if all(n in freshness for n in a.series)
        ]
        if not present:
            names = ", ".join(a.description for a in plan.alternatives) or "none configured"
            raise _Missing(f"absent: no series for {names}", absent=True)
        oldest_ok = self.now - self.src.max_staleness_s
        for i, alt in present:
            if min(freshness[n] for n in alt.series) >= oldest_ok:
                return alt, i
        _, alt = present[0]
        age = self.now - min(freshness[n] for n in alt.series)
        raise _Missing(
            f"stale: newest sample of {alt.description} is {age:.0f}s old "
            f"(maxStaleness {self.src.max_staleness_s:g}s)",
            stale=True,
        )

    async def first_with_data(self, plan: SignalPlan) -> _Read:
        """Without freshness data (overrides, or a refused freshness query): the first
        alternative that returns anything."""
        last: _Missing | None = None
        for alt in plan.alternatives:
            try:
                read = await self.evaluate(plan.signal, alt)
            except _Missing as m:
                last = m
                continue
            read.alt = alt
            return read
        raise last or _Missing("absent: nothing to query")

    # ---- evaluation -----------------------------------------------------------------

    async def one_value(self, promql: str) -> float:
        samples = await self.q(promql)
        if not samples:
            raise _Missing("absent: query returned no series")
        if len(samples) > 1:
            raise _Missing(f"ambiguous: {len(samples)} series where one was expected")
        s = samples[0]
        if s.timestamp < self.now - self.src.max_staleness_s:
            raise _Missing(f"stale: sample at {s.timestamp:.0f}", stale=True)
        return s.value

    async def evaluate(self, signal: Signal, alt: Alternative) -> _Read:
        if alt.kind == "histogram":
            return await self.latency(signal, alt)
        if alt.kind == "ratio":
            num, den = await asyncio.gather(
                self.one_value(alt.queries["num"]), self.one_value(alt.queries["den"])
            )
            n, d = non_negative(num), non_negative(den)
            if n is None or d is None:
                raise _Missing(f"garbage: {alt.description} = {num!r} / {den!r}")
            if d == 0:
                if n == 0:
                    return _Read(None, note=UNDEFINED_NO_REQUESTS)
                raise _Missing(f"garbage: {alt.description} = {num!r} / 0")
            value: float | None = safe_ratio(n, d)
        else:
            raw = await self.one_value(alt.queries["value"])
            value = non_negative(raw)
            if value is None:
                raise _Missing(f"garbage: {alt.description} = {raw!r}")
        if signal in _FRACTION_SIGNALS:
            fraction = unit_fraction(value)
            if fraction is None:
                raise _Missing(
                    f"garbage: {alt.description} = {value!r} is not a fraction in [0, 1]"
                )
            value = fraction
        if signal is Signal.ready_replicas and value is not None:
            return _Read(round(value))
        return _Read(value)

    async def latency(self, signal: Signal, alt: Alternative) -> _Read:
        samples = await self.q(alt.queries["buckets"])
        if not samples:
            raise _Missing("absent: no histogram buckets in window")
        pairs = []
        for s in samples:
            le = s.labels.get("le")
            try:
                bound = float(le) if le is not None else math.nan
            except ValueError:
                bound = math.nan
            if math.isnan(bound):
                raise _Missing("garbage: bucket series without a numeric le label")
            pairs.append((bound, s.value))
        hist = histogram_from_buckets(pairs)
        if hist is None:
            raise _Missing(
                f"garbage: {alt.description} buckets are not a histogram (NaN, negative or no +Inf)"
            )
        if hist.total == 0:
            return _Read(LatencySummary(), note=UNDEFINED_NO_REQUESTS)
        mean: float | None = None
        if "sum" in alt.queries and "count" in alt.queries:
            try:
                total, count = await asyncio.gather(
                    self.one_value(alt.queries["sum"]), self.one_value(alt.queries["count"])
                )
                mean = safe_ratio(total, count)
            except (_Missing, QueryError):
                mean = None
        return _Read(latency_summary(hist, self.src.thresholds[signal], mean))

    async def fleet_value(self, f: FleetSignal, promql: str) -> _Read:
        try:
            raw = await self.one_value(promql)
        except _Missing as m:
            return _Read(missing=True, stale=m.stale, note=str(m))
        except QueryError as e:
            return _Read(missing=True, note=f"query failed: {e}")
        v = unit_fraction(raw) if f is FleetSignal.quality else non_negative(raw)
        if v is None:
            return _Read(missing=True, note=f"garbage: {raw!r}")
        return _Read(v)

    # ---- fleet estimate -------------------------------------------------------------

    def estimate(
        self, pools: dict[str, PoolObservation], fleet: dict[FleetSignal, float | None]
    ) -> GoodputEstimate:
        if FleetSignal.quality in self.src.plan.fleet:
            q = effective_quality(fleet.get(FleetSignal.quality), self.src.spec.quality.floor)
        else:
            q = 1.0  # no quality signal configured: every on-time token is good
        est = fleet_estimate(pools, q)
        if FleetSignal.good_tokens_per_s in self.src.plan.fleet:
            good = fleet.get(FleetSignal.good_tokens_per_s)
            g = good * q if good is not None and q is not None else None
            est = est.model_copy(update={"goodput_tokens_per_s": g})
        return est


def _copy_shared(by_role: dict[str, _PoolResult], plan: QueryPlan) -> None:
    """Disaggregated pools see the same requests: a per-request quantity one pool does
    not export (None, not missing) is the sibling's."""
    pairs = [(PoolRole.prefill.value, PoolRole.decode.value)]
    pairs += [(b, a) for a, b in pairs]
    for role, sibling in pairs:
        if role not in by_role or sibling not in by_role:
            continue
        mine, theirs = by_role[role], by_role[sibling]
        updates: dict[str, Any] = {}
        for signal in SHARED_BETWEEN_POOLS:
            sp = plan.pools[role].signals.get(signal)
            if sp is None or sp.key in mine.missing or getattr(mine.obs, signal.value) is not None:
                continue
            value = getattr(theirs.obs, signal.value)
            if value is not None:
                updates[signal.value] = value
                mine.notes.append(f"{sp.key}: taken from {sibling} (same requests)")
                theirs_key = f"{sibling}.{signal.value}"
                if theirs_key in theirs.partial:
                    mine.partial[sp.key] = theirs.partial[theirs_key]
        if updates:
            mine.obs = mine.obs.model_copy(update=updates)
