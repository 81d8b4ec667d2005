"""The two large-model examples are planned and simulated with their own models'
profiles, and the ITL the planner predicts and the twin simulates is never below the
HBM-bandwidth floor of that model (weight bytes per GPU / HBM bandwidth per GPU): the
8B stand-in they used to get (6.2 ms for a 405B) is gone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from goodput.api.load import load_policy
from goodput.observation import Observation, PoolObservation
from goodput.plan import Allocation
from goodput.planner import GoodputPlanner
from goodput.sim.harness import run
from goodput.sim.scenario import build_scenario
from goodput.sim.traces import Trace

REPO = Path(__file__).resolve().parents[2]
H100_HBM = 3.35e12  # bytes/s per GPU (shared/data/perf/README.md section 1)

# policy -> (profile, weight bytes, GPUs per replica, mean input, mean output, rate)
EXAMPLES = {
    "analysis-quality-weighted": (
        "llama-3.1-405b-w4a16-h100-tp4",
        405.85e9 * 0.5,
        4,
        12000,
        800,
        0.5,
    ),
    "moe-wide-ep-leaderworkerset": ("qwen3-235b-a22b-fp8-h100-tp8", 235.04e9, 8, 2000, 500, 20.0),
}


def _floor(weights: float, gpus: int) -> float:
    return weights / gpus / H100_HBM


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_planner_predicts_itl_above_the_models_hbm_floor(name: str) -> None:
    profile, weights, gpus, n_in, n_out, rate = EXAMPLES[name]
    spec = load_policy(REPO / "policies" / f"{name}.yaml")
    assert {p.profile for p in spec.pools} == {profile}
    assert {p.gpus_per_replica for p in spec.pools} == {gpus}
    obs = Observation(
        timestamp=0.0,
        pools={
            "prefill": PoolObservation(
                role="prefill",
                ready_replicas=1,
                arrival_rate_rps=rate,
                mean_input_tokens=float(n_in),
                mean_output_tokens=float(n_out),
                prefix_cache_hit_rate=0.0,
            ),
            "decode": PoolObservation(
                role="decode", ready_replicas=1, mean_output_tokens=float(n_out)
            ),
        },
        quality=0.9 if spec.quality.query else None,
    )
    plan = GoodputPlanner(spec).decide(obs, Allocation(pools={"prefill": 1, "decode": 1}), 0.0)
    itl = plan.pools["decode"].predicted_itl_s
    assert itl is not None
    assert itl >= _floor(weights, gpus), (itl, _floor(weights, gpus))
    assert plan.pools["decode"].gpus_per_replica == gpus


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_twin_simulates_itl_above_the_models_hbm_floor(name: str) -> None:
    profile, weights, gpus, n_in, n_out, rate = EXAMPLES[name]
    sc = build_scenario(load_policy(REPO / "policies" / f"{name}.yaml"))
    assert {p.name for p in sc.profiles.values()} == {profile}
    rng = np.random.default_rng(7)
    n = 120
    trace = Trace(
        name="probe",
        arrival_s=np.cumsum(rng.exponential(1 / rate, n)),
        input_tokens=rng.integers(n_in // 2, n_in * 3 // 2, n),
        output_tokens=rng.integers(n_out // 2, n_out * 3 // 2, n),
    )
    res = run(sc, trace, None)
    models = {m for m, _ in res.replica_models}
    assert models == {sc.profiles["decode"].model}
    o = res.outcomes
    served = np.isfinite(o.itl) & (o.output_tokens > 1)
    assert served.sum() >= n * 0.9
    assert float(np.min(o.itl[served])) >= _floor(weights, gpus)
