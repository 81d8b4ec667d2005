"""A benchmark scenario: one GoodputPolicy (budget, SLO, pools, tiers, behavior) turned
into what the twin and the harness need, with profiles resolved by name.

Every pool must name its profile: the twin's physics is the profile, so a pool without
one (``ProfileMissing``) or with an unknown one (``ProfileNotFound``) is refused, never
simulated with a stand-in model."""

from __future__ import annotations

from dataclasses import dataclass

from goodput.api.spec import GoodputPolicySpec, parse_duration
from goodput.profiles import PerformanceProfile, pool_profile
from goodput.sim.engine import PoolSpec, TierSpec, TwinConfig

GIB = 1024**3


@dataclass(frozen=True)
class Scenario:
    spec: GoodputPolicySpec
    twin: TwinConfig
    profiles: dict[str, PerformanceProfile]
    gpus: dict[str, int]
    min_replicas: dict[str, int]
    max_replicas: dict[str, int]
    tier_min: dict[str, int]
    tier_max: dict[str, int]
    interval_s: float
    startup_delay_s: float

    @property
    def budget(self) -> int:
        return self.spec.gpu_budget

    @property
    def roles(self) -> list[str]:
        return list(self.twin.pools)

    def with_budget(self, budget: int) -> Scenario:
        return build_scenario(self.spec.model_copy(update={"gpu_budget": budget}))


def build_scenario(spec: GoodputPolicySpec, quality: dict[str, float] | None = None) -> Scenario:
    pools: dict[str, PoolSpec] = {}
    profiles: dict[str, PerformanceProfile] = {}
    gpus: dict[str, int] = {}
    mins: dict[str, int] = {}
    maxs: dict[str, int] = {}
    for p in spec.pools:
        role = str(p.role.value)
        prof = pool_profile(p.profile, role, p.gpus_per_replica)  # ProfileError if none
        if p.gpus_per_replica is not None and p.gpus_per_replica != prof.gpus_per_replica:
            prof = prof.model_copy(update={"gpus_per_replica": p.gpus_per_replica})
        profiles[role] = prof
        pools[role] = PoolSpec(role=role, profile=prof, quality=(quality or {}).get(role, 1.0))
        gpus[role] = prof.gpus_per_replica
        mins[role] = p.min_replicas
        maxs[role] = p.max_replicas
    kvb = next(iter(profiles.values())).kv_bytes_per_token
    tiers = tuple(
        TierSpec(
            name=t.name,
            capacity_tokens_per_replica=int(t.capacity_per_replica_gib * GIB / kvb),
            bandwidth_bytes_per_s=t.bandwidth_gib_per_s * GIB,
        )
        for t in spec.kv_cache.tiers
    )
    twin = TwinConfig(
        pools=pools,
        ttft_slo_s=spec.slo.ttft_seconds,
        itl_slo_s=spec.slo.itl_seconds,
        tiers=tiers,
    )
    return Scenario(
        spec=spec,
        twin=twin,
        profiles=profiles,
        gpus=gpus,
        min_replicas=mins,
        max_replicas=maxs,
        tier_min={t.name: t.min_replicas for t in spec.kv_cache.tiers},
        tier_max={t.name: t.max_replicas for t in spec.kv_cache.tiers},
        interval_s=parse_duration(spec.behavior.interval),
        startup_delay_s=parse_duration(spec.behavior.startup_delay),
    )
