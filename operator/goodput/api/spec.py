"""Pydantic models of the GoodputPolicy spec: the single source of the CRD schema.

Field names are snake_case in Python and camelCase on the wire (``by_alias=True``).
Every cross-field rule exists twice, on purpose: as a CEL rule (``x-kubernetes-validations``,
enforced by the API server) and as a pydantic validator, so ``kubectl apply`` and
``GoodputPolicy.from_manifest`` refuse the same documents with messages that name the
same field. ``tests/integration/invalid/`` holds one manifest per rule.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from goodput.api._base import ApiModel, StrictBool, StrictFloat, StrictInt, StrictStr
from goodput.api.status import GoodputPolicyStatus
from goodput.profiles import ProfileName

GROUP = "goodput.dev"
VERSION = "v1alpha1"
KIND = "GoodputPolicy"
PLURAL = "goodputpolicies"
SINGULAR = "goodputpolicy"
SHORT_NAMES = ("gp",)
CATEGORIES = ("goodput", "autoscaling")

# Go's time.ParseDuration syntax restricted to the units that make sense here; the CEL
# duration() function the API server uses parses the same strings.
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_DURATION_RE = re.compile(DURATION_PATTERN)
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

MAX_POOLS = 2
MAX_TIERS = 8
MAX_NAME = 253  # DNS subdomain, the longest Kubernetes object name
MAX_PROMQL = 4096


def cel(
    rule: str,
    message: str,
    *,
    field_path: str | None = None,
    message_expression: str | None = None,
    reason: str | None = None,
) -> dict[str, str]:
    """One ``x-kubernetes-validations`` entry."""
    out = {"rule": rule, "message": message}
    if message_expression is not None:
        out["messageExpression"] = message_expression
    if field_path is not None:
        out["fieldPath"] = field_path
    if reason is not None:
        out["reason"] = reason
    return out


def _validations(*rules: dict[str, str]) -> dict[str, Any]:
    return {"x-kubernetes-validations": list(rules)}


def parse_duration(text: str) -> float:
    """Kubernetes/Go-style duration string ("500ms", "1m30s") to seconds."""
    if not _DURATION_RE.fullmatch(text):
        raise ValueError(f"invalid duration {text!r}: use e.g. '500ms', '2s', '1m30s'")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))


def _positive_duration(text: str) -> str:
    if parse_duration(text) <= 0:
        raise ValueError(f"duration {text!r} must be positive (greater than 0s)")
    return text


def _valid_duration(text: str) -> str:
    parse_duration(text)
    return text


# The same pattern as a CEL string literal ("\." is not a valid CEL escape).
_CEL_DURATION_PATTERN = DURATION_PATTERN.replace("\\.", "[.]")

Duration = Annotated[
    StrictStr,
    Field(
        pattern=DURATION_PATTERN,
        max_length=32,
        json_schema_extra=_validations(
            cel(
                # Guarded so a malformed string reports only the pattern error.
                f"!self.matches('{_CEL_DURATION_PATTERN}') || duration(self) > duration('0s')",
                "must be a positive duration such as '500ms' or '2m'",
                reason="FieldValueInvalid",
            )
        ),
    ),
    AfterValidator(_positive_duration),
]
"""A positive duration ("500ms", "2m")."""

NonNegativeDuration = Annotated[
    StrictStr,
    Field(pattern=DURATION_PATTERN, max_length=32),
    AfterValidator(_valid_duration),
]
"""A duration that may be zero ("0s" switches the feature off)."""


class Mode(StrEnum):
    Enforce = "Enforce"
    Recommend = "Recommend"


class PoolRole(StrEnum):
    prefill = "prefill"
    decode = "decode"
    aggregated = "aggregated"


class Preset(StrEnum):
    vllm = "vllm"
    sglang = "sglang"
    dynamo = "dynamo"


class Signal(StrEnum):
    """Signals a preset reads from Prometheus; keys of ``metrics.overrides``.

    Named after the fields of ``goodput.observation.PoolObservation`` they fill.
    """

    arrival_rate_rps = "arrival_rate_rps"
    mean_input_tokens = "mean_input_tokens"
    mean_output_tokens = "mean_output_tokens"
    prompt_tokens_per_s = "prompt_tokens_per_s"
    generation_tokens_per_s = "generation_tokens_per_s"
    good_tokens_per_s = "good_tokens_per_s"
    ttft = "ttft"
    itl = "itl"
    running_requests = "running_requests"
    waiting_requests = "waiting_requests"
    kv_cache_usage = "kv_cache_usage"
    prefix_cache_hit_rate = "prefix_cache_hit_rate"
    ready_replicas = "ready_replicas"


class ScalingPolicyType(StrEnum):
    Replicas = "Replicas"
    Percent = "Percent"


class SelectPolicy(StrEnum):
    Max = "Max"
    Min = "Min"
    Disabled = "Disabled"


class TargetRef(ApiModel):
    """A workload with a ``scale`` subresource, in the policy's namespace."""

    api_version: StrictStr = Field(
        "apps/v1",
        min_length=1,
        max_length=MAX_NAME,
        description=(
            "API version of the scaled workload, e.g. apps/v1 or leaderworkerset.x-k8s.io/v1."
        ),
    )
    kind: StrictStr = Field(
        "Deployment",
        pattern=r"^[A-Z][A-Za-z0-9]*$",
        max_length=63,
        description=(
            "Kind of the scaled workload: any kind with a scale subresource "
            "(Deployment, StatefulSet, LeaderWorkerSet, ...)."
        ),
    )
    name: StrictStr = Field(
        min_length=1,
        max_length=MAX_NAME,
        description="Name of the workload, in the same namespace as the policy.",
    )


class Pool(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=_validations(
            cel(
                "self.minReplicas <= self.maxReplicas",
                "minReplicas must be less than or equal to maxReplicas",
                field_path=".maxReplicas",
                reason="FieldValueInvalid",
            )
        )
    )

    role: PoolRole = Field(
        description=(
            "What the pool's replicas do: 'prefill' (prompt processing; sets time to "
            "first token), 'decode' (token generation; sets inter-token latency) or "
            "'aggregated' (both in one replica, no disaggregation). Unique per policy."
        ),
    )
    target_ref: TargetRef = Field(
        description="Workload whose scale subresource this pool drives.",
    )
    gpus_per_replica: StrictInt | None = Field(
        None,
        ge=1,
        le=1024,  # wide expert parallelism: DeepSeek runs 144-GPU decode units
        description=(
            "GPUs one replica holds (TP x PP, or a whole expert-parallel group). Default: "
            "read from the pod template's nvidia.com/gpu limits (for a LeaderWorkerSet, "
            "the leader plus size - 1 workers of one group). Set it when the kind has no "
            "pod template the operator can read (a custom kind); when set, the API server "
            "checks minReplicas x gpusPerReplica against gpuBudget."
        ),
    )
    min_replicas: StrictInt = Field(
        1,
        ge=0,
        le=10000,
        description=(
            "Never scale below this many replicas. 0 lets the pool scale to zero "
            "when there is no traffic (requests then wait for startupDelay)."
        ),
    )
    max_replicas: StrictInt = Field(
        ge=1,
        le=10000,
        description="Never scale above this many replicas, whatever the budget allows.",
    )
    profile: ProfileName | None = Field(
        None,
        description=(
            "Name of the bundled performance profile of this pool's model, GPU and "
            "parallelism (e.g. 'llama-3.1-70b-h100-tp4'): the planner's prior before live "
            "measurements correct it, and the digital twin's physics. Required for the "
            "operator to plan: without it the policy holds (Ready=False, ProfileMissing); "
            "no other model is assumed."
        ),
    )

    @field_validator("max_replicas")
    @classmethod
    def _min_le_max(cls, v: int, info: Any) -> int:
        lo = info.data.get("min_replicas")
        if isinstance(lo, int) and lo > v:
            raise ValueError(f"minReplicas ({lo}) must be less than or equal to maxReplicas ({v})")
        return v


class KVCacheTier(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=_validations(
            cel(
                "self.minReplicas <= self.maxReplicas",
                "minReplicas must be less than or equal to maxReplicas",
                field_path=".maxReplicas",
                reason="FieldValueInvalid",
            )
        )
    )

    name: StrictStr = Field(
        min_length=1,
        max_length=63,
        pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$",
        description="Tier name, unique in the policy, e.g. cpu, disk, remote.",
    )
    target_ref: TargetRef = Field(
        description="Workload that serves this tier (e.g. a KV-cache server); scaled by replicas.",
    )
    capacity_per_replica_gib: StrictFloat = Field(
        gt=0,
        le=1048576,
        description="KV-cache capacity one replica of the tier adds, in GiB.",
    )
    bandwidth_gib_per_s: StrictFloat = Field(
        gt=0,
        le=100000,
        description=(
            "Read bandwidth from this tier into the GPUs, in GiB/s per replica; sets how "
            "fast a hit can be loaded instead of recomputed."
        ),
    )
    min_replicas: StrictInt = Field(
        0, ge=0, le=10000, description="Never scale the tier below this many replicas."
    )
    max_replicas: StrictInt = Field(
        ge=0, le=10000, description="Never scale the tier above this many replicas."
    )
    gpus_per_replica: StrictInt = Field(
        0,
        ge=0,
        le=1024,
        description="GPUs one tier replica holds; counted against gpuBudget (usually 0).",
    )

    @field_validator("max_replicas")
    @classmethod
    def _min_le_max(cls, v: int, info: Any) -> int:
        lo = info.data.get("min_replicas")
        if isinstance(lo, int) and lo > v:
            raise ValueError(f"minReplicas ({lo}) must be less than or equal to maxReplicas ({v})")
        return v


class KVCache(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=_validations(
            cel(
                "!has(self.tiers) || self.tiers.all(t, self.tiers.exists_one(u, u.name == t.name))",
                "tier names must be unique",
                field_path=".tiers",
                reason="FieldValueInvalid",
            )
        )
    )

    tiers: list[KVCacheTier] = Field(
        default_factory=list,
        max_length=MAX_TIERS,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
        },
        description=(
            "KV-cache offload tiers below GPU memory, fastest first (e.g. cpu, disk, "
            "remote). Empty: no tiers are managed."
        ),
    )

    @field_validator("tiers")
    @classmethod
    def _unique_names(cls, v: list[KVCacheTier]) -> list[KVCacheTier]:
        names = [t.name for t in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"tier names must be unique: duplicated {', '.join(dup)}")
        return v


class SLO(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=_validations(
            cel(
                "self.attainment > 0.0 && self.attainment <= 1.0",
                "attainment must be in (0, 1]",
                field_path=".attainment",
                reason="FieldValueInvalid",
            )
        )
    )

    ttft: Duration = Field(
        description=(
            "Time-to-first-token threshold: a request meets the SLO only if its first "
            "token arrives within this time, e.g. '500ms'."
        ),
    )
    itl: Duration = Field(
        description=(
            "Inter-token latency threshold: the request's mean time per output token "
            "after the first must not exceed it, e.g. '50ms'."
        ),
    )
    attainment: StrictFloat = Field(
        0.9,
        gt=0,
        le=1,
        description=(
            "Target fraction of requests meeting both thresholds, in (0, 1]; 0.9 is "
            "DistServe's convention."
        ),
    )

    @property
    def ttft_seconds(self) -> float:
        return parse_duration(self.ttft)

    @property
    def itl_seconds(self) -> float:
        return parse_duration(self.itl)


class Quality(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=_validations(
            cel(
                "!has(self.floor) || self.floor == 0.0 || has(self.query)",
                "floor needs a query: without one every answer scores 1",
                field_path=".floor",
                reason="FieldValueInvalid",
            )
        )
    )

    query: StrictStr | None = Field(
        None,
        min_length=1,
        max_length=MAX_PROMQL,
        description=(
            "PromQL returning the current answer-quality score in [0, 1] (one series); "
            "goodput is weighted by it. Unset: every answer scores 1."
        ),
    )
    floor: StrictFloat = Field(
        0.0,
        ge=0,
        le=1,
        description=(
            "Scores below this count as zero goodput (answers too poor to be worth "
            "serving fast). Needs query."
        ),
    )

    @model_validator(mode="after")
    def _floor_needs_query(self) -> Quality:
        if self.floor > 0 and self.query is None:
            raise ValueError("floor needs a query: without one every answer scores 1")
        return self


class SecretKeyRef(ApiModel):
    name: StrictStr = Field(
        min_length=1, max_length=MAX_NAME, description="Secret name, in the policy's namespace."
    )
    key: StrictStr = Field(
        "token", min_length=1, max_length=MAX_NAME, description="Key inside the Secret."
    )


class CASecretKeyRef(SecretKeyRef):
    key: StrictStr = Field(
        "ca.crt", min_length=1, max_length=MAX_NAME, description="Key inside the Secret."
    )


class PrometheusAuth(ApiModel):
    bearer_token_secret_ref: SecretKeyRef | None = Field(
        None, description="Secret key holding a bearer token sent as 'Authorization: Bearer'."
    )
    ca_secret_ref: CASecretKeyRef | None = Field(
        None, description="Secret key holding the PEM CA bundle that signs Prometheus's TLS cert."
    )
    insecure_skip_verify: StrictBool = Field(
        False, description="Skip TLS certificate verification (never in production)."
    )


FLEET_SIGNALS = frozenset({Signal.good_tokens_per_s})
"""Policy-wide signals: an override for them cannot be scoped to one pool."""


def override_keys() -> list[str]:
    """Keys ``metrics.overrides`` accepts: ``<signal>`` (every pool) or ``<role>.<signal>``."""
    bare = [s.value for s in Signal]
    scoped = [f"{r.value}.{s.value}" for r in PoolRole for s in Signal if s not in FLEET_SIGNALS]
    return bare + scoped


_OVERRIDE_KEY_LIST = "[" + ", ".join(f"'{k}'" for k in override_keys()) + "]"
_SIGNAL_NAMES = ", ".join(s.value for s in Signal)


class Metrics(ApiModel):
    prometheus_url: StrictStr = Field(
        "http://prometheus-operated.monitoring.svc:9090",
        pattern=r"^https?://[^\s]+$",
        max_length=2048,
        description="Base URL of the Prometheus HTTP API (Thanos and Mimir query URLs work too).",
    )
    auth: PrometheusAuth | None = Field(
        None, description="How to authenticate to Prometheus. Unset: no authentication."
    )
    preset: Preset = Field(
        Preset.vllm,
        description=(
            "Serving stack whose metric names to query: vllm, sglang or dynamo "
            "(the frontend's dynamo_* metrics)."
        ),
    )
    selectors: dict[str, Annotated[StrictStr, Field(max_length=1024)]] = Field(
        default_factory=dict,
        max_length=3,
        description=(
            "Extra PromQL label matchers per pool role, added to every query for that "
            'pool\'s series, e.g. decode: \'namespace="llm",model_name="llama-70b"\'. '
            "Keys must be roles of this policy's pools."
        ),
    )
    overrides: dict[str, Annotated[StrictStr, Field(min_length=1, max_length=MAX_PROMQL)]] = Field(
        default_factory=dict,
        max_length=32,
        json_schema_extra=_validations(
            cel(
                f"self.all(k, k in {_OVERRIDE_KEY_LIST})",
                "keys must be <signal> or <role>.<signal>, with signal one of " + _SIGNAL_NAMES,
                reason="FieldValueInvalid",
            )
        ),
        description=(
            "The user's own PromQL for one signal, replacing the preset's query. Key: "
            "<signal> (every pool) or <role>.<signal> (one pool; wins), signal one of "
            + _SIGNAL_NAMES
            + ". $selector and $window in the query are replaced by the pool's matchers "
            "and the window. ttft/itl must return per-le bucket rates; good_tokens_per_s "
            "(policy-wide) is an exact SLO-meeting token rate."
        ),
    )
    window: Duration = Field(
        "1m",
        description="Range of rate() and histogram windows; at least 4x the scrape interval.",
    )
    max_staleness: Duration = Field(
        "2m",
        description="Samples older than this count as missing; the operator then holds.",
    )

    @field_validator("overrides")
    @classmethod
    def _known_signals(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(v) - set(override_keys()))
        if unknown:
            raise ValueError(
                f"unknown key {', '.join(unknown)}: keys must be <signal> or "
                f"<role>.<signal>, with signal one of {_SIGNAL_NAMES}"
            )
        return v


class ScalingPolicy(ApiModel):
    type: ScalingPolicyType = Field(
        description="Replicas (absolute change) or Percent (of the current replicas)."
    )
    value: StrictInt = Field(ge=1, le=10000, description="Change allowed per period; > 0.")
    period_seconds: StrictInt = Field(
        ge=1, le=1800, description="Length of the period the change is counted over, in seconds."
    )


class ScalingRules(ApiModel):
    """HPA ``HPAScalingRules`` semantics, so platform teams read it without a manual."""

    stabilization_window_seconds: StrictInt = Field(
        0,
        ge=0,
        le=3600,
        description=(
            "Seconds of past recommendations considered: scale-up uses the lowest, "
            "scale-down the highest (HPA semantics). Default: 0 up, 300 down. For "
            "scaleDown it is also the planner's patience: recent demand, a lull and "
            "replicas that recent plans wanted are kept this long before GPUs are handed back."
        ),
    )
    select_policy: SelectPolicy = Field(
        SelectPolicy.Max,
        description=(
            "Which policy wins when several apply: Max (largest change), Min (smallest) "
            "or Disabled (never scale in this direction)."
        ),
    )
    policies: list[ScalingPolicy] = Field(
        default_factory=list,
        max_length=10,
        description=(
            "Step limits per period. Default up: 100% or 4 replicas per 15s; down: "
            "100% per 15s. An explicit empty list means no step limit."
        ),
    )


SCALE_UP_DEFAULTS: dict[str, Any] = {
    "stabilizationWindowSeconds": 0,
    "selectPolicy": "Max",
    "policies": [
        {"type": "Percent", "value": 100, "periodSeconds": 15},
        {"type": "Replicas", "value": 4, "periodSeconds": 15},
    ],
}
"""HPA's scale-up defaults; the CRD writes the same values into stored objects."""

SCALE_DOWN_DEFAULTS: dict[str, Any] = {
    "stabilizationWindowSeconds": 300,
    "selectPolicy": "Max",
    "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
}
"""HPA's scale-down defaults."""


def _default_scale_up() -> ScalingRules:
    return ScalingRules.model_validate(SCALE_UP_DEFAULTS)


def _default_scale_down() -> ScalingRules:
    return ScalingRules.model_validate(SCALE_DOWN_DEFAULTS)


class Behavior(ApiModel):
    interval: Duration = Field(
        "15s", description="Control-loop period: how often the operator observes and decides."
    )
    scale_up: ScalingRules = Field(
        default_factory=_default_scale_up,
        description="Scale-up stabilization and step limits (HPA behavior.scaleUp semantics).",
    )
    scale_down: ScalingRules = Field(
        default_factory=_default_scale_down,
        description="Scale-down stabilization and step limits (HPA behavior.scaleDown semantics).",
    )
    forecast_horizon: NonNegativeDuration = Field(
        "2m",
        description=(
            "How far ahead demand is forecast; cover startupDelay so capacity is ready "
            "when the load arrives. '0s': plan for the current load only."
        ),
    )
    startup_delay: NonNegativeDuration = Field(
        "60s",
        description=(
            "Time from a new replica's creation until it serves (image pull, weight "
            "load, warm-up); the planner does not count it as capacity before that."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _direction_defaults(cls, data: Any) -> Any:
        """Fill a partly given scaleUp/scaleDown per direction, as the CRD's defaults do."""
        if not isinstance(data, Mapping):
            return data
        out = dict(data)
        for wire, snake, defaults in (
            ("scaleUp", "scale_up", SCALE_UP_DEFAULTS),
            ("scaleDown", "scale_down", SCALE_DOWN_DEFAULTS),
        ):
            key = wire if wire in out else snake if snake in out else None
            if key is not None and isinstance(out[key], Mapping):
                given = dict(out[key])
                for name, field in ScalingRules.model_fields.items():
                    if name not in given and field.alias not in given:
                        given[field.alias or name] = defaults[field.alias or name]
                out[key] = given
        return out


class GoodputPolicySpec(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=_validations(
            cel(
                "(size(self.pools) == 1 && self.pools[0].role == 'aggregated') || "
                "(size(self.pools) == 2 && self.pools.exists(p, p.role == 'prefill') "
                "&& self.pools.exists(p, p.role == 'decode'))",
                "pools must be either one prefill and one decode pool, or one aggregated pool",
                field_path=".pools",
                reason="FieldValueInvalid",
            ),
            cel(
                "self.pools.all(p, self.pools.exists_one(q, q.role == p.role))",
                "pool roles must be unique",
                field_path=".pools",
                reason="FieldValueInvalid",
            ),
            cel(
                "self.pools.filter(p, has(p.gpusPerReplica))"
                ".map(p, p.minReplicas * p.gpusPerReplica).sum() + "
                "(has(self.kvCache) && has(self.kvCache.tiers) ? "
                "self.kvCache.tiers.map(t, t.minReplicas * t.gpusPerReplica).sum() : 0) "
                "<= self.gpuBudget",
                "the minimum replicas need more GPUs than gpuBudget: the sum over pools and tiers "
                "of minReplicas x gpusPerReplica must not exceed gpuBudget",
                field_path=".gpuBudget",
                reason="FieldValueInvalid",
            ),
            cel(
                "self.pools.all(p, !has(p.gpusPerReplica) || p.gpusPerReplica <= self.gpuBudget)",
                "a pool's gpusPerReplica must not exceed gpuBudget: "
                "not even one replica of it would fit",
                field_path=".pools",
                reason="FieldValueInvalid",
            ),
            cel(
                "!has(self.metrics) || !has(self.metrics.selectors) || "
                "self.metrics.selectors.all(k, self.pools.exists(p, p.role == k))",
                "selector keys must be roles of this policy's pools",
                field_path=".metrics.selectors",
                reason="FieldValueInvalid",
            ),
        )
    )

    mode: Mode = Field(
        Mode.Recommend,
        description=(
            "Enforce: scale the targets. Recommend: compute the plan and publish it in "
            "status and events, change nothing (the safe way to start)."
        ),
    )
    gpu_budget: StrictInt = Field(
        ge=1,
        le=65536,
        description=(
            "Total GPUs this policy may hold at any moment across all its pools and tiers "
            "(replicas x gpusPerReplica), including while scaling. GPUs that add no "
            "goodput are handed back."
        ),
    )
    pools: list[Pool] = Field(
        min_length=1,
        max_length=MAX_POOLS,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["role"],
        },
        description=(
            "The serving pools: one prefill and one decode pool (disaggregated serving), "
            "or one aggregated pool."
        ),
    )
    kv_cache: KVCache = Field(
        default_factory=KVCache,
        description="KV-cache offload tiers the operator sizes together with the pools.",
    )
    slo: SLO = Field(
        description="Latency thresholds a request must meet to count, and the attainment target.",
    )
    quality: Quality = Field(
        default_factory=Quality,
        description="Optional answer-quality signal that weights goodput.",
    )
    metrics: Metrics = Field(
        default_factory=Metrics,
        description="Where and how to read the serving stack's metrics.",
    )
    behavior: Behavior = Field(
        default_factory=Behavior,
        description="Control-loop timing, HPA-style stabilization and step limits, forecast.",
    )

    @model_validator(mode="after")
    def _cross_field(self) -> GoodputPolicySpec:
        roles = [p.role for p in self.pools]
        dup = sorted({str(r) for r in roles if roles.count(r) > 1})
        if dup:
            raise ValueError(f"pools: pool roles must be unique: duplicated {', '.join(dup)}")
        if sorted(roles) not in (["aggregated"], ["decode", "prefill"]):
            raise ValueError(
                "pools must be either one prefill and one decode pool, or one aggregated pool"
            )
        floor = sum(p.min_replicas * p.gpus_per_replica for p in self.pools if p.gpus_per_replica)
        floor += sum(t.min_replicas * t.gpus_per_replica for t in self.kv_cache.tiers)
        if floor > self.gpu_budget:
            raise ValueError(
                f"the minimum replicas need {floor} GPUs (sum of minReplicas x "
                f"gpusPerReplica over pools and tiers), more than gpuBudget ({self.gpu_budget})"
            )
        for p in self.pools:
            if p.gpus_per_replica is not None and p.gpus_per_replica > self.gpu_budget:
                raise ValueError(
                    f"pools: the {p.role} pool's gpusPerReplica ({p.gpus_per_replica}) must not "
                    f"exceed gpuBudget ({self.gpu_budget}): not even one replica of it would fit"
                )
        stray = sorted(set(self.metrics.selectors) - {str(r) for r in roles})
        if stray:
            raise ValueError(
                f"metrics.selectors: keys must be roles of this policy's pools, not "
                f"{', '.join(stray)}"
            )
        return self

    def pool(self, role: PoolRole) -> Pool | None:
        return next((p for p in self.pools if p.role == role), None)


class ObjectMeta(BaseModel):
    """The metadata fields the operator reads; the rest is kept as is."""

    model_config = ConfigDict(extra="allow")
    name: str
    namespace: str = "default"


class GoodputPolicy(BaseModel):
    """A whole GoodputPolicy object as the API server stores it."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")
    api_version: Literal["goodput.dev/v1alpha1"] = Field("goodput.dev/v1alpha1", alias="apiVersion")
    kind: Literal["GoodputPolicy"] = "GoodputPolicy"
    metadata: ObjectMeta
    spec: GoodputPolicySpec
    status: GoodputPolicyStatus | None = None

    @classmethod
    def from_manifest(cls, doc: Mapping[str, Any]) -> GoodputPolicy:
        """Validate a manifest by its wire (camelCase) names only, as the API server does."""
        return cls.model_validate(doc, by_alias=True, by_name=False)

    def to_manifest(self) -> dict[str, Any]:
        """The object as ``kubectl apply`` wants it; unset optionals are left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def format_validation_error(err: ValidationError, prefix: str = "") -> list[str]:
    """Kubernetes-style "spec.pools[0].maxReplicas: message" lines for a ValidationError.

    The operator uses the same text in its InvalidPolicy condition and event.
    """
    lines = []
    for e in err.errors(include_url=False):
        path = prefix
        for part in e["loc"]:
            if isinstance(part, int):
                path += f"[{part}]"
            elif str(part).startswith("function-after") or str(part) in ("str", "int"):
                continue
            else:
                path += f".{part}" if path else str(part)
        lines.append(f"{path or '<root>'}: {e['msg']}")
    return lines


__all__ = [
    "CATEGORIES",
    "DURATION_PATTERN",
    "GROUP",
    "KIND",
    "PLURAL",
    "SCALE_DOWN_DEFAULTS",
    "SCALE_UP_DEFAULTS",
    "SHORT_NAMES",
    "SINGULAR",
    "SLO",
    "VERSION",
    "Behavior",
    "CASecretKeyRef",
    "Duration",
    "GoodputPolicy",
    "GoodputPolicySpec",
    "KVCache",
    "KVCacheTier",
    "Metrics",
    "Mode",
    "ObjectMeta",
    "Pool",
    "PoolRole",
    "Preset",
    "PrometheusAuth",
    "Quality",
    "ScalingPolicy",
    "ScalingPolicyType",
    "ScalingRules",
    "SecretKeyRef",
    "SelectPolicy",
    "Signal",
    "TargetRef",
    "format_validation_error",
    "parse_duration",
]
