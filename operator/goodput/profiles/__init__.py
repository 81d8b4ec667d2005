"""Performance profiles: per-replica speed priors calibrated to published figures.

The functional form is DistServe's (prefill_s = a + b*sum(L) + c*sum(L^2);
decode step_s = a + b*batch + c*sum(context tokens)), fitted to the measurements in
shared/data/perf. The planner and the twin read the same profile; the twin simulates
it, the planner predicts from it.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class CalibrationPoint(BaseModel):
    """One published (or composed-from-published) timing the profile was fitted to,
    kept in the profile so a test can check the fit without the raw data."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stage: Literal["prefill", "decode"]
    batch: int = Field(ge=1)
    tokens: float = Field(ge=0, description="prefill: prompt length of each sequence")
    context_tokens: float = Field(0.0, ge=0, description="decode: context of each sequence")
    measured_s: float = Field(gt=0)
    source: str


class PerformanceProfile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="e.g. llama-3.1-70b-h100-tp4")
    model: str
    gpu: str
    gpus_per_replica: int = Field(ge=1)
    # Prefill of one batch, seconds: a + b * sum(L) + c * sum(L^2)
    prefill_base_s: float = Field(ge=0)
    prefill_per_token_s: float = Field(ge=0)
    prefill_per_token2_s: float = Field(ge=0)
    # One decode step, seconds: a + b * batch + c * sum(context tokens)
    decode_base_s: float = Field(ge=0)
    decode_per_seq_s: float = Field(ge=0)
    decode_per_ctx_token_s: float = Field(ge=0)
    kv_bytes_per_token: int = Field(ge=1)
    kv_capacity_tokens: int = Field(ge=1, description="KV tokens one replica holds in HBM")
    max_batch: int = Field(ge=1)
    max_prefill_tokens: int = Field(ge=1, description="token budget of one prefill batch")
    weight_bytes: float = Field(gt=0)
    hbm_bandwidth_bytes_per_s: float = Field(gt=0, description="per replica (all its GPUs)")
    sources: list[str] = Field(default_factory=list)
    calibration: list[CalibrationPoint] = Field(default_factory=list)
    fit_tolerance: float = Field(
        0.15, gt=0, description="max relative error of the fit on its calibration points"
    )

    def prefill_seconds(self, total_tokens: float, sum_sq_tokens: float) -> float:
        return (
            self.prefill_base_s
            + self.prefill_per_token_s * total_tokens
            + self.prefill_per_token2_s * sum_sq_tokens
        )

    def decode_step_seconds(self, batch: float, context_tokens: float) -> float:
        return (
            self.decode_base_s
            + self.decode_per_seq_s * batch
            + self.decode_per_ctx_token_s * context_tokens
        )

    def predicted_s(self, point: CalibrationPoint) -> float:
        """The profile's prediction for one calibration point (same units: seconds)."""
        if point.stage == "prefill":
            return self.prefill_seconds(
                point.batch * point.tokens, point.batch * point.tokens * point.tokens
            )
        return self.decode_step_seconds(point.batch, point.batch * point.context_tokens)

    @property
    def decode_floor_s(self) -> float:
        """Physical floor of one decode step: every weight byte streamed once from HBM."""
        return self.weight_bytes / self.hbm_bandwidth_bytes_per_s


DEFAULT_PROFILE = "llama-3.1-8b-h100-tp1"


def available_profiles() -> list[str]:
    """Names of the bundled profiles (JSON files shipped as package data)."""
    root = resources.files(__name__)
    return sorted(
        entry.name.removesuffix(".json") for entry in root.iterdir() if entry.name.endswith(".json")
    )


@cache
def load_profile(name: str) -> PerformanceProfile:
    """A bundled profile by name; also accepts the name without its ``-tpN`` suffix
    when exactly one bundled profile matches (e.g. ``llama-3.1-8b-h100``)."""
    names = available_profiles()
    if name not in names:
        matches = [n for n in names if n.startswith(name + "-tp")]
        if len(matches) != 1:
            raise KeyError(f"unknown performance profile {name!r}; bundled: {', '.join(names)}")
        name = matches[0]
    text = resources.files(__name__).joinpath(f"{name}.json").read_text(encoding="utf-8")
    return PerformanceProfile.model_validate(json.loads(text))
