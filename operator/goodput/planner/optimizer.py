"""Chooses replicas per pool and KV-tier sizes that maximize predicted goodput within
the GPU budget; among plans within ``EPSILON`` (1 %) of the best plan's goodput (and
meeting the attainment target when the best does), the one with the fewest GPUs wins.
When the SLO is missed and the budget is what stops the goodput (every pool at its
maxReplicas would serve more than 1 % more), no GPU that still adds goodput is handed
back: the plan is the highest-goodput one, fewest GPUs among equals.

Cost: each pool's curve is computed once for every replica count (O(N) vectors);
for a prefill/decode pair, every prefill count p gets the smallest decode count that
reaches the goodput threshold by a vectorized binary search over d, so the whole scan
is O(P log D) array work. KV-tier sizes come from a small grid (at most 7 sizes per
tier), pruned to the cheapest near-best prefill cost before the pool scan.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace

import numpy as np

from goodput.planner.correction import Factors
from goodput.planner.model import (
    CacheEffect,
    Demand,
    StageCurve,
    aggregated_curve,
    decode_curve,
    hit_rate_at,
    monotone,
    prefill_curve,
    prefill_service,
)
from goodput.profiles import PerformanceProfile

# Plans whose goodput is within this fraction of the best plan's goodput are "equal":
# the extra GPUs would buy less than 1 % more good tokens, so they go back. (A fraction
# of the demand instead would, when demand far exceeds what the pools can serve, call
# plans equal that differ by far more than 1 % of the goodput, and hand back GPUs that
# still add goodput.)
EPSILON = 0.01
TIER_COST_TOLERANCE = 0.01


@dataclass(frozen=True)
class PoolInput:
    role: str
    profile: PerformanceProfile
    gpus_per_replica: int
    lo: int
    hi: int
    factors: Factors


@dataclass(frozen=True)
class TierInput:
    name: str
    capacity_tokens: float  # per replica
    bandwidth_bytes_per_s: float
    gpus_per_replica: int
    lo: int
    hi: int
    current: int


@dataclass(frozen=True)
class Candidate:
    pools: dict[str, int]
    tiers: dict[str, int]
    gpus: int
    goodput_rps: float  # requests/s served within the SLO (before x output tokens x quality)
    attainment: float  # of all arriving requests
    ttft_s: float | None = None
    itl_s: float | None = None
    stage_attainment: dict[str, float] = field(default_factory=dict)
    # Per pool role: fraction of demand that stage alone serves within its SLO.
    stage_share: dict[str, float] = field(default_factory=dict)
    hit_fraction: float = 0.0


@dataclass(frozen=True)
class Headroom:
    """What more GPUs or more replicas could add to a plan that misses the SLO, so the
    explanation can name what bound it. Goodputs in requests/s, at the best KV-tier
    sizes.

    ``ceiling``: per stage (``ttft``, ``itl``), the attainment with as many replicas as
    it takes (no queueing); ``unbounded``: the goodput that gives (no budget and no
    maxReplicas); ``within_max``: every pool at its maxReplicas, budget ignored;
    ``lift``: per pool role, the goodput with that pool unbounded and the others at
    their maxReplicas."""

    ceiling: dict[str, float]
    unbounded: float
    within_max: float
    lift: dict[str, float]

    def budget_binds_goodput(self, best_rps: float) -> bool:
        """More GPUs (within maxReplicas) would add more than ``EPSILON`` of goodput."""
        return self.within_max > best_rps * (1.0 + EPSILON)


@dataclass(frozen=True)
class Result:
    chosen: Candidate
    runner_up: Candidate | None
    best: Candidate  # the highest-goodput plan, whatever its GPU count
    satisfiable: bool
    room: Headroom | None = None  # computed when the SLO is missed
    # Set when equal-GPU, near-equal-goodput plans were told apart by burst headroom.
    tie_break: str | None = None


@dataclass(frozen=True)
class Problem:
    demand: Demand
    pools: tuple[PoolInput, ...]
    tiers: tuple[TierInput, ...]
    budget: int
    ttft_slo_s: float
    itl_slo_s: float
    attainment_target: float
    hit_fraction: float  # observed, at the current tier sizes
    hit_max: float  # saturation hit rate of the capacity model


def cache_effect(problem: Problem, sizes: tuple[int, ...], hbm_tokens: float) -> CacheEffect:
    """Hits fill HBM first, then tiers in order; each tier's share loads at its bandwidth."""
    if not problem.tiers:
        return CacheEffect(problem.hit_fraction, 0.0)
    kv_bytes = problem.pools[0].profile.kv_bytes_per_token
    capacity = hbm_tokens
    prev = hit_rate_at(capacity, problem.hit_max)
    load = 0.0
    for tier, n in zip(problem.tiers, sizes, strict=True):
        capacity += n * tier.capacity_tokens
        h = hit_rate_at(capacity, problem.hit_max)
        load += (h - prev) * problem.demand.input_tokens * kv_bytes / tier.bandwidth_bytes_per_s
        prev = h
    return CacheEffect(prev, load)


def _tier_grid(tier: TierInput) -> list[int]:
    span = tier.hi - tier.lo
    picks = {tier.lo, tier.hi, min(max(tier.current, tier.lo), tier.hi)}
    picks |= {tier.lo + round(span * x) for x in (0.125, 0.25, 0.5, 0.75)}
    return sorted(picks)


def tier_options(problem: Problem) -> list[tuple[tuple[int, ...], CacheEffect, int]]:
    """Per distinct tier-GPU cost, the tier sizes with the lowest prefill cost per
    request (service + load) within a 1 % tolerance, fewest tier replicas first."""
    front = problem.pools[0]
    if not problem.tiers:
        return [((), cache_effect(problem, (), 0.0), 0)]
    by_gpus: dict[int, list[tuple[float, int, tuple[int, ...], CacheEffect]]] = {}
    for sizes in itertools.product(*(_tier_grid(t) for t in problem.tiers)):
        eff = cache_effect(problem, sizes, front.profile.kv_capacity_tokens)
        fixed, var = prefill_service(front.profile, front.factors.prefill, problem.demand, eff)
        gpus = sum(n * t.gpus_per_replica for n, t in zip(sizes, problem.tiers, strict=True))
        by_gpus.setdefault(gpus, []).append((fixed + var + eff.load_s, sum(sizes), sizes, eff))
    out = []
    for gpus, rows in sorted(by_gpus.items()):
        best = min(r[0] for r in rows)
        near = [r for r in rows if r[0] <= best * (1 + TIER_COST_TOLERANCE)]
        _, _, sizes, eff = min(near, key=lambda r: (r[1], r[0], r[2]))
        out.append((sizes, eff, gpus))
    return out


def _threshold(best: float, problem: Problem) -> tuple[float, bool]:
    """The goodput a plan needs to count as equal to the best, and whether the best
    meets the attainment target."""
    rate = problem.demand.rate_rps
    meets = best >= rate * problem.attainment_target - 1e-12
    thr = best - EPSILON * best
    if meets:
        thr = max(thr, rate * problem.attainment_target)
    return thr - 1e-12, meets


def _scan_aggregated(
    problem: Problem, pool: PoolInput, eff: CacheEffect, budget: int
) -> list[Candidate]:
    """Candidates: the fewest replicas reaching the threshold, one fewer, and the best."""
    n_max = min(pool.hi, budget // pool.gpus_per_replica)
    if n_max < pool.lo:
        return []
    ttft, itl = aggregated_curve(
        pool.profile,
        pool.factors.prefill,
        pool.factors.decode,
        problem.demand,
        eff,
        problem.ttft_slo_s,
        problem.itl_slo_s,
        n_max,
    )
    t, i = monotone(ttft), monotone(itl)
    good = np.maximum.accumulate(t.served * t.attainment * i.attainment)
    best = float(good[n_max])
    thr, _ = _threshold(best, problem)
    first = int(np.searchsorted(good[pool.lo :], thr, side="left")) + pool.lo
    first = min(first, n_max)
    top = int(np.argmax(good[pool.lo :])) + pool.lo  # fewest replicas with the best goodput
    picks = dict.fromkeys(
        n for n in (first, first - 1, first + 1, n_max, top) if pool.lo <= n <= n_max
    )
    return [
        Candidate(
            pools={pool.role: n},
            tiers={},
            gpus=n * pool.gpus_per_replica,
            goodput_rps=float(good[n]),
            attainment=float(good[n] / problem.demand.rate_rps),
            ttft_s=float(ttft.mean_latency[n]),
            itl_s=float(itl.mean_latency[n]),
            stage_attainment={"ttft": float(t.attainment[n]), "itl": float(i.attainment[n])},
            stage_share={pool.role: float(good[n] / problem.demand.rate_rps)},
            hit_fraction=eff.hit_fraction,
        )
        for n in picks
    ]


# Burst headroom: goodput at this multiple of the planning demand.
BURST = 1.5


def _pick(
    cands: list[Candidate], thr: float, problem: Problem, floor: float = 0.0
) -> tuple[Candidate, Candidate | None, str | None]:
    """The fewest GPUs reaching ``thr``; among plans with those GPUs whose goodput is
    within ``EPSILON`` of the first (and at least ``floor``: the goodput that meets the
    attainment target, when the best plan meets it), the one that serves a burst
    (``BURST`` x demand) best: the model's goodput differences that small are noise, a
    burst's are not."""
    ok = [c for c in cands if c.goodput_rps >= thr]
    ranked = sorted(ok, key=lambda c: (c.gpus, -c.goodput_rps, sorted(c.pools.items())))
    chosen = ranked[0]
    note = None
    ties = sorted(
        (
            c
            for c in cands
            if c.gpus == chosen.gpus
            and c.goodput_rps >= max(chosen.goodput_rps * (1.0 - EPSILON), floor)
            and (c.pools, c.tiers) != (chosen.pools, chosen.tiers)
        ),
        key=lambda c: (-c.goodput_rps, sorted(c.pools.items()), sorted(c.tiers.items())),
    )
    if ties and problem.demand.rate_rps > 0:
        burst = {id(c): _burst_goodput(problem, c) for c in (chosen, *ties)}
        top = max(ties, key=lambda c: (burst[id(c)], c.goodput_rps))
        if burst[id(top)] > burst[id(chosen)] * (1.0 + EPSILON):
            rate = problem.demand.rate_rps * BURST
            note = (
                f"{_fmt(top.pools)} and {_fmt(chosen.pools)} hold {chosen.gpus} GPUs each"
                f" with goodputs within {EPSILON:.0%}; at a burst of {rate:.2f} req/s"
                f" ({BURST:g}x demand) {_fmt(top.pools)} serves"
                f" {burst[id(top)] / rate:.2f} of requests within the SLO,"
                f" {_fmt(chosen.pools)} {burst[id(chosen)] / rate:.2f}"
            )
            chosen = top
    rest = [c for c in cands if c is not chosen]
    # Runner-up: the nearest alternative, preferring one GPU-step cheaper (what
    # handing back one more replica would cost), else the next in rank.
    cheaper = [c for c in rest if c.gpus < chosen.gpus]
    runner: Candidate | None
    if cheaper:
        runner = max(cheaper, key=lambda c: (c.goodput_rps, -c.gpus))
    else:
        others = [c for c in ranked if c is not chosen]
        runner = others[0] if others else (max(rest, key=lambda c: c.goodput_rps) if rest else None)
    return chosen, runner, note


def _fmt(pools: dict[str, int]) -> str:
    return "/".join(f"{n} {r}" for r, n in pools.items())


def _burst_goodput(problem: Problem, cand: Candidate) -> float:
    """Goodput (requests/s) of ``cand`` (its tier sizes and cache effect included) at
    ``BURST`` x the demand, with the demand's measured arrival dispersion and prompt
    spread (a burst of a bursty stream is no Poisson one)."""
    d = problem.demand
    burst = replace(d, rate_rps=d.rate_rps * BURST)
    sizes = tuple(cand.tiers.get(t.name, t.current) for t in problem.tiers)
    return _goodput_with(replace(problem, demand=burst), cand.pools, sizes)


def _disagg_curves(
    problem: Problem, pre: PoolInput, dec: PoolInput, eff: CacheEffect, budget: int
) -> tuple[StageCurve, StageCurve, int, int] | None:
    p_max = min(pre.hi, (budget - dec.lo * dec.gpus_per_replica) // pre.gpus_per_replica)
    d_max = min(dec.hi, (budget - pre.lo * pre.gpus_per_replica) // dec.gpus_per_replica)
    if p_max < pre.lo or d_max < dec.lo:
        return None
    cp = prefill_curve(
        pre.profile, pre.factors.prefill, problem.demand, eff, problem.ttft_slo_s, p_max
    )
    cd = decode_curve(dec.profile, dec.factors.decode, problem.demand, problem.itl_slo_s, d_max)
    return cp, cd, p_max, d_max


def _scan_disaggregated(
    problem: Problem, pre: PoolInput, dec: PoolInput, eff: CacheEffect, budget: int
) -> tuple[list[Candidate], float]:
    """Candidates: for every prefill count p, the smallest decode count reaching the
    threshold, plus the max-goodput plan. Returns them and the best goodput."""
    curves = _disagg_curves(problem, pre, dec, eff, budget)
    if curves is None:
        return [], 0.0
    cp_raw, cd_raw, p_max, d_max = curves
    cp, cd = monotone(cp_raw), monotone(cd_raw)
    gp, gd = pre.gpus_per_replica, dec.gpus_per_replica
    ps = np.arange(pre.lo, p_max + 1)
    d_hi = np.minimum(d_max, (budget - ps * gp) // gd)
    valid = d_hi >= dec.lo
    ps, d_hi = ps[valid], d_hi[valid]
    if ps.size == 0:
        return [], 0.0

    def good(p: np.ndarray, d: np.ndarray) -> np.ndarray:
        return np.asarray(
            np.minimum(cp.served[p], cd.served[d]) * cp.attainment[p] * cd.attainment[d]
        )

    g_hi = good(ps, d_hi)
    best = float(g_hi.max())
    thr, _ = _threshold(best, problem)
    reach = g_hi >= thr
    ps, d_hi = ps[reach], d_hi[reach]
    lo = np.full_like(d_hi, dec.lo)
    hi = d_hi.copy()
    while np.any(lo < hi):
        mid = (lo + hi) // 2
        ok = good(ps, mid) >= thr
        hi = np.where(ok, mid, hi)
        lo = np.where(ok, lo, mid + 1)
    gpus = ps * gp + hi * gd
    vals = good(ps, hi)
    order = np.lexsort((ps, -vals, gpus))[:3]
    picks = [(int(ps[k]), int(hi[k])) for k in order]
    all_ps = np.arange(pre.lo, p_max + 1)[valid]
    all_dhi = np.minimum(d_max, (budget - all_ps * gp) // gd)
    ib = int(np.argmax(good(all_ps, all_dhi)))
    picks.append((int(all_ps[ib]), int(all_dhi[ib])))
    # And the fewest decode replicas that keep that best goodput.
    p_best = np.array([all_ps[ib]])
    g_best = float(good(p_best, np.array([all_dhi[ib]]))[0])
    lo_b, hi_b = np.array([dec.lo]), np.array([all_dhi[ib]])
    while lo_b[0] < hi_b[0]:
        mid = (lo_b + hi_b) // 2
        ok_b = good(p_best, mid) >= g_best
        hi_b = np.where(ok_b, mid, hi_b)
        lo_b = np.where(ok_b, lo_b, mid + 1)
    picks.append((int(p_best[0]), int(hi_b[0])))
    chosen = picks[0]
    for alt in ((chosen[0] - 1, chosen[1]), (chosen[0], chosen[1] - 1)):
        if alt[0] >= pre.lo and alt[1] >= dec.lo:
            picks.append(alt)
    out = []
    for p, d in dict.fromkeys(picks):
        g = float(good(np.array([p]), np.array([d]))[0])
        out.append(
            Candidate(
                pools={pre.role: p, dec.role: d},
                tiers={},
                gpus=p * gp + d * gd,
                goodput_rps=g,
                attainment=g / problem.demand.rate_rps,
                ttft_s=float(cp_raw.mean_latency[p]),
                itl_s=float(cd_raw.mean_latency[d]),
                stage_attainment={
                    "ttft": float(cp.attainment[p]),
                    "itl": float(cd.attainment[d]),
                },
                stage_share={
                    pre.role: float(cp.served[p] * cp.attainment[p]) / problem.demand.rate_rps,
                    dec.role: float(cd.served[d] * cd.attainment[d]) / problem.demand.rate_rps,
                },
                hit_fraction=eff.hit_fraction,
            )
        )
    return out, best


def optimize(problem: Problem, explain: bool = True, keep_gpus: bool = False) -> Result | None:
    """None when even every pool at its minimum exceeds the budget. ``explain=False``
    skips the headroom a missed SLO is explained with (and so keeps the fewest-GPU
    plan within ``EPSILON`` even when the budget binds): for callers that only ask
    whether a demand is servable. ``keep_gpus``: choose among the highest-goodput plans
    (every GPU that adds goodput kept) even when the target is met, for a demand known
    to be a floor of what is coming (the planner's cap on an unservable forecast)."""
    cands: list[Candidate] = []
    options = tier_options(problem)
    for sizes, eff, tier_gpus in options:
        spare = problem.budget - tier_gpus
        tiers = {t.name: n for t, n in zip(problem.tiers, sizes, strict=True)}
        if len(problem.pools) == 1:
            found = _scan_aggregated(problem, problem.pools[0], eff, spare)
        else:
            found, _ = _scan_disaggregated(problem, problem.pools[0], problem.pools[1], eff, spare)
        for c in found:
            cands.append(
                Candidate(
                    pools=c.pools,
                    tiers=tiers,
                    gpus=c.gpus + tier_gpus,
                    goodput_rps=c.goodput_rps,
                    attainment=c.attainment,
                    ttft_s=c.ttft_s,
                    itl_s=c.itl_s,
                    stage_attainment=c.stage_attainment,
                    stage_share=c.stage_share,
                    hit_fraction=c.hit_fraction,
                )
            )
    if not cands:
        return None
    best = max(cands, key=lambda c: (c.goodput_rps, -c.gpus))
    thr, meets = _threshold(best.goodput_rps, problem)
    room = None
    if not meets and explain:
        room = headroom(problem, options)
        if room.budget_binds_goodput(best.goodput_rps):
            thr = best.goodput_rps * (1.0 - 1e-12)  # keep every GPU that adds goodput
    if keep_gpus:
        thr = best.goodput_rps * (1.0 - 1e-12)
    floor = problem.demand.rate_rps * problem.attainment_target - 1e-12 if meets else 0.0
    chosen, runner, note = _pick(cands, thr, problem, floor)
    return Result(chosen, runner, best, meets, room, note)


# A rate small enough that no replica queues: the zero-load limit of the curves.
_IDLE_RPS = 1e-9


def _stage_curves(
    problem: Problem, eff: CacheEffect, counts: dict[str, int], demand: Demand
) -> dict[str, StageCurve]:
    """Monotone stage curves up to ``counts``, keyed by ``ttft`` and ``itl``."""
    if len(problem.pools) == 1:
        pool = problem.pools[0]
        ttft, itl = aggregated_curve(
            pool.profile,
            pool.factors.prefill,
            pool.factors.decode,
            demand,
            eff,
            problem.ttft_slo_s,
            problem.itl_slo_s,
            counts[pool.role],
        )
        return {"ttft": monotone(ttft), "itl": monotone(itl)}
    pre, dec = problem.pools
    return {
        "ttft": monotone(
            prefill_curve(
                pre.profile, pre.factors.prefill, demand, eff, problem.ttft_slo_s, counts[pre.role]
            )
        ),
        "itl": monotone(
            decode_curve(
                dec.profile, dec.factors.decode, demand, problem.itl_slo_s, counts[dec.role]
            )
        ),
    }


def _stage_role(problem: Problem, stage: str) -> str:
    if len(problem.pools) == 1:
        return problem.pools[0].role
    return problem.pools[0].role if stage == "ttft" else problem.pools[1].role


def headroom(
    problem: Problem, options: list[tuple[tuple[int, ...], CacheEffect, int]] | None = None
) -> Headroom:
    """Only the counts it reads are computed: O(max replicas) per KV-tier option
    (``options``: ``tier_options(problem)``, when the caller has them)."""
    rate = problem.demand.rate_rps
    # The zero-load limit keeps the measured prompt spread (it sets the prefill tail).
    idle = replace(problem.demand, rate_rps=_IDLE_RPS)
    ones = {p.role: 1 for p in problem.pools}
    his = {p.role: p.hi for p in problem.pools}
    ceiling = {"ttft": 0.0, "itl": 0.0}
    within_max = 0.0
    lift = {p.role: 0.0 for p in problem.pools}
    for _, eff, _ in options if options is not None else tier_options(problem):
        zero = _stage_curves(problem, eff, ones, idle)
        ceil = {s: float(c.attainment[1]) for s, c in zero.items()}
        for s in ceiling:
            ceiling[s] = max(ceiling[s], ceil[s])
        full = _stage_curves(problem, eff, his, problem.demand)
        # Per stage at its pool's maxReplicas: (rate served, attainment).
        top = {s: (float(c.served[-1]), float(c.attainment[-1])) for s, c in full.items()}
        if len(problem.pools) == 1:
            # As the aggregated scan counts it: the best goodput of any count up to hi.
            t, i = full["ttft"], full["itl"]
            within_max = max(within_max, float(np.max(t.served * t.attainment * i.attainment)))
        else:
            within_max = max(within_max, _good(top))
        for role in lift:
            # That pool unbounded: its stages serve everything at their ceiling.
            lifted = {
                s: (rate, ceil[s]) if _stage_role(problem, s) == role else v for s, v in top.items()
            }
            lift[role] = max(lift[role], _good(lifted))
    unbounded = rate * ceiling["ttft"] * ceiling["itl"]
    return Headroom(ceiling, unbounded, within_max, lift)


def _good(stages: dict[str, tuple[float, float]]) -> float:
    """Goodput of two stages in series, each given as (rate served, attainment)."""
    return min(stages["ttft"][0], stages["itl"][0]) * stages["ttft"][1] * stages["itl"][1]


def best_by_gpus(problem: Problem) -> np.ndarray:
    """For every GPU count g in 0..budget, the highest goodput (requests/s within the SLO)
    of any allocation within the pools' bounds holding at most g GPUs (``-inf`` where
    not even the minimums fit): the same curves and goodput formula ``optimize`` scans,
    for all budgets at once, so a caller can split one budget between several models
    (the variant planner) without re-running the scan per split. Non-decreasing in g."""
    out = np.full(problem.budget + 1, -np.inf)
    for _, eff, tier_gpus in tier_options(problem):
        spare = problem.budget - tier_gpus
        if spare < 0:
            continue
        if len(problem.pools) == 1:
            pool = problem.pools[0]
            n_max = min(pool.hi, spare // pool.gpus_per_replica)
            if n_max < pool.lo:
                continue
            ttft, itl = aggregated_curve(
                pool.profile,
                pool.factors.prefill,
                pool.factors.decode,
                problem.demand,
                eff,
                problem.ttft_slo_s,
                problem.itl_slo_s,
                n_max,
            )
            t, i = monotone(ttft), monotone(itl)
            good = np.maximum.accumulate(t.served * t.attainment * i.attainment)
            n = np.arange(pool.lo, n_max + 1)
            np.maximum.at(out, n * pool.gpus_per_replica + tier_gpus, good[n])
            continue
        pre, dec = problem.pools
        curves = _disagg_curves(problem, pre, dec, eff, spare)
        if curves is None:
            continue
        cp_raw, cd_raw, p_max, d_max = curves
        cp, cd = monotone(cp_raw), monotone(cd_raw)
        ps, ds = np.meshgrid(np.arange(pre.lo, p_max + 1), np.arange(dec.lo, d_max + 1))
        cost = ps * pre.gpus_per_replica + ds * dec.gpus_per_replica + tier_gpus
        vals = np.minimum(cp.served[ps], cd.served[ds]) * cp.attainment[ps] * cd.attainment[ds]
        fits = cost <= problem.budget
        np.maximum.at(out, cost[fits], vals[fits])
    return np.asarray(np.maximum.accumulate(out), dtype=np.float64)


def goodput_at(problem: Problem, pools: dict[str, int]) -> float:
    """Goodput (requests/s within the SLO) of one fixed allocation at the problem's demand
    and the tiers' current sizes: what the replicas serving now deliver, whatever the
    bounds and the budget. Zero when a stage has no replica."""
    return _goodput_with(problem, pools, tuple(t.current for t in problem.tiers))


def _goodput_with(problem: Problem, pools: dict[str, int], sizes: tuple[int, ...]) -> float:
    counts = {p.role: pools.get(p.role, 0) for p in problem.pools}
    if min(counts.values()) <= 0:
        return 0.0
    eff = cache_effect(problem, sizes, problem.pools[0].profile.kv_capacity_tokens)
    curves = _stage_curves(problem, eff, counts, problem.demand)
    t, i = curves["ttft"], curves["itl"]
    if len(problem.pools) == 1:
        n = counts[problem.pools[0].role]
        return float(np.max((t.served * t.attainment * i.attainment)[: n + 1]))
    p, d = counts[problem.pools[0].role], counts[problem.pools[1].role]
    return float(min(t.served[p], i.served[d]) * t.attainment[p] * i.attainment[d])
