"""The actuator's pure parts: budget-safe write order and HPA behavior."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from goodput.actuator.behavior import PastRecommendation, apply_behavior
from goodput.actuator.budget import TargetState, budget_safe_writes, gpus_held
from goodput.api.spec import ScalingPolicy, ScalingRules

UNLIMITED = ScalingRules(stabilization_window_seconds=0, policies=[])


def test_rebalance_shrinks_first_and_grows_only_when_pods_are_gone() -> None:
    # 8 GPUs: prefill 4x1, decode 2x2; the plan moves 2 GPUs from prefill to decode.
    targets = {"prefill": TargetState(4, 4, 1), "decode": TargetState(2, 2, 2)}
    first = budget_safe_writes(targets, {"prefill": 2, "decode": 3}, budget=8)
    assert first.replicas == {"prefill": 2}
    assert first.deferred == {"decode": 3}
    assert first.gpus_held_after == 8  # the prefill pods are still terminating
    # The pods are gone: now the grow fits.
    targets = {"prefill": TargetState(2, 2, 1), "decode": TargetState(2, 2, 2)}
    second = budget_safe_writes(targets, {"prefill": 2, "decode": 3}, budget=8)
    assert second.replicas == {"decode": 3}
    assert second.deferred == {}
    assert second.gpus_held_after == 8


def test_grow_is_partial_when_only_part_fits() -> None:
    targets = {"decode": TargetState(2, 2, 2), "prefill": TargetState(1, 1, 1)}
    w = budget_safe_writes(targets, {"decode": 5, "prefill": 1}, budget=9)
    assert w.replicas == {"decode": 4}
    assert w.deferred == {"decode": 5}


def test_over_budget_start_only_shrinks() -> None:
    targets = {"decode": TargetState(6, 6, 2)}  # someone else scaled it to 12 GPUs
    w = budget_safe_writes(targets, {"decode": 7}, budget=8)
    assert w.replicas == {}
    assert w.deferred == {"decode": 7}


targets_st = st.dictionaries(
    st.sampled_from(["prefill", "decode", "tier:cpu"]),
    st.tuples(st.integers(0, 8), st.integers(0, 8), st.integers(0, 4)),
    min_size=1,
)


@settings(max_examples=200, deadline=None)
@given(targets_st, st.data())
def test_writes_never_exceed_the_budget_and_converge(raw: dict, data: st.DataObject) -> None:  # type: ignore[type-arg]
    targets = {k: TargetState(s, p, g) for k, (s, p, g) in raw.items()}
    budget = data.draw(st.integers(gpus_held(targets), gpus_held(targets) + 16))
    desired = {k: data.draw(st.integers(0, 10)) for k in targets}
    for _ in range(len(targets) + 2):
        w = budget_safe_writes(targets, desired, budget)
        assert w.gpus_held_after <= budget
        for k, r in w.replicas.items():
            # Shrinks land exactly; grows never overshoot the plan.
            assert r == desired[k] if r < targets[k].spec_replicas else r <= desired[k]
        # The writes land and terminated pods go away.
        targets = {
            k: TargetState(
                w.replicas.get(k, t.spec_replicas),
                w.replicas.get(k, t.spec_replicas),
                t.gpus_per_replica,
            )
            for k, t in targets.items()
        }
        assert gpus_held(targets) <= budget
    want_gpus = sum(desired[k] * t.gpus_per_replica for k, t in targets.items())
    if want_gpus <= budget:
        assert {k: t.spec_replicas for k, t in targets.items()} == desired


def _rules(window: int, *policies: tuple[str, int, int]) -> ScalingRules:
    return ScalingRules(
        stabilization_window_seconds=window,
        policies=[ScalingPolicy(type=t, value=v, period_seconds=p) for t, v, p in policies],
    )


def test_scale_down_follows_the_highest_recommendation_in_the_window() -> None:
    history = [PastRecommendation(100.0, {"decode": 6}), PastRecommendation(350.0, {"decode": 4})]
    out = apply_behavior({"decode": 2}, {"decode": 8}, history, UNLIMITED, _rules(300), now=400.0)
    # t=100 is outside the 300 s window; t=350 is inside: hold at 4.
    assert out.replicas == {"decode": 4}
    assert out.stabilized == ["decode"]


def test_scale_up_follows_the_lowest_recommendation_in_the_window() -> None:
    history = [PastRecommendation(390.0, {"decode": 5})]
    out = apply_behavior({"decode": 9}, {"decode": 3}, history, _rules(60), UNLIMITED, now=400.0)
    assert out.replicas == {"decode": 5}


def test_step_limits_follow_hpa_select_policy() -> None:
    up = _rules(0, ("Percent", 100, 15), ("Replicas", 4, 15))
    # Max: 100% of 2 = 2 vs 4 replicas -> +4.
    assert apply_behavior({"p": 20}, {"p": 2}, [], up, UNLIMITED, now=0).replicas == {"p": 6}
    up_min = up.model_copy(update={"select_policy": "Min"})
    assert apply_behavior({"p": 20}, {"p": 2}, [], up_min, UNLIMITED, now=0).replicas == {"p": 4}
    # A second step inside the period waits.
    out = apply_behavior({"p": 20}, {"p": 6}, [], up, UNLIMITED, now=10, last_scale_up=0)
    assert out.replicas == {"p": 6} and out.rate_limited == ["p"]
    disabled = ScalingRules(select_policy="Disabled")
    assert apply_behavior({"p": 1}, {"p": 6}, [], UNLIMITED, disabled, now=0).replicas == {"p": 6}


def test_a_shrink_that_funds_another_pools_growth_is_not_held_by_the_window() -> None:
    history = [PastRecommendation(390.0, {"decode": 6, "prefill": 2})]
    down = _rules(300)
    # Net scale-down of decode alone: held by the window.
    alone = apply_behavior(
        {"decode": 4, "prefill": 2},
        {"decode": 6, "prefill": 2},
        history,
        UNLIMITED,
        down,
        now=400.0,
    )
    assert alone.replicas == {"decode": 6, "prefill": 2}
    # Decode gives GPUs to prefill in the same plan: a rebalance goes through.
    moved = apply_behavior(
        {"decode": 4, "prefill": 4},
        {"decode": 6, "prefill": 2},
        history,
        UNLIMITED,
        down,
        now=400.0,
    )
    assert moved.replicas == {"decode": 4, "prefill": 4}
    assert moved.stabilized == []


def test_a_rebalances_shrink_goes_past_its_step_limit_as_far_as_the_grow_needs() -> None:
    """Scale-down steps of 1 replica per 60 s would make prefill wait four periods for
    the GPUs decode gives up in the same plan; the shrink half goes as fast as the grow
    half needs, and no faster."""
    down = _rules(0, ("Replicas", 1, 60))
    gpr = {"decode": 1, "prefill": 1}
    out = apply_behavior(
        {"decode": 2, "prefill": 6},
        {"decode": 6, "prefill": 2},
        [],
        UNLIMITED,
        down,
        now=400.0,
        gpus_per_replica=gpr,
        budget=8,
    )
    assert out.replicas == {"decode": 2, "prefill": 6}
    assert out.rebalance_shrunk == ["decode"] and out.rate_limited == []
    # The grow is itself capped at +2: decode frees 2 GPUs (one past its step), not 4.
    up = _rules(0, ("Replicas", 2, 15))
    out = apply_behavior(
        {"decode": 2, "prefill": 6},
        {"decode": 6, "prefill": 2},
        [],
        up,
        down,
        now=400.0,
        gpus_per_replica=gpr,
        budget=8,
    )
    assert out.replicas == {"decode": 4, "prefill": 4}
    assert out.rebalance_shrunk == ["decode"]
    # Free GPUs pay for the grow: the shrink keeps its step limit.
    out = apply_behavior(
        {"decode": 2, "prefill": 6},
        {"decode": 6, "prefill": 2},
        [],
        up,
        down,
        now=400.0,
        gpus_per_replica=gpr,
        budget=10,
    )
    assert out.replicas == {"decode": 5, "prefill": 4}
    assert out.rebalance_shrunk == [] and out.rate_limited == ["decode", "prefill"]
    # A net scale-down (nothing grows) keeps its step limit.
    out = apply_behavior(
        {"decode": 2, "prefill": 2},
        {"decode": 6, "prefill": 2},
        [],
        UNLIMITED,
        down,
        now=400.0,
        gpus_per_replica=gpr,
        budget=8,
    )
    assert out.replicas == {"decode": 5, "prefill": 2} and out.rebalance_shrunk == []
    # A disabled scale-down stays disabled.
    disabled = ScalingRules(select_policy="Disabled")
    out = apply_behavior(
        {"decode": 2, "prefill": 6},
        {"decode": 6, "prefill": 2},
        [],
        UNLIMITED,
        disabled,
        now=400.0,
        gpus_per_replica=gpr,
        budget=8,
    )
    assert out.replicas["decode"] == 6 and out.rebalance_shrunk == []


def test_a_grow_beside_terminating_pods_counts_them() -> None:
    """decode asks for 1 while 2 more pods still terminate (3 x 2 GPUs held). Asking for
    2 makes a new pod beside the terminating ones (a ReplicaSet does not count them):
    4 pods x 2 + prefill 1 = 9 > 7, so the grow waits; the old max(spec, pods) rule let
    it through."""
    targets = {"prefill": TargetState(1, 1, 1), "decode": TargetState(1, 3, 2, 2)}
    w = budget_safe_writes(targets, {"prefill": 1, "decode": 2}, budget=7)
    assert w.replicas == {}
    assert w.deferred == {"decode": 2}
    # Once they are gone it fits.
    targets = {"prefill": TargetState(1, 1, 1), "decode": TargetState(1, 1, 2)}
    assert budget_safe_writes(targets, {"prefill": 1, "decode": 2}, budget=7).replicas == {
        "decode": 2
    }
