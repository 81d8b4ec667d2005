"""The planner's performance model against the digital twin that simulates the same
profile: Poisson arrivals, exponential lengths, fixed allocations. The model is a
closed form, the twin an event simulation with batching, so they must agree to within
stated tolerances (mean TTFT 30 % or 20 ms, TTFT attainment 0.1, mean ITL 10 %)."""

from __future__ import annotations

import numpy as np
import pytest

from goodput.api.spec import GoodputPolicySpec
from goodput.planner.model import CacheEffect, Demand, decode_curve, prefill_curve
from goodput.profiles import load_profile

sim = pytest.importorskip("goodput.sim.harness")
scenario = pytest.importorskip("goodput.sim.scenario")
traces = pytest.importorskip("goodput.sim.traces")

CASES = [
    # profile, rate, prefill, decode, input, output, ttft slo, itl slo
    ("llama-3.1-8b-h100-tp1", 20.0, 2, 2, 2000, 200, 0.3, 0.03),
    ("llama-3.1-8b-h100-tp1", 60.0, 4, 4, 2000, 200, 0.3, 0.03),
    ("llama-3.1-70b-h100-tp4", 6.0, 3, 2, 3000, 300, 1.0, 0.06),
]


@pytest.mark.parametrize(("name", "rate", "p", "d", "inp", "out", "ttft", "itl"), CASES)
def test_model_matches_the_twin(
    name: str, rate: float, p: int, d: int, inp: int, out: int, ttft: float, itl: float
) -> None:
    prof = load_profile(name)
    rng = np.random.default_rng(7)
    n = int(rate * 300)
    trace = traces.Trace(
        name="poisson",
        arrival_s=np.cumsum(rng.exponential(1 / rate, n)),
        input_tokens=np.maximum(1, rng.exponential(inp, n)).astype(np.int64),
        output_tokens=np.maximum(2, rng.exponential(out, n)).astype(np.int64),
        hash_ids=None,
        note="",
        meta={},
    )
    spec = GoodputPolicySpec.model_validate(
        {
            "gpuBudget": (p + d) * prof.gpus_per_replica,
            "pools": [
                {
                    "role": "prefill",
                    "targetRef": {"name": "p"},
                    "minReplicas": p,
                    "maxReplicas": p,
                    "profile": name,
                },
                {
                    "role": "decode",
                    "targetRef": {"name": "d"},
                    "minReplicas": d,
                    "maxReplicas": d,
                    "profile": name,
                },
            ],
            "slo": {"ttft": f"{ttft}s", "itl": f"{itl}s"},
        }
    )
    run = sim.run(scenario.build_scenario(spec), trace, None, initial={"prefill": p, "decode": d})
    o = run.outcomes
    done = ~np.isnan(o.ttft)
    demand = Demand(rate, float(inp), float(out))
    pre = prefill_curve(prof, 1.0, demand, CacheEffect(), ttft, p)
    dec = decode_curve(prof, 1.0, demand, itl, d)
    twin_ttft = float(np.mean(o.ttft[done]))
    assert abs(pre.mean_latency[p] - twin_ttft) <= max(0.3 * twin_ttft, 0.02)
    assert abs(pre.attainment[p] - float(np.mean(o.ttft[done] <= ttft))) <= 0.1
    assert dec.mean_latency[d] == pytest.approx(float(np.mean(o.itl[done])), rel=0.1)
