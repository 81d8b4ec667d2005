"""One typed, timestamped observation of a serving fleet: the metrics layer's output
and the planner's input (the digital twin produces the same shape).

``None`` always means *missing* (failed query, absent or stale series), never zero;
zero traffic is ``arrival_rate_rps == 0.0`` with the series present.

How a consumer decides whether it may act (checked in this order):

1. ``unreachable``: Prometheus could not be queried; every signal is missing.
2. ``missing`` (``stale`` is the subset whose samples are too old): a required
   signal listed there has no value.
3. ``partial``: a required signal listed there *has* a value, but it was computed
   over a rate window (``spec.metrics.window``) that overlaps a gap in the data:
   Prometheus was down, the target's series were gone, or this source's own last
   observation found Prometheus unreachable inside the window. Such a rate is biased
   low (rate() over a half-empty window), so it must not be acted on as fresh; the
   value is kept for display only. ``partial`` and ``missing`` are disjoint; a signal
   leaves ``partial`` once a full window of data follows the gap.

Keys in ``missing``, ``stale`` and ``partial`` are ``<role>.<signal>`` for pool
signals (``"aggregated.arrival_rate_rps"``) and the bare name for policy-wide ones
(``"quality"``, ``"good_tokens_per_s"``); ``{k.split(".")[-1] for k in obs.partial}``
gives the signal names.

Required, i.e. the planner (``goodput.planner.planner.missing_signals``) holds
without them: ``arrival_rate_rps`` and, when it is above zero, ``mean_input_tokens``
and ``mean_output_tokens``, each from the first pool that has it (aggregated,
prefill, decode; for output tokens aggregated, decode, prefill); and ``quality`` when
``spec.quality.query`` is set. Hold with ``Reason.MetricsPartial`` when any of these
is in ``partial`` (the simplest safe rule: any pool's key for them). Used when
present, not required: ``ttft``, ``itl``, ``waiting_requests``,
``prefix_cache_hit_rate``, ``ready_replicas``; of these the windowed ones
(``ttft``, ``itl``, ``prefix_cache_hit_rate`` from counters) can be partial too.
Gauges (``running_requests``, ``waiting_requests``, ``kv_cache_usage``) are instant
values and never partial. ``arrival_dispersion`` and ``prompt_tokens_scv`` are figures,
not signals: never listed as missing, ``None`` when not measured. Zero traffic (a
counter present and flat) covers its window: ``0.0``, not partial.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

#: How far back the index of dispersion of request counts looks (seconds): long
#: enough for a dozen or more steps at the default 1m window, short enough to follow
#: a change of regime within a few minutes.
DISPERSION_SPAN_S = 300.0


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LatencySummary(_Frozen):
    """A latency distribution seen through a histogram."""

    attainment: float | None = Field(None, ge=0, le=1, description="P(latency <= SLO threshold)")
    p50_s: float | None = None
    p90_s: float | None = None
    p99_s: float | None = None
    mean_s: float | None = None
    threshold_between_coarse_buckets: bool = Field(
        False,
        description="The SLO threshold fell inside a wide bucket: attainment is interpolated.",
    )


class PoolObservation(_Frozen):
    role: str
    ready_replicas: int | None = None
    arrival_rate_rps: float | None = None
    mean_input_tokens: float | None = None
    mean_output_tokens: float | None = None
    prompt_tokens_per_s: float | None = None
    generation_tokens_per_s: float | None = None
    ttft: LatencySummary | None = None
    itl: LatencySummary | None = None
    running_requests: float | None = None
    waiting_requests: float | None = None
    kv_cache_usage: float | None = Field(None, ge=0, le=1)
    prefix_cache_hit_rate: float | None = Field(None, ge=0, le=1)
    arrival_dispersion: float | None = Field(
        None,
        ge=0,
        description=(
            "Index of dispersion (variance / mean) of the pool's request counts per step "
            "(a quarter of metrics.window) over the last DISPERSION_SPAN_S, their linear "
            "trend removed: 1 for Poisson arrivals, more for bursty ones. The planner's "
            "G/G/c prefill model takes it as the arrivals' ca^2. None: not measured (too "
            "few steps, no requests or no counter); the planner then assumes Poisson and "
            "says so. Not a required signal."
        ),
    )
    prompt_tokens_scv: float | None = Field(
        None,
        ge=0,
        description=(
            "Squared coefficient of variation of prompt lengths over metrics.window, from "
            "the prompt-token histogram (the gamma fitting its buckets, with the exact "
            "mean): 1 for exponential lengths, more for heavy tails. None: not measured; "
            "the planner then assumes exponential lengths and says so."
        ),
    )
    running_requests_by_pod: dict[str, float] | None = Field(
        None,
        description=(
            "Requests running per pod (label pod), fresh samples only, for drain-aware "
            "scale-down; None: not read or no series. A pod not listed has no known load, "
            "which is not zero: the actuator then marks nothing rather than guess. Not a "
            "planner input."
        ),
    )


class GoodputEstimate(_Frozen):
    """DESIGN section 2: A ~ min(a,b) * sqrt(max(a,b)) of the marginals a_ttft, a_itl, within
    the Frechet bounds; G ~ gen_rate * A * q (goodput.metrics.math.goodput_estimate)."""

    attainment: float | None = None
    attainment_lower: float | None = None
    attainment_upper: float | None = None
    goodput_tokens_per_s: float | None = None


class Observation(_Frozen):
    timestamp: float = Field(description="Unix seconds of the evaluation instant.")
    pools: dict[str, PoolObservation] = Field(description="Keyed by pool role.")
    quality: float | None = Field(None, ge=0, le=1)
    estimate: GoodputEstimate = Field(default_factory=GoodputEstimate)
    missing: list[str] = Field(
        default_factory=list, description="Signals that are missing, e.g. 'decode.itl'."
    )
    notes: list[str] = Field(default_factory=list)
    stale: list[str] = Field(
        default_factory=list,
        description="Subset of missing: signals whose newest sample is older than maxStaleness.",
    )
    unreachable: bool = Field(
        False, description="Prometheus could not be queried at all: every signal is missing."
    )
    partial: list[str] = Field(
        default_factory=list,
        description=(
            "Signals with a value whose rate window overlaps a gap in the data (not fresh: "
            "do not act on them), keyed like missing; disjoint from missing."
        ),
    )
    covered_seconds: dict[str, float] = Field(
        default_factory=dict,
        description="For each partial signal, about how many seconds of its window had data.",
    )
