"""Pydantic models of the GoodputPolicy status, written by the operator.

Every field the operator writes is declared here: the API server prunes undeclared
status fields silently. The status schema is deliberately loose (types, no bounds, no
enums on free-form reasons) so that a status patch is never refused: a refused patch
would hide the very state a user needs to see.

State that must survive an operator restart (last scale times, the recommendations
inside the stabilization window) lives here too, not only in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field, WithJsonSchema

from goodput.api._base import ApiModel
from goodput.reasons import Limit, Reason

# metav1.Condition's reason rule; the pydantic side is stricter (the Reason enum).
_REASON_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": 1024,
    "pattern": r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
}
ReasonCode = Annotated[Reason, WithJsonSchema(_REASON_SCHEMA)]
# A condition's reason is a Reason or, for ScalingLimited, the Limit that bound it.
ConditionReason = Annotated[Reason | Limit, WithJsonSchema(_REASON_SCHEMA)]
LimitCode = Annotated[Limit, WithJsonSchema({"type": "string"})]
_REASONS = ", ".join(r.value for r in Reason)
_LIMITS = ", ".join(x.value for x in Limit)
LIMIT_DOCS = (
    "None: nothing bound the plan (demand and the SLO sized it); "
    "GpuBudget: no pool below its maxReplicas could fit one more replica that adds goodput "
    "in gpuBudget; "
    "MaxReplicas: a pool that would need more sits at its maxReplicas (bindingPool); "
    "MinReplicas: demand needs less than the pools' minReplicas; "
    "SloFloor: no replica count meets the SLO (e.g. an ITL below the HBM-bandwidth floor); "
    "ObservedViolation: a pool missing its SLO is not shrunk (bindingPool); "
    "ScaleDownPatience: recent plans wanted more replicas, the shrink waits; "
    "StabilizationWindow: a behavior stabilization window held a change; "
    "StepLimit: behavior step policies capped a change; "
    "WaitingForScaleDown: a grow waits until released GPUs are gone; "
    "StartupCost: moving GPUs would not repay its start-up delay (MoveWouldNotPay)."
)

# A free-form object kept whole by the API server (the Observation's own model checks it).
AnyObject = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]

MAX_RECOMMENDATIONS = 512  # 2 h of history at a 15 s interval, more than any window


class ConditionType(StrEnum):
    Ready = "Ready"  # the policy is being applied (or, in Recommend mode, published)
    MetricsAvailable = "MetricsAvailable"  # every required signal is present and fresh
    BudgetSatisfiable = "BudgetSatisfiable"  # the SLO is reachable inside gpuBudget
    AbleToScale = "AbleToScale"  # HPA: targets exist, can be read and scaled
    ScalingActive = "ScalingActive"  # HPA: the controller is computing a plan
    ScalingLimited = "ScalingLimited"  # HPA: min/max replicas, budget or step limits bind
    WithinBudget = "WithinBudget"  # GPUs held <= gpuBudget (False: shrinking at once)


class ConditionStatus(StrEnum):
    true = "True"
    false = "False"
    unknown = "Unknown"


class Condition(ApiModel):
    """One condition in the Kubernetes convention (metav1.Condition's fields)."""

    type: ConditionType = Field(
        description=(
            "Ready, MetricsAvailable, BudgetSatisfiable, AbleToScale, ScalingActive, "
            "ScalingLimited or WithinBudget."
        )
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: ConditionReason = Field(
        description=(
            f"CamelCase reason code, the same vocabulary as events and metrics: {_REASONS}; "
            f"for ScalingLimited, the limit that bound the decision: {_LIMITS}."
        )
    )
    message: str = Field("", max_length=32768, description="Human-readable details.")
    last_transition_time: datetime = Field(
        description="When status last changed (not when the condition was last checked)."
    )
    observed_generation: int | None = Field(
        None, description="metadata.generation of the spec this condition was computed for."
    )


class PoolStatus(ApiModel):
    role: str = Field(description="Pool role: prefill, decode or aggregated.")
    target: str = Field("", description="Scaled workload, as Kind/name.")
    current_replicas: int = Field(0, description="Replicas in the target's scale subresource now.")
    ready_replicas: int | None = Field(None, description="Replicas serving (observed).")
    desired_replicas: int = Field(0, description="Replicas of the last plan.")
    gpus_per_replica: int = Field(0, description="GPUs one replica holds, as resolved.")
    predicted_ttft_seconds: float | None = Field(
        None, description="Predicted TTFT at the desired replicas and forecast load, seconds."
    )
    predicted_itl_seconds: float | None = Field(
        None, description="Predicted inter-token latency at the desired replicas, seconds."
    )


class TierStatus(ApiModel):
    name: str = Field(description="KV-cache tier name.")
    current_replicas: int = Field(0, description="Replicas of the tier now.")
    desired_replicas: int = Field(0, description="Replicas of the tier in the last plan.")


class GoodputStatus(ApiModel):
    """DESIGN section 2's estimates, observed (from Prometheus) and predicted (by the plan)."""

    observed_tokens_per_second: float | None = Field(
        None, description="Observed token goodput: SLO-meeting, quality-weighted tokens/s."
    )
    predicted_tokens_per_second: float | None = Field(
        None, description="Token goodput the last plan predicts at the forecast load, tokens/s."
    )
    observed_attainment: float | None = Field(
        None,
        description="Observed SLO attainment estimate from the marginals a_ttft, a_itl: "
        "min(a, b) x sqrt(max(a, b)), in [0, 1].",
    )
    observed_attainment_lower: float | None = Field(
        None, description="Lower (Frechet) bound of the observed attainment."
    )
    observed_attainment_upper: float | None = Field(
        None, description="Upper (Frechet) bound of the observed attainment."
    )
    predicted_attainment: float | None = Field(
        None, description="SLO attainment the last plan predicts, in [0, 1]."
    )
    quality: float | None = Field(None, description="Last quality score read, in [0, 1].")
    observed_time: datetime | None = Field(None, description="When the observation was taken.")


class Alternative(ApiModel):
    """The runner-up plan, so users see what was traded off."""

    pools: dict[str, int] = Field(default_factory=dict, description="Replicas per pool role.")
    tiers: dict[str, int] = Field(default_factory=dict, description="Replicas per tier name.")
    total_gpus: int = Field(0, description="GPUs the alternative would hold.")
    predicted_goodput: float = Field(0.0, description="Its predicted token goodput, tokens/s.")
    predicted_attainment: float = Field(0.0, description="Its predicted SLO attainment.")


class WriteRecord(ApiModel):
    """One /scale write: what was asked, and whether the API server took it."""

    target: str = Field(description="Kind/name of the scaled workload.")
    key: str = Field(description="Pool role or tier:<name>.")
    from_replicas: int = Field(alias="from", description="spec.replicas before the write.")
    to_replicas: int = Field(alias="to", description="spec.replicas asked for.")
    ok: bool = Field(description="True when the API server accepted the write.")
    error: str | None = Field(None, description="The API server's error, when it refused.")


class VariantDecision(ApiModel):
    """One variant's part of the last decision (policies with spec.variants only)."""

    name: str = Field(description="Variant name.")
    share: int = Field(description="Percent of the traffic the decision sends to it.")
    target_share: int | None = Field(
        None,
        description=(
            "Percent it gets once the planned replicas are all ready (the share follows "
            "the replicas that serve now)."
        ),
    )
    pools: dict[str, int] = Field(
        default_factory=dict, description="Desired replicas per pool role of this variant."
    )
    total_gpus: int = Field(0, description="GPUs this variant's pools hold in the plan.")
    quality: float | None = Field(
        None, description="Quality used: probability that one of its answers is right."
    )
    value_per_answer: float | None = Field(
        None,
        description=(
            "p x rightAnswer - (1 - p) x wrongAnswerCost x rightAnswer, in the value "
            "model's unit (0 below the quality floor)."
        ),
    )
    predicted_tokens_per_second: float | None = Field(
        None, description="Predicted on-time (SLO-meeting) tokens/s of its share of traffic."
    )
    predicted_value_per_second: float | None = Field(
        None, description="Predicted value goodput: on-time tokens/s x value per answer."
    )
    reason: str | None = Field(
        None, description="This variant's own plan's reason code (ScaledUp, SteadyState ...)."
    )


class SplitAlternative(ApiModel):
    """The runner-up traffic split and GPU split between variants."""

    shares: dict[str, int] = Field(default_factory=dict, description="Percent per variant.")
    gpus: dict[str, int] = Field(default_factory=dict, description="GPUs per variant.")
    predicted_value_per_second: float = Field(
        0.0, description="Its predicted value goodput, value-model units per second."
    )


class Flip(ApiModel):
    """What would change the variant decision."""

    break_even_wrong_answer_cost: float | None = Field(
        None,
        description=(
            "wrongAnswerCost at which the runner-up variant's value goodput equals the "
            "chosen one's at the predicted on-time token rates (unset: no crossing)."
        ),
    )
    overflow_load_rps: float | None = Field(
        None,
        description=(
            "Total arrival rate, requests/s, above which traffic starts to overflow to the "
            "faster variant (unset: not found within the searched range)."
        ),
    )
    message: str = Field("", max_length=32768, description="What would flip it, in words.")


class DecisionAdjustment(ApiModel):
    """A mechanism that shaped the decision beyond the optimizer's pick."""

    reason: ReasonCode = Field(
        description=(
            "DemandCapped, FloorReleased, BurstHeadroom, RebalanceShrink, StateRestored or"
            " MoveWouldNotPay."
        )
    )
    message: str = Field("", max_length=4096, description="What it did, with the numbers.")


class Decision(ApiModel):
    """The last plan, with the reason code shared by conditions, events and metrics."""

    time: datetime = Field(description="When the decision was made.")
    reason: ReasonCode = Field(description=f"Why, as a reason code: {_REASONS}.")
    message: str = Field("", max_length=32768, description="Why, in words.")
    applied: bool = Field(
        False, description="True when the plan was written to the targets (mode Enforce)."
    )
    hold: bool = Field(False, description="True when the decision was to change nothing.")
    pools: dict[str, int] = Field(default_factory=dict, description="Desired replicas per role.")
    tiers: dict[str, int] = Field(default_factory=dict, description="Desired replicas per tier.")
    total_gpus: int = Field(0, description="GPUs the plan holds.")
    binding_constraint: LimitCode = Field(
        Limit.None_, description=f"What bound the decision. {LIMIT_DOCS}"
    )
    binding_pool: str | None = Field(
        None, description="The pool role or tier key the binding constraint applies to."
    )
    writes: list[WriteRecord] = Field(
        default_factory=list,
        description="The /scale writes of this decision, in the order they were issued.",
    )
    runner_up: Alternative | None = Field(None, description="The best plan not chosen.")
    adjustments: list[DecisionAdjustment] = Field(
        default_factory=list,
        description="Mechanisms that shaped the decision beyond the optimizer's pick.",
    )
    variants: list[VariantDecision] = Field(
        default_factory=list,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
        },
        description="Per variant: share, replicas, predicted on-time tokens and value.",
    )
    predicted_value_per_second: float | None = Field(
        None, description="Predicted value goodput summed over the variants, units per second."
    )
    runner_up_split: SplitAlternative | None = Field(
        None, description="The best traffic and GPU split between variants not chosen."
    )
    flip: Flip | None = Field(None, description="What would flip the variant decision.")


class ReplicaSummary(ApiModel):
    """Replicas as current/desired per role, for the ``kubectl get gp`` columns."""

    prefill: str | None = Field(None, description="Prefill replicas as current/desired.")
    decode: str | None = Field(None, description="Decode replicas as current/desired.")
    aggregated: str | None = Field(None, description="Aggregated replicas as current/desired.")


class LastScaleTime(ApiModel):
    up: datetime | None = Field(None, description="Last time any target was scaled up.")
    down: datetime | None = Field(None, description="Last time any target was scaled down.")


class Recommendation(ApiModel):
    """One past plan, kept for the stabilization windows (HPA keeps these in memory)."""

    time: datetime = Field(description="When the plan was made.")
    pools: dict[str, int] = Field(default_factory=dict, description="Replicas per pool role.")
    tiers: dict[str, int] = Field(default_factory=dict, description="Replicas per tier name.")


class GoodputPolicyStatus(ApiModel):
    observed_generation: int | None = Field(
        None, description="metadata.generation of the spec the status reflects."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
        description="Current state in the Kubernetes conditions convention.",
    )
    gpu_budget: int | None = Field(None, description="gpuBudget the last plan was made under.")
    gpus_allocated: int | None = Field(
        None, description="GPUs held now: current replicas x gpusPerReplica, pools and tiers."
    )
    gpus_desired: int | None = Field(None, description="GPUs the last plan holds.")
    replicas: ReplicaSummary | None = Field(
        None, description="current/desired replicas per role, for display."
    )
    pools: list[PoolStatus] = Field(
        default_factory=list,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["role"],
        },
        description="Per pool: current, ready and desired replicas.",
    )
    tiers: list[TierStatus] = Field(
        default_factory=list,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
        },
        description="Per KV-cache tier: current and desired replicas.",
    )
    goodput: GoodputStatus | None = Field(
        None, description="Observed and predicted goodput and SLO attainment."
    )
    last_decision: Decision | None = Field(None, description="The last decision and its reason.")
    split: str | None = Field(
        None,
        description=(
            "Traffic share per variant now, e.g. 'llama-70b=80,llama-405b=20' (percent), "
            "for display."
        ),
    )
    last_scale_time: LastScaleTime | None = Field(
        None, description="Last scale-up and scale-down, for step limits after a restart."
    )
    recommendations: list[Recommendation] = Field(
        default_factory=list,
        max_length=MAX_RECOMMENDATIONS,
        description="Recent plans inside the stabilization windows, oldest first.",
    )
    planner_state: AnyObject | None = Field(
        None,
        description=(
            "What the planner remembers between intervals (demand forecast and its patience"
            " window, correction factors, token means, recent desired replicas), so a"
            " restarted operator decides as the old one would have."
        ),
    )
    last_observation: AnyObject | None = Field(
        None,
        description=(
            "The observation the last decision was made from (goodput.observation."
            "Observation as JSON), so `goodput plan` and `kubectl goodput whatif` can plan "
            "offline from exactly what the operator saw."
        ),
    )

    def condition(self, type_: ConditionType) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)


def set_condition(
    conditions: Sequence[Condition],
    type_: ConditionType,
    status: ConditionStatus,
    reason: Reason | Limit,
    message: str,
    now: datetime,
    observed_generation: int | None = None,
) -> list[Condition]:
    """Conditions with one set: lastTransitionTime moves only when status changes."""
    old = next((c for c in conditions if c.type == type_), None)
    since = old.last_transition_time if old is not None and old.status == status else now
    new = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=observed_generation,
    )
    out = [c for c in conditions if c.type != type_]
    out.append(new)
    order = list(ConditionType)
    return sorted(out, key=lambda c: order.index(c.type))


def initial_conditions(now: datetime, observed_generation: int | None = None) -> list[Condition]:
    """First sight: every condition Unknown, as the convention asks."""
    return [
        Condition(
            type=t,
            status=ConditionStatus.unknown,
            reason=Reason.Initializing,
            message="waiting for the first observation",
            last_transition_time=now,
            observed_generation=observed_generation,
        )
        for t in ConditionType
    ]


def split_summary(shares: dict[str, int]) -> str:
    """``name=percent`` per variant, in the given order, for the Split printer column."""
    return ",".join(f"{name}={pct}" for name, pct in shares.items())


def replica_summary(current: dict[str, int], desired: dict[str, int]) -> ReplicaSummary:
    """Current/desired strings per role for the printer columns."""
    text = {r: f"{current.get(r, 0)}/{desired.get(r, current.get(r, 0))}" for r in current}
    for r in desired:
        text.setdefault(r, f"0/{desired[r]}")
    return ReplicaSummary.model_validate(
        {k: v for k, v in text.items() if k in ReplicaSummary.model_fields}
    )


__all__ = [
    "Alternative",
    "Condition",
    "ConditionStatus",
    "ConditionType",
    "Decision",
    "DecisionAdjustment",
    "Flip",
    "GoodputPolicyStatus",
    "GoodputStatus",
    "LastScaleTime",
    "PoolStatus",
    "Recommendation",
    "ReplicaSummary",
    "SplitAlternative",
    "TierStatus",
    "VariantDecision",
    "WriteRecord",
    "initial_conditions",
    "replica_summary",
    "set_condition",
    "split_summary",
]
