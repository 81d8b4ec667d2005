"""One control-loop tick for one policy: read targets, observe, plan, limit, actuate,
and say why in status, conditions and events.

Everything here is async and awaits its edges (the /scale client, Prometheus), so
kopf's event loop never blocks. Bad input changes nothing: an invalid spec, a missing
target, another autoscaler on a target or missing metrics each *hold* and say so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import ValidationError

from goodput.actuator.behavior import (
    PastRecommendation,
    apply_behavior,
    target_replicas,
    tier_key,
)
from goodput.actuator.budget import TargetState, budget_safe_writes, gpus_held
from goodput.actuator.kube import WorkloadScale
from goodput.api.spec import GoodputPolicySpec, Mode, TargetRef, format_validation_error
from goodput.api.status import (
    MAX_RECOMMENDATIONS,
    Condition,
    ConditionStatus,
    ConditionType,
    Decision,
    GoodputPolicyStatus,
    GoodputStatus,
    LastScaleTime,
    PoolStatus,
    Recommendation,
    TierStatus,
    initial_conditions,
    replica_summary,
    set_condition,
)
from goodput.api.status import Alternative as AltStatus
from goodput.observation import Observation
from goodput.plan import Allocation, Plan
from goodput.planner import GoodputPlanner
from goodput.ports import ObservationSource
from goodput.reasons import Reason

log = logging.getLogger(__name__)

_HOLD_METRICS = {Reason.MetricsMissing, Reason.MetricsStale, Reason.PrometheusUnreachable}


class ScaleClient(Protocol):
    async def read(self, ref: TargetRef, namespace: str) -> WorkloadScale: ...
    async def write(self, ref: TargetRef, namespace: str, replicas: int) -> None: ...
    async def other_autoscalers(self, ref: TargetRef, namespace: str) -> list[str]: ...


SourceFactory = Callable[[GoodputPolicySpec, str], "Any"]  # async (spec, namespace) -> source


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
    writes: dict[str, int] = field(default_factory=dict)


@dataclass
class _Runtime:
    key: tuple[int, str]  # generation and resolved spec: rebuild when either changes
    spec: GoodputPolicySpec
    planner: GoodputPlanner
    source: ObservationSource


def _targets(spec: GoodputPolicySpec) -> dict[str, TargetRef]:
    refs = {p.role.value: p.target_ref for p in spec.pools}
    refs.update({tier_key(t.name): t.target_ref for t in spec.kv_cache.tiers})
    return refs


class Reconciler:
    """Keeps one policy's planner and metric source between ticks."""

    def __init__(
        self,
        scale: ScaleClient,
        source_factory: Callable[[GoodputPolicySpec, str], Any],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.scale = scale
        self.source_factory = source_factory
        self.clock = clock
        self._runtime: _Runtime | None = None

    async def tick(
        self, namespace: str, generation: int, raw_spec: dict[str, Any], raw_status: dict[str, Any]
    ) -> Outcome:
        now = self.clock()
        now_dt = datetime.fromtimestamp(now, UTC)
        prev = _previous_status(raw_status)
        conds = list(prev.conditions) or initial_conditions(now_dt, generation)
        t = _Tick(conds, now_dt, generation)

        try:
            spec = GoodputPolicySpec.model_validate(raw_spec)
        except ValidationError as err:
            msg = "invalid spec, nothing changed: " + "; ".join(
                format_validation_error(err, "spec")
            )
            return t.hold(prev, Reason.InvalidPolicy, msg, ConditionType.Ready, warn=True)

        refs = _targets(spec)
        scales: dict[str, WorkloadScale] = {}
        for key, ref in refs.items():
            try:
                scales[key] = await self.scale.read(ref, namespace)
            except Exception as err:  # 404, no scale subresource, RBAC: all mean "cannot scale"
                msg = f"cannot read {ref.kind}/{ref.name}/scale: {_short(err)}; nothing changed"
                return t.hold(
                    prev, Reason.TargetNotFound, msg, ConditionType.AbleToScale, warn=True
                )
        for ref in refs.values():
            others = await self.scale.other_autoscalers(ref, namespace)
            if others:
                msg = (
                    f"{ref.kind}/{ref.name} is also scaled by {', '.join(others)}; "
                    "refusing to fight it, nothing changed"
                )
                return t.hold(
                    prev, Reason.ConflictingController, msg, ConditionType.AbleToScale, warn=True
                )

        resolved, problem = _resolve_gpus(spec, scales)
        if resolved is None:
            return t.hold(prev, Reason.InvalidPolicy, problem, ConditionType.Ready, warn=True)
        rt = await self._runtime_for(resolved, generation, namespace)

        try:
            raw = await rt.source.observe(now)
        except Exception as err:  # e.g. the auth Secret is missing: hold, never guess
            msg = f"cannot observe Prometheus: {_short(err)}; holding the current allocation"
            return t.hold(
                prev, Reason.MetricsMissing, msg, ConditionType.MetricsAvailable, warn=True
            )
        observation = _with_ready_replicas(raw, scales)
        current = Allocation(
            pools={p.role.value: scales[p.role.value].spec_replicas for p in resolved.pools},
            tiers={
                tr.name: scales[tier_key(tr.name)].spec_replicas for tr in resolved.kv_cache.tiers
            },
        )
        plan = rt.planner.decide(observation, current, now)
        return await self._act(
            t, prev, resolved, refs, scales, observation, current, plan, namespace
        )

    async def _runtime_for(
        self, spec: GoodputPolicySpec, generation: int, namespace: str
    ) -> _Runtime:
        key = (generation, spec.model_dump_json())
        if self._runtime is None or self._runtime.key != key:
            if self._runtime is not None:
                close = getattr(self._runtime.source, "close", None)
                if close is not None:
                    close()
            source = await self.source_factory(spec, namespace)
            self._runtime = _Runtime(key, spec, GoodputPlanner(spec), source)
        return self._runtime

    async def _act(
        self,
        t: _Tick,
        prev: GoodputPolicyStatus,
        spec: GoodputPolicySpec,
        refs: dict[str, TargetRef],
        scales: dict[str, WorkloadScale],
        obs: Observation,
        current: Allocation,
        plan: Plan,
        namespace: str,
    ) -> Outcome:
        now = t.now.timestamp()
        cur = target_replicas(current.pools, current.tiers)
        gpus = {p.role.value: p.gpus_per_replica or 0 for p in spec.pools}
        gpus.update({tier_key(tr.name): tr.gpus_per_replica for tr in spec.kv_cache.tiers})
        states = {
            k: TargetState(s.spec_replicas, s.pods_present, gpus[k]) for k, s in scales.items()
        }
        held = gpus_held(states)

        t.set(ConditionType.AbleToScale, True, Reason.Succeeded, "targets found, /scale readable")
        if plan.hold:
            metrics_ok = plan.reason not in _HOLD_METRICS
            t.set(ConditionType.MetricsAvailable, metrics_ok, plan.reason, plan.message)
            t.set(ConditionType.ScalingActive, False, plan.reason, f"holding: {plan.message}")
            t.set(ConditionType.Ready, True, plan.reason, "running; holding the current allocation")
            status = _status(prev, t, spec, scales, gpus, held, obs, plan, cur, applied=False)
            return t.outcome(status, plan.reason, plan.message, prev)

        t.set(ConditionType.MetricsAvailable, True, Reason.Succeeded, "every required signal fresh")
        t.set(
            ConditionType.BudgetSatisfiable,
            plan.budget_satisfiable,
            Reason.Succeeded if plan.budget_satisfiable else Reason.BudgetExhausted,
            plan.message,
        )
        t.set(ConditionType.ScalingActive, True, plan.reason, plan.message)

        desired = target_replicas({r: d.replicas for r, d in plan.pools.items()}, plan.tiers)
        history = [
            PastRecommendation(
                r.time.timestamp(),
                target_replicas(r.pools, r.tiers),
            )
            for r in prev.recommendations
        ]
        last = prev.last_scale_time or LastScaleTime()
        limited = apply_behavior(
            desired,
            cur,
            history,
            spec.behavior.scale_up,
            spec.behavior.scale_down,
            now,
            last.up.timestamp() if last.up else None,
            last.down.timestamp() if last.down else None,
        )
        writes = budget_safe_writes(states, limited.replicas, spec.gpu_budget)
        reason, message = plan.reason, plan.message
        limits = []
        if limited.stabilized:
            limits.append(f"stabilization window holds {', '.join(limited.stabilized)}")
        if limited.rate_limited:
            limits.append(f"step limits cap {', '.join(limited.rate_limited)}")
        if writes.deferred:
            limits.append(
                "waiting for released GPUs before growing "
                + ", ".join(f"{k} to {v}" for k, v in writes.deferred.items())
            )
        binding = plan.binding_constraint
        if limits:
            t.set(
                ConditionType.ScalingLimited,
                True,
                Reason.WaitingForScaleDown
                if writes.deferred
                else (Reason.StabilizationWindow if limited.stabilized else Reason.RateLimited),
                "; ".join(limits),
            )
        elif binding != "none":
            t.set(ConditionType.ScalingLimited, True, plan.reason, f"bound by {binding}")
        else:
            t.set(ConditionType.ScalingLimited, False, Reason.Succeeded, "no limit binds")

        events: list[Event] = []
        applied = spec.mode == Mode.Enforce
        actual_writes: dict[str, int] = {}
        if applied:
            for key in sorted(writes.replicas, key=lambda k: writes.replicas[k] >= cur[k]):
                new = writes.replicas[key]
                if new == cur[key]:
                    continue
                await self.scale.write(refs[key], namespace, new)
                actual_writes[key] = new
                ref = refs[key]
                events.append(
                    Event(
                        "Normal",
                        Reason.ScaledUp if new > cur[key] else Reason.ScaledDown,
                        f"{ref.kind}/{ref.name} ({key}) {cur[key]} -> {new}: {message}",
                    )
                )
            if writes.deferred and not actual_writes:
                reason = Reason.WaitingForScaleDown
        else:
            reason = Reason.RecommendOnly if desired != cur else plan.reason
            message = f"Recommend mode, nothing applied: {message}"
        t.set(
            ConditionType.Ready,
            True,
            reason,
            "enforcing the plan" if applied else "publishing recommendations only (mode Recommend)",
        )
        status = _status(
            prev,
            t,
            spec,
            scales,
            gpus,
            held,
            obs,
            plan,
            cur,
            applied=applied,
            desired=desired,
            writes=actual_writes,
            reason=reason,
            message=message,
        )
        out = t.outcome(status, reason, message, prev, extra_events=events)
        out.writes = actual_writes
        return out


@dataclass
class _Tick:
    conditions: list[Condition]
    now: datetime
    generation: int

    def set(self, type_: ConditionType, ok: bool | None, reason: Reason, message: str) -> None:
        status = (
            ConditionStatus.unknown
            if ok is None
            else ConditionStatus.true
            if ok
            else ConditionStatus.false
        )
        self.conditions = set_condition(
            self.conditions, type_, status, reason, message[:4000], self.now, self.generation
        )

    def hold(
        self,
        prev: GoodputPolicyStatus,
        reason: Reason,
        message: str,
        failing: ConditionType,
        warn: bool,
    ) -> Outcome:
        self.set(failing, False, reason, message)
        if failing != ConditionType.Ready:
            self.set(ConditionType.Ready, False, reason, message)
        self.set(ConditionType.ScalingActive, False, reason, f"holding: {message}")
        status = prev.model_copy(
            update={
                "observed_generation": self.generation,
                "conditions": self.conditions,
                "last_decision": Decision(time=self.now, reason=reason, message=message, hold=True),
            }
        )
        return self.outcome(status, reason, message, prev, warn=warn)

    def outcome(
        self,
        status: GoodputPolicyStatus,
        reason: Reason,
        message: str,
        prev: GoodputPolicyStatus,
        warn: bool = False,
        extra_events: list[Event] | None = None,
    ) -> Outcome:
        events = list(extra_events or [])
        before = prev.last_decision
        # An event when the reason changes (or on a write); not one per tick.
        if before is None or before.reason != reason or (events and reason != before.reason):
            events.insert(0, Event("Warning" if warn else "Normal", reason, message))
        return Outcome(status=status, events=events, reason=reason)


def _status(
    prev: GoodputPolicyStatus,
    t: _Tick,
    spec: GoodputPolicySpec,
    scales: dict[str, WorkloadScale],
    gpus: dict[str, int],
    held: int,
    obs: Observation,
    plan: Plan,
    cur: dict[str, int],
    *,
    applied: bool,
    desired: dict[str, int] | None = None,
    writes: dict[str, int] | None = None,
    reason: Reason | None = None,
    message: str | None = None,
) -> GoodputPolicyStatus:
    """Status after this tick; ``reason``/``message`` default to the plan's."""
    desired = desired if desired is not None else dict(cur)
    writes = writes or {}
    after = {k: writes.get(k, v) for k, v in cur.items()}
    pools = [
        PoolStatus(
            role=p.role.value,
            target=f"{p.target_ref.kind}/{p.target_ref.name}",
            current_replicas=after[p.role.value],
            ready_replicas=scales[p.role.value].pods_ready,
            desired_replicas=desired[p.role.value],
            gpus_per_replica=gpus[p.role.value],
            predicted_ttft_seconds=_pd(plan, p.role.value, "predicted_ttft_s"),
            predicted_itl_seconds=_pd(plan, p.role.value, "predicted_itl_s"),
        )
        for p in spec.pools
    ]
    tiers = [
        TierStatus(
            name=tr.name,
            current_replicas=after[tier_key(tr.name)],
            desired_replicas=desired[tier_key(tr.name)],
        )
        for tr in spec.kv_cache.tiers
    ]
    est = obs.estimate
    goodput = GoodputStatus(
        observed_tokens_per_second=_round(est.goodput_tokens_per_s),
        predicted_tokens_per_second=None if plan.hold else _round(plan.predicted_goodput),
        observed_attainment=_round(est.attainment),
        observed_attainment_lower=_round(est.attainment_lower),
        observed_attainment_upper=_round(est.attainment_upper),
        predicted_attainment=None if plan.hold else _round(plan.predicted_attainment),
        quality=obs.quality,
        observed_time=datetime.fromtimestamp(obs.timestamp, UTC),
    )
    runner = plan.runner_up
    decision = Decision(
        time=t.now,
        reason=reason or plan.reason,
        message=(message or plan.message)[:4000],
        applied=applied and bool(writes),
        hold=plan.hold,
        pools={r: desired[r] for r in plan.pools},
        tiers={k: desired[tier_key(k)] for k in plan.tiers},
        total_gpus=plan.total_gpus,
        binding_constraint=plan.binding_constraint,
        runner_up=None
        if runner is None
        else AltStatus(
            pools=runner.pools,
            tiers=runner.tiers,
            total_gpus=runner.total_gpus,
            predicted_goodput=_round(runner.predicted_goodput) or 0.0,
            predicted_attainment=_round(runner.predicted_attainment) or 0.0,
        ),
    )
    recs = list(prev.recommendations)
    if not plan.hold:
        window = max(
            spec.behavior.scale_up.stabilization_window_seconds,
            spec.behavior.scale_down.stabilization_window_seconds,
        )
        recs = [r for r in recs if (t.now - r.time).total_seconds() < window]
        recs.append(
            Recommendation(
                time=t.now,
                pools={r: d.replicas for r, d in plan.pools.items()},
                tiers=dict(plan.tiers),
            )
        )
        recs = recs[-MAX_RECOMMENDATIONS:]
    last = prev.last_scale_time or LastScaleTime()
    if any(v > cur[k] for k, v in writes.items()):
        last = last.model_copy(update={"up": t.now})
    if any(v < cur[k] for k, v in writes.items()):
        last = last.model_copy(update={"down": t.now})
    return GoodputPolicyStatus(
        observed_generation=t.generation,
        conditions=t.conditions,
        gpu_budget=spec.gpu_budget,
        gpus_allocated=held,
        gpus_desired=sum(desired[k] * gpus[k] for k in desired),
        replicas=replica_summary(
            {p.role.value: after[p.role.value] for p in spec.pools},
            {p.role.value: desired[p.role.value] for p in spec.pools},
        ),
        pools=pools,
        tiers=tiers,
        goodput=goodput,
        last_decision=decision,
        last_scale_time=last,
        recommendations=recs,
    )


def _pd(plan: Plan, role: str, attr: str) -> float | None:
    d = plan.pools.get(role)
    value = getattr(d, attr) if d is not None else None
    return _round(value)


def _round(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def _short(err: Exception) -> str:
    reason = getattr(err, "reason", None)
    status = getattr(err, "status", None)
    return f"{status} {reason}" if status else str(err).splitlines()[0][:200]


def _previous_status(raw: dict[str, Any]) -> GoodputPolicyStatus:
    try:
        return GoodputPolicyStatus.model_validate(raw or {})
    except ValidationError:
        log.warning("ignoring an unreadable previous status")
        return GoodputPolicyStatus()


def _resolve_gpus(
    spec: GoodputPolicySpec, scales: dict[str, WorkloadScale]
) -> tuple[GoodputPolicySpec | None, str]:
    pools = []
    for p in spec.pools:
        if p.gpus_per_replica is not None:
            pools.append(p)
            continue
        found = scales[p.role.value].template_gpus
        if not found:
            return None, (
                f"pool {p.role.value}: gpusPerReplica is not set and {p.target_ref.kind}/"
                f"{p.target_ref.name}'s pod template has no nvidia.com/gpu limit; nothing changed"
            )
        pools.append(p.model_copy(update={"gpus_per_replica": found}))
    return spec.model_copy(update={"pools": pools}), ""


def _with_ready_replicas(obs: Observation, scales: dict[str, WorkloadScale]) -> Observation:
    pools = {
        role: p
        if p.ready_replicas is not None or role not in scales
        else p.model_copy(update={"ready_replicas": scales[role].pods_ready})
        for role, p in obs.pools.items()
    }
    return obs.model_copy(update={"pools": pools})
