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
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
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


MAX_VARIANTS = 4
DNS_LABEL = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"
DEFAULT_VARIANT = "default"
"""The name :meth:`GoodputPolicySpec.variant_specs` gives the one variant of a policy that
declares top-level ``pools``."""


def _pool_shape_rules(prefix: str) -> list[dict[str, str]]:
    """The pool-shape CEL rules, for a policy's ``pools`` and for each variant's."""
    guard = "!has(self.pools) || " if prefix == "policy" else ""
    return [
        cel(
            guard + "(size(self.pools) == 1 && self.pools[0].role == 'aggregated') || "
            "(size(self.pools) == 2 && self.pools.exists(p, p.role == 'prefill') "
            "&& self.pools.exists(p, p.role == 'decode'))",
            "pools must be either one prefill and one decode pool, or one aggregated pool",
            field_path=".pools",
            reason="FieldValueInvalid",
        ),
        cel(
            guard + "self.pools.all(p, self.pools.exists_one(q, q.role == p.role))",
            "pool roles must be unique",
            field_path=".pools",
            reason="FieldValueInvalid",
        ),
    ]


def _check_pool_shape(pools: list[Pool], where: str) -> None:
    roles = [p.role for p in pools]
    dup = sorted({str(r) for r in roles if roles.count(r) > 1})
    if dup:
        raise ValueError(f"{where}: pool roles must be unique: duplicated {', '.join(dup)}")
    if sorted(roles) not in (["aggregated"], ["decode", "prefill"]):
        raise ValueError(
            f"{where} must be either one prefill and one decode pool, or one aggregated pool"
        )


class ValueModel(ApiModel):
    """What an answer is worth to the application, so the planner can weigh a slower,
    better model against a faster, worse one.

    Value per answer is ``p x rightAnswer - (1 - p) x wrongAnswerCost x rightAnswer``,
    ``p`` the variant's quality (the probability that an answer is right). With
    ``wrongAnswerCost`` 0 this is quality-weighted goodput, where a 1.01-1.11x quality
    gain never pays for a 4.5-8x capacity loss (issue 13); a wrong answer that costs
    something is what can make the bigger model worth its GPUs."""

    right_answer: StrictFloat = Field(
        1.0,
        gt=0,
        le=1e9,
        description=(
            "Value of one right answer, in any unit (only ratios matter for the decision; "
            "status reports value goodput in this unit per second)."
        ),
    )
    wrong_answer_cost: StrictFloat = Field(
        0.0,
        ge=0,
        le=1e6,
        description=(
            "c: cost of one wrong answer, in units of a right answer's value (3: a wrong "
            "answer undoes three right ones, e.g. financial analysis; 0: a wrong answer is "
            "merely worthless, e.g. a chatbot whose user asks again). A variant with quality "
            "p loses value per answer once c > p / (1 - p)."
        ),
    )
    quality_floor: StrictFloat = Field(
        0.0,
        ge=0,
        le=1,
        description=(
            "A variant whose quality is below this gets no traffic (beyond its minShare) "
            "and its tokens count zero. Variants only; a single-model policy has "
            "quality.floor."
        ),
    )


MAX_QUALITY_CLASSES = 4


class QualityClass(ApiModel):
    """Quality for long inputs: requests with at least ``minInputTokens`` input tokens
    are right with probability ``score`` (4-bit models lose far more at 64K-token inputs
    than at short ones: arXiv 2505.20276)."""

    min_input_tokens: StrictInt = Field(
        ge=1,
        le=10_000_000,
        description="Requests with at least this many input tokens are in this class.",
    )
    score: StrictFloat = Field(
        ge=0, le=1, description="Probability that an answer in this class is right, in [0, 1]."
    )
    source: StrictStr = Field(
        min_length=1,
        max_length=1024,
        description="Where the score comes from (a long-context benchmark, an eval run).",
    )


class VariantQuality(ApiModel):
    """A variant's quality: the probability that one of its answers is right."""

    model_config = ConfigDict(
        json_schema_extra=_validations(
            cel(
                "!has(self.classes) || self.classes.map(c, c.minInputTokens).isSorted()",
                "classes must be in increasing order of minInputTokens",
                field_path=".classes",
                reason="FieldValueInvalid",
            ),
            cel(
                "has(self.score) != has(self.query)",
                "quality needs exactly one of score (a static figure, with its source) or "
                "query (live PromQL returning a score in [0, 1])",
                reason="FieldValueInvalid",
            ),
            cel(
                "!has(self.score) || has(self.source)",
                "a static score needs a source: where the number comes from (e.g. "
                "'Meta Llama-3.1-70B-Instruct model card, MMLU-Pro')",
                field_path=".source",
                reason="FieldValueRequired",
            ),
        )
    )

    score: StrictFloat | None = Field(
        None,
        ge=0,
        le=1,
        description=(
            "Static quality in [0, 1]: the fraction of answers that are right on a benchmark "
            "that stands for the application (e.g. 0.664, Llama-3.1-70B-Instruct's MMLU-Pro). "
            "Needs source."
        ),
    )
    source: StrictStr | None = Field(
        None,
        min_length=1,
        max_length=1024,
        description="Where the static score comes from (benchmark, model card, eval run).",
    )
    query: StrictStr | None = Field(
        None,
        min_length=1,
        max_length=MAX_PROMQL,
        description=(
            "PromQL returning this variant's current quality in [0, 1] (one series), e.g. an "
            "evaluation job's or user feedback's right-answer rate. The operator holds "
            "while it is missing."
        ),
    )

    classes: list[QualityClass] = Field(
        default_factory=list,
        max_length=MAX_QUALITY_CLASSES,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["minInputTokens"],
        },
        description=(
            "Quality by request class, in increasing order of minInputTokens: a request with "
            "at least that many input tokens is right with the class's score; shorter ones "
            "with score or query. The planner weights each class by the share of requests "
            "in it (input lengths exponential around the observed mean)."
        ),
    )

    @model_validator(mode="after")
    def _one_of(self) -> VariantQuality:
        if (self.score is None) == (self.query is None):
            raise ValueError(
                "quality needs exactly one of score (a static figure, with its source) or "
                "query (live PromQL returning a score in [0, 1])"
            )
        if self.score is not None and self.source is None:
            raise ValueError(
                "source: a static score needs a source: where the number comes from (e.g. "
                "'Meta Llama-3.1-70B-Instruct model card, MMLU-Pro')"
            )
        thresholds = [c.min_input_tokens for c in self.classes]
        if thresholds != sorted(set(thresholds)):
            raise ValueError(
                "classes: classes must be in increasing order of minInputTokens, each "
                f"threshold once (got {thresholds})"
            )
        return self

    def class_scores(self) -> list[tuple[int, float]]:
        """(minInputTokens, score) per request class, in increasing order."""
        return [(c.min_input_tokens, c.score) for c in self.classes]


class BackendKind(StrEnum):
    Service = "Service"
    InferencePool = "InferencePool"


class BackendRef(ApiModel):
    """The Gateway API HTTPRoute backendRef that serves one variant (matched by group,
    kind and name; the operator writes only the weights of the backendRefs it owns)."""

    model_config = ConfigDict(
        json_schema_extra=_validations(
            cel(
                "self.kind == 'Service' ? self.group == '' : self.group != ''",
                "a Service backendRef has group '' (the core API group); an InferencePool "
                "names its group, e.g. inference.networking.k8s.io",
                field_path=".group",
                reason="FieldValueInvalid",
            )
        )
    )

    group: StrictStr = Field(
        "",
        max_length=MAX_NAME,
        pattern=r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        description=(
            "API group of the backend, as in the HTTPRoute. Default: '' (the core group, "
            "for a Service); inference.networking.k8s.io for an InferencePool."
        ),
    )
    kind: BackendKind = Field(
        BackendKind.Service, description="Kind of the backend: Service or InferencePool."
    )
    name: StrictStr = Field(
        min_length=1,
        max_length=MAX_NAME,
        description="Name of the backend, in the policy's namespace.",
    )

    @model_validator(mode="after")
    def _group_fits_kind(self) -> BackendRef:
        if (self.kind is BackendKind.Service) != (self.group == ""):
            raise ValueError(
                "group: a Service backendRef has group '' (the core API group); an "
                "InferencePool names its group, e.g. inference.networking.k8s.io"
            )
        return self


class VariantMetrics(ApiModel):
    selectors: dict[str, Annotated[StrictStr, Field(max_length=1024)]] = Field(
        default_factory=dict,
        max_length=3,
        description=(
            "PromQL label matchers per pool role that isolate this variant's series, e.g. "
            "decode: 'model_name=\"llama-70b\"'; joined to spec.metrics.selectors of the "
            "same role. Keys must be roles of this variant's pools."
        ),
    )


class Variant(ApiModel):
    """One model variant of the service (e.g. Llama-3.1-70B FP8, or 405B INT4): its own
    pools and quality, a backend of the route, a share of the traffic."""

    model_config = ConfigDict(
        json_schema_extra=_validations(
            *_pool_shape_rules("variant"),
            cel(
                "self.minShare <= self.maxShare",
                "minShare must be less than or equal to maxShare",
                field_path=".maxShare",
                reason="FieldValueInvalid",
            ),
            cel(
                "!has(self.metrics) || !has(self.metrics.selectors) || "
                "self.metrics.selectors.all(k, self.pools.exists(p, p.role == k))",
                "selector keys must be roles of this variant's pools",
                field_path=".metrics.selectors",
                reason="FieldValueInvalid",
            ),
        )
    )

    name: StrictStr = Field(
        min_length=1,
        max_length=63,
        pattern=DNS_LABEL,
        description="Variant name (a DNS label), unique in the policy, e.g. llama-70b.",
    )
    pools: list[Pool] = Field(
        min_length=1,
        max_length=MAX_POOLS,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["role"],
        },
        description=(
            "This variant's serving pools: one prefill and one decode pool, or one "
            "aggregated pool (the same schema as spec.pools)."
        ),
    )
    quality: VariantQuality = Field(
        description=(
            "Probability that one of this variant's answers is right: a static score with "
            "its source, or live PromQL."
        ),
    )
    backend_ref: BackendRef | None = Field(
        None,
        description=(
            "The HTTPRoute backendRef this variant is (a Service or an InferencePool). "
            "Required when trafficSplit.httpRouteRef is set."
        ),
    )
    min_share: StrictInt = Field(
        0, ge=0, le=100, description="Least percent of the traffic this variant gets."
    )
    max_share: StrictInt = Field(
        100, ge=0, le=100, description="Most percent of the traffic this variant gets."
    )
    metrics: VariantMetrics = Field(
        default_factory=VariantMetrics,
        description="Label matchers that isolate this variant's series.",
    )

    @model_validator(mode="after")
    def _cross_field(self) -> Variant:
        _check_pool_shape(self.pools, "pools")
        if self.min_share > self.max_share:
            raise ValueError(
                f"maxShare: minShare ({self.min_share}) must be less than or equal to "
                f"maxShare ({self.max_share})"
            )
        stray = sorted(set(self.metrics.selectors) - {str(p.role) for p in self.pools})
        if stray:
            raise ValueError(
                "metrics.selectors: selector keys must be roles of this variant's pools, "
                f"not {', '.join(stray)}"
            )
        return self


class HTTPRouteRef(ApiModel):
    name: StrictStr = Field(
        min_length=1,
        max_length=MAX_NAME,
        description="Name of the Gateway API HTTPRoute, in the policy's namespace.",
    )


class TrafficSplit(ApiModel):
    http_route_ref: HTTPRouteRef | None = Field(
        None,
        description=(
            "The HTTPRoute whose backendRef weights carry the variants' shares (written in "
            "Enforce mode). Unset: the shares are published in status only."
        ),
    )


_HAS_VARIANTS = "has(self.variants)"
_VARIANT_POOLS = (
    "self.variants.map(v, v.pools.filter(p, has(p.gpusPerReplica))"
    ".map(p, p.minReplicas * p.gpusPerReplica).sum()).sum()"
)


class GoodputPolicySpec(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=_validations(
            cel(
                "has(self.pools) != has(self.variants)",
                "declare either pools (one model) or variants (several variants of the "
                "service, each with its pools), exactly one of the two",
                reason="FieldValueInvalid",
            ),
            *_pool_shape_rules("policy"),
            cel(
                "(has(self.pools) ? self.pools.filter(p, has(p.gpusPerReplica))"
                ".map(p, p.minReplicas * p.gpusPerReplica).sum() : 0) + "
                f"({_HAS_VARIANTS} ? {_VARIANT_POOLS} : 0) + "
                "(has(self.kvCache) && has(self.kvCache.tiers) ? "
                "self.kvCache.tiers.map(t, t.minReplicas * t.gpusPerReplica).sum() : 0) "
                "<= self.gpuBudget",
                "the minimum replicas need more GPUs than gpuBudget: the sum over pools (of "
                "every variant) and tiers of minReplicas x gpusPerReplica must not exceed "
                "gpuBudget",
                field_path=".gpuBudget",
                reason="FieldValueInvalid",
            ),
            cel(
                "(!has(self.pools) || self.pools.all(p, !has(p.gpusPerReplica) || "
                "p.gpusPerReplica <= self.gpuBudget)) && "
                f"(!{_HAS_VARIANTS} || self.variants.all(v, v.pools.all(p, "
                "!has(p.gpusPerReplica) || p.gpusPerReplica <= self.gpuBudget)))",
                "a pool's gpusPerReplica must not exceed gpuBudget: "
                "not even one replica of it would fit",
                field_path=".pools",
                reason="FieldValueInvalid",
            ),
            cel(
                "!has(self.metrics) || !has(self.metrics.selectors) || "
                "self.metrics.selectors.all(k, "
                "(has(self.pools) && self.pools.exists(p, p.role == k)) || "
                f"({_HAS_VARIANTS} && self.variants.exists(v, v.pools.exists(p, p.role == k))))",
                "selector keys must be roles of this policy's pools",
                field_path=".metrics.selectors",
                reason="FieldValueInvalid",
            ),
            cel(
                f"!{_HAS_VARIANTS} || "
                "self.variants.all(v, self.variants.exists_one(w, w.name == v.name))",
                "variant names must be unique",
                field_path=".variants",
                reason="FieldValueInvalid",
            ),
            cel(
                f"!{_HAS_VARIANTS} || self.variants.all(v, v.pools.all(p, "
                "self.variants.all(w, w.name == v.name || w.pools.all(q, "
                "q.targetRef.name != p.targetRef.name || q.targetRef.kind != p.targetRef.kind))))",
                "a targetRef belongs to one variant: two variants scale the same workload",
                field_path=".variants",
                reason="FieldValueInvalid",
            ),
            cel(
                f"!{_HAS_VARIANTS} || (self.variants.map(v, v.minShare).sum() <= 100 && "
                "self.variants.map(v, v.maxShare).sum() >= 100)",
                "shares cannot add up to 100 percent: the variants' minShare must sum to at "
                "most 100 and their maxShare to at least 100",
                field_path=".variants",
                reason="FieldValueInvalid",
            ),
            cel(
                f"!{_HAS_VARIANTS} || self.variants.all(v, !has(v.backendRef) || "
                "self.variants.exists_one(w, has(w.backendRef) && "
                "w.backendRef.name == v.backendRef.name && w.backendRef.kind == v.backendRef.kind "
                "&& w.backendRef.group == v.backendRef.group))",
                "backendRefs must be unique: each variant is its own backend of the route",
                field_path=".variants",
                reason="FieldValueInvalid",
            ),
            cel(
                "!has(self.trafficSplit) || !has(self.trafficSplit.httpRouteRef) || "
                f"({_HAS_VARIANTS} && self.variants.all(v, has(v.backendRef)))",
                "trafficSplit.httpRouteRef needs variants, each with its backendRef",
                field_path=".trafficSplit.httpRouteRef",
                reason="FieldValueInvalid",
            ),
            cel(
                f"!{_HAS_VARIANTS} || !has(self.quality) || !has(self.quality.query)",
                "with variants, quality is per variant (variants[].quality), not quality.query",
                field_path=".quality.query",
                reason="FieldValueInvalid",
            ),
            cel(
                f"!{_HAS_VARIANTS} || !has(self.kvCache) || !has(self.kvCache.tiers) || "
                "size(self.kvCache.tiers) == 0",
                "kvCache tiers are not supported with variants yet: a tier serves one model's "
                "KV cache",
                field_path=".kvCache.tiers",
                reason="FieldValueInvalid",
            ),
            cel(
                f"{_HAS_VARIANTS} || !has(self.value) || !has(self.value.qualityFloor) || "
                "self.value.qualityFloor == 0.0",
                "value.qualityFloor applies to variants; a single-model policy uses quality.floor",
                field_path=".value.qualityFloor",
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
            "(replicas x gpusPerReplica), including while scaling, summed over every "
            "variant. GPUs that add no goodput are handed back."
        ),
    )
    pools: list[Pool] = Field(
        default_factory=list,
        min_length=1,
        max_length=MAX_POOLS,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["role"],
        },
        description=(
            "The serving pools of a single-model policy: one prefill and one decode pool "
            "(disaggregated serving), or one aggregated pool. Set either pools or variants."
        ),
    )
    variants: list[Variant] = Field(
        default_factory=list,
        min_length=1,
        max_length=MAX_VARIANTS,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
        },
        description=(
            "Several model variants of one service (e.g. Llama-3.1-70B and 405B INT4), each "
            "with its pools and quality, under the one gpuBudget; traffic is split between "
            "them (trafficSplit) to maximize value-weighted goodput (value). Set either "
            "pools or variants."
        ),
    )
    value: ValueModel = Field(
        default_factory=ValueModel,
        description=(
            "The application's value model: value of a right answer, cost of a wrong one, "
            "quality floor. It decides between variants of different speed and quality."
        ),
    )
    traffic_split: TrafficSplit = Field(
        default_factory=TrafficSplit,
        description="Where the variants' traffic shares are written (a Gateway API HTTPRoute).",
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
        description=(
            "Optional answer-quality signal that weights goodput (single-model policies; "
            "variants declare their own)."
        ),
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
        if bool(self.pools) == bool(self.variants):
            raise ValueError(
                "pools, variants: declare either pools (one model) or variants (several "
                "variants of the service, each with its pools), exactly one of the two"
                + (": both are set" if self.pools else ": neither is set")
            )
        if self.pools:
            _check_pool_shape(self.pools, "pools")
        all_pools = [p for v in self.variants for p in v.pools] or list(self.pools)
        floor = sum(p.min_replicas * p.gpus_per_replica for p in all_pools if p.gpus_per_replica)
        floor += sum(t.min_replicas * t.gpus_per_replica for t in self.kv_cache.tiers)
        if floor > self.gpu_budget:
            raise ValueError(
                f"the minimum replicas need {floor} GPUs (sum of minReplicas x "
                "gpusPerReplica over pools"
                + (" of every variant" if self.variants else "")
                + f" and tiers), more than gpuBudget ({self.gpu_budget})"
            )
        for p in all_pools:
            if p.gpus_per_replica is not None and p.gpus_per_replica > self.gpu_budget:
                raise ValueError(
                    f"pools: the {p.role} pool's gpusPerReplica ({p.gpus_per_replica}) must not "
                    f"exceed gpuBudget ({self.gpu_budget}): not even one replica of it would fit"
                )
        stray = sorted(set(self.metrics.selectors) - {str(p.role) for p in all_pools})
        if stray:
            raise ValueError(
                f"metrics.selectors: keys must be roles of this policy's pools, not "
                f"{', '.join(stray)}"
            )
        if self.variants:
            self._check_variants()
        else:
            if self.traffic_split.http_route_ref is not None:
                raise ValueError(
                    "trafficSplit.httpRouteRef needs variants, each with its backendRef"
                )
            if self.value.quality_floor > 0:
                raise ValueError(
                    "value.qualityFloor applies to variants; a single-model policy uses "
                    "quality.floor"
                )
        return self

    def _check_variants(self) -> None:
        names = [v.name for v in self.variants]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"variants: variant names must be unique: duplicated {', '.join(dup)}")
        owner: dict[tuple[str, str], str] = {}
        for v in self.variants:
            for p in v.pools:
                key = (p.target_ref.kind, p.target_ref.name)
                if owner.setdefault(key, v.name) != v.name:
                    raise ValueError(
                        f"variants: a targetRef belongs to one variant: {key[0]}/{key[1]} is "
                        f"scaled by both {owner[key]} and {v.name}"
                    )
        lo = sum(v.min_share for v in self.variants)
        hi = sum(v.max_share for v in self.variants)
        if lo > 100 or hi < 100:
            raise ValueError(
                "variants: shares cannot add up to 100 percent: the variants' minShare must "
                f"sum to at most 100 (they sum to {lo}) and their maxShare to at least 100 "
                f"(they sum to {hi})"
            )
        refs = [
            (v.backend_ref.group, v.backend_ref.kind.value, v.backend_ref.name)
            for v in self.variants
            if v.backend_ref is not None
        ]
        dup_refs = sorted({r for r in refs if refs.count(r) > 1})
        if dup_refs:
            shown = ", ".join(f"{k}/{n}" for _, k, n in dup_refs)
            raise ValueError(
                "variants: backendRefs must be unique: each variant is its own backend of "
                f"the route (duplicated {shown})"
            )
        if self.traffic_split.http_route_ref is not None:
            bare = [v.name for v in self.variants if v.backend_ref is None]
            if bare:
                raise ValueError(
                    "trafficSplit.httpRouteRef needs variants, each with its backendRef "
                    f"(missing in {', '.join(bare)})"
                )
        if self.quality.query is not None:
            raise ValueError(
                "quality.query: with variants, quality is per variant (variants[].quality), "
                "not quality.query"
            )
        if self.kv_cache.tiers:
            raise ValueError(
                "kvCache.tiers: kvCache tiers are not supported with variants yet: a tier "
                "serves one model's KV cache"
            )

    @model_serializer(mode="wrap")
    def _omit_empty(self, handler: SerializerFunctionWrapHandler) -> Any:
        """An unset ``pools`` or ``variants`` is left out, not written as ``[]``: the
        schema refuses an empty list of either (exactly one of the two is declared)."""
        data = handler(self)
        if isinstance(data, dict):
            for key in ("pools", "variants"):
                if data.get(key) == []:
                    del data[key]
        return data

    def pool(self, role: PoolRole) -> Pool | None:
        return next((p for p in self.pools if p.role == role), None)

    def variant(self, name: str) -> Variant | None:
        return next((v for v in self.variants if v.name == name), None)

    def variant_specs(self) -> dict[str, GoodputPolicySpec]:
        """Each variant as a single-model spec, in declaration order, so the Prometheus
        observation source and the single-model planner run per variant unchanged.

        A variant's projection has its pools, ``metrics.selectors`` with the variant's
        matchers joined (by a comma) to the policy's of the same role, ``quality.query``
        = the variant's live query (a static score is applied by the variant planner, not
        here: quality that only multiplies one model's goodput changes none of its
        decisions), and the policy's budget, SLO, behavior, mode and value model;
        ``trafficSplit`` and ``value.qualityFloor`` stay with the policy. A single-model
        policy returns itself under :data:`DEFAULT_VARIANT` (``"default"``)."""
        if not self.variants:
            return {DEFAULT_VARIANT: self}
        out: dict[str, GoodputPolicySpec] = {}
        for v in self.variants:
            selectors = dict(self.metrics.selectors)
            for role, extra in v.metrics.selectors.items():
                base = selectors.get(role, "")
                selectors[role] = f"{base},{extra}" if base and extra else base or extra
            roles = {str(p.role) for p in v.pools}
            selectors = {k: s for k, s in selectors.items() if k in roles}
            out[v.name] = self.model_copy(
                update={
                    "pools": list(v.pools),
                    "variants": [],
                    "metrics": self.metrics.model_copy(update={"selectors": selectors}),
                    "quality": Quality(query=v.quality.query),
                    "value": self.value.model_copy(update={"quality_floor": 0.0}),
                    "traffic_split": TrafficSplit(),
                }
            )
        return out


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
    "DEFAULT_VARIANT",
    "DURATION_PATTERN",
    "GROUP",
    "KIND",
    "MAX_VARIANTS",
    "PLURAL",
    "SCALE_DOWN_DEFAULTS",
    "SCALE_UP_DEFAULTS",
    "SHORT_NAMES",
    "SINGULAR",
    "SLO",
    "VERSION",
    "BackendKind",
    "BackendRef",
    "Behavior",
    "CASecretKeyRef",
    "Duration",
    "GoodputPolicy",
    "GoodputPolicySpec",
    "HTTPRouteRef",
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
    "QualityClass",
    "ScalingPolicy",
    "ScalingPolicyType",
    "ScalingRules",
    "SecretKeyRef",
    "SelectPolicy",
    "Signal",
    "TargetRef",
    "TrafficSplit",
    "ValueModel",
    "Variant",
    "VariantMetrics",
    "VariantQuality",
    "format_validation_error",
    "parse_duration",
]
