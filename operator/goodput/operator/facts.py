"""The data of one control-loop tick, shared by the pure decision (``decide``), the pure
conclusion (``conclude``) and the thin shell that gathers it (``reconcile``).

Everything here is plain data: the shell reads the cluster and Prometheus into
``Facts``; ``decide`` turns them into an ``Intent`` (which /scale writes, in which
order, and why); the shell issues the writes and records a ``WriteResult`` for each;
``conclude`` turns facts, intent and results into the whole status, the conditions and
the events. Both pure halves are table-tested without a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from goodput.actuator.budget import TargetState
from goodput.actuator.route import BackendKey
from goodput.api.spec import GoodputPolicySpec, TargetRef
from goodput.api.status import ConditionType, GoodputPolicyStatus
from goodput.observation import Observation
from goodput.plan import Adjustment, Plan
from goodput.planner.variants import VariantPlan
from goodput.reasons import Limit, Reason


@dataclass(frozen=True)
class Target:
    """One scaled workload as the shell found it (a pool, keyed by role, or a KV tier,
    keyed ``tier:<name>``)."""

    key: str
    ref: TargetRef
    spec_replicas: int  # what /scale asks for now
    pods_present: int  # pods that exist and hold GPUs, terminating ones included
    pods_ready: int
    gpus_per_replica: int
    min_replicas: int
    max_replicas: int
    pods_terminating: int = 0  # of pods_present, those being deleted

    @property
    def name(self) -> str:
        return f"{self.ref.kind}/{self.ref.name}"

    @property
    def state(self) -> TargetState:
        return TargetState(
            self.spec_replicas, self.pods_present, self.gpus_per_replica, self.pods_terminating
        )

    @property
    def gpus_held(self) -> int:
        """A replica asked for holds its GPUs as surely as a pod still terminating."""
        return self.state.gpus_held


@dataclass(frozen=True)
class Blocker:
    """Why this tick cannot follow a plan: the policy holds and says so.

    ``condition`` is the condition that turns False with ``reason``; Ready turns False
    with it. The budget still wins over a blocker: if the targets are known and hold
    more than the budget, ``decide`` shrinks them anyway."""

    reason: Reason
    message: str
    condition: ConditionType
    warn: bool = True


@dataclass(frozen=True)
class RouteView:
    """The HTTPRoute that carries a policy's traffic split, as read this tick: the
    object (to plan the patch on), each variant's backendRef and its share now."""

    name: str  # HTTPRoute/<name>
    route: dict[str, Any]
    owned: dict[str, BackendKey]  # variant name -> its backendRef
    shares: dict[str, int]  # variant name -> percent of the rule's traffic now


@dataclass(frozen=True)
class Facts:
    now: datetime
    generation: int
    prev: GoodputPolicyStatus
    spec: GoodputPolicySpec | None = None  # None: the spec is invalid
    targets: dict[str, Target] = field(default_factory=dict)  # empty: not read
    observation: Observation | None = None  # a policy with variants: merged, keys v/role
    plan: Plan | None = None  # a policy with variants: the variant plan, flattened
    blocker: Blocker | None = None
    variant_plan: VariantPlan | None = None  # policies with spec.variants only
    route: RouteView | None = None  # spec.trafficSplit.httpRouteRef, when set
    # The planner's memory after this tick's plan (status.plannerState); None when no
    # plan was made (the previous status's is carried).
    planner_state: dict[str, Any] | None = None

    @property
    def gpus_held(self) -> int:
        return sum(t.gpus_held for t in self.targets.values())


@dataclass(frozen=True)
class Write:
    key: str
    target: str  # Kind/name
    from_replicas: int
    to_replicas: int

    @property
    def up(self) -> bool:
        return self.to_replicas > self.from_replicas


@dataclass(frozen=True)
class Intent:
    """What to write this tick, what the policy works toward, and why."""

    writes: tuple[Write, ...]  # shrinks first; issued in this order, stopping at a failure
    desired: dict[str, int]  # replicas per key the decision works toward
    reason: Reason
    message: str
    limit: Limit = Limit.None_
    limit_pool: str | None = None
    deferred: dict[str, int] = field(default_factory=dict)  # grows waiting for GPUs
    emergency: bool = False  # a shrink to get within budget, behavior limits ignored
    adjustments: tuple[Adjustment, ...] = ()  # the plan's, then the actuator's


@dataclass(frozen=True)
class WriteResult:
    write: Write
    error: str | None = None  # the API server's refusal; None: accepted

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class RouteResult:
    """The traffic split this tick wrote (or tried to): shares before and after."""

    route: str  # HTTPRoute/<name>
    before: dict[str, int]
    after: dict[str, int]
    error: str | None = None  # the refusal (ours or the API server's); None: written
    reason: Reason | None = None  # the refusal's reason code

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: Reason
    message: str


@dataclass
class Outcome:
    status: GoodputPolicyStatus
    events: list[Event] = field(default_factory=list)
    reason: Reason = Reason.Initializing
    writes: list[WriteResult] = field(default_factory=list)
    route: RouteResult | None = None
    failed: bool = False  # a write or a read failed: the caller backs off
