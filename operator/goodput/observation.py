"""One typed, timestamped observation of a serving fleet: the metrics layer's output
and the planner's input (the digital twin produces the same shape).

``None`` always means *missing* (failed query, absent or stale series), never zero;
zero traffic is ``arrival_rate_rps == 0.0`` with the series present.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


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


class GoodputEstimate(_Frozen):
    """DESIGN section 2: A ~ a_ttft * a_itl within Frechet bounds; G ~ gen_rate * A * q."""

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
