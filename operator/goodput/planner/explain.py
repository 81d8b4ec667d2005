"""Turns an optimizer result into what a person reads: the reason code, one sentence
with the numbers that drove the decision, and the limit that bound it.

Every limit named here is checked against the plan, never assumed from the outcome:

- ``GpuBudget`` only when more GPUs (within maxReplicas) would add more than 1 % of
  goodput and no pool below its maxReplicas could fit one more replica that adds
  goodput in the GPUs the plan leaves free (the optimizer then keeps every GPU that adds
  goodput, so a replica that still fits adds none: e.g. a prefill replica when only a
  decode replica, too large for what is left, would help);
- ``MaxReplicas`` (pool named) when a pool sits at its maxReplicas and more of it would
  add more than 1 % of goodput;
- ``SloFloor`` (pool named) when no replica count meets the SLO (the zero-queueing
  attainment of a stage is already below the target) and neither of the above binds;
- ``ObservedViolation``, ``MinReplicas`` for plans that meet the SLO; ``None`` when
  the demand and the SLO alone sized the plan.
"""

from __future__ import annotations

from dataclasses import dataclass

from goodput.planner.optimizer import EPSILON, Candidate, PoolInput, Problem, Result
from goodput.reasons import Limit, Reason

_STAGE = {"ttft": "TTFT", "itl": "ITL"}
TIE_RULE = (
    "plans within 1% of the best plan's goodput count as equal, and the one with fewer GPUs wins"
)


@dataclass(frozen=True)
class Binding:
    """What bound a plan, and the pool (role) it applies to when it is one pool's."""

    limit: Limit = Limit.None_
    pool: str | None = None


def _ms(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "unbounded"
    return f"{seconds * 1e3:.0f} ms"


def stage_sentence(
    cand: Candidate, pools: tuple[PoolInput, ...], rate: float, ttft_slo: float, itl_slo: float
) -> str:
    parts = []
    for pool in pools:
        n = cand.pools.get(pool.role, 0)
        per = rate / n if n else float("inf")
        if pool.role in ("prefill", "aggregated"):
            parts.append(
                f"{pool.role} TTFT {_ms(cand.ttft_s)} of {_ms(ttft_slo)}"
                f" (P<=SLO {cand.stage_attainment.get('ttft', 0.0):.2f})"
                f" at {per:.2f} req/s per replica"
            )
        if pool.role in ("decode", "aggregated"):
            parts.append(
                f"{pool.role} ITL {_ms(cand.itl_s)} of {_ms(itl_slo)}"
                f" (P<=SLO {cand.stage_attainment.get('itl', 0.0):.2f})"
                + ("" if pool.role == "aggregated" else f" at {per:.2f} req/s per replica")
            )
    return "; ".join(parts)


def budget_binds(chosen: Candidate, pools: tuple[PoolInput, ...], budget: int) -> bool:
    """True when some pool is below its maxReplicas and none of those fits one more
    replica in the GPUs the plan leaves free."""
    below = [p for p in pools if chosen.pools.get(p.role, 0) < p.hi]
    return bool(below) and all(chosen.gpus + p.gpus_per_replica > budget for p in below)


def _stage_role(pools: tuple[PoolInput, ...], stage: str) -> str:
    if len(pools) == 1:
        return pools[0].role
    return pools[0].role if stage == "ttft" else pools[1].role


def binding(result: Result, problem: Problem, floors: dict[str, int]) -> Binding:
    """``floors``: pools held at their current size because their SLO is being missed."""
    chosen, pools, room = result.chosen, problem.pools, result.room
    if result.satisfiable or room is None:
        for pool in pools:
            if pool.role in floors and chosen.pools.get(pool.role, 0) == floors[pool.role]:
                return Binding(Limit.ObservedViolation, pool.role)
        if all(chosen.pools.get(p.role, 0) == p.lo for p in pools):
            return Binding(Limit.MinReplicas)
        return Binding()
    best = result.best.goodput_rps
    tol = EPSILON * best
    rate = problem.demand.rate_rps
    if room.budget_binds_goodput(best):
        # The optimizer then kept every GPU that adds goodput.
        blocked = [
            p.role
            for p in pools
            if chosen.pools.get(p.role, 0) < p.hi
            and chosen.gpus + p.gpus_per_replica > problem.budget
        ]
        if budget_binds(chosen, pools, problem.budget):
            return Binding(Limit.GpuBudget)
        # A pool with room would add nothing at all; the one that would does not fit.
        return Binding(Limit.GpuBudget, blocked[0] if len(blocked) == 1 else None)
    at_max = {r: g for r, g in room.lift.items() if chosen.pools.get(r, 0) >= _hi(pools, r)}
    if at_max:
        role, lifted = max(at_max.items(), key=lambda kv: (kv[1], kv[0]))
        if lifted > max(chosen.goodput_rps, room.within_max) + tol:
            return Binding(Limit.MaxReplicas, role)
    if room.unbounded < rate * problem.attainment_target:
        stage = min(room.ceiling, key=lambda s: (room.ceiling[s], s))
        return Binding(Limit.SloFloor, _stage_role(pools, stage))
    if at_max:
        # Pools at their maxReplicas that would have to grow together: the bottleneck.
        role = min(at_max, key=lambda r: (chosen.stage_share.get(r, 1.0), r))
    else:
        # Short of their maxReplicas only by the tie rule: whose maxReplicas caps most.
        role = max(room.lift, key=lambda r: (room.lift[r], r))
    return Binding(Limit.MaxReplicas, role)


def _hi(pools: tuple[PoolInput, ...], role: str) -> int:
    return next(p.hi for p in pools if p.role == role)


def decision_reason(
    satisfiable: bool, limit: Limit, chosen_gpus: int, current_gpus: int, changed: bool
) -> Reason:
    if not satisfiable:
        return Reason.BudgetExhausted if limit == Limit.GpuBudget else Reason.SloUnreachable
    if chosen_gpus > current_gpus:
        return Reason.ScaledUp
    if chosen_gpus < current_gpus:
        return Reason.ScaledDown
    return Reason.Rebalanced if changed else Reason.SteadyState


def handback_sentence(result: Result, problem: Problem, bound: Binding, current_gpus: int) -> str:
    """Empty unless the plan holds fewer GPUs than it holds now (it hands them back) or,
    missing its SLO, fewer than the budget allows (it leaves them free)."""
    held, budget = result.chosen.gpus, problem.budget
    if held < current_gpus:
        freed = current_gpus - held
    elif not result.satisfiable and held < budget:
        freed = budget - held
    else:
        return ""
    if bound.limit == Limit.GpuBudget:
        if budget_binds(result.chosen, problem.pools, budget):
            why = "that fit no replica of a pool below its maxReplicas"
        else:
            why = "that add no goodput"
        return f"handing back {freed} GPUs {why} (holding {held} of {budget})"
    return f"handing back {freed} GPUs that add no goodput (holding {held} of {budget}: {TIE_RULE})"


def budget_sentence(c: Candidate, problem: Problem) -> str:
    """Why the budget binds: nothing fits, or what fits adds nothing (the optimizer
    keeps every GPU that adds goodput when the budget binds)."""
    free = problem.budget - c.gpus
    below = [p for p in problem.pools if c.pools.get(p.role, 0) < p.hi]
    fits = [p for p in below if p.gpus_per_replica <= free]
    if not fits:
        left = f" in the {free} GPUs left" if free > 0 else ""
        return f"no pool below its maxReplicas fits another replica{left}"
    names = " or ".join(p.role for p in fits)
    out = f"another {names} replica would fit in the {free} GPUs left but add no goodput"
    for p in below:
        if p not in fits:
            out += f"; the next {p.role} replica needs {p.gpus_per_replica} GPUs"
    return out


def outcome_sentence(result: Result, problem: Problem, bound: Binding, current_gpus: int) -> str:
    c, budget, target, room = result.chosen, problem.budget, problem.attainment_target, result.room
    rate = problem.demand.rate_rps
    parts: list[str] = []
    if result.satisfiable or room is None:
        parts.append(
            f"predicted attainment {c.attainment:.2f} >= {target:.2f} with {c.gpus} of"
            f" {budget} GPUs"
        )
    else:
        stage = min(room.ceiling, key=lambda s: (room.ceiling[s], s))
        ceiling = room.unbounded / rate if rate > 0 else 0.0
        floor = (
            f"no replica count meets the SLO: {_stage_role(problem.pools, stage)}"
            f" {_STAGE[stage]} P<=SLO is at most {room.ceiling[stage]:.2f} even without"
            f" queueing (so attainment at most {ceiling:.2f})"
        )
        missed = f"predicted attainment {c.attainment:.2f} < {target:.2f}"
        if bound.limit == Limit.GpuBudget:
            parts.append(
                f"budget exhausted: {missed} within {budget} GPUs; {budget_sentence(c, problem)}"
            )
            if ceiling < target:
                parts.append(f"and even without the budget {floor}")
        elif bound.limit == Limit.MaxReplicas:
            pool = next(p for p in problem.pools if p.role == bound.pool)
            served = c.stage_share.get(pool.role, 0.0) * rate
            where = "at" if c.pools.get(pool.role, 0) >= pool.hi else "short of"
            parts.append(
                f"SLO unreachable: {pool.role} {where} maxReplicas {pool.hi} serves"
                f" {served:.2f} of {rate:.2f} req/s within the SLO; {missed}"
            )
            if ceiling < target:
                parts.append(f"and even without maxReplicas {floor}")
        else:
            parts.append(f"SLO unreachable: {floor}; {missed} with {c.gpus} of {budget} GPUs")
    back = handback_sentence(result, problem, bound, current_gpus)
    if back:
        parts.append(back)
    return "; ".join(parts)
