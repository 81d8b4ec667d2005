"""Turns an optimizer result into what a person reads: the reason code, one sentence
with the numbers that drove the decision, and the constraint that bound it."""

from __future__ import annotations

from goodput.planner.optimizer import Candidate, PoolInput, Result
from goodput.reasons import Reason


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


def binding_constraint(
    result: Result, pools: tuple[PoolInput, ...], budget: int, floors: dict[str, int]
) -> str:
    """``floors``: pools held at their current size because their SLO is being missed."""
    chosen = result.chosen
    if not result.satisfiable:
        best = result.best
        step = min(p.gpus_per_replica for p in pools)
        if best.gpus + step > budget:
            return "gpuBudget"
        at_max = [p for p in pools if chosen.pools.get(p.role, 0) >= p.hi]
        if at_max:
            worst = min(at_max, key=lambda p: chosen.stage_share.get(p.role, 1.0))
            return f"maxReplicas:{worst.role}"
        return "slo"
    for pool in pools:
        n = chosen.pools.get(pool.role, 0)
        if pool.role in floors and n == floors[pool.role]:
            return f"observedViolation:{pool.role}"
    if all(chosen.pools.get(p.role, 0) == p.lo for p in pools):
        return "minReplicas"
    return "slo"


def decision_reason(
    satisfiable: bool, chosen_gpus: int, current_gpus: int, changed: bool
) -> Reason:
    if not satisfiable:
        return Reason.BudgetExhausted
    if chosen_gpus > current_gpus:
        return Reason.ScaledUp
    if chosen_gpus < current_gpus:
        return Reason.ScaledDown
    return Reason.Rebalanced if changed else Reason.SteadyState


def outcome_sentence(result: Result, budget: int, target: float) -> str:
    c = result.chosen
    if result.satisfiable:
        return (
            f"predicted attainment {c.attainment:.2f} >= {target:.2f} with {c.gpus} of"
            f" {budget} GPUs"
        )
    return (
        f"budget exhausted: best predicted attainment {result.best.attainment:.2f} <"
        f" {target:.2f} within {budget} GPUs"
    )
