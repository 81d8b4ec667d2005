"""The pure half of a tick: from what the shell found (``Facts``) to what to write
(``Intent``). No I/O.

The order of precedence is the promise of the project:

1. The budget. Whenever the GPUs the targets ask for exceed ``gpuBudget`` (the budget
   was edited down, someone scaled a target by hand, a resolved GPU count changed),
   the policy shrinks within budget *this tick*, ignoring stabilization windows and
   step limits, and grows nothing until it is within budget. With a plan, the plan's
   allocation is the shrink target (the planner's best allocation inside the budget
   loses the least goodput); without one (metrics missing, profile missing), every
   target shrinks in proportion, keeping the split it had.
2. Blockers (missing metrics, a missing profile, ...): nothing else is written.
3. The plan, through HPA-style behavior limits and the budget-safe write order.

Recommend mode computes the same intent and writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from goodput.actuator.behavior import (
    PastRecommendation,
    apply_behavior,
    target_replicas,
)
from goodput.actuator.budget import TargetState, budget_safe_writes, shrink_to_budget
from goodput.api.spec import GoodputPolicySpec, Mode
from goodput.operator.facts import Facts, Intent, Target, Write
from goodput.plan import Adjustment, Plan
from goodput.reasons import Limit, Reason

# Plan reasons that say something was (or is to be) moved.
_MOVES = {Reason.ScaledUp, Reason.ScaledDown, Reason.Rebalanced}


def current(targets: Mapping[str, Target]) -> dict[str, int]:
    return {k: t.spec_replicas for k, t in targets.items()}


def asked_gpus(targets: Mapping[str, Target], replicas: Mapping[str, int]) -> int:
    return sum(replicas[k] * t.gpus_per_replica for k, t in targets.items())


def minimum_gpus(targets: Mapping[str, Target]) -> int:
    return sum(t.min_replicas * t.gpus_per_replica for t in targets.values())


def _ordered(targets: Mapping[str, Target], replicas: Mapping[str, int]) -> tuple[Write, ...]:
    """Shrinks before grows (budget safety), each group in key order (determinism)."""
    writes = [
        Write(k, targets[k].name, targets[k].spec_replicas, n)
        for k, n in replicas.items()
        if n != targets[k].spec_replicas
    ]
    return tuple(sorted(writes, key=lambda w: (w.up, w.key)))


def _describe(targets: Mapping[str, Target]) -> str:
    return ", ".join(
        f"{t.key} {t.name} {t.spec_replicas} x {t.gpus_per_replica}"
        + (f" (+{t.pods_terminating} terminating)" if t.pods_terminating else "")
        for t in targets.values()
    )


def _emergency(f: Facts, spec: GoodputPolicySpec, plan: Plan | None, why: str) -> Intent:
    """Asked-for GPUs exceed the budget: shrink at once, grow nothing."""
    targets = f.targets
    cur = current(targets)
    if plan is not None:
        goal = target_replicas({r: d.replicas for r, d in plan.pools.items()}, plan.tiers)
        shrink = {k: min(cur[k], goal.get(k, cur[k])) for k in cur}
        how = "to the plan's allocation"
        # A plan fits the budget by construction; guard the one promise all the same.
        if asked_gpus(targets, shrink) > spec.gpu_budget:
            shrink = shrink_to_budget(_states(targets), _mins(targets), spec.gpu_budget)
            how = "in proportion"
    else:
        goal = shrink_to_budget(_states(targets), _mins(targets), spec.gpu_budget)
        shrink = goal
        how = "in proportion, keeping the split (no plan: " + why + ")"
    asked = asked_gpus(targets, cur)
    message = (
        f"over budget: targets ask for {asked} GPUs, gpuBudget is {spec.gpu_budget}"
        f" ({asked - spec.gpu_budget} over; {_describe(targets)}); shrinking {how}"
        " now, ignoring stabilization windows and step limits; nothing grows until"
        " within budget"
    )
    deferred = {k: v for k, v in goal.items() if v > shrink.get(k, v)}
    return Intent(
        writes=_ordered(targets, shrink),
        desired=dict(goal),
        reason=Reason.OverBudget,
        message=message,
        limit=Limit.GpuBudget,
        deferred=deferred,
        emergency=True,
    )


def _states(targets: Mapping[str, Target]) -> dict[str, TargetState]:
    return {k: t.state for k, t in targets.items()}


def _mins(targets: Mapping[str, Target]) -> dict[str, int]:
    return {k: t.min_replicas for k, t in targets.items()}


def _hold(f: Facts, reason: Reason, message: str) -> Intent:
    return Intent(writes=(), desired=current(f.targets), reason=reason, message=message)


def decide(f: Facts) -> Intent:
    """The writes of this tick, in order, and the reason for them (see module doc)."""
    intent = _intent(f)
    if f.spec is None or f.spec.mode != Mode.Recommend:
        return intent
    split_moves = (
        f.variant_plan is not None
        and f.route is not None
        and not intent.emergency
        and f.variant_plan.shares != f.route.shares
    )
    if intent.desired == current(f.targets) and not intent.writes and not split_moves:
        return intent
    keep = {Reason.OverBudget, Reason.MinimumsExceedBudget}
    return replace(
        intent,
        writes=(),
        reason=intent.reason if intent.reason in keep else Reason.RecommendOnly,
        message=f"Recommend mode, nothing applied: {intent.message}",
    )


def _intent(f: Facts) -> Intent:
    spec = f.spec
    if spec is None or not f.targets:
        blocker = f.blocker
        assert blocker is not None, "a tick without spec or targets has a blocker"
        return _hold(f, blocker.reason, blocker.message)
    targets = f.targets
    cur = current(targets)
    floor = minimum_gpus(targets)
    if floor > spec.gpu_budget:
        need = ", ".join(
            f"{t.key} {t.min_replicas} x {t.gpus_per_replica}" for t in targets.values()
        )
        message = (
            f"minReplicas need {floor} GPUs ({need}), more than gpuBudget"
            f" {spec.gpu_budget}: raise gpuBudget or lower minReplicas; nothing grows"
        )
        goal = shrink_to_budget(_states(targets), _mins(targets), spec.gpu_budget)
        writes = _ordered(targets, goal) if asked_gpus(targets, cur) > spec.gpu_budget else ()
        return Intent(
            writes=writes,
            desired=goal,
            reason=Reason.MinimumsExceedBudget,
            message=message,
            limit=Limit.MinReplicas,
        )
    usable = f.plan if f.plan is not None and not f.plan.hold else None
    if asked_gpus(targets, cur) > spec.gpu_budget:
        why = (
            f.blocker.message
            if f.blocker is not None
            else (f.plan.message if f.plan is not None else "no plan")
        )
        return _emergency(f, spec, None if f.blocker is not None else usable, why)
    if f.blocker is not None:
        return _hold(f, f.blocker.reason, f.blocker.message)
    plan = f.plan
    assert plan is not None, "a tick without a blocker has a plan"
    if plan.hold:
        return _hold(f, plan.reason, plan.message)
    return _follow(f, spec, plan)


def _follow(f: Facts, spec: GoodputPolicySpec, plan: Plan) -> Intent:
    """The plan, limited by behavior and written in a budget-safe order."""
    targets = f.targets
    cur = current(targets)
    desired = target_replicas({r: d.replicas for r, d in plan.pools.items()}, plan.tiers)
    prev = f.prev
    history = [
        PastRecommendation(r.time.timestamp(), target_replicas(r.pools, r.tiers))
        for r in prev.recommendations
    ]
    last = prev.last_scale_time
    now = f.now.timestamp()
    limited = apply_behavior(
        desired,
        cur,
        history,
        spec.behavior.scale_up,
        spec.behavior.scale_down,
        now,
        last.up.timestamp() if last is not None and last.up else None,
        last.down.timestamp() if last is not None and last.down else None,
        {k: t.gpus_per_replica for k, t in targets.items()},
        spec.gpu_budget,
    )
    safe = budget_safe_writes(_states(targets), limited.replicas, spec.gpu_budget)
    writes = _ordered(targets, {k: safe.replicas.get(k, cur[k]) for k in cur})
    limit, pool = plan.binding_constraint, plan.binding_pool
    notes: list[str] = []
    adjustments = list(plan.adjustments)
    if limited.stabilized:
        notes.append(f"stabilization window holds {', '.join(limited.stabilized)}")
    if limited.rate_limited:
        notes.append(f"step limits cap {', '.join(limited.rate_limited)}")
    if limited.rebalance_shrunk:
        shrunk = ", ".join(
            f"{k} {cur[k]} -> {limited.replicas[k]}" for k in limited.rebalance_shrunk
        )
        text = (
            f"the rebalance's shrinks ({shrunk}) go past the scale-down step limit, as far"
            " as the growing pools need their GPUs"
        )
        notes.append(text)
        adjustments.append(Adjustment(reason=Reason.RebalanceShrink, message=text))
    if safe.deferred:
        notes.append(
            "waiting for released GPUs before growing "
            + ", ".join(f"{k} to {v}" for k, v in sorted(safe.deferred.items()))
        )
    # The actuator's limits bind after the plan's: the one that acted is named.
    if safe.deferred:
        limit, pool = Limit.WaitingForScaleDown, ",".join(sorted(safe.deferred))
    elif limited.stabilized:
        limit, pool = Limit.StabilizationWindow, ",".join(limited.stabilized)
    elif limited.rate_limited:
        limit, pool = Limit.StepLimit, ",".join(limited.rate_limited)
    message = "; ".join([plan.message, *notes])
    reason = plan.reason
    if safe.deferred:
        reason = Reason.WaitingForScaleDown
    elif not writes and desired != cur:
        reason = Reason.StabilizationWindow if limited.stabilized else Reason.RateLimited
    elif not writes and reason in _MOVES:
        reason = Reason.SteadyState
    return Intent(
        writes=writes,
        desired=desired,
        reason=reason,
        message=message,
        limit=limit,
        limit_pool=pool,
        deferred=dict(safe.deferred),
        adjustments=tuple(adjustments),
    )
