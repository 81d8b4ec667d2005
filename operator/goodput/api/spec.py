"""Pydantic models of the GoodputPolicy spec: the single source of the CRD schema.

Field names are snake_case in Python and camelCase on the wire (``by_alias=True``).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "goodput.dev"
VERSION = "v1alpha1"
KIND = "GoodputPolicy"
PLURAL = "goodputpolicies"

_DURATION_RE = re.compile(r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$")
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"


def parse_duration(text: str) -> float:
    """Kubernetes/Go-style duration string ("500ms", "1m30s") to seconds."""
    if not _DURATION_RE.match(text):
        raise ValueError(f"invalid duration {text!r}: use e.g. '500ms', '2s', '1m30s'")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))


Duration = Annotated[str, Field(pattern=DURATION_PATTERN)]


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class Mode(StrEnum):
    Enforce = "Enforce"
    Recommend = "Recommend"


class PoolRole(StrEnum):
    prefill = "prefill"
    decode = "decode"
    aggregated = "aggregated"


class TargetRef(_Model):
    api_version: str = Field("apps/v1", description="API version of the scaled workload.")
    kind: str = Field("Deployment", description="Kind of a workload with a scale subresource.")
    name: str = Field(min_length=1, description="Name of the workload, in the policy's namespace.")


class Pool(_Model):
    role: PoolRole = Field(description="prefill, decode, or aggregated (both in one replica).")
    target_ref: TargetRef = Field(description="Workload whose /scale subresource this pool drives.")
    gpus_per_replica: int | None = Field(
        None, ge=1, le=64,
        description="GPUs one replica holds. Default: the pod template's nvidia.com/gpu limit.",
    )
    min_replicas: int = Field(1, ge=0, description="Never scale below this many replicas.")
    max_replicas: int = Field(ge=1, description="Never scale above this many replicas.")
    profile: str | None = Field(
        None,
        description="Bundled performance profile used as the prior, e.g. 'llama-3.1-8b-h100'.",
    )


class KVCacheTier(_Model):
    name: str = Field(min_length=1, description="Tier name, e.g. cpu, disk, remote.")
    target_ref: TargetRef = Field(description="Workload serving this tier (scaled by replicas).")
    capacity_per_replica_gib: float = Field(gt=0, description="KV capacity one replica adds, GiB.")
    bandwidth_gib_per_s: float = Field(gt=0, description="Read bandwidth to the GPUs, GiB/s.")
    min_replicas: int = Field(0, ge=0, description="Never scale below this many replicas.")
    max_replicas: int = Field(ge=0, description="Never scale above this many replicas.")
    gpus_per_replica: int = Field(0, ge=0, description="GPUs a tier replica holds (usually 0).")


class KVCache(_Model):
    tiers: list[KVCacheTier] = Field(default_factory=list, description="Offload tiers, fastest first.")


class SLO(_Model):
    ttft: Duration = Field(description="Time-to-first-token threshold, e.g. '500ms'.")
    itl: Duration = Field(description="Inter-token latency threshold (mean per request), e.g. '50ms'.")
    attainment: float = Field(
        0.9, gt=0, le=1, description="Target fraction of requests meeting both thresholds."
    )

    @property
    def ttft_seconds(self) -> float:
        return parse_duration(self.ttft)

    @property
    def itl_seconds(self) -> float:
        return parse_duration(self.itl)


class Quality(_Model):
    query: str | None = Field(None, description="PromQL returning an answer-quality score in [0, 1].")
    floor: float = Field(0.0, ge=0, le=1, description="Scores below this count as zero goodput.")


class Preset(StrEnum):
    vllm = "vllm"
    sglang = "sglang"
    dynamo = "dynamo"


class SecretKeyRef(_Model):
    name: str = Field(min_length=1, description="Secret name in the policy's namespace.")
    key: str = Field("token", description="Key inside the Secret.")


class PrometheusAuth(_Model):
    bearer_token_secret_ref: SecretKeyRef | None = Field(None, description="Bearer token Secret.")
    ca_secret_ref: SecretKeyRef | None = Field(None, description="CA bundle Secret for TLS.")
    insecure_skip_verify: bool = Field(False, description="Skip TLS verification (not for production).")


class Metrics(_Model):
    prometheus_url: str = Field(
        "http://prometheus-operated.monitoring.svc:9090", description="Prometheus HTTP API base URL."
    )
    auth: PrometheusAuth | None = Field(None, description="Authentication for Prometheus.")
    preset: Preset = Field(Preset.vllm, description="Metric names of the serving stack.")
    selectors: dict[str, str] = Field(
        default_factory=dict,
        description="Label matchers per pool role (e.g. prefill: 'model_name=\"llama\",role=\"prefill\"').",
    )
    overrides: dict[str, str] = Field(
        default_factory=dict, description="Per-signal PromQL overrides, keyed by signal name."
    )
    window: Duration = Field("1m", description="Rate window for counters and histograms.")
    max_staleness: Duration = Field("2m", description="Older samples count as missing.")


class ScalingPolicy(_Model):
    type: str = Field(pattern="^(Replicas|Percent)$", description="Replicas or Percent.")
    value: int = Field(ge=1, description="Amount of change allowed per period.")
    period_seconds: int = Field(ge=1, le=1800, description="Length of the period.")


class ScalingRules(_Model):
    stabilization_window_seconds: int = Field(0, ge=0, le=3600, description="HPA-style window.")
    select_policy: str = Field("Max", pattern="^(Max|Min|Disabled)$", description="Max, Min or Disabled.")
    policies: list[ScalingPolicy] = Field(default_factory=list, description="Step limits.")


def _default_scale_up() -> ScalingRules:
    return ScalingRules(
        stabilization_window_seconds=0,
        policies=[
            ScalingPolicy(type="Percent", value=100, period_seconds=15),
            ScalingPolicy(type="Replicas", value=4, period_seconds=15),
        ],
    )


def _default_scale_down() -> ScalingRules:
    return ScalingRules(
        stabilization_window_seconds=300,
        policies=[ScalingPolicy(type="Percent", value=100, period_seconds=15)],
    )


class Behavior(_Model):
    interval: Duration = Field("15s", description="Control loop period.")
    scale_up: ScalingRules = Field(default_factory=_default_scale_up, description="Scale-up rules.")
    scale_down: ScalingRules = Field(default_factory=_default_scale_down, description="Scale-down rules.")
    forecast_horizon: Duration = Field("2m", description="How far ahead demand is forecast.")
    startup_delay: Duration = Field("60s", description="Time a new replica needs before serving.")


class GoodputPolicySpec(_Model):
    mode: Mode = Field(Mode.Recommend, description="Enforce scales; Recommend only publishes the plan.")
    gpu_budget: int = Field(ge=1, description="Total GPUs this policy may hold across all pools.")
    pools: list[Pool] = Field(min_length=1, max_length=2, description="prefill+decode, or one aggregated.")
    kv_cache: KVCache = Field(default_factory=KVCache, description="KV-cache offload tiers.")
    slo: SLO = Field(description="Latency thresholds and attainment target.")
    quality: Quality = Field(default_factory=Quality, description="Answer-quality signal.")
    metrics: Metrics = Field(default_factory=Metrics, description="Where and how to read signals.")
    behavior: Behavior = Field(default_factory=Behavior, description="Loop timing and step limits.")

    def pool(self, role: PoolRole) -> Pool | None:
        return next((p for p in self.pools if p.role == role), None)


class ObjectMeta(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    namespace: str = "default"


class GoodputPolicy(BaseModel):
    """A whole GoodputPolicy object as kubectl reads it (spec only; status lives in api.status)."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")
    api_version: str = Field(f"{GROUP}/{VERSION}", alias="apiVersion")
    kind: str = KIND
    metadata: ObjectMeta
    spec: GoodputPolicySpec

    @classmethod
    def from_manifest(cls, doc: dict[str, Any]) -> GoodputPolicy:
        return cls.model_validate(doc)
