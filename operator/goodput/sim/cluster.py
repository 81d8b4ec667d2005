"""A simulated cluster for the twin: the operator's ``ScaleClient`` (goodput.operator.
reconcile) over the twin's replicas, so the operator's own tick, and every baseline's
writes, scale the simulated fleet exactly as they would scale Deployments.

How the twin maps onto ``/scale`` and pods (one target per pool, keyed by role, and
one per KV tier, keyed ``tier:<name>``, as in the operator):

- ``spec.replicas`` is what was last written (the initial allocation at first);
- a write acts like a ReplicaSet at once: a shrink takes live replicas out of service
  (a starting one is cancelled and goes at once; a serving one *drains*: it finishes
  its requests, takes no new ones, and keeps its GPUs until it is empty, as a
  terminating pod does); a grow starts new replicas beside the draining ones;
- pods present = starting + serving + draining replicas; ``pods_terminating`` = the
  draining ones; ``pods_ready`` = serving ones, so a new replica is ready only after
  the start-up delay (its model load);
- ``template_gpus`` is the pool's GPUs per replica from the scenario;
  ``other_autoscalers`` and ``claims`` are empty (the twin has one writer);
- a KV tier's replicas hold no drain or start-up: the tier is resized at once;
- each write's log (``WriteLog.inflight_lost``) counts the requests in flight on the
  serving replicas it removed, chosen as ``TwinConfig.scale_down_choice`` says (fewest
  running, as drain-aware marking asks, or newest, a ReplicaSet's default).

The cluster only *measures* the budget: it accepts any write, as the API server does,
and counts GPUs held (draining replicas included) after every change, so a write order
that would exceed the budget for a moment shows up as a violation and a peak above the
budget. Keeping within it is the job of the writer (the operator's ``decide``, or
``goodput.actuator.budget`` for the baselines).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from goodput.actuator.behavior import tier_key
from goodput.actuator.budget import TargetState, budget_safe_writes
from goodput.actuator.claims import Claim
from goodput.actuator.kube import TargetError, WorkloadScale
from goodput.api.spec import TargetRef
from goodput.reasons import Reason
from goodput.sim.engine import DRAINING, SERVING, STARTING, Twin
from goodput.sim.scenario import Scenario

NAMESPACE = "sim"


@dataclass(frozen=True)
class SimTarget:
    key: str  # pool role, or "tier:<name>"
    ref: TargetRef
    gpus_per_replica: int
    min_replicas: int
    max_replicas: int
    role: str | None = None  # the twin's pool; None for a KV tier
    tier: str | None = None


@dataclass(frozen=True)
class WriteLog:
    t: float
    key: str
    from_replicas: int
    to_replicas: int
    # Requests in flight on the serving replicas this write removed (the twin's
    # TwinConfig.scale_down_choice picks them): lost unless the pods drain them.
    inflight_lost: int = 0


def inflight_lost(writes: list[WriteLog]) -> int:
    """In-flight requests on the replicas a run's scale-downs removed (RunResult.writes)."""
    return sum(w.inflight_lost for w in writes)


@dataclass
class GpuAccount:
    """GPUs held over time, sampled after every change (a write, a replica gone)."""

    budget: int
    gpu_seconds: float = 0.0
    peak: int = 0
    violations: int = 0  # changes after which more GPUs were held than the budget
    last_t: float = 0.0
    last_gpus: int = 0
    frozen: bool = False

    def sample(self, now: float, held: int) -> None:
        if self.frozen:
            return
        self.gpu_seconds += self.last_gpus * max(0.0, now - self.last_t)
        self.last_t = max(self.last_t, now)
        self.last_gpus = held
        self.peak = max(self.peak, held)
        if held > self.budget:
            self.violations += 1


@dataclass
class SimCluster:
    """``ScaleClient`` (goodput.operator.reconcile) over one twin; see the module doc."""

    twin: Twin
    sc: Scenario
    startup_delay_s: float
    namespace: str = NAMESPACE
    targets: dict[str, SimTarget] = field(default_factory=dict)
    spec: dict[str, int] = field(default_factory=dict)
    writes: list[WriteLog] = field(default_factory=list)
    account: GpuAccount = field(init=False)
    _by_ref: dict[tuple[str, str], str] = field(default_factory=dict)
    _goal: dict[str, int] | None = None
    _writing: bool = False

    def __post_init__(self) -> None:
        self.account = GpuAccount(self.sc.budget)
        for p in self.sc.spec.pools:
            role = p.role.value
            self._add(
                SimTarget(
                    role,
                    p.target_ref,
                    self.sc.gpus[role],
                    p.min_replicas,
                    max(p.min_replicas, p.max_replicas),
                    role=role,
                )
            )
        for t in self.sc.spec.kv_cache.tiers:
            self._add(
                SimTarget(
                    tier_key(t.name),
                    t.target_ref,
                    t.gpus_per_replica,
                    t.min_replicas,
                    max(t.min_replicas, t.max_replicas),
                    tier=t.name,
                )
            )
        self.twin.on_release = self.released

    def _add(self, t: SimTarget) -> None:
        self.targets[t.key] = t
        self._by_ref[(t.ref.kind, t.ref.name)] = t.key
        self.spec[t.key] = 0

    # ---------------------------------------------------------------- set-up, state

    def start(self, replicas: Mapping[str, int]) -> None:
        """The initial allocation, every replica already serving (the run starts
        mid-life); not a write."""
        now = self.twin.now
        for key, n in replicas.items():
            self._set(key, n, now, delay=0.0)
        self.account.sample(now, self.gpus_held())

    def adopt(self) -> None:
        """Take the twin's replicas as they are as ``spec.replicas`` (a cluster met
        mid-life, e.g. a fork of a running twin)."""
        for key, t in self.targets.items():
            if t.role is not None:
                self.spec[key] = self.twin.count(t.role, (STARTING, SERVING))
            elif t.tier is not None:
                self.spec[key] = self.twin.tier_replicas.get(t.tier, 0)
        self.account.sample(self.twin.now, self.gpus_held())
        self.account.last_t = self.twin.now

    def live(self, key: str) -> int:
        t = self.targets[key]
        if t.role is None:
            return self.spec[key]
        return self.twin.count(t.role, (STARTING, SERVING))

    def scale(self, key: str) -> WorkloadScale:
        """What ``read`` returns for one target."""
        t = self.targets[key]
        spec = self.spec[key]
        if t.role is None:  # a KV tier resizes at once
            return WorkloadScale(
                spec_replicas=spec,
                status_replicas=spec,
                selector=f"app={t.ref.name}",
                pods_present=spec,
                pods_terminating=0,
                pods_ready=spec,
                template_gpus=t.gpus_per_replica,
            )
        live = self.twin.count(t.role, (STARTING, SERVING))
        draining = self.twin.count(t.role, (DRAINING,))
        return WorkloadScale(
            spec_replicas=spec,
            status_replicas=live,
            selector=f"app={t.ref.name}",
            pods_present=live + draining,
            pods_terminating=draining,
            pods_ready=self.twin.count(t.role, (SERVING,)),
            template_gpus=t.gpus_per_replica,
        )

    def state(self, key: str) -> TargetState:
        s = self.scale(key)
        return TargetState(
            s.spec_replicas, s.pods_present, self.targets[key].gpus_per_replica, s.pods_terminating
        )

    def states(self) -> dict[str, TargetState]:
        return {k: self.state(k) for k in self.targets}

    def gpus_held(self) -> int:
        """Every replica that exists holds its GPUs (starting and draining included)."""
        tiers = sum(
            self.spec[k] * t.gpus_per_replica for k, t in self.targets.items() if t.role is None
        )
        return self.twin.gpus_held() + tiers

    # ---------------------------------------------------------------- ScaleClient

    def _key(self, ref: TargetRef, namespace: str) -> str:
        key = self._by_ref.get((ref.kind, ref.name))
        if key is None or namespace != self.namespace:
            raise TargetError(
                Reason.TargetNotFound,
                f"{ref.kind}/{ref.name} in namespace {namespace} not found; nothing changed",
            )
        return key

    async def read(self, ref: TargetRef, namespace: str) -> WorkloadScale:
        return self.scale(self._key(ref, namespace))

    async def write(self, ref: TargetRef, namespace: str, replicas: int) -> None:
        key = self._key(ref, namespace)
        if replicas < 0:
            raise ValueError(f"422 Unprocessable Entity: spec.replicas {replicas} < 0")
        self.set_replicas(key, replicas)

    async def other_autoscalers(self, ref: TargetRef, namespace: str) -> list[str]:
        return []

    async def claims(self, namespace: str) -> list[Claim]:
        return []

    # ---------------------------------------------------------------- the ReplicaSet

    def set_replicas(self, key: str, replicas: int) -> None:
        """``spec.replicas = replicas``, reconciled at once (see the module doc)."""
        now = self.twin.now
        before = self.spec[key]
        lost_before = self.twin.inflight_lost
        self._set(key, replicas, now, delay=self.startup_delay_s)
        if replicas != before:
            lost = self.twin.inflight_lost - lost_before
            self.writes.append(WriteLog(now, key, before, replicas, lost))
        self.account.sample(now, self.gpus_held())

    def _set(self, key: str, replicas: int, now: float, delay: float) -> None:
        t = self.targets[key]
        self.spec[key] = replicas
        if t.tier is not None:
            self.twin.set_tier_replicas(t.tier, replicas)
            return
        assert t.role is not None
        while self.live(key) > replicas:
            if not self.twin.remove_replica(t.role, now):
                break
        while self.live(key) < replicas:
            self.twin.add_replica(t.role, now, delay)

    def released(self, now: float) -> None:
        """The twin's callback when a replica is gone (drained, or cancelled)."""
        self.account.sample(now, self.gpus_held())
        if self._goal is not None and not self._writing:
            self._chase()

    def freeze(self, now: float) -> None:
        """Stop the GPU account at the end of the scored span."""
        self.account.sample(now, self.gpus_held())
        self.account.frozen = True

    # ---------------------------------------------------------------- budget-safe writes

    def apply_safe(self, desired: Mapping[str, int]) -> dict[str, int]:
        """One round of writes toward ``desired`` (clamped to each target's [min, max]) in
        the budget-safe order of goodput.actuator.budget: every shrink now, each grow only
        as far as it fits beside every GPU still held (draining ones included). Returns
        the clamped ``desired``; what did not fit waits for the caller's next round."""
        goal = {k: self.clamp(k, n) for k, n in desired.items() if k in self.targets}
        safe = budget_safe_writes(self.states(), goal, self.sc.budget)
        self._writing = True
        try:
            for key, n in ordered(self.spec, safe.replicas):
                self.set_replicas(key, n)
        finally:
            self._writing = False
        return goal

    def pursue(self, desired: Mapping[str, int]) -> dict[str, int]:
        """:meth:`apply_safe` now and again whenever a replica is gone, until ``desired``
        is written: grows land as soon as the GPUs they need are free rather than at the
        writer's next tick (the oracle's privilege, like its zero start-up delay; also
        its what-if forks). A later call replaces the goal."""
        self._goal = {k: self.clamp(k, n) for k, n in desired.items() if k in self.targets}
        self._chase()
        return dict(desired)

    def _chase(self) -> None:
        """Write toward the pursued goal until it is reached or nothing more fits now
        (replicas that go at once, idle ones, free GPUs for the next round)."""
        while self._goal is not None:
            before = dict(self.spec)
            self.apply_safe(self._goal)
            if all(self.spec[k] == n for k, n in self._goal.items()):
                self._goal = None
            elif self.spec == before:
                break

    def clamp(self, key: str, replicas: int) -> int:
        t = self.targets[key]
        return max(t.min_replicas, min(t.max_replicas, replicas))


def ordered(current: Mapping[str, int], replicas: Mapping[str, int]) -> list[tuple[str, int]]:
    """Writes that change something, shrinks before grows, each group in key order (as
    goodput.operator.decide orders them)."""
    changes = [(k, n) for k, n in replicas.items() if n != current.get(k)]
    return sorted(changes, key=lambda kn: (kn[1] > current.get(kn[0], 0), kn[0]))
