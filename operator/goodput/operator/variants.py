"""A policy with variants seen by the one tick: every pool of every variant is one
target, keyed ``<variant>/<role>``, so the budget, the behavior limits, the write order,
the status and the drain see one flat set of targets under one ``gpuBudget``.

A single-model policy keeps its keys (the pool role), so nothing about it changes.
Pure: the shell (``reconcile``) reads per-variant observations and the route; here they
are merged for the decision and the status.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from goodput.api.spec import GoodputPolicySpec, Pool
from goodput.observation import GoodputEstimate, Observation
from goodput.plan import Plan, PoolDecision
from goodput.planner.variants import VariantPlan

SEP = "/"


@dataclass(frozen=True)
class PoolEntry:
    key: str  # the target key: the role, or <variant>/<role>
    variant: str | None  # None: a single-model policy
    pool: Pool


def pool_entries(spec: GoodputPolicySpec) -> list[PoolEntry]:
    """Every pool the policy scales, in declaration order, with its target key."""
    if not spec.variants:
        return [PoolEntry(p.role.value, None, p) for p in spec.pools]
    return [
        PoolEntry(f"{v.name}{SEP}{p.role.value}", v.name, p) for v in spec.variants for p in v.pools
    ]


def with_pools(spec: GoodputPolicySpec, pools: Mapping[str, Pool]) -> GoodputPolicySpec:
    """The spec with each pool replaced by ``pools[key]`` (e.g. gpusPerReplica resolved
    from the pod template), variants included."""
    if not spec.variants:
        return spec.model_copy(update={"pools": [pools.get(p.role.value, p) for p in spec.pools]})
    variants = [
        v.model_copy(
            update={"pools": [pools.get(f"{v.name}{SEP}{p.role.value}", p) for p in v.pools]}
        )
        for v in spec.variants
    ]
    return spec.model_copy(update={"variants": variants})


def _prefixed(name: str, keys: list[str]) -> list[str]:
    return [f"{name}{SEP}{k}" for k in keys]


def merge_observations(observations: Mapping[str, Observation]) -> Observation:
    """One observation for the status and the drain: pools keyed ``<variant>/<role>``,
    every missing, stale and partial signal prefixed by its variant, unreachable when any
    variant's source was. The goodput estimate is the sum of the variants' (each already
    quality-blind tokens on time), its attainment the token-weighted mean."""
    pools = {}
    missing: list[str] = []
    stale: list[str] = []
    partial: list[str] = []
    notes: list[str] = []
    covered: dict[str, float] = {}
    goodput = 0.0
    have_goodput = False
    att_num = att_den = 0.0
    lows: list[float] = []
    highs: list[float] = []
    for name, obs in observations.items():
        pools.update({f"{name}{SEP}{r}": p for r, p in obs.pools.items()})
        missing += _prefixed(name, obs.missing)
        stale += _prefixed(name, obs.stale)
        partial += _prefixed(name, obs.partial)
        notes += [f"{name}: {n}" for n in obs.notes]
        covered.update({f"{name}{SEP}{k}": v for k, v in obs.covered_seconds.items()})
        est = obs.estimate
        if est.goodput_tokens_per_s is not None:
            goodput += est.goodput_tokens_per_s
            have_goodput = True
        gen = sum(p.generation_tokens_per_s or 0.0 for p in obs.pools.values())
        if est.attainment is not None:
            att_num += est.attainment * gen
            att_den += gen
        if est.attainment_lower is not None:
            lows.append(est.attainment_lower)
        if est.attainment_upper is not None:
            highs.append(est.attainment_upper)
    first = next(iter(observations.values()))
    return Observation(
        timestamp=first.timestamp,
        pools=pools,
        quality=None,
        estimate=GoodputEstimate(
            attainment=att_num / att_den if att_den > 0 else None,
            attainment_lower=min(lows) if lows else None,
            attainment_upper=max(highs) if highs else None,
            goodput_tokens_per_s=goodput if have_goodput else None,
        ),
        missing=missing,
        notes=notes,
        stale=stale,
        unreachable=any(o.unreachable for o in observations.values()),
        partial=partial,
        covered_seconds=covered,
    )


def flatten(vplan: VariantPlan) -> Plan:
    """The variant plan as one ``Plan`` over ``<variant>/<role>`` keys, for ``decide``:
    the same budget-first rules, behavior limits and write order as a single model's."""
    pools: dict[str, PoolDecision] = {}
    attainment_num = 0.0
    for name, out in vplan.variants.items():
        for role, d in out.plan.pools.items():
            key = f"{name}{SEP}{role}"
            pools[key] = d.model_copy(update={"role": key})
        attainment_num += out.plan.predicted_attainment * out.share
    return Plan(
        pools=pools,
        total_gpus=vplan.total_gpus,
        budget=vplan.budget,
        reason=vplan.reason,
        message=vplan.message,
        hold=vplan.hold,
        predicted_goodput=vplan.predicted_tokens_per_s,
        predicted_attainment=attainment_num / 100.0,
        binding_constraint=vplan.binding_constraint,
        binding_pool=vplan.binding_variant,
    )
