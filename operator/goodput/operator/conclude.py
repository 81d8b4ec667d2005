"""The pure half after the writes: from facts, intent and what the API server said to
each write, the whole status, the conditions and the events. No I/O.

The status is built from scratch every tick (the shell writes it whole), so a field
that no longer applies is gone: after a hold there is no predicted goodput and no
runner-up from an older plan. Only the state the behavior limits need across restarts
(recent recommendations, last scale times) is carried from the previous status.

Events only for what happened: one per accepted write (``a -> b``, with the target),
one per refused write, and one when the decision's reason changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from goodput.actuator.behavior import tier_key
from goodput.api.spec import Mode
from goodput.api.status import (
    MAX_RECOMMENDATIONS,
    Condition,
    ConditionStatus,
    ConditionType,
    Decision,
    DecisionAdjustment,
    GoodputPolicyStatus,
    GoodputStatus,
    LastScaleTime,
    PoolStatus,
    Recommendation,
    SplitAlternative,
    TierStatus,
    VariantDecision,
    WriteRecord,
    initial_conditions,
    replica_summary,
    set_condition,
    split_summary,
)
from goodput.api.status import Alternative as AltStatus
from goodput.api.status import Flip as FlipStatus
from goodput.operator.facts import Event, Facts, Intent, Outcome, RouteResult, WriteResult
from goodput.operator.variants import pool_entries
from goodput.plan import Plan
from goodput.planner.variants import VariantPlan
from goodput.reasons import Limit, Reason

_METRIC_HOLDS = {
    Reason.MetricsMissing,
    Reason.MetricsStale,
    Reason.MetricsPartial,
    Reason.PrometheusUnreachable,
}
_WARN = {
    Reason.RouteRefused,
    Reason.RouteNotFound,
    Reason.OverBudget,
    Reason.MinimumsExceedBudget,
    Reason.ScaleFailed,
    *_METRIC_HOLDS,
}


class _Conditions:
    def __init__(self, prev: Sequence[Condition], now: datetime, generation: int) -> None:
        self.items = list(prev) or initial_conditions(now, generation)
        self.now = now
        self.generation = generation

    def set(self, type_: ConditionType, ok: bool, reason: Reason | Limit, message: str) -> None:
        status = ConditionStatus.true if ok else ConditionStatus.false
        self.items = set_condition(
            self.items, type_, status, reason, message[:4000], self.now, self.generation
        )


def conclude(
    f: Facts,
    intent: Intent,
    results: Sequence[WriteResult],
    route: RouteResult | None = None,
) -> Outcome:
    """``route``: the traffic split written (or refused) before the scale writes, for a
    policy with variants and an HTTPRoute; a refused split means no scale write was
    attempted."""
    done = [r for r in results if r.ok]
    failed = next((r for r in results if not r.ok), None)
    reason, message = intent.reason, intent.message
    failure: Reason | None = None
    if route is not None and not route.ok:
        failure = reason = route.reason or Reason.RouteRefused
        message = (
            f"cannot set the traffic split on {route.route}: {route.error}; no scale write"
            " was attempted this tick (the replicas were planned for that split)"
        )
    elif failed is not None:
        failure = Reason.ScaleFailed
        w = failed.write
        ok = ", ".join(
            f"{r.write.target} {r.write.from_replicas} -> {r.write.to_replicas}" for r in done
        )
        reason = Reason.ScaleFailed
        message = (
            f"cannot scale {w.target} ({w.key}) {w.from_replicas} -> {w.to_replicas}:"
            f" {failed.error}; "
            + (f"written before it: {ok}; " if ok else "nothing was written; ")
            + "the rest of this tick's writes were not attempted"
        )
    conds = _conditions(f, intent, reason, message, failure)
    status = _status(f, intent, conds, done, results, reason, message, route)
    events = _events(f, intent, done, reason, message, route)
    return Outcome(
        status=status,
        events=events,
        reason=reason,
        writes=list(results),
        route=route,
        failed=failure is not None or (f.blocker is not None and f.blocker.reason in _FAILURES),
    )


# Blockers that are failures of an API call (retry with backoff), not states of the data.
_FAILURES = {Reason.TargetNotFound, Reason.ScaleFailed, Reason.RouteNotFound}


def _conditions(
    f: Facts, intent: Intent, reason: Reason, message: str, failure: Reason | None
) -> list[Condition]:
    c = _Conditions(f.prev.conditions, f.now, f.generation)
    spec, blocker, plan = f.spec, f.blocker, f.plan
    ready_problem: tuple[Reason, str] | None = None
    if blocker is not None:
        c.set(blocker.condition, False, blocker.reason, blocker.message)
        if blocker.condition != ConditionType.AbleToScale and f.targets:
            c.set(
                ConditionType.AbleToScale, True, Reason.Succeeded, "targets found, /scale readable"
            )
        c.set(ConditionType.ScalingActive, False, blocker.reason, f"holding: {blocker.message}")
        ready_problem = (blocker.reason, blocker.message)
    elif plan is not None:
        c.set(ConditionType.AbleToScale, True, Reason.Succeeded, "targets found, /scale readable")
        if plan.hold:
            c.set(ConditionType.MetricsAvailable, False, plan.reason, plan.message)
            c.set(ConditionType.ScalingActive, False, plan.reason, f"holding: {plan.message}")
            ready_problem = (plan.reason, plan.message)
        else:
            c.set(
                ConditionType.MetricsAvailable,
                True,
                Reason.Succeeded,
                "every required signal fresh",
            )
            c.set(ConditionType.ScalingActive, True, plan.reason, plan.message)
            c.set(
                ConditionType.BudgetSatisfiable,
                plan.budget_satisfiable,
                Reason.Succeeded if plan.budget_satisfiable else plan.reason,
                plan.message,
            )
    if failure is not None:
        c.set(ConditionType.AbleToScale, False, failure, message)
        ready_problem = ready_problem or (failure, message)
    if spec is not None and f.targets:
        held = f.gpus_held
        if intent.reason == Reason.MinimumsExceedBudget:
            c.set(
                ConditionType.BudgetSatisfiable, False, Reason.MinimumsExceedBudget, intent.message
            )
            ready_problem = (Reason.MinimumsExceedBudget, intent.message)
        if held > spec.gpu_budget:
            over = (
                f"{held} GPUs held, gpuBudget {spec.gpu_budget}: {held - spec.gpu_budget} over"
                + (
                    "; shrink written, waiting for pods to terminate"
                    if not intent.writes and intent.reason != Reason.OverBudget
                    else ""
                )
            )
            c.set(ConditionType.WithinBudget, False, Reason.OverBudget, over)
            if ready_problem is None or ready_problem[0] != Reason.MinimumsExceedBudget:
                ready_problem = (Reason.OverBudget, over)
        else:
            c.set(
                ConditionType.WithinBudget,
                True,
                Reason.Succeeded,
                f"{held} of {spec.gpu_budget} GPUs held",
            )
        if blocker is None and plan is not None and not plan.hold:
            if intent.limit != Limit.None_:
                where = f" ({intent.limit_pool})" if intent.limit_pool else ""
                c.set(
                    ConditionType.ScalingLimited,
                    True,
                    intent.limit,
                    f"{intent.limit.value}{where}: {intent.message}",
                )
            else:
                c.set(ConditionType.ScalingLimited, False, Reason.Succeeded, "no limit binds")
    if ready_problem is not None:
        c.set(ConditionType.Ready, False, ready_problem[0], ready_problem[1])
    elif spec is not None:
        enforce = spec.mode == Mode.Enforce
        c.set(
            ConditionType.Ready,
            True,
            reason,
            "enforcing the plan" if enforce else "publishing recommendations only (mode Recommend)",
        )
    return c.items


def _status(
    f: Facts,
    intent: Intent,
    conditions: list[Condition],
    done: list[WriteResult],
    results: Sequence[WriteResult],
    reason: Reason,
    message: str,
    route: RouteResult | None = None,
) -> GoodputPolicyStatus:
    spec, plan = f.spec, f.plan
    planned = plan is not None and not plan.hold and f.blocker is None
    records = [
        WriteRecord(
            target=r.write.target,
            key=r.write.key,
            from_replicas=r.write.from_replicas,
            to_replicas=r.write.to_replicas,
            ok=r.ok,
            error=r.error,
        )
        for r in results
    ]
    decision = Decision(
        time=f.now,
        reason=reason,
        message=message[:4000],
        applied=bool(done),
        hold=not planned,
        pools={e.key: intent.desired[e.key] for e in pool_entries(spec) if e.key in intent.desired}
        if spec is not None
        else {},
        tiers={
            t.name: intent.desired[tier_key(t.name)]
            for t in spec.kv_cache.tiers
            if tier_key(t.name) in intent.desired
        }
        if spec is not None
        else {},
        total_gpus=sum(
            n * f.targets[k].gpus_per_replica for k, n in intent.desired.items() if k in f.targets
        ),
        binding_constraint=intent.limit,
        binding_pool=intent.limit_pool,
        writes=records,
        runner_up=_runner_up(plan) if planned and plan is not None else None,
        adjustments=[
            DecisionAdjustment(reason=a.reason, message=a.message[:4096])
            for a in (intent.adjustments if planned else ())
        ],
    )
    vplan = f.variant_plan
    if planned and vplan is not None:
        decision = decision.model_copy(update=_variant_decision(vplan))
    prev = f.prev
    recs = list(prev.recommendations)
    if planned and plan is not None and spec is not None:
        window = max(
            spec.behavior.scale_up.stabilization_window_seconds,
            spec.behavior.scale_down.stabilization_window_seconds,
        )
        recs = [r for r in recs if (f.now - r.time).total_seconds() < window]
        recs.append(
            Recommendation(
                time=f.now,
                pools={r: d.replicas for r, d in plan.pools.items()},
                tiers=dict(plan.tiers),
            )
        )
        recs = recs[-MAX_RECOMMENDATIONS:]
    last = prev.last_scale_time or LastScaleTime()
    if any(r.write.up for r in done):
        last = last.model_copy(update={"up": f.now})
    if any(not r.write.up for r in done):
        last = last.model_copy(update={"down": f.now})
    status = GoodputPolicyStatus(
        observed_generation=f.generation,
        conditions=conditions,
        last_decision=decision,
        last_scale_time=last if (last.up or last.down) else None,
        recommendations=recs,
        planner_state=f.planner_state if f.planner_state is not None else prev.planner_state,
    )
    if spec is None:
        return status
    update: dict[str, object] = {"gpu_budget": spec.gpu_budget}
    if f.targets:
        after = {k: t.spec_replicas for k, t in f.targets.items()}
        after.update({r.write.key: r.write.to_replicas for r in done})
        desired = {k: intent.desired.get(k, n) for k, n in after.items()}
        keys = [e.key for e in pool_entries(spec) if e.key in f.targets]
        pools = [
            PoolStatus(
                role=k,
                target=f.targets[k].name,
                current_replicas=after[k],
                ready_replicas=f.targets[k].pods_ready,
                desired_replicas=desired[k],
                gpus_per_replica=f.targets[k].gpus_per_replica,
                predicted_ttft_seconds=_pd(plan, k, "predicted_ttft_s") if planned else None,
                predicted_itl_seconds=_pd(plan, k, "predicted_itl_s") if planned else None,
            )
            for k in keys
        ]
        roles = keys
        update.update(
            gpus_allocated=f.gpus_held,
            gpus_desired=sum(desired[k] * f.targets[k].gpus_per_replica for k in desired),
            replicas=replica_summary({r: after[r] for r in roles}, {r: desired[r] for r in roles}),
            pools=pools,
            tiers=[
                TierStatus(
                    name=t.name,
                    current_replicas=after[tier_key(t.name)],
                    desired_replicas=desired[tier_key(t.name)],
                )
                for t in spec.kv_cache.tiers
                if tier_key(t.name) in f.targets
            ],
        )
    obs = f.observation
    if obs is not None:
        est = obs.estimate
        update["goodput"] = GoodputStatus(
            observed_tokens_per_second=_round(est.goodput_tokens_per_s),
            predicted_tokens_per_second=_round(plan.predicted_goodput)
            if planned and plan is not None
            else None,
            observed_attainment=_round(est.attainment),
            observed_attainment_lower=_round(est.attainment_lower),
            observed_attainment_upper=_round(est.attainment_upper),
            predicted_attainment=_round(plan.predicted_attainment)
            if planned and plan is not None
            else None,
            quality=obs.quality,
            observed_time=datetime.fromtimestamp(obs.timestamp, UTC),
        )
        update["last_observation"] = obs.model_dump(mode="json", exclude_none=True)
    split = _split_now(f, route, planned)
    if split is not None:
        update["split"] = split_summary(split)
    return status.model_copy(update=update)


def _split_now(f: Facts, route: RouteResult | None, planned: bool) -> dict[str, int] | None:
    """The traffic split the route carries after this tick; without a route, the split
    the plan publishes (nothing else carries it)."""
    if route is not None:
        return route.after
    if f.route is not None:
        return f.route.shares
    if planned and f.variant_plan is not None:
        return f.variant_plan.shares
    return None


def _variant_decision(vplan: VariantPlan) -> dict[str, object]:
    """The variant part of ``lastDecision``: each variant's share, replicas, quality and
    value, the runner-up split and what would flip the choice."""
    runner = vplan.runner_up
    flip = vplan.flip
    return {
        "variants": [
            VariantDecision(
                name=name,
                share=out.share,
                pools={r: d.replicas for r, d in out.plan.pools.items()},
                total_gpus=out.plan.total_gpus,
                quality=_round(out.quality),
                value_per_answer=_round(out.value_per_answer),
                predicted_tokens_per_second=_round(out.predicted_tokens_per_s),
                predicted_value_per_second=_round(out.predicted_value_per_s),
                reason=out.plan.reason.value,
            )
            for name, out in vplan.variants.items()
        ],
        "predicted_value_per_second": _round(vplan.predicted_value_per_s),
        "runner_up_split": SplitAlternative(
            shares=dict(runner.shares),
            gpus=dict(runner.gpus),
            predicted_value_per_second=_round(runner.predicted_value_per_s) or 0.0,
        )
        if runner is not None
        else None,
        "flip": FlipStatus(
            break_even_wrong_answer_cost=_round(flip.break_even_wrong_answer_cost),
            overflow_load_rps=_round(flip.overflow_load_rps),
            message=flip.message[:32768],
        )
        if flip is not None
        else None,
    }


def _events(
    f: Facts,
    intent: Intent,
    done: list[WriteResult],
    reason: Reason,
    message: str,
    route: RouteResult | None = None,
) -> list[Event]:
    """A refused write is the decision's own (Warning) event, once per episode."""
    events: list[Event] = []
    if route is not None and route.ok:
        moved = ", ".join(
            f"{n} {route.before.get(n, 0)} -> {pct}%" for n, pct in route.after.items()
        )
        events.append(
            Event(
                "Normal", Reason.TrafficShifted, f"{route.route}: {moved}: {intent.message}"[:1024]
            )
        )
    before = f.prev.last_decision
    if before is None or before.reason != reason:
        warn = reason in _WARN or (f.blocker is not None and f.blocker.warn)
        events.append(Event("Warning" if warn else "Normal", reason, message))
    why = intent.message
    for r in done:
        w = r.write
        events.append(
            Event(
                "Normal",
                Reason.ScaledUp if w.up else Reason.ScaledDown,
                f"{w.target} ({w.key}) {w.from_replicas} -> {w.to_replicas}: {why}"[:1024],
            )
        )
    return events


def _runner_up(plan: Plan) -> AltStatus | None:
    runner = plan.runner_up
    if runner is None:
        return None
    return AltStatus(
        pools=runner.pools,
        tiers=runner.tiers,
        total_gpus=runner.total_gpus,
        predicted_goodput=_round(runner.predicted_goodput) or 0.0,
        predicted_attainment=_round(runner.predicted_attainment) or 0.0,
    )


def _pd(plan: Plan | None, role: str, attr: str) -> float | None:
    d = plan.pools.get(role) if plan is not None else None
    return _round(getattr(d, attr)) if d is not None else None


def _round(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)
