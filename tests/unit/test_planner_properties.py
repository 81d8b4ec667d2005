"""Property tests of the planner over random policies and observations."""

from __future__ import annotations

from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from goodput.api.spec import GoodputPolicySpec
from goodput.observation import LatencySummary
from goodput.plan import Allocation, Plan
from goodput.planner import plan
from goodput.reasons import Limit, Reason

from .planner_fixtures import observation

PROFILES = [
    "llama-3.1-8b-h100-tp1",
    "llama-3.1-8b-a100-tp1",
    "llama-3.1-70b-h100-tp4",
    "llama-3.1-70b-a100-tp8",
]
SETTINGS = settings(max_examples=60, deadline=None)


@st.composite
def specs(draw: st.DrawFn) -> GoodputPolicySpec:
    aggregated = draw(st.booleans())
    roles = ["aggregated"] if aggregated else ["prefill", "decode"]
    pools = []
    for role in roles:
        lo = draw(st.integers(0, 3))
        pools.append(
            {
                "role": role,
                "targetRef": {"name": role},
                "minReplicas": lo,
                "maxReplicas": draw(st.integers(max(lo, 1), 40)),
                "profile": draw(st.sampled_from(PROFILES)),
                "gpusPerReplica": draw(st.one_of(st.none(), st.integers(1, 8))),
            }
        )
    doc: dict[str, Any] = {
        "gpuBudget": draw(st.integers(1, 160)),
        "pools": pools,
        "slo": {
            "ttft": draw(st.sampled_from(["200ms", "500ms", "2s"])),
            "itl": draw(st.sampled_from(["20ms", "50ms", "100ms"])),
            "attainment": draw(st.sampled_from([0.8, 0.9, 0.99])),
        },
    }
    if draw(st.booleans()):
        doc["kvCache"] = {
            "tiers": [
                {
                    "name": "cpu",
                    "targetRef": {"name": "c"},
                    "capacityPerReplicaGib": 128,
                    "bandwidthGibPerS": 16,
                    "maxReplicas": draw(st.integers(0, 4)),
                    "gpusPerReplica": draw(st.integers(0, 1)),
                },
                {
                    "name": "disk",
                    "targetRef": {"name": "k"},
                    "capacityPerReplicaGib": 1024,
                    "bandwidthGibPerS": 2,
                    "maxReplicas": draw(st.integers(0, 4)),
                },
            ]
        }
    try:
        return GoodputPolicySpec.model_validate(doc)
    except ValueError:
        assume(False)
        raise


def gpr(spec: GoodputPolicySpec, result: Plan, role: str) -> int:
    return result.pools[role].gpus_per_replica


def min_gpus_fit(spec: GoodputPolicySpec) -> bool:
    from goodput.profiles import load_profile

    total = 0
    for p in spec.pools:
        per = p.gpus_per_replica or load_profile(p.profile or "").gpus_per_replica
        total += p.min_replicas * per
    return total <= spec.gpu_budget


def roles_of(spec: GoodputPolicySpec) -> tuple[str, str]:
    if len(spec.pools) == 1:
        return ("aggregated", "aggregated")
    return ("prefill", "decode")


def obs_for(
    spec: GoodputPolicySpec, rate: float, inp: float, out: float, hit: float | None, **kw: Any
) -> Any:
    return observation(
        rate, input_tokens=inp, output_tokens=out, hit=hit, roles=roles_of(spec), **kw
    )


demand = st.tuples(
    st.floats(0.01, 400.0),
    st.floats(16.0, 16000.0),
    st.floats(1.0, 2000.0),
    st.one_of(st.none(), st.floats(0.0, 0.9)),
)


@SETTINGS
@given(specs(), demand, st.data())
def test_plan_within_budget_and_bounds_and_deterministic(
    spec: GoodputPolicySpec, dem: tuple[float, float, float, float | None], data: st.DataObject
) -> None:
    assume(min_gpus_fit(spec))
    rate, inp, out, hit = dem
    current = Allocation(
        pools={p.role.value: data.draw(st.integers(0, p.max_replicas)) for p in spec.pools}
    )
    obs = obs_for(spec, rate, inp, out, hit)
    result, state = plan(spec, obs, current, None, 0.0)
    assert result.total_gpus <= spec.gpu_budget
    computed = sum(d.replicas * d.gpus_per_replica for d in result.pools.values())
    computed += sum(result.tiers[t.name] * t.gpus_per_replica for t in spec.kv_cache.tiers)
    assert result.total_gpus == computed
    for p in spec.pools:
        assert p.min_replicas <= result.pools[p.role.value].replicas <= p.max_replicas
    for t in spec.kv_cache.tiers:
        assert t.min_replicas <= result.tiers[t.name] <= max(t.max_replicas, t.min_replicas)
    assert result.reason != Reason.MetricsMissing and result.message
    again, state2 = plan(spec, obs, current, None, 0.0)
    assert again == result and state2 == state


@SETTINGS
@given(specs(), demand, st.floats(1.05, 4.0))
def test_more_demand_with_spare_budget_never_fewer_gpus(
    spec: GoodputPolicySpec, dem: tuple[float, float, float, float | None], more: float
) -> None:
    assume(min_gpus_fit(spec))
    rate, inp, out, hit = dem
    current = Allocation(pools={p.role.value: p.min_replicas for p in spec.pools})
    low, _ = plan(spec, obs_for(spec, rate, inp, out, hit), current, None, 0.0)
    high, _ = plan(spec, obs_for(spec, rate * more, inp, out, hit), current, None, 0.0)
    if high.budget_satisfiable:
        assert high.total_gpus >= low.total_gpus
    if high.total_gpus < low.total_gpus:
        # Only where the SLO is missed anyway: the limit is named and so are the GPUs.
        assert high.binding_constraint != Limit.None_
        assert "handing back" in high.message


@SETTINGS
@given(specs(), demand)
def test_a_limit_is_named_only_when_it_binds(
    spec: GoodputPolicySpec, dem: tuple[float, float, float, float | None]
) -> None:
    assume(min_gpus_fit(spec))
    rate, inp, out, hit = dem
    current = Allocation(pools={p.role.value: p.min_replicas for p in spec.pools})
    obs = obs_for(spec, rate, inp, out, hit)
    result, _ = plan(spec, obs, current, None, 0.0)
    assert ("budget exhausted" in result.message) == (result.binding_constraint == Limit.GpuBudget)
    if result.budget_satisfiable:
        assert result.reason not in (Reason.BudgetExhausted, Reason.SloUnreachable)
        return
    assert result.binding_constraint in (Limit.GpuBudget, Limit.MaxReplicas, Limit.SloFloor)
    budget_named = result.binding_constraint == Limit.GpuBudget
    assert (result.reason == Reason.BudgetExhausted) == budget_named
    if result.binding_constraint == Limit.MaxReplicas:
        assert result.binding_pool in result.pools
    if not budget_named:
        return
    # Budget: a pool below its maxReplicas that still fits a replica would add no goodput
    # (the plan already holds every GPU that adds some): even forcing it in does not win.
    for pool in spec.pools:
        d = result.pools[pool.role.value]
        if (
            d.replicas < pool.max_replicas
            and result.total_gpus + d.gpus_per_replica <= spec.gpu_budget
        ):
            assert "but add no goodput" in result.message
            pools = [
                q.model_copy(update={"min_replicas": d.replicas + 1}) if q is pool else q
                for q in spec.pools
            ]
            forced, _ = plan(spec.model_copy(update={"pools": pools}), obs, current, None, 0.0)
            assert forced.predicted_goodput <= result.predicted_goodput * (1 + 1e-9) + 1e-9


@SETTINGS
@given(specs(), demand, st.data())
def test_pool_missing_its_slo_never_shrinks(
    spec: GoodputPolicySpec, dem: tuple[float, float, float, float | None], data: st.DataObject
) -> None:
    assume(min_gpus_fit(spec))
    rate, inp, out, hit = dem
    current = Allocation(
        pools={
            p.role.value: data.draw(st.integers(p.min_replicas, p.max_replicas)) for p in spec.pools
        }
    )
    probe, _ = plan(spec, obs_for(spec, rate, inp, out, hit), current, None, 0.0)
    per = {r: d.gpus_per_replica for r, d in probe.pools.items()}
    assume(sum(n * per[r] for r, n in current.pools.items()) <= spec.gpu_budget)
    roles = roles_of(spec)
    victim = data.draw(st.sampled_from(sorted(set(roles))))
    bad = LatencySummary(attainment=spec.slo.attainment / 2)
    kw = {"ttft": bad} if victim in ("prefill", "aggregated") else {"itl": bad}
    result, _ = plan(spec, obs_for(spec, rate, inp, out, hit, **kw), current, None, 0.0)
    assert result.total_gpus <= spec.gpu_budget
    if result.pools[victim].replicas >= current.pools[victim]:
        return
    # It shrank: only because the floor would trap the plan in a split the model rates
    # worse, and said so.
    assert Reason.FloorReleased in {a.reason for a in result.adjustments}
    pools = [
        q.model_copy(update={"min_replicas": current.pools[victim]})
        if q.role.value == victim
        else q
        for q in spec.pools
    ]
    floored, _ = plan(
        spec.model_copy(update={"pools": pools}),
        obs_for(spec, rate, inp, out, hit, **kw),
        current,
        None,
        0.0,
    )
    assert floored.predicted_goodput < result.predicted_goodput


@SETTINGS
@given(specs(), st.data())
def test_zero_demand_gives_minimums(spec: GoodputPolicySpec, data: st.DataObject) -> None:
    assume(min_gpus_fit(spec))
    current = Allocation(
        pools={p.role.value: data.draw(st.integers(0, p.max_replicas)) for p in spec.pools}
    )
    result, _ = plan(spec, obs_for(spec, 0.0, 1000.0, 100.0, None), current, None, 0.0)
    assert result.reason == Reason.ZeroDemand
    assert result.allocation().pools == {p.role.value: p.min_replicas for p in spec.pools}
    assert result.allocation().tiers == {t.name: t.min_replicas for t in spec.kv_cache.tiers}


@SETTINGS
@given(specs(), st.data(), st.sampled_from(["rate", "input", "output", "listed"]))
def test_missing_signals_hold_current(
    spec: GoodputPolicySpec, data: st.DataObject, which: str
) -> None:
    current = Allocation(
        pools={p.role.value: data.draw(st.integers(0, p.max_replicas)) for p in spec.pools}
    )
    args: dict[str, Any] = {"rate": 10.0, "inp": 1000.0, "out": 100.0}
    missing: list[str] = []
    if which == "rate":
        args["rate"] = None
    elif which == "input":
        args["inp"] = None
    elif which == "output":
        args["out"] = None
    else:
        missing = [f"{roles_of(spec)[0]}.arrival_rate_rps"]
    obs = obs_for(spec, args["rate"], args["inp"], args["out"], None, missing=missing)
    result, state = plan(spec, obs, current, None, 0.0)
    assert result.hold and result.reason == Reason.MetricsMissing
    assert result.allocation().pools == current.pools
    assert result.total_gpus == sum(d.replicas * d.gpus_per_replica for d in result.pools.values())
    assert state.forecast is None


@settings(max_examples=30, deadline=None)
@given(specs(), st.lists(st.floats(0.0, 300.0), min_size=2, max_size=12), st.data())
def test_a_running_planner_stays_in_budget_and_bounds(
    spec: GoodputPolicySpec, rates: list[float], data: st.DataObject
) -> None:
    from goodput.planner import GoodputPlanner

    assume(min_gpus_fit(spec))
    planner = GoodputPlanner(spec)
    current = Allocation(
        pools={
            p.role.value: data.draw(st.integers(p.min_replicas, p.max_replicas)) for p in spec.pools
        }
    )
    for i, rate in enumerate(rates):
        now = 15.0 * i
        result = planner.decide(obs_for(spec, rate, 2000.0, 200.0, 0.2, now=now), current, now)
        assert result.total_gpus <= spec.gpu_budget
        for p in spec.pools:
            assert p.min_replicas <= result.pools[p.role.value].replicas <= p.max_replicas
        current = result.allocation()
