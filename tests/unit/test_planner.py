"""Planner decisions: zero demand, missing signals, budget exhaustion, ties, tiers,
quality, and the explanation every plan carries."""

from __future__ import annotations

import json
import re

import pytest

from goodput.observation import LatencySummary
from goodput.plan import Allocation
from goodput.planner import GoodputPlanner, plan
from goodput.planner.cli import EXAMPLE_OBSERVATION, main
from goodput.planner.planner import patient_floors
from goodput.reasons import Limit, Reason

from .planner_fixtures import aggregated_spec, disagg_spec, observation

CURRENT = Allocation(pools={"prefill": 2, "decode": 2})


def test_planner_is_an_autoscaler() -> None:
    planner = GoodputPlanner(disagg_spec())
    assert planner.name == "goodput"
    result = planner.decide(observation(10.0), CURRENT, 0.0)
    assert result.total_gpus <= 32


def test_zero_demand_goes_to_minimums() -> None:
    spec = disagg_spec(32, min_p=2, min_d=3, tiers=True)
    result, _ = plan(spec, observation(0.0), Allocation(pools={"prefill": 8, "decode": 9}), None, 0)
    assert result.reason == Reason.ZeroDemand
    assert result.allocation().pools == {"prefill": 2, "decode": 3}
    assert result.tiers == {"cpu": 0, "disk": 0}
    assert result.total_gpus == 5 and not result.hold


@pytest.mark.parametrize(
    ("obs", "named"),
    [
        (observation(None), "arrival_rate_rps"),
        (observation(5.0, input_tokens=None), "mean_input_tokens"),
        (
            observation(5.0, output_tokens=None, missing=["prefill.mean_output_tokens"]),
            "mean_output_tokens",
        ),
        (observation(5.0, missing=["prefill.arrival_rate_rps"]), "arrival_rate_rps"),
    ],
)
def test_missing_signal_holds_and_says_which(obs: object, named: str) -> None:
    current = Allocation(pools={"prefill": 3, "decode": 5})
    result, state = plan(disagg_spec(), obs, current, None, 0)  # type: ignore[arg-type]
    assert result.hold and result.reason == Reason.MetricsMissing
    assert result.allocation().pools == {"prefill": 3, "decode": 5}
    assert named in result.message
    assert state.forecast is None  # a hold learns nothing


def test_zero_traffic_needs_no_token_means() -> None:
    obs = observation(0.0, input_tokens=None, output_tokens=None)
    result, _ = plan(disagg_spec(), obs, CURRENT, None, 0)
    assert result.reason == Reason.ZeroDemand


def test_unreachable_and_stale_holds_name_their_reason() -> None:
    obs = observation(None).model_copy(update={"unreachable": True})
    assert plan(disagg_spec(), obs, CURRENT, None, 0)[0].reason == Reason.PrometheusUnreachable
    obs = observation(None, missing=["prefill.arrival_rate_rps"]).model_copy(
        update={"stale": ["prefill.arrival_rate_rps"]}
    )
    assert plan(disagg_spec(), obs, CURRENT, None, 0)[0].reason == Reason.MetricsStale


def test_missing_latency_is_not_a_hold() -> None:
    result, _ = plan(disagg_spec(), observation(5.0, missing=["decode.itl"]), CURRENT, None, 0)
    assert not result.hold


def test_quality_signal_configured_but_absent_holds() -> None:
    spec = disagg_spec(quality_query="avg(answer_score)")
    result, _ = plan(spec, observation(5.0), CURRENT, None, 0)
    assert result.hold and "quality" in result.message
    good, _ = plan(spec, observation(5.0, quality=0.5), CURRENT, None, 0)
    full, _ = plan(disagg_spec(), observation(5.0), CURRENT, None, 0)
    assert good.allocation() == full.allocation()
    assert good.predicted_goodput == pytest.approx(0.5 * full.predicted_goodput)


def test_budget_exhausted_still_returns_the_best_plan() -> None:
    spec = disagg_spec(8, max_p=8, max_d=8)
    result, _ = plan(spec, observation(400.0), CURRENT, None, 0)
    assert result.reason == Reason.BudgetExhausted
    assert not result.budget_satisfiable
    assert result.total_gpus == 8
    assert result.binding_constraint == Limit.GpuBudget and result.binding_pool is None
    assert result.predicted_attainment < 0.9
    assert result.runner_up is not None
    assert result.runner_up.predicted_goodput <= result.predicted_goodput + 1e-9
    assert "budget exhausted" in result.message


def test_max_replicas_binds() -> None:
    spec = disagg_spec(64, max_d=2)
    result, _ = plan(spec, observation(200.0), CURRENT, None, 0)
    assert result.pools["decode"].replicas == 2
    assert result.binding_constraint == Limit.MaxReplicas
    assert result.binding_pool == "decode"
    assert not result.budget_satisfiable
    # The budget is not what stops it: no "budget exhausted", and the GPUs it leaves
    # free are said to be handed back.
    assert result.reason == Reason.SloUnreachable
    assert "budget exhausted" not in result.message
    assert "decode at maxReplicas 2" in result.message
    assert f"handing back {64 - result.total_gpus} GPUs" in result.message


def test_equal_goodput_prefers_fewer_gpus() -> None:
    # One request per second is served perfectly by the minimum: more GPUs add nothing.
    result, _ = plan(disagg_spec(32), observation(1.0), CURRENT, None, 0)
    assert result.allocation().pools == {"prefill": 1, "decode": 1}
    assert result.reason == Reason.ScaledDown
    assert result.binding_constraint == Limit.MinReplicas
    assert result.predicted_attainment > 0.9
    assert "handing back 2 GPUs that add no goodput (holding 2 of 32" in result.message
    assert "within 1% of the best plan's goodput" in result.message


def test_more_demand_more_gpus_and_message() -> None:
    small, _ = plan(disagg_spec(64), observation(20.0), CURRENT, None, 0)
    big, _ = plan(disagg_spec(64), observation(120.0), CURRENT, None, 0)
    assert big.total_gpus > small.total_gpus
    assert big.reason == Reason.ScaledUp
    assert "decode ITL" in big.message and "of 50 ms" in big.message
    assert "prefill TTFT" in big.message and "req/s per replica" in big.message
    assert big.binding_constraint == Limit.None_ and big.binding_pool is None
    assert big.pools["decode"].predicted_itl_s is not None
    assert big.pools["prefill"].predicted_ttft_s is not None


def test_gpus_per_replica_comes_from_profile_or_spec() -> None:
    spec = disagg_spec(64, profile="llama-3.1-70b-h100-tp4", max_p=16, max_d=16)
    result, _ = plan(spec, observation(5.0), CURRENT, None, 0)
    assert result.pools["prefill"].gpus_per_replica == 4
    assert result.total_gpus == 4 * sum(d.replicas for d in result.pools.values())
    assert result.total_gpus <= 64


def test_fast_tier_is_used_slow_tier_is_not_for_70b() -> None:
    # 70B: 320 KiB per token. From a 3 GiB/s disk that is ~100 us/token, slower than
    # recomputing on 8 H100s (~87 us/token in a full prefill batch; on 4 H100s it is
    # ~103, a tie); from 20 GiB/s CPU memory it is ~15 us/token.
    spec = disagg_spec(64, profile="llama-3.1-70b-h100-tp8", max_p=8, max_d=8, tiers=True)
    result, _ = plan(spec, observation(4.0, hit=0.3), CURRENT, None, 0)
    assert result.tiers["cpu"] > 0
    assert result.tiers["disk"] == 0


def test_observed_violation_never_shrinks_the_pool() -> None:
    current = Allocation(pools={"prefill": 2, "decode": 10})
    bad = observation(1.0, itl=LatencySummary(attainment=0.5))
    result, _ = plan(disagg_spec(32), bad, current, None, 0)
    assert result.pools["decode"].replicas == 10
    assert result.binding_constraint == Limit.ObservedViolation
    assert result.binding_pool == "decode"
    fine, _ = plan(disagg_spec(32), observation(1.0), current, None, 0)
    assert fine.pools["decode"].replicas < 10


def test_aggregated_pool_scales_with_demand() -> None:
    spec = aggregated_spec(32, max_r=32)
    cur = Allocation(pools={"aggregated": 1})
    sizes = []
    for rate in (1.0, 10.0, 40.0, 80.0):
        result, _ = plan(spec, observation(rate, roles=("aggregated", "aggregated")), cur, None, 0)
        sizes.append(result.pools["aggregated"].replicas)
        assert result.pools["aggregated"].predicted_itl_s is not None
    assert sizes == sorted(sizes) and sizes[-1] > sizes[0]


def test_cli_example_observation_and_json_plan(
    tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    from pathlib import Path

    base = Path(str(tmp_path))
    assert main(["--example-observation"]) == 0
    obs_text = capsys.readouterr().out
    assert json.loads(obs_text)["pools"]["prefill"]["arrival_rate_rps"] == 12.5
    (base / "obs.json").write_text(obs_text)
    (base / "policy.yaml").write_text(
        "apiVersion: goodput.dev/v1alpha1\nkind: GoodputPolicy\nmetadata: {name: p}\n"
        "spec:\n  gpuBudget: 16\n  pools:\n"
        "  - {role: prefill, targetRef: {name: a}, maxReplicas: 8,"
        " profile: llama-3.1-8b-h100-tp1}\n"
        "  - {role: decode, targetRef: {name: b}, maxReplicas: 8,"
        " profile: llama-3.1-8b-h100-tp1}\n"
        "  slo: {ttft: 500ms, itl: 50ms}\n"
    )
    assert (
        main(
            [
                "--policy",
                str(base / "policy.yaml"),
                "--observation",
                str(base / "obs.json"),
                "--json",
            ]
        )
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    for key in ("total_gpus", "budget", "reason", "predicted_goodput", "replicas", "message"):
        assert key in doc
    assert doc["budget"] == 16 and doc["total_gpus"] <= 16
    assert set(doc["replicas"]) == {"prefill", "decode"}
    assert (
        main(["--policy", str(base / "policy.yaml"), "--observation", str(base / "obs.json")]) == 0
    )
    text = capsys.readouterr().out
    assert "reason:" in text
    assert re.search(
        r"^binding:    (None|MinReplicas|GpuBudget|MaxReplicas \(\w+\)|SloFloor \(\w+\))$",
        text,
        re.M,
    )
    assert EXAMPLE_OBSERVATION.pools["decode"].itl is not None
    # A pool without a profile is refused with a message, not a traceback.
    (base / "bare.yaml").write_text(
        (base / "policy.yaml").read_text().replace(", profile: llama-3.1-8b-h100-tp1", "")
    )
    assert main(["--policy", str(base / "bare.yaml"), "--observation", str(base / "obs.json")]) == 2
    assert "names no performance profile" in capsys.readouterr().err


def test_patience_holds_replicas_then_lets_go() -> None:
    spec = disagg_spec(32)  # scale-down stabilization 300 s by default (HPA's)
    planner = GoodputPlanner(spec)
    current = Allocation(pools={"prefill": 4, "decode": 4})
    early = planner.decide(observation(1.0, now=15.0), current, 15.0)
    assert early.allocation().pools == {"prefill": 4, "decode": 4}  # one quiet interval
    assert early.binding_constraint == Limit.ScaleDownPatience
    assert "wants prefill 1, decode 1" in early.message
    for t in range(30, 330, 15):
        late = planner.decide(observation(1.0, now=float(t)), current, float(t))
    assert late.total_gpus == 2


def test_patience_never_blocks_moving_gpus_to_the_pool_that_needs_them() -> None:
    spec = disagg_spec(8, max_p=8, max_d=8)
    planner = GoodputPlanner(spec)
    current = Allocation(pools={"prefill": 4, "decode": 4})
    # Long prompts, one output token: prefill needs the whole budget now.
    result = planner.decide(
        observation(60.0, input_tokens=4000.0, output_tokens=2.0), current, 15.0
    )
    assert result.pools["prefill"].replicas > 4
    assert result.total_gpus <= 8


def test_patient_floors_fit_the_room() -> None:
    gpr = {"prefill": 1, "decode": 2}
    desired = {"prefill": 2, "decode": 1}
    recent = [{"prefill": 6, "decode": 3}]
    assert patient_floors(desired, recent, gpr, 100) == {"prefill": 6, "decode": 3}
    # 4 + 4 = 8 extra GPUs wanted, 4 fit: half of each pool's extra
    assert patient_floors(desired, recent, gpr, 4) == {"prefill": 4, "decode": 2}
    assert patient_floors(desired, recent, gpr, 0) == desired
    assert patient_floors(desired, [], gpr, 10) == desired


def test_a_lull_inside_the_patience_window_is_not_zero_demand() -> None:
    spec = disagg_spec(32)  # patience: the scale-down stabilization window, 300 s
    current = Allocation(pools={"prefill": 1, "decode": 1})
    _, state = plan(spec, observation(60.0), current, None, 0.0)
    lull, state = plan(
        spec, observation(0.0, input_tokens=None, output_tokens=None), current, state, 15.0
    )
    assert lull.reason != Reason.ZeroDemand and lull.total_gpus > 2
    for t in range(30, 301, 15):
        quiet, state = plan(spec, observation(0.0), current, state, float(t))
        assert quiet.reason != Reason.ZeroDemand
    quiet, state = plan(spec, observation(0.0), current, state, 315.0)
    assert quiet.reason == Reason.ZeroDemand and quiet.total_gpus == 2


def test_a_few_short_prompts_do_not_swing_the_token_means() -> None:
    spec = disagg_spec(64)
    current = Allocation(pools={"prefill": 1, "decode": 1})
    _, state = plan(spec, observation(40.0, input_tokens=4000.0), current, None, 0.0)
    _, state = plan(spec, observation(0.2, input_tokens=100.0), current, state, 15.0)
    assert state.last_traffic is not None
    assert state.last_traffic[1] > 3500.0  # 12 short requests against 2400 long ones


def test_a_queue_backlog_adds_demand() -> None:
    spec = disagg_spec(64)
    base = observation(30.0)
    queued = base.model_copy(
        update={
            "pools": {
                **base.pools,
                "prefill": base.pools["prefill"].model_copy(update={"waiting_requests": 600.0}),
            }
        }
    )
    calm, _ = plan(spec, base, CURRENT, None, 0.0)
    busy, _ = plan(spec, queued, CURRENT, None, 0.0)
    assert busy.pools["prefill"].replicas > calm.pools["prefill"].replicas


def test_output_length_comes_from_the_decode_pool() -> None:
    obs = observation(20.0, output_tokens=400.0)
    prefill_says_one = obs.model_copy(
        update={
            "pools": {
                **obs.pools,
                "prefill": obs.pools["prefill"].model_copy(update={"mean_output_tokens": 1.0}),
            }
        }
    )
    a, _ = plan(disagg_spec(64), obs, CURRENT, None, 0.0)
    b, _ = plan(disagg_spec(64), prefill_says_one, CURRENT, None, 0.0)
    assert a.allocation() == b.allocation()
