"""The variant twin (goodput.sim.variants, router, variant_controllers): the router honours
the weights and is deterministic, correctness is drawn at the variant's quality, value falls
with the wrong-answer cost, the budget holds across variants, and the two bundled examples
choose differently."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from goodput.api.load import load_policy
from goodput.sim.router import WeightedRouter, integer_weights
from goodput.sim.traces import Trace
from goodput.sim.variant_controllers import (
    GOODPUT_DRIVER,
    HpaFixedSplit,
    VariantPlannerLoop,
    capacity_weights,
    crossover_cost,
    run_variant_benchmark,
    single_best,
)
from goodput.sim.variants import (
    BudgetExceeded,
    FixedVariants,
    VariantScenario,
    build_variant_scenario,
    clamp_weights,
    even_start,
    run_variants,
)

REPO = Path(__file__).resolve().parents[2]
FIN = REPO / "policies" / "financial-analysis.yaml"
CHAT = REPO / "policies" / "support-chatbot.yaml"
V70, V405 = "llama-70b", "llama-405b-int4"


def synthetic(n: int = 900, span_s: float = 90.0, seed: int = 3) -> Trace:
    """Chat-like requests (prompts 200-2,400 tokens, answers 20-300), uniform arrivals:
    short enough for a unit test, heavy enough to need several replicas of each."""
    rng = np.random.default_rng(seed)
    return Trace(
        name="synthetic",
        arrival_s=np.sort(rng.random(n) * span_s),
        input_tokens=rng.integers(200, 2400, n).astype(np.int64),
        output_tokens=rng.integers(20, 300, n).astype(np.int64),
    )


def scenario(path: Path = FIN) -> VariantScenario:
    return build_variant_scenario(load_policy(path))


# ---------------------------------------------------------------------------- router


def test_integer_weights_sum_to_100_by_largest_remainder() -> None:
    assert integer_weights({"a": 1.0, "b": 1.0, "c": 1.0}) == {"a": 34, "b": 33, "c": 33}
    assert integer_weights({"a": 0.72, "b": 0.28}) == {"a": 72, "b": 28}
    assert integer_weights({"a": 0.0, "b": 0.0}) == {"a": 50, "b": 50}
    w = integer_weights({"a": 2.0, "b": 1.0, "c": 0.0})
    assert sum(w.values()) == 100 and w["c"] == 0


@pytest.mark.parametrize("weights", [{"x": 70, "y": 30}, {"x": 5, "y": 95}, {"x": 50, "y": 50}])
def test_router_honours_weights_statistically(weights: dict[str, int]) -> None:
    n = 40_000
    r = WeightedRouter(["x", "y"], n, seed=11)
    got = r.route(0, n, weights)
    frac = float(np.mean(got == 0))
    # 4 standard deviations of a binomial proportion: fails by chance ~1 in 16,000 seeds.
    tol = 4 * np.sqrt(0.25 / n)
    assert abs(frac - weights["x"] / 100) < tol


def test_router_zero_weight_gets_nothing_and_refuses_bad_weights() -> None:
    r = WeightedRouter(["x", "y", "z"], 5_000, seed=1)
    got = r.route(0, 5_000, {"x": 60, "y": 0, "z": 40})
    assert not np.any(got == 1)
    with pytest.raises(ValueError, match="all be zero"):
        r.cumulative({"x": 0, "y": 0, "z": 0})
    with pytest.raises(ValueError, match="unknown variants"):
        r.cumulative({"w": 100})
    with pytest.raises(ValueError, match=">= 0"):
        r.cumulative({"x": 120, "y": -20})


def test_router_is_deterministic_and_seeded() -> None:
    a = WeightedRouter(["x", "y"], 3_000, seed=5)
    b = WeightedRouter(["x", "y"], 3_000, seed=5)
    c = WeightedRouter(["x", "y"], 3_000, seed=6)
    # The same requests routed in different chunks with the same weights land the same.
    a.route(0, 3_000, {"x": 40, "y": 60})
    b.route(0, 1_000, {"x": 40, "y": 60})
    b.route(1_000, 3_000, {"x": 40, "y": 60})
    c.route(0, 3_000, {"x": 40, "y": 60})
    assert np.array_equal(a.assigned, b.assigned)
    assert not np.array_equal(a.assigned, c.assigned)


def test_router_common_draws_move_only_the_requests_a_weight_change_moves() -> None:
    """Raising x's weight only moves requests from y to x, never the other way: the same
    request keeps its draw whatever the controller sets (common random numbers)."""
    a = WeightedRouter(["x", "y"], 10_000, seed=2)
    b = WeightedRouter(["x", "y"], 10_000, seed=2)
    ga = a.route(0, 10_000, {"x": 30, "y": 70})
    gb = b.route(0, 10_000, {"x": 60, "y": 40})
    assert not np.any((ga == 0) & (gb == 1))


def test_correctness_frequency_matches_quality() -> None:
    n = 40_000
    r = WeightedRouter(["x", "y"], n, seed=9)
    r.route(0, n, {"x": 50, "y": 50})
    q = {"x": 0.664, "y": 0.728}
    right = r.right(q)
    for k, v in enumerate(["x", "y"]):
        m = r.assigned == k
        tol = 4 * np.sqrt(q[v] * (1 - q[v]) / m.sum())
        assert abs(float(np.mean(right[m])) - q[v]) < tol
    # Monotone coupling: a request right on the worse variant is right on the better one.
    draws = r.right_draw
    assert np.all((draws < q["x"]) <= (draws < q["y"]))


# ---------------------------------------------------------------------------- scenario


def test_examples_load_as_variant_scenarios_with_published_qualities() -> None:
    for path in (FIN, CHAT):
        vsc = scenario(path)
        assert vsc.names == [V70, V405]
        assert vsc.budget == 64
        assert vsc.quality() == {V70: 0.664, V405: 0.728}
        assert vsc.variants[V405].sc.profiles["decode"].name == "llama-3.1-405b-w4a16-h100-tp4"
        assert vsc.variants[V70].backend == "InferencePool/llama-70b"
    assert scenario(FIN).value.wrong_answer_cost > scenario(CHAT).value.wrong_answer_cost
    assert scenario(FIN).spec.slo.ttft_seconds > scenario(CHAT).spec.slo.ttft_seconds


def test_clamp_weights_respects_share_bounds_and_sums_to_100() -> None:
    vsc = scenario()
    spec = vsc.spec.model_copy(
        update={
            "variants": [
                vsc.spec.variants[0].model_copy(update={"min_share": 10, "max_share": 60}),
                vsc.spec.variants[1],
            ]
        }
    )
    bounded = build_variant_scenario(spec)
    assert clamp_weights(bounded, {V70: 1.0, V405: 0.0}) == {V70: 60, V405: 40}
    assert clamp_weights(bounded, {V70: 0.0, V405: 1.0}) == {V70: 10, V405: 90}


def test_even_start_splits_the_budget_between_variants() -> None:
    vsc = scenario()
    replicas, weights = even_start(vsc)
    assert weights == {V70: 50, V405: 50}
    assert vsc.gpus(replicas) <= vsc.budget
    assert all(vsc.gpus({v: p}) == 32 for v, p in replicas.items())


# ---------------------------------------------------------------------------- runs


def test_run_routes_by_weights_and_is_deterministic() -> None:
    vsc = scenario()
    tr = synthetic()
    replicas, _ = even_start(vsc)
    ctl = FixedVariants("fixed", replicas, {V70: 80, V405: 20})
    a = run_variants(vsc, tr, ctl, seed=4)
    b = run_variants(vsc, tr, ctl, seed=4)
    assert np.array_equal(a.assigned, b.assigned) and np.array_equal(a.met, b.met)
    assert a.value_goodput() == b.value_goodput()
    assert abs(a.share()[V70] - 0.8) < 4 * np.sqrt(0.16 / len(tr))
    assert all(k.weights == {V70: 80, V405: 20} for k in a.ticks)
    assert np.all(a.assigned >= 0)  # every request routed, the last one included
    right = a.right_fraction()
    assert right[V70] is not None and abs(right[V70] - 0.664) < 0.06


def test_value_goodput_falls_with_the_wrong_answer_cost() -> None:
    vsc = scenario()
    tr = synthetic()
    res = run_variants(vsc, tr, FixedVariants("fixed", even_start(vsc)[0], {V70: 50, V405: 50}))
    on_time_right = float(np.sum(res.output_tokens * res.met * res.right)) / res.window_s
    assert res.goodput > 0
    assert res.value_goodput(0.0) == pytest.approx(on_time_right)
    values = [res.value_goodput(c) for c in (0.0, 0.5, 1.0, 2.0, 5.0)]
    assert all(x > y for x, y in itertools.pairwise(values))
    # The run's own c is the policy's.
    assert res.value_goodput() == pytest.approx(res.value_goodput(2.0))
    # Under the same weights and seed a higher cost re-run gives the same run, lower value.
    cheap = run_variants(
        vsc.with_cost(0.2), tr, FixedVariants("f", even_start(vsc)[0], {V70: 50, V405: 50})
    )
    assert np.array_equal(cheap.met, res.met)
    assert cheap.value_goodput() > res.value_goodput()


def test_budget_holds_across_variants_while_hpas_move_gpus() -> None:
    vsc = scenario(CHAT)
    # Long enough for the HPA's 300 s scale-down window to pass: GPUs move.
    tr = synthetic(n=2_500, span_s=420.0)
    lengths = (float(np.mean(tr.input_tokens)), float(np.mean(tr.output_tokens)))
    res = run_variants(vsc, tr, HpaFixedSplit(vsc, lengths))
    assert res.actions > 0  # the HPAs did move replicas
    assert res.peak_gpus <= vsc.budget
    assert all(k.gpus_held <= vsc.budget for k in res.ticks)
    served = {(v, r) for k in res.ticks for v, p in k.serving.items() for r, n in p.items()}
    assert len(served) == 4


def test_a_write_past_the_budget_stops_the_run() -> None:
    from goodput.sim.router import WeightedRouter as R
    from goodput.sim.variants import VariantFleet

    vsc = scenario()
    tr = synthetic(n=50)
    fleet = VariantFleet(vsc, tr, R(vsc.names, len(tr), 0), 0.0)
    fleet.start(even_start(vsc)[0])
    assert fleet.gpus_held() == 64
    # The budget-safe writer defers the grow: nothing fits beside 64 GPUs held.
    fleet.apply_safe({V70: {"decode": 8}})
    assert fleet.gpus_held() == 64
    with pytest.raises(BudgetExceeded):
        fleet.clusters[V70].set_replicas("decode", 8)
        fleet.account.sample(fleet.gpus_held())


def test_hpa_fixed_split_weights_follow_capacity_per_gpu() -> None:
    vsc = scenario()
    w = capacity_weights(vsc, (1155.0, 211.0))
    assert sum(w.values()) == 100
    assert w[V70] > w[V405] > 0  # the 70B serves more requests per GPU


def test_single_best_puts_everything_on_one_variant() -> None:
    vsc = scenario()
    tr = synthetic(n=400, span_s=60.0)
    sb = single_best(vsc, tr, V405)
    assert vsc.gpus({V405: sb.split}) <= vsc.budget
    # Searched held from t=0: all traffic and all GPUs on the variant, the best split.
    assert sb.held is not None and sb.held.share() == {V70: 0.0, V405: 1.0}
    assert all(k.serving[V70] == {"prefill": 0, "decode": 0} for k in sb.held.ticks)
    assert sb.held.goodput == max(g for _, g in sb.tried)
    # Reported from the even start: 50/50 for the first interval only, then all of it;
    # the other variant is scaled to zero (below its minReplicas: not deployed).
    first = sb.result.ticks[0]
    assert first.weights == {V70: 50, V405: 50}
    assert all(k.weights == {V70: 0, V405: 100} for k in sb.result.ticks[1:])
    assert sb.result.ticks[-1].target[V70] == {"prefill": 0, "decode": 0}
    assert sb.result.share()[V405] > 0.7
    assert sb.result.peak_gpus <= vsc.budget


def test_crossover_is_where_the_single_variants_lines_meet() -> None:
    vsc = scenario()
    tr = synthetic(n=600, span_s=60.0)
    cmp = run_variant_benchmark(vsc, tr, ["single"])
    singles = {v: s.result for v, s in cmp.singles.items()}
    c = crossover_cost(singles)
    if c is not None:
        a, b = singles[V70], singles[V405]
        assert a.value_goodput(c) == pytest.approx(b.value_goodput(c), rel=1e-6, abs=1e-6)


def test_the_two_examples_choose_differently() -> None:
    """Financial analysis (c = 2, loose SLO) puts more traffic on 405B-INT4 than the
    support chatbot (c = 0.2, tight SLO) does, on the same trace and fleet."""
    tr = synthetic(n=1_200, span_s=120.0)
    shares = {}
    for path in (FIN, CHAT):
        vsc = scenario(path)
        res = run_variant_benchmark(vsc, tr, ["goodput"]).results["goodput"]
        assert res.peak_gpus <= vsc.budget
        shares[path.stem] = res.share()[V405]
    assert shares["financial-analysis"] > shares["support-chatbot"]


# ---------------------------------------------------------------------------- CLI


def _azure_csv(path: Path, tr: Trace) -> None:
    """A trace in the Azure CSV format `goodput simulate --trace` reads."""
    import datetime as dt

    t0 = dt.datetime(2023, 11, 16, 18, 0, 0)
    rows = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    for a, i, o in zip(tr.arrival_s, tr.input_tokens, tr.output_tokens, strict=True):
        ts = t0 + dt.timedelta(seconds=float(a))
        rows.append(f"{ts:%Y-%m-%d %H:%M:%S}.{ts.microsecond:06d}0,{i},{o}")
    path.write_text("\n".join(rows) + "\n")


def test_simulate_json_reports_value_goodput_and_share_per_controller(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from goodput.sim.cli import main

    trace = tmp_path / "t.csv"
    _azure_csv(trace, synthetic(n=500, span_s=60.0))
    out = tmp_path / "r.json"
    argv = ["--policy", str(CHAT), "--trace", str(trace), "--quiet", "--json", str(out)]
    assert main([*argv, "--controllers", "hpa-fixed-split,single"]) == 0
    d = json.loads(out.read_text())
    assert set(d["controllers"]) == {"hpa-fixed-split", f"single-{V70}", f"single-{V405}"}
    for entry in d["controllers"].values():
        assert {"value_goodput", "goodput", "share"} <= set(entry)
        assert sum(entry["share"].values()) == pytest.approx(1.0)
        assert entry["peak_gpus"] <= 64
        assert len(entry["timeline"]["weights"][V70]) == len(entry["timeline"]["t"])
    assert d["value"]["wrong_answer_cost"] == 0.2
    assert d["goodput_driver"] == GOODPUT_DRIVER == "operator-tick"
    assert "value goodput /s" in capsys.readouterr().out
    # A higher wrong-answer cost: the same runs of quality-blind baselines, less value.
    assert main([*argv, "--controllers", "single", "--wrong-answer-cost", "2"]) == 0
    d2 = json.loads(out.read_text())
    for name in (f"single-{V70}", f"single-{V405}"):
        assert d2["controllers"][name]["goodput"] == d["controllers"][name]["goodput"]
        assert d2["controllers"][name]["value_goodput"] < d["controllers"][name]["value_goodput"]


def test_simulate_refuses_single_model_controllers_on_a_variant_policy(tmp_path: Path) -> None:
    from goodput.sim.cli import main

    trace = tmp_path / "t.csv"
    _azure_csv(trace, synthetic(n=50, span_s=10.0))
    with pytest.raises(SystemExit):
        main(["--policy", str(FIN), "--trace", str(trace), "--controllers", "dynamo", "--quiet"])


# ---------------------------------------------------------------------------- operator


def test_json_patch_applies_the_route_patch_ops_and_refuses_a_stale_version() -> None:
    from goodput.actuator.route import RouteError
    from goodput.sim.variant_operator import apply_json_patch

    obj = {
        "metadata": {"resourceVersion": "3", "annotations": {}},
        "spec": {
            "rules": [{"backendRefs": [{"name": "a", "weight": 50}, {"name": "b", "weight": 50}]}]
        },
    }
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "3"},
        {"op": "replace", "path": "/spec/rules/0/backendRefs/1/weight", "value": 80},
        {
            "op": "add",
            "path": "/metadata/annotations/goodput.dev~1traffic-split-owner",
            "value": "sim/goodput",
        },
    ]
    out = apply_json_patch(obj, ops)
    assert out["spec"]["rules"][0]["backendRefs"][1]["weight"] == 80
    assert out["metadata"]["annotations"] == {"goodput.dev/traffic-split-owner": "sim/goodput"}
    assert obj["spec"]["rules"][0]["backendRefs"][1]["weight"] == 50  # a copy
    with pytest.raises(RouteError):
        apply_json_patch(obj, [{"op": "test", "path": "/metadata/resourceVersion", "value": "2"}])


def test_operator_tick_writes_the_route_and_the_router_follows_it() -> None:
    """goodput through the operator's own tick: its HTTPRoute patches are the weights the
    twin splits by, and its scale writes stay within the budget across variants."""
    from goodput.sim.variant_operator import OperatorVariantsLoop

    vsc = scenario()
    tr = synthetic(n=900, span_s=90.0)
    ctl = OperatorVariantsLoop(vsc)
    res = run_variants(vsc, tr, ctl)
    assert ctl.route is not None and ctl.route.patches > 0
    assert res.ticks[-1].weights == ctl.route.weights()
    assert sum(ctl.route.weights().values()) == 100
    assert res.peak_gpus <= vsc.budget
    assert ctl.outcomes and ctl.raw_status.get("lastDecision")
    # The direct planner driver (a diagnostic) plans the same way from the same start.
    direct = run_variants(vsc, tr, VariantPlannerLoop(vsc))
    assert direct.peak_gpus <= vsc.budget
    assert direct.ticks[1].weights == res.ticks[1].weights


def test_request_classes_set_each_requests_chance_of_a_right_answer() -> None:
    """quality.classes: a 405B-INT4 that is never right on prompts of 1,000+ tokens (a
    stand-in for 4-bit models' long-context loss) answers none of them right, and the
    shorter ones at its score."""
    base = load_policy(FIN)
    v405 = base.variants[1]
    raw = v405.quality.model_dump(by_alias=True, exclude_none=True)
    raw["classes"] = [{"minInputTokens": 1000, "score": 0.0, "source": "test"}]
    q = type(v405.quality).model_validate(raw)
    spec = base.model_copy(
        update={"variants": [base.variants[0], v405.model_copy(update={"quality": q})]}
    )
    vsc = build_variant_scenario(spec)
    tr = synthetic(n=3_000, span_s=60.0)
    res = run_variants(vsc, tr, FixedVariants("f", even_start(vsc)[0], {V70: 0, V405: 100}))
    long = tr.input_tokens >= 1000
    assert not np.any(res.right[long])
    short = float(np.mean(res.right[~long]))
    assert abs(short - 0.728) < 4 * np.sqrt(0.728 * 0.272 / int(np.sum(~long)))
