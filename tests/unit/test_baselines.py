"""The benchmark's baselines, each configured as its authors run it: one decision per
baseline checked against a hand-computed one (the arithmetic is in each docstring)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from goodput.api.spec import GoodputPolicySpec
from goodput.observation import LatencySummary, Observation, PoolObservation
from goodput.plan import Allocation
from goodput.profiles import load_profile
from goodput.sim.controllers import (
    HPA_SCALE_DOWN,
    HPA_SCALE_UP,
    ArimaPredictor,
    DynamoPlanner,
    HpaBehavior,
    KubernetesHPA,
    LlmdSloAutoscaler,
    Oracle,
    auto_ar_forecast,
    fit_directional_pair,
    guard_disagg_budget,
    hindsight,
    hpa_metric_replicas,
    llmd_desired,
    slo_decode_batch,
)
from goodput.sim.engine import DECODE, PREFILL
from goodput.sim.harness import even_split, run
from goodput.sim.scenario import Scenario, build_scenario
from goodput.sim.traces import Trace

P70 = "llama-3.1-70b-h100-tp4"


def scenario70(budget: int = 32, ttft: str = "1s", itl: str = "60ms", max_r: int = 7) -> Scenario:
    """The bench's azure-conv policy: 70B H100 TP4 (4 GPUs a replica), 32 GPUs."""
    pool = {"minReplicas": 1, "maxReplicas": max_r, "profile": P70}
    spec = GoodputPolicySpec.model_validate(
        {
            "gpuBudget": budget,
            "pools": [
                {"role": "prefill", "targetRef": {"name": "p"}, **pool},
                {"role": "decode", "targetRef": {"name": "d"}, **pool},
            ],
            "slo": {"ttft": ttft, "itl": itl},
            "behavior": {"interval": "15s", "startupDelay": "60s"},
        }
    )
    return build_scenario(spec)


def obs(
    *,
    ready: tuple[int, int] = (4, 4),
    p_waiting: float = 0.0,
    d_running: float = 0.0,
    d_waiting: float = 0.0,
    busy: float = 0.0,
    rate: float = 10.0,
    isl: float = 1000.0,
    osl: float = 200.0,
    ttft_p90: float | None = None,
    itl_p90: float | None = None,
) -> Observation:
    ttft = LatencySummary(p90_s=ttft_p90) if ttft_p90 is not None else None
    itl = LatencySummary(p90_s=itl_p90) if itl_p90 is not None else None
    common = {
        "arrival_rate_rps": rate,
        "mean_input_tokens": isl,
        "mean_output_tokens": osl,
        "prefix_cache_hit_rate": 0.0,
        "ttft": ttft,
        "itl": itl,
    }
    return Observation(
        timestamp=0.0,
        pools={
            PREFILL: PoolObservation(
                role=PREFILL, ready_replicas=ready[0], waiting_requests=p_waiting, **common
            ),
            DECODE: PoolObservation(
                role=DECODE,
                ready_replicas=ready[1],
                running_requests=d_running,
                waiting_requests=d_waiting,
                **common,
            ),
        },
        notes=[f"prefill_busy_fraction={busy:.3f}"],
    )


def alloc(p: int, d: int) -> Allocation:
    return Allocation(pools={PREFILL: p, DECODE: d}, tiers={})


# ---------------------------------------------------------------------------- hpa


def test_hpa_replica_calculator_hand_computed() -> None:
    """calcPlainMetricReplicas, AverageValue target 92 running requests per pod:
    - 4 pods ready, 500 running: ratio 500 / (92 x 4) = 1.359 -> ceil(1.359 x 4) = 6;
    - inside the 10% tolerance (380 / 368 = 1.033): stays 4;
    - 200 running: ratio 0.543 -> ceil(0.543 x 4) = ceil(2.17) = 3;
    - 6 pods of which 2 still starting (no metric), 500 running: the scale-up counts
      the starting pods at 0: 500 / (92 x 6) = 0.906 < 1 flips the direction -> stays 6;
    - 6 pods, 4 ready, 900 running: 900 / 552 = 1.63 -> ceil(1.63 x 6) = ceil(9.78) = 10."""
    assert hpa_metric_replicas(4, 4, 500.0, 92.0) == 6
    assert hpa_metric_replicas(4, 4, 380.0, 92.0) == 4
    assert hpa_metric_replicas(4, 4, 200.0, 92.0) == 3
    assert hpa_metric_replicas(6, 4, 500.0, 92.0) == 6
    assert hpa_metric_replicas(6, 4, 900.0, 92.0) == 10


def test_hpa_default_behavior_hand_computed() -> None:
    """Default behavior: the 300 s scale-down window holds the highest recommendation
    (the start allocation, 4, recommended at t=0) until t=300 has passed; scale-up has
    no window but at most max(100%, 4 pods) per 15 s: from 2, max(ceil(2 x 2), 2 + 4) = 6."""
    b = HpaBehavior(HPA_SCALE_UP, HPA_SCALE_DOWN, 1, 15)
    assert b.normalize(2, 4, 15.0) == 4  # held by the window (t=0: 4)
    assert b.normalize(2, 4, 301.0) == 2  # window now holds only 2s; 100%/15 s allows it
    assert b.normalize(12, 2, 316.0) == 6  # rate limit max(4, 6) = 6


def test_hpa_decode_target_is_the_batch_that_meets_the_itl() -> None:
    """70B H100 TP4 profile, step = 0.0289353 + 3.0417e-4 b + 2.6475e-8 x b x ctx; mean
    lengths 1155 in / 211 out: ctx = 1155 + 105.5 = 1260.5, per sequence 3.0417e-4 +
    2.6475e-8 x 1260.5 = 3.3754e-4 s; 60 ms SLO: b <= (0.060 - 0.0289353) / 3.3754e-4
    = 92.03 -> 92 (the naive 70% of max_num_seqs 256 = 179 gives a step of ~89 ms)."""
    prof = load_profile(P70)
    assert slo_decode_batch(prof, 0.060, 1155.0, 211.0) == 92
    assert prof.decode_step_seconds(179, 179 * 1260.5) == pytest.approx(0.0893, abs=5e-4)


def test_hpa_decision_hand_computed() -> None:
    """hpa on the azure-conv policy at t=15 from 4 prefill + 4 decode (16 + 16 GPUs):
    - decode: 500 running over 4 ready pods, target 92 -> ceil(500 / 92) = 6 (rate limit
      max(8, 8) allows it); 0 waiting -> 1 (the larger proposal wins): 6;
    - prefill: busy 2.0 over 4 pods (0.5 each) vs 0.8 -> ceil(2.5) = 3, 0 waiting -> 1;
      the 300 s scale-down window still holds t=0's 4: 4;
    - plain Kubernetes: the plan asks 4 + 6 = 40 GPUs; 2 decode pods stay Pending.
    - hpa-shared: fit_budget(4, 6): scale 32 / 40 = 0.8, prefill floor(3.2) = 3, decode
      min(6, (32 - 12) / 4 = 5) = 5."""
    sc = scenario70()
    o = obs(d_running=500.0, busy=2.0)
    plain = KubernetesHPA(sc, (1155.0, 211.0))
    plan = plain.decide(o, alloc(4, 4), 15.0)
    assert {r: d.replicas for r, d in plan.pools.items()} == {PREFILL: 4, DECODE: 6}
    shared = KubernetesHPA(sc, (1155.0, 211.0), budget="share")
    plan = shared.decide(o, alloc(4, 4), 15.0)
    assert {r: d.replicas for r, d in plan.pools.items()} == {PREFILL: 3, DECODE: 5}


# ---------------------------------------------------------------------------- dynamo


def test_dynamo_throughput_rule_hand_computed() -> None:
    """Dynamo's throughput rule, 3,600 requests predicted per 180 s (20 req/s), isl 1000,
    osl 200, no prefix hits, TTFT 1 s / ITL 60 ms, 70B profile:
    - prefill: one prompt takes 0.0368816 + 5.60638e-5 x 1000 + 4.95870e-10 x 1000^2 =
      0.0934413 s (below the profile's 1024-token knee, one sequence) -> 10.702 req/s per
      engine -> ceil(20 / 10.702) = ceil(1.87) = 2;
    - decode at context 1000 + 100 = 1100: per sequence 3.0417e-4 + 2.6475e-8 x 1100 =
      3.3329e-4 s, so b <= (0.06 - 0.0289353) / 3.3329e-4 = 93.2 -> 93 (KV cap
      448303 / 1100 = 407, max_num_seqs 256); step(93) = 0.059931 s; rate = 93 /
      (200 x 0.059931) = 7.759 req/s -> ceil(20 / 7.759) = ceil(2.58) = 3."""
    dp = DynamoPlanner(scenario70())
    assert dp.throughput_replicas(3600.0, 1000.0, 200.0) == {PREFILL: 2, DECODE: 3}
    _, wt = dp.prefill_engine_rps(1000.0)
    assert wt == pytest.approx(0.0934413, rel=1e-5)
    assert dp.decode_engine_rps(1000.0, 200.0) == pytest.approx(7.759, rel=1e-3)


def test_dynamo_not_ready_guard_ignores_scaling() -> None:
    """A decode replica is still starting (3 of 4 ready): Dynamo's connector ignores the
    scaling ("Deployment ... is not ready, ignoring this scaling"), even under a queue
    that would otherwise add a prefill worker."""
    dp = DynamoPlanner(scenario70())
    plan = dp.decide(obs(ready=(4, 3), p_waiting=400.0), alloc(4, 4), 15.0)
    assert {r: d.replicas for r, d in plan.pools.items()} == {PREFILL: 4, DECODE: 4}
    assert "not ready" in plan.message


def test_dynamo_load_layer_and_budget_guard_hand_computed() -> None:
    """All ready at 4 + 4 = 32 GPUs (the ceiling), 100 prompts of 1000 tokens queued:
    - prefill: 25 per worker + its own = 26 prompts, 8 per batch (8192 / 1000):
      3 batches of 8 (0.0357239 + 6.03867e-5 x 8000 + 7.31593e-9 x 8 x 1000^2 = 0.57734 s)
      + 1 of 2 (0.0357239 + 0.1207734 + 0.0146319 = 0.17113 s) = 1.9032 s > 1 s on every
      worker -> 5;
    - decode: 200 running, 50 per worker at context 1100: step(51, 50 x 1100 + 1100) =
      0.0289353 + 3.0417e-4 x 51 + 2.6475e-8 x 56100 = 0.0459 s < 60 ms: no scale-up;
      consolidation to 3: (50 x 1100) x 4/3 = 73333 KV tokens (< 448303), step(51,
      73333 + 1100) = 0.0289353 + 0.0155127 + 0.0019706 = 0.0464 s < 0.8 x 60 ms -> 3;
    - (5, 3) = 32 GPUs at the ceiling is an opposing rebalance that fits: admitted."""
    dp = DynamoPlanner(scenario70())
    plan = dp.decide(obs(p_waiting=100.0, d_running=200.0), alloc(4, 4), 15.0)
    assert {r: d.replicas for r, d in plan.pools.items()} == {PREFILL: 5, DECODE: 3}


def test_dynamo_budget_guard_hand_computed() -> None:
    """core/budget.py semantics with 4 GPUs a replica, ceiling 32, current (4, 4):
    - (5, 4) = 36: a scale-up at the ceiling with no donor -> hold;
    - (6, 3) = 36: opposing; both legs must move: p in {5, 6}, d = 3; (5, 3) = 32 fits,
      distance 1 -> (5, 3);
    - from (3, 4) = 28, (5, 4) = 36 > 32: proportional clamp p = floor(5 x 32/36) = 4,
      d = (32 - 16) / 4 = 4 -> (4, 4), within the requested directions -> admitted."""
    g = (4, 4)
    assert guard_disagg_budget((4, 4), (5, 4), g, 32, 1) == ((4, 4), "gpu_budget_guard_hold")
    assert guard_disagg_budget((4, 4), (6, 3), g, 32, 1) == ((5, 3), None)
    assert guard_disagg_budget((3, 4), (5, 4), g, 32, 1) == ((4, 4), None)
    assert fit_directional_pair((4, 4), (6, 2), g, 32, 1) == (6, 2)


def test_dynamo_arima_predictor_hand_computed() -> None:
    """ARIMAPredictor: leading idle zeros skipped, the last value until 5 points, a
    constant series is its value. The auto-ARIMA stand-in on the trend 10, 20, ..., 60:
    KPSS (short lag int(4 x 0.06^0.25) = 1): residuals -25 .. 25 step 10, partial sums
    -25 -40 -45 -40 -25 0 (squares 6475), long-run variance (1750 + 875) / 6 = 437.5,
    statistic 6475 / (36 x 437.5) = 0.411 < 0.463: d = 0; AR(1) fits exactly
    (z = 10 + z_prev, AIC -> -inf) against AR(0) (AIC 6 ln 291.7 + 4 = 38.1): 70."""
    p = ArimaPredictor()
    for v in (0.0, 0.0, 5.0, 7.0):
        p.add(v)
    assert p.raw == [5.0, 7.0] and p.predict() == 7.0
    c = ArimaPredictor()
    for _ in range(6):
        c.add(3.0)
    assert c.predict() == 3.0
    pp, d, fc = auto_ar_forecast([10.0, 20.0, 30.0, 40.0, 50.0, 60.0])
    assert (pp, d) == (1, 0)
    assert fc == pytest.approx(70.0, abs=1e-6)


# ---------------------------------------------------------------------------- llm-d


def test_llmd_control_law_hand_computed() -> None:
    """README.slo-aware.md, step 2, theta_up 0.55, theta_dn 0.40:
    - s = 0.8, n = r = 4: 4 + ceil(4 (0.8 / 0.55 - 1)) = 4 + ceil(1.82) = 6;
    - s = 0.8, n = 4, r = 2 (credit 0.5): 0.4 / 0.55 = 0.727 -> 4 + ceil(-1.09) = 3,
      floored at n (assumption): 4;
    - s = 0.5: inside the band: 4;
    - s = 0.2: 4 - floor(4 (1 - 0.2 / 0.4)) = 4 - 2 = 2."""
    assert llmd_desired(0.8, 4, 4) == 6
    assert llmd_desired(0.8, 4, 2) == 4
    assert llmd_desired(0.5, 4, 4) == 4
    assert llmd_desired(0.2, 4, 4) == 2


def test_llmd_decision_hand_computed() -> None:
    """llmd-slo from 4 + 4: prefill P90 TTFT 1.6 s / 1 s SLO = 1.6 (under the clamp
    2.0): 4 + ceil(4 (1.6 / 0.55 - 1)) = 4 + ceil(7.64) = 12. KEDA's HPA: |12/4 - 1| >
    10%; its 30 s scale-up window (min over it) still holds t=0's 4 at t=15, so 4; at
    t=45 the window holds 12 and 12: the up limit max(ceil(4 x 2), 4 + 4) = 8, bounds
    [1, 7]: 7 (3 Pending: no budget awareness). Decode P90 TPOT 30 ms / 60 ms = 0.5:
    inside the band: 4. A raw 5.0 (TTFT 5 s) is clamped to 2.0 before the average."""
    sc = scenario70()
    ll = LlmdSloAutoscaler(sc)
    o = obs(ttft_p90=1.6, itl_p90=0.030)
    plan = ll.decide(o, alloc(4, 4), 15.0)
    assert {r: d.replicas for r, d in plan.pools.items()} == {PREFILL: 4, DECODE: 4}
    plan = ll.decide(o, alloc(4, 4), 45.0)
    assert {r: d.replicas for r, d in plan.pools.items()} == {PREFILL: 7, DECODE: 4}
    ll2 = LlmdSloAutoscaler(sc)
    assert ll2.signal(PREFILL, obs(ttft_p90=5.0), 15.0) == 2.0
    assert ll2.signal(PREFILL, obs(ttft_p90=0.5), 30.0) == pytest.approx(1.25)


# ---------------------------------------------------------------------------- bounds


def small() -> tuple[Scenario, Trace]:
    spec = GoodputPolicySpec.model_validate(
        {
            "gpuBudget": 6,
            "pools": [
                {"role": r, "targetRef": {"name": r[0]}, "maxReplicas": 6, "profile": p}
                for r, p in (
                    ("prefill", "llama-3.1-8b-h100-tp1"),
                    ("decode", "llama-3.1-8b-h100-tp1"),
                )
            ],
            "slo": {"ttft": "500ms", "itl": "30ms"},
            "behavior": {"interval": "10s", "startupDelay": "20s"},
        }
    )
    rng = np.random.default_rng(1)
    n = 1500
    tr = Trace(
        name="t",
        arrival_s=np.sort(rng.uniform(0, 120.0, n)),
        input_tokens=rng.integers(2000, 6000, n),
        output_tokens=rng.integers(2, 60, n),
    )
    return build_scenario(spec), tr


def test_oracle_starts_from_the_even_split() -> None:
    """DESIGN section 3: the oracle no longer picks its own initial allocation; the
    first tick (t=10) still shows the even split 3 + 3 of the 6 GPUs."""
    sc, tr = small()
    assert not hasattr(Oracle, "initial_allocation")
    res = run(sc, tr, Oracle(sc, tr), startup_delay_s=0.0)
    assert res.ticks[0].target == even_split(sc) == {PREFILL: 3, DECODE: 3}


def test_static_best_and_clairvoyant_start_even_and_request_at_the_first_tick() -> None:
    """Both bounds start at the even split 3 + 3; static-best's split is the one that is
    best held from t=0; clairvoyant is the best of the same splits run from the even
    split (so >= static-best); both request their split at the first tick (t=10), and
    a split that differs from 3 + 3 counts as one scaling action per pool changed."""
    sc, tr = small()
    hs = hindsight(sc, tr)
    held = {tuple(a.values()): g for a, g in hs.held}
    assert held[tuple(hs.static_split.values())] == max(held.values())
    assert hs.clairvoyant.goodput >= hs.static_best.goodput
    for res, split in ((hs.static_best, hs.static_split), (hs.clairvoyant, hs.clairvoyant_split)):
        assert res.ticks[0].target == {PREFILL: 3, DECODE: 3}
        assert res.ticks[1].target == split
        assert res.actions == sum(split[r] != 3 for r in split)
    assert hs.static_best.controller == "static-best"
    assert hs.clairvoyant.controller == "clairvoyant"
    assert math.isfinite(hs.clairvoyant.goodput)
