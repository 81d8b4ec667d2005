"""The pure halves of a tick, table-driven: what ``decide`` writes and what
``conclude`` says (status written whole, conditions, events) for each state."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from goodput.api.spec import GoodputPolicySpec, Mode, TargetRef
from goodput.api.status import (
    Alternative,
    ConditionStatus,
    ConditionType,
    Decision,
    GoodputPolicyStatus,
    GoodputStatus,
    Recommendation,
)
from goodput.observation import Observation
from goodput.operator.conclude import conclude
from goodput.operator.decide import decide
from goodput.operator.facts import Blocker, Facts, Target, Write, WriteResult
from goodput.plan import Adjustment, Plan, PoolDecision
from goodput.reasons import Limit, Reason
from tests.unit.planner_fixtures import disagg_spec, observation

NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


def spec(budget: int = 8, mode: Mode = Mode.Enforce, **kw: object) -> GoodputPolicySpec:
    s = disagg_spec(budget, **kw)  # type: ignore[arg-type]
    pools = [
        p.model_copy(update={"gpus_per_replica": g}) for p, g in zip(s.pools, (1, 2), strict=True)
    ]
    return s.model_copy(update={"pools": pools, "mode": mode})


def targets(
    p: int, d: int, *, p_pods: int | None = None, d_pods: int | None = None, min_p: int = 1
) -> dict[str, Target]:
    """Pods beyond the spec replicas are terminating (a shrink still draining)."""
    pp = p if p_pods is None else p_pods
    dp = d if d_pods is None else d_pods
    return {
        "prefill": Target("prefill", TargetRef(name="p"), p, pp, p, 1, min_p, 32, max(0, pp - p)),
        "decode": Target("decode", TargetRef(name="d"), d, dp, d, 2, 1, 32, max(0, dp - d)),
    }


def plan(p: int, d: int, reason: Reason = Reason.Rebalanced, **kw: object) -> Plan:
    return Plan(
        pools={
            "prefill": PoolDecision(role="prefill", replicas=p, gpus_per_replica=1),
            "decode": PoolDecision(role="decode", replicas=d, gpus_per_replica=2),
        },
        total_gpus=p + 2 * d,
        budget=8,
        reason=reason,
        message=f"plan {p}/{d}",
        predicted_goodput=1000.0,
        predicted_attainment=0.95,
        **kw,  # type: ignore[arg-type]
    )


def facts(**kw: object) -> Facts:
    base = Facts(
        now=NOW,
        generation=2,
        prev=GoodputPolicyStatus(),
        spec=spec(),
        targets=targets(2, 3),
        observation=observation(5.0, now=NOW.timestamp()),
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def missing_metrics() -> Blocker:
    return Blocker(
        Reason.MetricsMissing, "missing arrival_rate_rps", ConditionType.MetricsAvailable
    )


def in_window(p: int, d: int) -> GoodputPolicyStatus:
    """A previous status whose recent recommendation wanted p/d (the down window holds)."""
    return GoodputPolicyStatus(
        recommendations=[
            Recommendation(time=NOW - timedelta(seconds=30), pools={"prefill": p, "decode": d})
        ]
    )


@dataclass
class Case:
    id: str
    facts: Facts
    writes: list[tuple[str, int, int]]  # (key, from, to), in order
    reason: Reason
    limit: Limit = Limit.None_
    deferred: dict[str, int] = field(default_factory=dict)


CASES = [
    Case("steady", facts(plan=plan(2, 3, Reason.SteadyState)), [], Reason.SteadyState),
    Case(
        "scale up written",
        facts(targets=targets(1, 2), plan=plan(2, 3, Reason.ScaledUp)),
        [("decode", 2, 3), ("prefill", 1, 2)],
        Reason.ScaledUp,
    ),
    Case(
        "rebalance shrinks first, grow waits for the pods",
        facts(targets=targets(4, 2), plan=plan(2, 3)),
        [("prefill", 4, 2)],
        Reason.WaitingForScaleDown,
        Limit.WaitingForScaleDown,
        {"decode": 3},
    ),
    Case(
        "scale-down held by the window: nothing written, no ScaledDown claimed",
        facts(targets=targets(2, 3), prev=in_window(2, 3), plan=plan(1, 3, Reason.ScaledDown)),
        [],
        Reason.StabilizationWindow,
        Limit.StabilizationWindow,
    ),
    Case(
        "budget cut below what is held: the plan's shrink now, window ignored",
        facts(
            spec=spec(budget=5),
            targets=targets(2, 3),
            prev=in_window(2, 3),
            plan=plan(1, 2, Reason.ScaledDown),
        ),
        [("decode", 3, 2), ("prefill", 2, 1)],
        Reason.OverBudget,
        Limit.GpuBudget,
    ),
    Case(
        "scaled by hand over budget while metrics are missing: the budget wins",
        # 4x1 + 4x2 = 12 GPUs into 8: two thirds of each (2 and 2), then the rounding's
        # spare 2 GPUs go back to the pool that lost most (decode): 2x1 + 3x2 = 8.
        facts(targets=targets(4, 4), blocker=missing_metrics(), plan=None),
        [("decode", 4, 3), ("prefill", 4, 2)],
        Reason.OverBudget,
        Limit.GpuBudget,
    ),
    Case(
        "metrics missing within budget: hold",
        facts(blocker=missing_metrics(), plan=None),
        [],
        Reason.MetricsMissing,
    ),
    Case(
        "minimums above the budget: nothing grows",
        facts(spec=spec(budget=8), targets=targets(6, 1, min_p=7), plan=plan(7, 1)),
        [],
        Reason.MinimumsExceedBudget,
        Limit.MinReplicas,
    ),
    Case(
        "recommend mode writes nothing",
        facts(spec=spec(mode=Mode.Recommend), targets=targets(1, 2), plan=plan(2, 3)),
        [],
        Reason.RecommendOnly,
    ),
    Case(
        "recommend mode over budget: said, not written",
        facts(spec=spec(budget=5, mode=Mode.Recommend), plan=plan(1, 2)),
        [],
        Reason.OverBudget,
        Limit.GpuBudget,
    ),
    Case(
        "shrink written, pods still terminating: no second write, no grow",
        facts(spec=spec(budget=5), targets=targets(1, 2, d_pods=3), plan=plan(1, 2)),
        [],
        Reason.SteadyState,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_decide(case: Case) -> None:
    intent = decide(case.facts)
    assert [(w.key, w.from_replicas, w.to_replicas) for w in intent.writes] == case.writes
    assert intent.reason == case.reason
    assert intent.limit == case.limit
    assert intent.deferred == case.deferred
    # Whatever the case, no write ever grows while the asked-for GPUs exceed the budget.
    spec_ = case.facts.spec
    assert spec_ is not None
    asked = {k: t.spec_replicas for k, t in case.facts.targets.items()}
    for w in intent.writes:
        if w.up:
            gpus = sum(n * case.facts.targets[k].gpus_per_replica for k, n in asked.items())
            assert gpus <= spec_.gpu_budget
        asked[w.key] = w.to_replicas


def test_over_budget_says_who_and_by_how_much_and_ready_is_false() -> None:
    f = facts(targets=targets(4, 4), blocker=missing_metrics(), plan=None)
    intent = decide(f)
    out = conclude(f, intent, [WriteResult(w) for w in intent.writes])
    assert "12 GPUs" in intent.message and "4 over" in intent.message
    assert "p 4 x 1" in intent.message and "d 4 x 2" in intent.message
    within = out.status.condition(ConditionType.WithinBudget)
    ready = out.status.condition(ConditionType.Ready)
    assert within is not None and within.status == ConditionStatus.false
    assert within.reason == Reason.OverBudget
    assert ready is not None and ready.status == ConditionStatus.false
    assert [e.type for e in out.events if e.reason == Reason.OverBudget] == ["Warning"]
    writes = [e.message for e in out.events if e.reason == Reason.ScaledDown]
    assert len(writes) == 2 and "Deployment/d (decode) 4 -> 3" in writes[0]


def test_minimums_above_budget_are_not_ready_with_a_warning() -> None:
    f = facts(spec=spec(budget=8), targets=targets(6, 1, min_p=7), plan=plan(7, 1))
    out = conclude(f, decide(f), [])
    ready = out.status.condition(ConditionType.Ready)
    assert ready is not None and ready.status == ConditionStatus.false
    assert ready.reason == Reason.MinimumsExceedBudget
    assert "raise gpuBudget or lower minReplicas" in ready.message
    assert out.events[0].type == "Warning"


def test_a_refused_write_is_scale_failed_and_what_was_written_before_is_recorded() -> None:
    f = facts(targets=targets(1, 2), plan=plan(2, 3, Reason.ScaledUp))
    intent = decide(f)
    first, second = intent.writes
    results = [WriteResult(first), WriteResult(second, "403 Forbidden: cannot patch")]
    out = conclude(f, intent, results)
    assert out.reason == Reason.ScaleFailed and out.failed
    records = out.status.last_decision.writes if out.status.last_decision else []
    assert [(r.key, r.ok) for r in records] == [("decode", True), ("prefill", False)]
    able = out.status.condition(ConditionType.AbleToScale)
    assert able is not None and able.status == ConditionStatus.false
    assert able.reason == Reason.ScaleFailed and "Deployment/p" in able.message
    warn = [e for e in out.events if e.type == "Warning"]
    assert len(warn) == 1 and "Deployment/p (prefill) 1 -> 2" in warn[0].message
    assert "403 Forbidden" in warn[0].message and "Deployment/d 2 -> 3" in warn[0].message
    # The accepted write is current in status; the refused one is not.
    pools = {p.role: p.current_replicas for p in out.status.pools}
    assert pools == {"prefill": 1, "decode": 3}


def test_status_is_whole_a_hold_drops_the_old_plan() -> None:
    prev = GoodputPolicyStatus(
        goodput=GoodputStatus(predicted_tokens_per_second=900.0, observed_tokens_per_second=5.0),
        last_decision=Decision(
            time=NOW - timedelta(seconds=15),
            reason=Reason.Rebalanced,
            runner_up=Alternative(pools={"prefill": 1}, total_gpus=1),
            binding_constraint=Limit.GpuBudget,
        ),
    )
    f = facts(prev=prev, blocker=missing_metrics(), plan=None, observation=None)
    out = conclude(f, decide(f), [])
    st = out.status
    assert st.goodput is None
    assert st.last_decision is not None and st.last_decision.runner_up is None
    assert st.last_decision.binding_constraint == Limit.None_ and st.last_decision.hold
    assert st.last_decision.reason == Reason.MetricsMissing
    assert [e.reason for e in out.events] == [Reason.MetricsMissing]
    assert out.events[0].type == "Warning"


def test_one_event_per_write_and_one_per_change_of_decision() -> None:
    f = facts(targets=targets(1, 2), plan=plan(2, 3, Reason.ScaledUp))
    intent = decide(f)
    out = conclude(f, intent, [WriteResult(w) for w in intent.writes])
    assert [e.reason for e in out.events] == [Reason.ScaledUp, Reason.ScaledUp, Reason.ScaledUp]
    again = facts(prev=out.status, plan=plan(2, 3, Reason.SteadyState))
    out2 = conclude(again, decide(again), [])
    assert [e.reason for e in out2.events] == [Reason.SteadyState]
    out3 = conclude(replace(again, prev=out2.status), decide(again), [])
    assert out3.events == []


def test_scaling_limited_names_the_limit_only_when_one_bound() -> None:
    free = facts(plan=plan(2, 3, Reason.SteadyState))
    cond = conclude(free, decide(free), []).status.condition(ConditionType.ScalingLimited)
    assert cond is not None and cond.status == ConditionStatus.false
    bound = facts(plan=plan(2, 3, Reason.SteadyState, binding_constraint=Limit.MaxReplicas))
    cond = conclude(bound, decide(bound), []).status.condition(ConditionType.ScalingLimited)
    assert cond is not None and cond.status == ConditionStatus.true
    assert cond.reason == Limit.MaxReplicas


def test_write_order_is_shrink_first() -> None:
    # 4x1 + 1x2 = 6 of 8: the grow fits beside the prefill pods still terminating.
    f = facts(targets=targets(4, 1), plan=plan(2, 2))
    assert decide(f).writes == (
        Write("prefill", "Deployment/p", 4, 2),
        Write("decode", "Deployment/d", 1, 2),
    )


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 8),
    st.integers(0, 8),
    st.integers(0, 3),
    st.integers(0, 3),
    st.integers(1, 24),
    st.one_of(st.none(), st.tuples(st.integers(1, 8), st.integers(1, 8))),
)
def test_property_never_grows_past_the_budget_and_over_budget_is_fixed_in_one_tick(
    p: int, d: int, p_extra: int, d_extra: int, budget: int, wanted: tuple[int, int] | None
) -> None:
    """Any state, any plan: replaying the writes in order, no grow is ever issued while the
    GPUs held (asked-for replicas and pods still terminating) would exceed the budget;
    and when the minimums fit, the asked-for GPUs are within budget after the writes."""
    f = facts(
        spec=spec(budget=budget),
        targets=targets(
            max(p, 1), max(d, 1), p_pods=max(p, 1) + p_extra, d_pods=max(d, 1) + d_extra
        ),
        plan=None if wanted is None else plan(*wanted),
        blocker=None if wanted is not None else missing_metrics(),
    )
    intent = decide(f)
    asked = {k: t.spec_replicas for k, t in f.targets.items()}
    states = {k: t.state for k, t in f.targets.items()}
    gpr = {k: t.gpus_per_replica for k, t in f.targets.items()}
    for w in intent.writes:
        asked[w.key] = w.to_replicas
        states[w.key] = states[w.key].asking(w.to_replicas)
        if w.up:
            # The ReplicaSet makes new pods beside the terminating ones.
            held = sum(s.gpus_held for s in states.values())
            assert held <= budget, (w, states)
    mins = sum(t.min_replicas * t.gpus_per_replica for t in f.targets.values())
    if mins <= budget:
        assert sum(asked[k] * gpr[k] for k in asked) <= budget


def test_status_keeps_the_observation_the_decision_was_made_from() -> None:
    f = facts(plan=plan(2, 3, Reason.SteadyState))
    st = conclude(f, decide(f), []).status
    assert st.last_observation is not None
    assert Observation.model_validate(st.last_observation) == f.observation
    blind = facts(blocker=missing_metrics(), plan=None, observation=None)
    assert conclude(blind, decide(blind), []).status.last_observation is None


def test_a_rebalances_shrink_past_its_step_limit_is_named_in_status() -> None:
    """Decode gives 2 replicas (4 GPUs) to prefill under a 1-replica scale-down step:
    decode shrinks by 2 at once (prefill grows when the released GPUs are gone), and
    lastDecision.adjustments says why (RebalanceShrink).
    The plan's own adjustments come first."""
    step = {"type": "Replicas", "value": 1, "periodSeconds": 60}
    slow_down = {"scaleDown": {"stabilizationWindowSeconds": 0, "policies": [step]}}
    s = spec()
    s = s.model_copy(update={"behavior": s.behavior.model_validate(slow_down)})
    note = Adjustment(reason=Reason.DemandCapped, message="capped")
    f = facts(spec=s, targets=targets(2, 3), plan=plan(6, 1, adjustments=(note,)))
    intent = decide(f)
    assert {w.key: w.to_replicas for w in intent.writes} == {"decode": 1}
    assert intent.deferred == {"prefill": 6}
    assert [a.reason for a in intent.adjustments] == [Reason.DemandCapped, Reason.RebalanceShrink]
    status = conclude(f, intent, [WriteResult(w) for w in intent.writes]).status
    assert status.last_decision is not None
    got = [a.reason for a in status.last_decision.adjustments]
    assert got == [Reason.DemandCapped, Reason.RebalanceShrink]
    assert "decode 3 -> 1" in status.last_decision.adjustments[1].message
