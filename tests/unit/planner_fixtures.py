"""Builders shared by the planner tests."""

from __future__ import annotations

from typing import Any

from goodput.api.spec import GoodputPolicySpec
from goodput.observation import LatencySummary, Observation, PoolObservation


def disagg_spec(
    budget: int = 32,
    *,
    profile: str = "llama-3.1-8b-h100-tp1",
    min_p: int = 1,
    max_p: int = 32,
    min_d: int = 1,
    max_d: int = 32,
    tiers: bool = False,
    ttft: str = "500ms",
    itl: str = "50ms",
    attainment: float = 0.9,
    quality_query: str | None = None,
) -> GoodputPolicySpec:
    doc: dict[str, Any] = {
        "gpuBudget": budget,
        "pools": [
            {
                "role": "prefill",
                "targetRef": {"name": "p"},
                "minReplicas": min_p,
                "maxReplicas": max_p,
                "profile": profile,
            },
            {
                "role": "decode",
                "targetRef": {"name": "d"},
                "minReplicas": min_d,
                "maxReplicas": max_d,
                "profile": profile,
            },
        ],
        "slo": {"ttft": ttft, "itl": itl, "attainment": attainment},
    }
    if tiers:
        doc["kvCache"] = {
            "tiers": [
                {
                    "name": "cpu",
                    "targetRef": {"name": "c"},
                    "capacityPerReplicaGib": 256,
                    "bandwidthGibPerS": 20,
                    "maxReplicas": 4,
                },
                {
                    "name": "disk",
                    "targetRef": {"name": "k"},
                    "capacityPerReplicaGib": 2048,
                    "bandwidthGibPerS": 3,
                    "maxReplicas": 4,
                },
            ]
        }
    if quality_query:
        doc["quality"] = {"query": quality_query}
    return GoodputPolicySpec.model_validate(doc)


def aggregated_spec(
    budget: int = 16, *, profile: str = "llama-3.1-8b-h100-tp1", min_r: int = 1, max_r: int = 16
) -> GoodputPolicySpec:
    return GoodputPolicySpec.model_validate(
        {
            "gpuBudget": budget,
            "pools": [
                {
                    "role": "aggregated",
                    "targetRef": {"name": "a"},
                    "minReplicas": min_r,
                    "maxReplicas": max_r,
                    "profile": profile,
                }
            ],
            "slo": {"ttft": "500ms", "itl": "50ms", "attainment": 0.9},
        }
    )


def observation(
    rate: float | None,
    *,
    input_tokens: float | None = 2000.0,
    output_tokens: float | None = 250.0,
    ttft: LatencySummary | None = None,
    itl: LatencySummary | None = None,
    ready: dict[str, int] | None = None,
    hit: float | None = None,
    roles: tuple[str, str] = ("prefill", "decode"),
    quality: float | None = None,
    missing: list[str] | None = None,
    now: float = 0.0,
) -> Observation:
    ready = ready or {}
    front, back = roles
    pools = {
        front: PoolObservation(
            role=front,
            ready_replicas=ready.get(front),
            arrival_rate_rps=rate,
            mean_input_tokens=input_tokens,
            mean_output_tokens=output_tokens,
            ttft=ttft,
            itl=itl if front == back else None,
            prefix_cache_hit_rate=hit,
        )
    }
    if back != front:
        pools[back] = PoolObservation(
            role=back, ready_replicas=ready.get(back), mean_output_tokens=output_tokens, itl=itl
        )
    return Observation(timestamp=now, pools=pools, quality=quality, missing=missing or [])
