"""Performance profiles: per-replica speed priors calibrated to published figures.

The functional form is DistServe's (prefill_s = a + b*sum(L) + c*sum(L^2);
decode step_s = a + b*batch + c*sum(context tokens)), fitted to the measurements in
shared/data/perf, with two prefill terms DistServe's form lacks and some measurements
need: a cost per sequence of the batch (d*n: batching that does not amortize) and a knee
(e*max(0, sum(L) - K): tokens beyond K per batch cost e more). Both are zero unless the
profile's data asks for them. The planner and the twin read the same profile; the twin
simulates it, the planner predicts from it.

A pool names its profile exactly (``spec.pools[].profile``; the CRD's enum is
:func:`profile_choices`). Nothing stands in for a missing or unknown one:
:func:`load_profile` raises :class:`ProfileNotFound`, and a pool without a profile is
refused with :class:`ProfileMissing` (both :class:`ProfileError`, a ``KeyError``,
carrying the ``Reason`` the operator reports).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict

from goodput.reasons import Reason


class CalibrationPoint(BaseModel):
    """One published (or composed-from-published) timing the profile was fitted to,
    kept in the profile so a test can check the fit without the raw data."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stage: Literal["prefill", "decode", "throughput"] = Field(
        description=(
            "prefill: one batch's prefill time; decode: one decode step; throughput: seconds"
            " per output token of the whole replica at max load (1 / tokens per second)"
        )
    )
    batch: int = Field(ge=1, description="sequences in the batch (throughput: concurrency)")
    tokens: float = Field(
        ge=0, description="prefill and throughput: prompt length of each sequence"
    )
    context_tokens: float = Field(0.0, ge=0, description="decode: context of each sequence")
    output_tokens: float = Field(0.0, ge=0, description="throughput: output length of each")
    measured_s: float = Field(gt=0)
    source: str

    @property
    def kind(self) -> str:
        """The row's family, as the calibration table groups them: ``prefill single``,
        ``prefill batched``, ``decode`` or ``throughput``."""
        if self.stage == "prefill":
            return "prefill single" if self.batch == 1 else "prefill batched"
        return self.stage


class PerformanceProfile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="e.g. llama-3.1-70b-h100-tp4")
    model: str
    gpu: str
    gpus_per_replica: int = Field(ge=1)
    # Prefill of one batch of n sequences, seconds:
    #   a + b * sum(L) + c * sum(L^2) + d * n + e * max(0, sum(L) - K)
    prefill_base_s: float = Field(ge=0)
    prefill_per_token_s: float = Field(ge=0)
    prefill_per_token2_s: float = Field(ge=0)
    prefill_per_seq_s: float = Field(
        0.0, ge=0, description="d: seconds per sequence of the batch (not shared by batching)"
    )
    prefill_knee_tokens: float = Field(
        0.0, ge=0, description="K: tokens per batch beyond which each token costs e more"
    )
    prefill_per_token_above_knee_s: float = Field(
        0.0, ge=0, description="e: extra seconds per token of the batch beyond K"
    )
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

    def prefill_seconds(
        self, total_tokens: float, sum_sq_tokens: float, sequences: float | None = None
    ) -> float:
        """One prefill batch of ``sequences`` prompts with sum(L) = ``total_tokens`` and
        sum(L^2) = ``sum_sq_tokens``. Without a count the prompts are taken to be of one
        length, n = sum(L)^2 / sum(L^2): exactly 1 for one prompt and m for m equal ones."""
        if sequences is None:
            sequences = total_tokens * total_tokens / sum_sq_tokens if sum_sq_tokens > 0 else 1.0
        return (
            self.prefill_base_s
            + self.prefill_per_token_s * total_tokens
            + self.prefill_per_token2_s * sum_sq_tokens
            + self.prefill_per_seq_s * sequences
            + self.prefill_per_token_above_knee_s
            * max(0.0, total_tokens - self.prefill_knee_tokens)
        )

    @property
    def prefill_per_token_loaded_s(self) -> float:
        """Seconds per token of a full prefill batch (``max_prefill_tokens``) beyond the
        base: b plus the knee's extra spread over the batch. The linear rate of prefill
        under load, for a model that cannot follow batch composition (the planner's)."""
        full = float(self.max_prefill_tokens)
        above = max(0.0, 1.0 - self.prefill_knee_tokens / full)
        return self.prefill_per_token_s + self.prefill_per_token_above_knee_s * above

    def decode_step_seconds(self, batch: float, context_tokens: float) -> float:
        return (
            self.decode_base_s
            + self.decode_per_seq_s * batch
            + self.decode_per_ctx_token_s * context_tokens
        )

    def predicted_s(self, point: CalibrationPoint) -> float:
        """The profile's prediction for one calibration point (same units: seconds).

        A throughput point is a max-load benchmark with ``batch`` requests in flight,
        each of ``tokens`` in and ``output_tokens`` out: per ``batch`` requests the
        replica prefills them all and runs ``output_tokens`` decode steps at mean
        context ``tokens + output_tokens / 2``; the result is seconds per output token.
        """
        n, prompt = point.batch, point.tokens
        if point.stage == "prefill":
            return self.prefill_seconds(n * prompt, n * prompt * prompt, n)
        if point.stage == "decode":
            return self.decode_step_seconds(n, n * point.context_tokens)
        out = point.output_tokens
        cycle = self.prefill_seconds(n * prompt, n * prompt * prompt, n) + out * (
            self.decode_step_seconds(n, n * (prompt + out / 2))
        )
        return cycle / (n * out)

    @property
    def decode_floor_s(self) -> float:
        """Physical floor of one decode step: every weight byte streamed once from HBM."""
        return self.weight_bytes / self.hbm_bandwidth_bytes_per_s


class ProfileError(KeyError):
    """A pool's performance profile cannot be used; nothing is assumed in its place.

    ``reason`` is the condition/event reason the operator reports; ``str()`` and
    ``args[0]`` are the whole message (not ``KeyError``'s quoted repr)."""

    reason: Reason

    def __init__(self, message: str, *, name: str | None = None, role: str | None = None):
        super().__init__(message)
        self.message = message
        self.name = name
        self.role = role

    def __str__(self) -> str:
        return self.message


class ProfileMissing(ProfileError):
    """A pool names no performance profile."""

    reason = Reason.ProfileMissing


class ProfileNotFound(ProfileError):
    """A pool names a profile that is not bundled."""

    reason = Reason.ProfileNotFound


def available_profiles() -> list[str]:
    """Names of the bundled profiles (JSON files shipped as package data)."""
    return list(_bundled())


@cache
def _bundled() -> tuple[str, ...]:
    root = resources.files(__name__)
    return tuple(
        sorted(
            entry.name.removesuffix(".json")
            for entry in root.iterdir()
            if entry.name.endswith(".json")
        )
    )


def _bundled_name(name: str) -> str:
    if name not in _bundled():
        raise ValueError(
            f"unknown performance profile {name!r}: choose one of {', '.join(_bundled())}"
        )
    return name


ProfileName = Annotated[
    str,
    Strict(),
    Field(json_schema_extra={"enum": list(_bundled())}),
    AfterValidator(_bundled_name),
]
"""A bundled profile's exact name: the CRD's ``enum`` and the models' check, both from
the JSON files shipped in this package (``make crds`` after adding one)."""


def profile_choices(gpus_per_replica: int | None = None) -> list[str]:
    """The names a pool's ``profile`` may take: exactly the bundled profile names (no
    short aliases). With ``gpus_per_replica``, only the profiles whose replica holds
    that many GPUs. Pure: reads nothing but the package's own data."""
    names = available_profiles()
    if gpus_per_replica is None:
        return names
    return [n for n in names if load_profile(n).gpus_per_replica == gpus_per_replica]


def _choices_text(gpus_per_replica: int | None) -> str:
    text = f"bundled profiles: {', '.join(available_profiles())}"
    if gpus_per_replica is not None:
        fit = profile_choices(gpus_per_replica)
        some = ", ".join(fit) if fit else "none"
        text += f" (with {gpus_per_replica} GPUs per replica: {some})"
    return text


def missing_profile(role: str, gpus_per_replica: int | None = None) -> ProfileMissing:
    """The error for a pool that names no profile (raise it)."""
    return ProfileMissing(
        f"the {role} pool names no performance profile and none is assumed: set its"
        f" profile to one of the {_choices_text(gpus_per_replica)}",
        role=role,
    )


def unknown_profile(
    name: str, role: str | None = None, gpus_per_replica: int | None = None
) -> ProfileNotFound:
    """The error for a profile name that is not bundled (raise it)."""
    who = f"the {role} pool's profile" if role else "performance profile"
    return ProfileNotFound(
        f"{who} {name!r} is not bundled; {_choices_text(gpus_per_replica)}",
        name=name,
        role=role,
    )


def pool_profile(
    name: str | None, role: str, gpus_per_replica: int | None = None
) -> PerformanceProfile:
    """The bundled profile a pool names: :class:`ProfileMissing` when it names none,
    :class:`ProfileNotFound` when the name is not bundled; the message names the pool's
    role and lists the choices (those with ``gpus_per_replica`` GPUs, when given)."""
    if name is None:
        raise missing_profile(role, gpus_per_replica)
    try:
        return load_profile(name)
    except ProfileNotFound:
        raise unknown_profile(name, role, gpus_per_replica) from None


@cache
def load_profile(name: str) -> PerformanceProfile:
    """A bundled profile by its exact name; :class:`ProfileNotFound` otherwise."""
    if name not in _bundled():
        raise unknown_profile(name)
    text = resources.files(__name__).joinpath(f"{name}.json").read_text(encoding="utf-8")
    return PerformanceProfile.model_validate(json.loads(text))


__all__ = [
    "CalibrationPoint",
    "PerformanceProfile",
    "ProfileError",
    "ProfileMissing",
    "ProfileName",
    "ProfileNotFound",
    "available_profiles",
    "load_profile",
    "missing_profile",
    "pool_profile",
    "profile_choices",
    "unknown_profile",
]
