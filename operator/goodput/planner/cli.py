"""`goodput plan`: the plan for one policy and one observation, as text or JSON.

This is the only planner module that touches files; the planning itself is the same
pure ``plan`` function the operator and the twin run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from goodput.api.load import load_policy
from goodput.api.spec import GoodputPolicySpec
from goodput.observation import LatencySummary, Observation, PoolObservation
from goodput.plan import Allocation, Plan
from goodput.planner.planner import plan
from goodput.profiles import ProfileError

EXAMPLE_OBSERVATION = Observation(
    timestamp=1_767_225_600.0,
    pools={
        "prefill": PoolObservation(
            role="prefill",
            ready_replicas=2,
            arrival_rate_rps=12.5,
            mean_input_tokens=3000.0,
            mean_output_tokens=250.0,
            prompt_tokens_per_s=37500.0,
            ttft=LatencySummary(attainment=0.93, p50_s=0.21, p90_s=0.48, p99_s=0.9, mean_s=0.26),
            waiting_requests=1.0,
            prefix_cache_hit_rate=0.35,
        ),
        "decode": PoolObservation(
            role="decode",
            ready_replicas=2,
            mean_output_tokens=250.0,
            generation_tokens_per_s=3125.0,
            itl=LatencySummary(attainment=0.97, p50_s=0.021, p90_s=0.03, mean_s=0.022),
            running_requests=70.0,
            kv_cache_usage=0.4,
        ),
    },
    quality=None,
)


def _current(arg: str | None, spec: GoodputPolicySpec, obs: Observation) -> Allocation:
    """``--current prefill=2,decode=4,cpu=1``, else ready replicas, else minimums."""
    pools: dict[str, int] = {}
    tiers: dict[str, int] = {}
    tier_names = {t.name for t in spec.kv_cache.tiers}
    if arg:
        for item in arg.split(","):
            key, _, value = item.partition("=")
            (tiers if key.strip() in tier_names else pools)[key.strip()] = int(value)
    for pool in spec.pools:
        role = pool.role.value
        ready = obs.pools[role].ready_replicas if role in obs.pools else None
        pools.setdefault(role, ready if ready is not None else pool.min_replicas)
    for tier in spec.kv_cache.tiers:
        tiers.setdefault(tier.name, tier.min_replicas)
    return Allocation(pools=pools, tiers=tiers)


def plan_json(result: Plan) -> dict[str, Any]:
    doc = result.model_dump(mode="json")
    doc["replicas"] = {role: d.replicas for role, d in result.pools.items()}
    return doc


def render_text(result: Plan) -> str:
    lines = [
        f"reason:     {result.reason.value}{' (hold)' if result.hold else ''}",
        f"message:    {result.message}",
        f"gpus:       {result.total_gpus} of budget {result.budget}"
        f"  (budget satisfiable: {result.budget_satisfiable})",
        f"goodput:    {result.predicted_goodput:.1f} good tokens/s predicted,"
        f" attainment {result.predicted_attainment:.3f}",
        f"binding:    {result.binding_constraint.value}"
        + (f" ({result.binding_pool})" if result.binding_pool else ""),
    ]
    for role, d in result.pools.items():
        lines.append(f"pool {role:<10} {d.replicas} replicas x {d.gpus_per_replica} GPU")
    for name, n in result.tiers.items():
        lines.append(f"tier {name:<10} {n} replicas")
    if result.runner_up is not None:
        r = result.runner_up
        lines.append(
            f"runner-up:  {r.pools} {r.tiers or ''} {r.total_gpus} GPUs,"
            f" goodput {r.predicted_goodput:.1f}, attainment {r.predicted_attainment:.3f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="goodput plan",
        description=__doc__,
        usage=(
            "goodput plan --policy POLICY --observation OBSERVATION [--current CURRENT]"
            " [--json]\n       goodput plan --example-observation"
        ),
    )
    parser.add_argument(
        "--policy", type=Path, help="GoodputPolicy YAML manifest (required to plan)"
    )
    parser.add_argument("--observation", type=Path, help="Observation JSON (required to plan)")
    parser.add_argument("--current", help="current replicas, e.g. prefill=2,decode=4,cpu=1")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    parser.add_argument(
        "--example-observation", action="store_true", help="print a valid Observation JSON"
    )
    args = parser.parse_args(argv)
    if args.example_observation:
        print(EXAMPLE_OBSERVATION.model_dump_json(indent=2))
        return 0
    if args.policy is None or args.observation is None:
        parser.error("--policy and --observation are required")
    try:
        spec = load_policy(args.policy)
        obs = Observation.model_validate(yaml.safe_load(args.observation.read_text()))
    except (OSError, ValueError, yaml.YAMLError) as exc:
        print(f"goodput plan: {exc}", file=sys.stderr)
        return 2
    try:
        result, _ = plan(spec, obs, _current(args.current, spec, obs), None, obs.timestamp)
    except ProfileError as exc:  # a pool names no profile, or one that is not bundled
        print(f"goodput plan: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(plan_json(result), indent=2) if args.json else render_text(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
