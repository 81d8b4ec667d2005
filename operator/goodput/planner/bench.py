"""Planner speed: median wall time of one planning step (correction, forecast,
optimizer, explanation) for growing GPU budgets, disaggregated Llama-3.1-8B on H100
(TP1, so the replica counts are as large as the budget) with two KV tiers.

Run: ``python -m goodput.planner.bench``.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

from goodput.api.spec import GoodputPolicySpec
from goodput.observation import LatencySummary, Observation, PoolObservation
from goodput.plan import Allocation
from goodput.planner.planner import PlannerState, plan

BUDGETS = (8, 64, 512, 4096)
REPEATS = 41


def bench_spec(budget: int) -> GoodputPolicySpec:
    return GoodputPolicySpec.model_validate(
        {
            "gpuBudget": budget,
            "pools": [
                {
                    "role": "prefill",
                    "targetRef": {"name": "prefill"},
                    "maxReplicas": budget,
                    "profile": "llama-3.1-8b-h100-tp1",
                },
                {
                    "role": "decode",
                    "targetRef": {"name": "decode"},
                    "maxReplicas": budget,
                    "profile": "llama-3.1-8b-h100-tp1",
                },
            ],
            "kvCache": {
                "tiers": [
                    {
                        "name": "cpu",
                        "targetRef": {"name": "kv-cpu"},
                        "capacityPerReplicaGib": 256,
                        "bandwidthGibPerS": 20,
                        "maxReplicas": max(budget // 8, 1),
                    },
                    {
                        "name": "disk",
                        "targetRef": {"name": "kv-disk"},
                        "capacityPerReplicaGib": 2048,
                        "bandwidthGibPerS": 3,
                        "maxReplicas": max(budget // 8, 1),
                    },
                ]
            },
            "slo": {"ttft": "500ms", "itl": "50ms", "attainment": 0.9},
        }
    )


def bench_observation(budget: int, now: float) -> Observation:
    """Load that needs about 70 % of the budget, so the optimizer scans the full range."""
    rate = 16.0 * budget
    half = max(budget // 3, 1)
    return Observation(
        timestamp=now,
        pools={
            "prefill": PoolObservation(
                role="prefill",
                ready_replicas=half,
                arrival_rate_rps=rate,
                mean_input_tokens=2000.0,
                mean_output_tokens=250.0,
                ttft=LatencySummary(attainment=0.95, mean_s=0.2),
                prefix_cache_hit_rate=0.3,
            ),
            "decode": PoolObservation(
                role="decode",
                ready_replicas=half,
                itl=LatencySummary(attainment=0.95, mean_s=0.03),
            ),
        },
    )


def plan_timings(
    budgets: tuple[int, ...] = BUDGETS, repeats: int = REPEATS
) -> list[dict[str, Any]]:
    rows = []
    for budget in budgets:
        spec = bench_spec(budget)
        half = max(budget // 3, 1)
        current = Allocation(pools={"prefill": half, "decode": half}, tiers={"cpu": 1, "disk": 1})
        state: PlannerState | None = None
        times = []
        result = None
        for i in range(repeats):
            obs = bench_observation(budget, 15.0 * i)
            t0 = time.perf_counter()
            result, state = plan(spec, obs, current, state, 15.0 * i)
            times.append(time.perf_counter() - t0)
        assert result is not None
        rows.append(
            {
                "budget_gpus": budget,
                "median_ms": statistics.median(times) * 1e3,
                "p90_ms": sorted(times)[int(0.9 * (len(times) - 1))] * 1e3,
                "repeats": repeats,
                "planned_gpus": result.total_gpus,
                "replicas": {r: d.replicas for r, d in result.pools.items()},
                "tiers": dict(result.tiers),
            }
        )
    return rows


def render_markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| GPU budget | median plan time (ms) | p90 (ms) | repeats | planned GPUs | replicas"
        " | KV tiers |",
        "|--:|--:|--:|--:|--:|---|---|",
    ]
    for r in rows:
        reps = ", ".join(f"{k} {v}" for k, v in r["replicas"].items())
        tiers = ", ".join(f"{k} {v}" for k, v in r["tiers"].items())
        lines.append(
            f"| {r['budget_gpus']} | {r['median_ms']:.2f} | {r['p90_ms']:.2f} | {r['repeats']}"
            f" | {r['planned_gpus']} | {reps} | {tiers} |"
        )
    if len(rows) >= 2:
        first, last = rows[0], rows[-1]
        growth = last["median_ms"] / max(first["median_ms"], 1e-9)
        span = last["budget_gpus"] / first["budget_gpus"]
        lines.append("")
        lines.append(
            f"Plan time grows {growth:.1f}x while the budget grows {span:.0f}x: each pool's curve"
            " is one O(N) vector pass and the prefill/decode pairing is a vectorized binary"
            " search, O(P log D) array work, so time is a fixed Python overhead plus a term"
            " near-linear in the replica range."
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    print(render_markdown(plan_timings()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
