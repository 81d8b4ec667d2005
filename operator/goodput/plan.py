"""What a controller decides: the planner's output, the actuator's and the twin's input."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from goodput.reasons import Limit, Reason


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Allocation(_Frozen):
    """Replicas per pool role and per KV tier name: what is (or should be) running."""

    pools: dict[str, int] = Field(default_factory=dict)
    tiers: dict[str, int] = Field(default_factory=dict)


class PoolDecision(_Frozen):
    role: str
    replicas: int = Field(ge=0)
    gpus_per_replica: int = Field(ge=0)
    predicted_ttft_s: float | None = None
    predicted_itl_s: float | None = None
    predicted_attainment: float | None = None


class Alternative(_Frozen):
    """The runner-up plan, so users see what was traded off."""

    pools: dict[str, int]
    tiers: dict[str, int] = Field(default_factory=dict)
    total_gpus: int
    predicted_goodput: float
    predicted_attainment: float


class Adjustment(_Frozen):
    """A mechanism that shaped a decision beyond the optimizer's pick (a capped demand,
    a released floor, a tie-break, a held move ...): its reason code and the numbers."""

    reason: Reason
    message: str


class Plan(_Frozen):
    pools: dict[str, PoolDecision]
    tiers: dict[str, int] = Field(default_factory=dict)
    total_gpus: int = Field(ge=0)
    budget: int = Field(ge=0)
    reason: Reason
    message: str
    hold: bool = False
    budget_satisfiable: bool = True
    predicted_goodput: float = 0.0  # quality-weighted tokens/s meeting the SLO
    predicted_attainment: float = 0.0
    # What bound the plan (Limit.None_: the demand and the SLO alone sized it), and the
    # pool role it applies to when it is one pool's (MaxReplicas, ObservedViolation,
    # SloFloor: the pool whose stage cannot meet its SLO, ...).
    binding_constraint: Limit = Limit.None_
    binding_pool: str | None = None
    runner_up: Alternative | None = None
    adjustments: tuple[Adjustment, ...] = ()

    def allocation(self) -> Allocation:
        return Allocation(
            pools={r: d.replicas for r, d in self.pools.items()}, tiers=dict(self.tiers)
        )
