"""The variant planner: several model variants of one service under one GPU budget,
traffic split between them, sized for the most *value-weighted* goodput.

``plan_variants(spec, observations, current, state, now, profiles)`` is pure and
deterministic. It returns a :class:`VariantPlan`: per variant a single-model ``Plan``
(replicas per pool) and an integer share of the traffic (shares sum to exactly 100, each
within its ``[minShare, maxShare]``), the predicted value goodput, the runner-up split and
what would flip the decision. ``VariantPlanner`` keeps the state between calls.

How it decides (issue 13, item 3):

1. **Hold** when any variant's required signals are missing, stale or partial (its
   arrival rate, token means when it has traffic, its live quality): nothing changes,
   as the single-model planner holds.
2. **Demand.** The route splits one stream of requests, so the total demand is the sum
   of the variants' arrival rates, forecast as the single-model planner forecasts one
   pool's (Holt + quantile over ``forecastHorizon``, patient on the way down); token
   means are the request-weighted means over the variants.
3. **Each variant's physics** is the single-model planner's (``planner.pool_model``: its
   profiles corrected by its own observations), so for a traffic share ``s`` and a GPU
   count ``g`` it predicts the on-time tokens/s (``optimizer.best_by_gpus``).
4. **Search.** Shares on a grid (``SHARE_STEP`` percent, plus every bound), GPUs split
   between variants in multiples of their GPUs per replica (a knapsack over the
   per-variant curves), maximizing ``sum(on-time tokens/s x value per answer)``
   (``goodput.planner.value``). GPUs are split by serving value first: a variant whose
   answers lose value still gets the GPUs to serve the traffic it must take (its
   minShare) well, since making its answers late is not how to avoid wrong ones.
5. **Weights act at once, replicas after ``startupDelay``.** The published shares are
   the best split for the replicas that will be serving before any new one is ready
   (each pool at the lower of its ready and planned replicas): at a peak, traffic moves
   at once to the variant that has capacity, and follows the replicas as they start.
   GPUs move from one variant to another only when the value gained over the payback
   window (``max(forecastHorizon, startupDelay)``) exceeds the value lost while the new
   replicas start; otherwise the replicas stay and the binding limit is ``StartupCost``.
6. **All variants losing value** (every eligible variant's value per answer <= 0, e.g.
   a wrong-answer cost above every variant's ``p / (1 - p)``): traffic goes to the least
   negative variant as far as the bounds allow, GPUs serve the traffic as well as they
   can, and the reason says so (``VariantValueNegative``).

Stability: the current split is kept while it is within ``STEADY_TOLERANCE`` (1 %) of
the best one's value, as the single-model optimizer calls plans within 1 % equal.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from goodput.api.spec import GoodputPolicySpec, ValueModel, Variant, parse_duration
from goodput.observation import Observation
from goodput.plan import Adjustment, Allocation, Plan
from goodput.planner import forecast
from goodput.planner.correction import Factors
from goodput.planner.model import Demand
from goodput.planner.optimizer import best_by_gpus, goodput_at, optimize
from goodput.planner.planner import (
    PoolModel,
    demand_signal,
    hold_reason,
    missing_signals,
    pool_model,
    smooth_tokens,
)
from goodput.planner.value import answer_value, break_even_cost, class_quality
from goodput.profiles import PerformanceProfile
from goodput.reasons import Limit, Reason

SHARE_STEP = 5  # percent; 10 with three variants, 20 with four (the search is a product)
STEADY_TOLERANCE = 0.01
MAX_UNITS = 512  # GPU-split resolution: at most this many steps of the budget
_IDLE_RPS = 1e-9  # a share without traffic: the curves' zero-load limit
_REQUIRED = frozenset({"arrival_rate_rps", "mean_input_tokens", "mean_output_tokens", "quality"})


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class VariantOutcome(_Frozen):
    """One variant's part of a ``VariantPlan``."""

    name: str
    share: int = Field(ge=0, le=100, description="Percent of the traffic sent to it.")
    plan: Plan = Field(description="Its replicas per pool, as the single-model planner plans.")
    quality: float | None = Field(None, description="Probability that an answer is right.")
    eligible: bool = Field(True, description="False: quality below value.qualityFloor.")
    value_per_answer: float = Field(0.0, description="p R - (1 - p) c R; 0 below the floor.")
    predicted_tokens_per_s: float = Field(0.0, description="On-time tokens/s of its share.")
    predicted_value_per_s: float = Field(0.0, description="On-time tokens/s x value per answer.")


class SplitOption(_Frozen):
    """A traffic split and GPU split between variants, with its predicted value goodput."""

    shares: dict[str, int]
    gpus: dict[str, int]
    predicted_value_per_s: float


class FlipPoint(_Frozen):
    """What would change the decision."""

    break_even_wrong_answer_cost: float | None = None
    overflow_load_rps: float | None = None
    message: str = ""


class VariantPlan(_Frozen):
    variants: dict[str, VariantOutcome] = Field(description="In the spec's order.")
    total_gpus: int = Field(ge=0)
    budget: int = Field(ge=0)
    reason: Reason
    message: str
    hold: bool = False
    binding_constraint: Limit = Limit.None_
    binding_variant: str | None = None
    demand_rps: float = Field(0.0, description="Total demand planned for, requests/s.")
    predicted_value_per_s: float = 0.0
    predicted_tokens_per_s: float = 0.0
    runner_up: SplitOption | None = None
    flip: FlipPoint | None = None
    final_shares: dict[str, int] = Field(
        default_factory=dict,
        description=(
            "The split once the planned replicas are all ready (the published shares follow "
            "the replicas that serve now); equal to the shares when nothing is starting."
        ),
    )

    @property
    def shares(self) -> dict[str, int]:
        """Percent of the traffic per variant: the HTTPRoute backendRef weights."""
        return {n: v.share for n, v in self.variants.items()}

    def allocations(self) -> dict[str, Allocation]:
        """Replicas per pool (and tier) per variant: what the actuator applies."""
        return {n: v.plan.allocation() for n, v in self.variants.items()}


@dataclass(frozen=True)
class VariantPlannerState:
    """What the variant planner remembers between intervals."""

    demand: forecast.ForecastState | None = None
    # (time, mean input tokens, mean output tokens, weight), as PlannerState.last_traffic.
    last_traffic: tuple[float, float, float, float] | None = None
    factors: dict[str, dict[str, Factors]] = field(default_factory=dict)
    rates: dict[str, float] = field(default_factory=dict)  # last observed rate per variant
    shares: dict[str, int] = field(default_factory=dict)  # last published split


@dataclass(frozen=True)
class _Variant:
    name: str
    variant: Variant
    spec: GoodputPolicySpec
    model: PoolModel
    obs: Observation
    current: Allocation
    quality: float
    eligible: bool
    value: float  # per answer
    backlog_rps: float  # queued requests to drain, as extra rate
    observed_rate: float


@dataclass(frozen=True)
class _Split:
    shares: tuple[int, ...]
    units: tuple[int, ...]
    value: float  # value-model units per second
    tokens: float  # on-time tokens/s
    gpus: int  # the fewest GPUs that give each variant the same on-time tokens


# --- helpers -------------------------------------------------------------------------


def largest_remainder(weights: Sequence[float], lo: Sequence[int], hi: Sequence[int]) -> list[int]:
    """Integer percents proportional to ``weights`` that sum to exactly 100 within
    ``[lo, hi]`` (Hamilton's method, then the bounds by water-filling). The bounds must
    admit 100 (the API checks ``sum(lo) <= 100 <= sum(hi)``)."""
    n = len(weights)
    total = sum(max(w, 0.0) for w in weights)
    raw = [100.0 * max(w, 0.0) / total if total > 0 else 100.0 / n for w in weights]
    out = [min(max(math.floor(r), lo[i]), hi[i]) for i, r in enumerate(raw)]
    order = sorted(range(n), key=lambda i: (-(raw[i] - math.floor(raw[i])), i))
    while sum(out) < 100:
        i = next((i for i in order if out[i] < hi[i]), None)
        if i is None:
            break
        out[i] += 1
        order = order[1:] + order[:1]
    while sum(out) > 100:
        i = next(i for i in sorted(range(n), key=lambda j: (raw[j] - out[j], j)) if out[i] > lo[i])
        out[i] -= 1
    return out


def _grid(lo: int, hi: int, step: int) -> list[int]:
    return sorted({s for s in range(0, 101, step) if lo <= s <= hi} | {lo, hi})


def _combos(
    allowed: Sequence[Sequence[int]], lo: Sequence[int], hi: Sequence[int]
) -> list[tuple[int, ...]]:
    """Every split that sums to 100: each variant in turn takes the remainder, the others
    range over their grids (so each variant's bounds and grid points are all reached)."""
    n = len(allowed)
    found: set[tuple[int, ...]] = set()
    for free in range(n):
        others = [i for i in range(n) if i != free]
        for picks in itertools.product(*(allowed[i] for i in others)):
            rest = 100 - sum(picks)
            if lo[free] <= rest <= hi[free]:
                combo = dict(zip(others, picks, strict=True))
                combo[free] = rest
                found.add(tuple(combo[i] for i in range(n)))
    return sorted(found)


def _gcd_unit(variants: Sequence[_Variant], budget: int) -> int:
    unit = 0
    for v in variants:
        for g in v.model.gpus_per_replica.values():
            unit = math.gcd(unit, g)
    unit = max(unit, 1)
    steps = budget // unit
    if steps > MAX_UNITS:
        unit *= math.ceil(steps / MAX_UNITS)
    return unit


def _knapsack(tables: Sequence[np.ndarray], weights: Sequence[float]) -> tuple[list[int], float]:
    """Units per variant (sum <= len - 1) maximizing ``sum(w_i x table_i[k_i])``; each
    table is non-decreasing, ``-inf`` where its minimums do not fit. Ties: fewer units
    for the earlier variants."""
    size = len(tables[0])
    best = weights[0] * tables[0]
    choice: list[np.ndarray] = []
    for w, t in zip(weights[1:], tables[1:], strict=True):
        # combined[b, k] = best[b - k] + w t[k]
        b = np.arange(size)[:, None]
        k = np.arange(size)[None, :]
        prev = np.where(k <= b, best[np.clip(b - k, 0, None)], -np.inf)
        combined = prev + np.where(k <= b, w * t[np.minimum(k, size - 1)], -np.inf)
        pick = np.argmax(combined, axis=1)
        best = combined[np.arange(size), pick]
        choice.append(pick)
    total = int(np.argmax(best))  # fewest units reaching the best
    value = float(best[total])
    units = [0] * len(tables)
    rest = total
    for i in range(len(tables) - 1, 0, -1):
        units[i] = int(choice[i - 1][rest])
        rest -= units[i]
    units[0] = rest
    return units, value


# --- the planner ---------------------------------------------------------------------


class _Search:
    """The per-tick search: demand, the variants' curves by share, the knapsack."""

    def __init__(
        self,
        spec: GoodputPolicySpec,
        variants: list[_Variant],
        demand_rps: float,
        input_tokens: float,
        output_tokens: float,
    ) -> None:
        self.spec = spec
        self.vs = variants
        self.demand = demand_rps
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.budget = spec.gpu_budget
        self.unit = _gcd_unit(variants, self.budget)
        self.size = self.budget // self.unit + 1
        self._tables: dict[tuple[int, int, float], np.ndarray] = {}
        self._at: dict[tuple[int, int, tuple[tuple[str, int], ...]], float] = {}
        step = SHARE_STEP * (1 if len(variants) <= 2 else 2 if len(variants) == 3 else 4)
        self.lo = [v.variant.min_share for v in variants]
        self.hi = [v.variant.max_share for v in variants]
        allowed = [
            _grid(v.variant.min_share, v.variant.max_share, step)
            if v.eligible
            else [v.variant.min_share]
            for v in variants
        ]
        # A variant below the quality floor is pinned at its minShare.
        pinned_hi = [
            h if v.eligible else lo for v, lo, h in zip(variants, self.lo, self.hi, strict=True)
        ]
        self.combos = _combos(allowed, self.lo, pinned_hi)
        if not self.combos:  # below-floor variants must take some traffic after all
            allowed = [_grid(lo, hi, step) for lo, hi in zip(self.lo, self.hi, strict=True)]
            self.combos = _combos(allowed, self.lo, self.hi)
        self.free = [_grid(0, 100, step) for _ in variants]
        positive = [v.value for v in variants if v.eligible and v.value > 0]
        self.all_negative = not positive
        eta = 1e-6 * max(positive, default=1.0)
        # Serving weight of each variant's on-time tokens when GPUs are split.
        self.weights = [max(v.value, 0.0) + eta for v in variants]
        # Variants whose violation floors were released for this tick, with why.
        self.released: dict[str, str] = {}

    def demand_of(self, i: int, share: int, rate: float | None = None) -> Demand:
        total = self.demand if rate is None else rate
        r = total * share / 100.0 + self.vs[i].backlog_rps
        return Demand(max(r, _IDLE_RPS), self.input_tokens, self.output_tokens)

    def model(self, i: int, share: int) -> PoolModel:
        """Variant i's pool model at ``share``. At share 0 (and no backlog to drain) the
        floors that keep a pool missing its SLO from shrinking are released: a variant
        that gets no traffic serves nobody, so its observed latencies miss the SLO for
        nobody, and the floor would only trap its GPUs (FloorReleased)."""
        v = self.vs[i]
        if share == 0 and v.backlog_rps <= 0 and v.model.floors:
            return dataclasses.replace(v.model, floors={})
        return v.model

    def table(self, i: int, share: int, rate: float | None = None) -> np.ndarray:
        """On-time tokens/s of variant i at ``share`` for every GPU-unit count."""
        key = (i, share, self.demand if rate is None else rate)
        if key not in self._tables:
            v = self.vs[i]
            problem = self.model(i, share).problem(self.demand_of(i, share, rate), self.budget)
            full = best_by_gpus(problem)
            t = full[np.arange(self.size) * self.unit] * self.output_tokens
            if share == 0 and v.backlog_rps <= 0:
                t = np.where(np.isfinite(t), 0.0, t)
            self._tables[key] = t
        return self._tables[key]

    def tokens_at(self, i: int, share: int, pools: Mapping[str, int]) -> float:
        key = (i, share, tuple(sorted(pools.items())))
        if key not in self._at:
            if share == 0 and self.vs[i].backlog_rps <= 0:
                self._at[key] = 0.0
            else:
                problem = self.model(i, share).problem(self.demand_of(i, share), self.budget)
                self._at[key] = goodput_at(problem, dict(pools)) * self.output_tokens
        return self._at[key]

    def split(self, shares: tuple[int, ...], rate: float | None = None) -> _Split | None:
        tables = [self.table(i, s, rate) for i, s in enumerate(shares)]
        units, _ = _knapsack(tables, self.weights)
        tokens = [float(t[k]) for t, k in zip(tables, units, strict=True)]
        if not all(math.isfinite(x) for x in tokens):
            return None
        value = sum(v.value * x for v, x in zip(self.vs, tokens, strict=True))
        gpus = 0
        for t, x in zip(tables, tokens, strict=True):
            gpus += int(np.argmax(t >= x - 1e-9 * max(abs(x), 1.0))) * self.unit
        return _Split(shares, tuple(units), value, sum(tokens), gpus)

    def splits(self, combos: Sequence[tuple[int, ...]]) -> list[_Split]:
        return [s for s in (self.split(c) for c in combos) if s is not None]

    def value_at(self, shares: tuple[int, ...], pools: Sequence[Mapping[str, int]]) -> float:
        return sum(
            v.value * self.tokens_at(i, s, p)
            for i, (v, s, p) in enumerate(zip(self.vs, shares, pools, strict=True))
        )

    def best_shares_at(
        self, pools: Sequence[Mapping[str, int]], prefer: tuple[int, ...] | None
    ) -> tuple[int, ...]:
        """The split that gets the most value out of fixed replicas (all-negative: the
        least negative variant first)."""
        if self.all_negative:
            return self.negative_shares()
        scored = [(self.value_at(c, pools), c) for c in self.combos]
        return _choose(scored, prefer)

    def negative_shares(self) -> tuple[int, ...]:
        """Every variant at its minShare, then the rest to the least negative value per
        answer first (eligible before below-floor ones), each up to its maxShare."""
        shares = list(self.lo)
        rest = 100 - sum(shares)
        order = sorted(
            range(len(self.vs)), key=lambda i: (not self.vs[i].eligible, -self.vs[i].value, i)
        )
        for i in order:
            add = min(rest, self.hi[i] - shares[i])
            shares[i] += add
            rest -= add
        return tuple(shares)


def _choose(
    scored: Sequence[tuple[float, tuple[int, ...]]],
    prefer: tuple[int, ...] | None,
    gpus: Mapping[tuple[int, ...], int] | None = None,
    *,
    keep: bool = True,
) -> tuple[int, ...]:
    """The highest value; with ``keep``, the preferred (current) split while it is within
    ``STEADY_TOLERANCE`` of the best (weights over fixed replicas do not flap); among
    equal values the fewest GPUs (``gpus``), then the split nearest the preferred one."""
    best = max(v for v, _ in scored)
    slack = STEADY_TOLERANCE * abs(best) + 1e-9
    if keep and prefer is not None:
        for v, c in scored:
            if c == prefer and v >= best - slack:
                return c
    near = [(v, c) for v, c in scored if v >= best - 1e-9 * max(abs(best), 1.0)]

    def key(vc: tuple[float, tuple[int, ...]]) -> tuple[int, int, tuple[int, ...]]:
        c = vc[1]
        moved = sum(abs(a - b) for a, b in zip(c, prefer or c, strict=True))
        return ((gpus or {}).get(c, 0), moved, c)

    return min(near, key=key)[1]


def _required_missing(v: Variant, spec: GoodputPolicySpec, obs: Observation) -> list[str]:
    missing = missing_signals(spec, obs)
    live = v.quality.query is not None
    if live and (obs.quality is None or "quality" in obs.missing) and "quality" not in missing:
        missing.append("quality")
    return missing


def _partial(obs: Observation) -> list[str]:
    return sorted(s for s in obs.partial if s.split(".")[-1] in _REQUIRED)


def _current_shares(
    names: list[str],
    variants: Sequence[Variant],
    given: Mapping[str, int] | None,
    remembered: Mapping[str, int],
    rates: Sequence[float],
) -> tuple[int, ...]:
    lo = [v.min_share for v in variants]
    hi = [v.max_share for v in variants]
    for source in (given, remembered):
        if source and all(n in source for n in names):
            raw = [float(source[n]) for n in names]
            if sum(int(source[n]) for n in names) == 100 and all(
                lo[i] <= int(source[n]) <= hi[i] for i, n in enumerate(names)
            ):
                return tuple(int(source[n]) for n in names)
            return tuple(largest_remainder(raw, lo, hi))
    return tuple(largest_remainder(list(rates), lo, hi))


def _fmt_shares(names: Sequence[str], shares: Sequence[int]) -> str:
    return ", ".join(f"{n} {s}%" for n, s in zip(names, shares, strict=True))


def _outcome(v: _Variant, share: int, plan: Plan, tokens: float) -> VariantOutcome:
    return VariantOutcome(
        name=v.name,
        share=share,
        plan=plan,
        quality=v.quality,
        eligible=v.eligible,
        value_per_answer=v.value,
        predicted_tokens_per_s=tokens,
        predicted_value_per_s=tokens * v.value,
    )


def plan_variants(
    spec: GoodputPolicySpec,
    observations: Mapping[str, Observation],
    current: Mapping[str, Allocation],
    state: VariantPlannerState | None,
    now: float,
    profiles: Mapping[str, PerformanceProfile] | None = None,
    current_shares: Mapping[str, int] | None = None,
) -> tuple[VariantPlan, VariantPlannerState]:
    """One planning step for a policy with variants (a single-model policy is planned
    as one variant named ``default``, always at 100 %).

    ``observations`` and ``current``: per variant name (``spec.variant_specs()`` keys),
    each observation read with that variant's selectors. ``current_shares``: the
    route's weights now, when known (else the last published split, else the observed
    rates). Deterministic: the same arguments give the same plan and state."""
    state = state or VariantPlannerState()
    specs = spec.variant_specs()
    names = list(specs)
    declared = list(spec.variants) or [
        Variant.model_validate(
            {
                "name": "default",
                "pools": [p.model_dump(by_alias=True) for p in spec.pools],
                "quality": {"score": 1.0, "source": "single-model policy"},
            }
        )
    ]
    allocs = {n: current.get(n, Allocation()) for n in names}
    empty = Observation(timestamp=now, pools={})
    obs = {n: observations.get(n, empty) for n in names}
    rates = [demand_signal(obs[n], "arrival_rate_rps") or 0.0 for n in names]
    shares_now = _current_shares(names, declared, current_shares, state.shares, rates)

    # 1. Hold on any variant's missing, stale or partial signal.
    blind: list[tuple[str, list[str], Reason]] = []
    for n, v in zip(names, declared, strict=True):
        if n not in observations:
            blind.append((n, ["observation"], Reason.MetricsMissing))
            continue
        missing = _required_missing(v, specs[n], obs[n])
        if missing:
            blind.append((n, missing, hold_reason(obs[n], missing)))
        elif _partial(obs[n]):
            blind.append((n, _partial(obs[n]), Reason.MetricsPartial))
    if blind:
        return _hold_all(spec, specs, names, allocs, obs, profiles, state, shares_now, blind)

    # 2. Demand: the sum of the variants' rates, forecast; the token mix over all of them.
    total_rate = sum(rates)
    requests = [r for r in rates]
    mean_in = sum(
        r * (demand_signal(obs[n], "mean_input_tokens") or 0.0)
        for n, r in zip(names, requests, strict=True)
    ) / max(total_rate, 1e-12)
    mean_out = sum(
        r * max(demand_signal(obs[n], "mean_output_tokens") or 1.0, 1.0)
        for n, r in zip(names, requests, strict=True)
    ) / max(total_rate, 1e-12)
    window = parse_duration(spec.metrics.window)
    horizon = parse_duration(spec.behavior.forecast_horizon)
    patience = float(spec.behavior.scale_down.stabilization_window_seconds)
    startup = parse_duration(spec.behavior.startup_delay)
    drain_s = startup + parse_duration(spec.behavior.interval)
    fstate = forecast.update(state.demand, total_rate, now, window)
    demand_rps, fstate = forecast.forecast(fstate, total_rate, horizon, patience)
    last = smooth_tokens(state.last_traffic, now, total_rate * window, mean_in, mean_out, horizon)
    if last is not None:
        _, mean_in, mean_out, _ = last
    mean_out = max(mean_out, 1.0)

    # 3. Each variant's physics, corrected by its own observation.
    vs: list[_Variant] = []
    new_factors: dict[str, dict[str, Factors]] = {}
    for n, v, rate in zip(names, declared, rates, strict=True):
        model = pool_model(
            specs[n],
            obs[n],
            allocs[n],
            state.factors.get(n, {}),
            profiles,
            max(rate, state.rates.get(n, rate)),
        )
        new_factors[n] = model.factors
        base = v.quality.score if v.quality.score is not None else (obs[n].quality or 0.0)
        quality = class_quality(base, v.quality.class_scores(), mean_in)
        eligible = quality >= spec.value.quality_floor
        front = obs[n].pools.get(model.roles[0])
        backlog = (front.waiting_requests or 0.0) if front is not None else 0.0
        vs.append(
            _Variant(
                name=n,
                variant=v,
                spec=specs[n],
                model=model,
                obs=obs[n],
                current=allocs[n],
                quality=quality,
                eligible=eligible,
                value=answer_value(quality, spec.value) if eligible else 0.0,
                backlog_rps=backlog / drain_s,
                observed_rate=rate,
            )
        )
    new_state = VariantPlannerState(
        demand=fstate,
        last_traffic=last,
        factors=new_factors,
        rates=dict(zip(names, rates, strict=True)),
        shares=dict(zip(names, shares_now, strict=True)),
    )
    if total_rate == 0.0 and (last is None or now - last[0] > patience):
        return _zero_demand(spec, vs, shares_now, new_state)

    search = _release_trapping_floors(_Search(spec, vs, demand_rps, mean_in, mean_out))
    return _decide(spec, search, shares_now, startup, horizon, new_state)


def _release_trapping_floors(search: _Search) -> _Search:
    """The search without the "do not shrink a violating pool" floors when they trap
    the plan in a split the model itself rates worse than one they forbid (the
    single-model planner's rule, across variants): a variant missing its SLO keeps its
    floors only while they cost no value. Otherwise a variant that serves (almost)
    nothing on time at any replica count holds its GPUs for as long as it gets any
    traffic, and it gets traffic because the GPUs it holds are not where they serve."""
    floored = [v for v in search.vs if v.model.floors]
    if not floored or search.all_negative:
        return search
    splits = search.splits(search.combos)
    vs = [
        dataclasses.replace(v, model=dataclasses.replace(v.model, floors={}))
        if v.model.floors
        else v
        for v in search.vs
    ]
    free = _Search(search.spec, vs, search.demand, search.input_tokens, search.output_tokens)
    free_splits = free.splits(free.combos)
    if not free_splits:
        return search
    best_free = max(x.value for x in free_splits)
    best = max((x.value for x in splits), default=-math.inf)
    if best_free <= best + STEADY_TOLERANCE * abs(best) + 1e-9:
        return search
    free.released = {
        v.name: (
            f"the floors of its pools missing their SLO"
            f" ({', '.join(f'{r} {n}' for r, n in sorted(v.model.floors.items()))}) would"
            f" keep the GPUs where the best split serves {best:.1f}/s of value where"
            f" {best_free:.1f}/s is possible without them: floors released"
        )
        for v in floored
    }
    return free


def _hold_all(
    spec: GoodputPolicySpec,
    specs: Mapping[str, GoodputPolicySpec],
    names: list[str],
    allocs: Mapping[str, Allocation],
    obs: Mapping[str, Observation],
    profiles: Mapping[str, PerformanceProfile] | None,
    state: VariantPlannerState,
    shares: tuple[int, ...],
    blind: list[tuple[str, list[str], Reason]],
) -> tuple[VariantPlan, VariantPlannerState]:
    reason = blind[0][2]
    outcomes = {}
    for n, share in zip(names, shares, strict=True):
        model = pool_model(specs[n], obs[n], allocs[n], {}, profiles)
        missing = next((m for b, m, _ in blind if b == n), [])
        why = next((r for b, _, r in blind if b == n), reason)
        held = model.hold(allocs[n], missing or ["nothing"], why)
        if not missing:
            held = held.model_copy(
                update={
                    "message": "holding the current allocation: another variant's"
                    " signals are missing"
                }
            )
        outcomes[n] = VariantOutcome(name=n, share=share, plan=held)
    what = "; ".join(f"{n}: {', '.join(m)}" for n, m, _ in blind)
    message = (
        f"holding every variant's replicas and the traffic split ({_fmt_shares(names, shares)}):"
        f" missing signals ({what})"
    )
    total = sum(o.plan.total_gpus for o in outcomes.values())
    plan = VariantPlan(
        variants=outcomes,
        total_gpus=total,
        budget=spec.gpu_budget,
        reason=reason,
        message=message,
        hold=True,
    )
    return plan, state


def _zero_demand(
    spec: GoodputPolicySpec,
    vs: list[_Variant],
    shares: tuple[int, ...],
    state: VariantPlannerState,
) -> tuple[VariantPlan, VariantPlannerState]:
    outcomes = {
        v.name: _outcome(
            v,
            s,
            v.model.minimums(v.current, Reason.ZeroDemand, "no traffic: every pool at its minimum"),
            0.0,
        )
        for v, s in zip(vs, shares, strict=True)
    }
    plan = VariantPlan(
        variants=outcomes,
        total_gpus=sum(o.plan.total_gpus for o in outcomes.values()),
        budget=spec.gpu_budget,
        reason=Reason.ZeroDemand,
        message="no traffic to any variant: every pool at its minimum, the split unchanged ("
        + _fmt_shares([v.name for v in vs], shares)
        + ")",
        binding_constraint=Limit.MinReplicas,
    )
    return plan, state


def _decide(
    spec: GoodputPolicySpec,
    search: _Search,
    shares_now: tuple[int, ...],
    startup: float,
    horizon: float,
    state: VariantPlannerState,
) -> tuple[VariantPlan, VariantPlannerState]:
    vs = search.vs
    names = [v.name for v in vs]
    # 4. The best split of traffic and GPUs.
    splits = search.splits(search.combos)
    if not splits:
        return _zero_demand(spec, vs, shares_now, state)  # minimums beyond the budget

    def realize(split: _Split) -> tuple[dict[str, Plan], float, int]:
        """Each variant's own plan inside its GPU share (fewest GPUs within 1 %, as
        plan() chooses), and the value and GPUs of those plans at the split."""
        out: dict[str, Plan] = {}
        for i, v in enumerate(vs):
            budget_i = split.units[i] * search.unit
            model = search.model(i, split.shares[i])
            problem = model.problem(search.demand_of(i, split.shares[i]), budget_i)
            result = optimize(problem)
            q = v.quality if v.eligible else 0.0
            if result is None:
                out[v.name] = v.model.minimums(v.current, Reason.MinimumsExceedBudget, "minimums")
            else:
                out[v.name] = model.finish(problem, result, v.current, v.observed_rate, q)
            if model is not v.model:
                floors = ", ".join(f"{r} {n}" for r, n in sorted(v.model.floors.items()))
                note = Adjustment(
                    reason=Reason.FloorReleased,
                    message=f"{v.name} gets no traffic at this split: the floors of its"
                    f" pools missing their SLO ({floors}) are released",
                )
                plan_i = out[v.name]
                out[v.name] = plan_i.model_copy(update={"adjustments": (*plan_i.adjustments, note)})
            elif v.name in search.released:
                note = Adjustment(reason=Reason.FloorReleased, message=search.released[v.name])
                plan_i = out[v.name]
                out[v.name] = plan_i.model_copy(update={"adjustments": (*plan_i.adjustments, note)})
        pools = [out[v.name].allocation().pools for v in vs]
        gpus = sum(p.total_gpus for p in out.values())
        return out, search.value_at(split.shares, pools), gpus

    ranked = sorted(splits, key=lambda x: (-x.value, x.gpus, x.shares))
    if search.all_negative:
        neg = search.negative_shares()
        first = next((x for x in splits if x.shares == neg), None) or search.split(neg)
        pool = [first or ranked[0], *ranked[:3]]
    else:
        pool = ranked[:4] + [x for x in splits if x.shares == shares_now]
    realized = {x.shares: realize(x) for x in pool}
    if search.all_negative:
        target = pool[0]
    else:
        pick = _choose(
            [(realized[x.shares][1], x.shares) for x in pool],
            shares_now,
            {x.shares: realized[x.shares][2] for x in pool},
            keep=False,
        )
        target = next(x for x in pool if x.shares == pick)
    plans = dict(realized[target.shares][0])
    planned = [plans[v.name].allocation().pools for v in vs]
    ready = [v.model.ready(v.obs, v.current) for v in vs]
    current_pools = [{r: v.current.pools.get(r, 0) for r in v.model.roles} for v in vs]

    # 5. Weights now, replicas after the start-up delay: does moving GPUs pay?
    grows = any(
        planned[i][r] > current_pools[i].get(r, 0) for i in range(len(vs)) for r in planned[i]
    )
    shrinks = any(
        planned[i][r] < current_pools[i].get(r, 0) for i in range(len(vs)) for r in planned[i]
    )
    declined = False
    payback = max(horizon, startup)
    interim = [
        {r: min(ready[i].get(r, 0), planned[i][r]) for r in planned[i]} for i in range(len(vs))
    ]
    gain = loss = v_now = v_mid = 0.0
    # Only an allocation within the budget can be kept: one above it (a budget cut, a
    # hand-scaled target) is never held for a move's start-up, the plan brings it back.
    held_gpus = sum(v.model.gpus(current_pools[i]) for i, v in enumerate(vs))
    if (
        grows
        and shrinks
        and startup > 0
        and not search.all_negative
        and held_gpus <= spec.gpu_budget
    ):
        now_shares = search.best_shares_at(ready, shares_now)
        v_now = search.value_at(now_shares, ready)
        mid_shares = search.best_shares_at(interim, shares_now)
        v_mid = search.value_at(mid_shares, interim)
        v_target = search.value_at(search.best_shares_at(planned, target.shares), planned)
        gain = (v_target - v_now) * payback
        loss = max(v_now - v_mid, 0.0) * startup
        if gain <= loss:
            declined = True
    if declined:
        # No grow; the shrinks alone are kept when they cost (almost) nothing: GPUs that
        # add no value go back, as the single-model planner hands them back.
        shrink = v_mid >= v_now - STEADY_TOLERANCE * abs(v_now) - 1e-9
        keep_pools = interim if shrink else current_pools
        serving = [
            {r: min(ready[i].get(r, 0), keep_pools[i][r]) for r in keep_pools[i]}
            for i in range(len(vs))
        ]
        for i, v in enumerate(vs):
            keep = Allocation(pools=keep_pools[i], tiers=dict(v.current.tiers))
            hold = v.model.hold(keep, ["nothing"], Reason.SteadyState)
            plans[v.name] = hold.model_copy(
                update={
                    "hold": False,
                    "binding_constraint": Limit.StartupCost,
                    "message": "no new replicas: moving GPUs between variants would not pay "
                    "for their start-up"
                    + ("; replicas that add no value are handed back" if shrink else ""),
                }
            )
        planned = keep_pools
    else:
        # Without a start-up delay new replicas serve at once: no interim to bridge.
        serving = interim if startup > 0 else planned
    shares = search.best_shares_at(serving, shares_now)

    # Predictions at the planned replicas once they are ready, with the split that
    # serves them best (what the published split converges to).
    final_shares = search.best_shares_at(planned, shares) if not declined else shares
    outcomes = {}
    for i, v in enumerate(vs):
        tokens = search.tokens_at(i, final_shares[i], planned[i])
        outcomes[v.name] = _outcome(v, shares[i], plans[v.name], tokens)
    value = sum(o.predicted_value_per_s for o in outcomes.values())
    tokens_total = sum(o.predicted_tokens_per_s for o in outcomes.values())
    total_gpus = sum(plans[v.name].total_gpus for v in vs)

    # Limits and reasons.
    binding, bound_variant = _binding(search, target, vs, plans, declined)
    cur_gpus = sum(v.model.gpus(current_pools[i]) for i, v in enumerate(vs))
    changed = any(planned[i] != current_pools[i] for i in range(len(vs)))
    if search.all_negative:
        reason = Reason.VariantValueNegative
    elif shares != shares_now:
        reason = Reason.TrafficShifted
    elif total_gpus > cur_gpus:
        reason = Reason.ScaledUp
    elif total_gpus < cur_gpus:
        reason = Reason.ScaledDown
    elif changed:
        reason = Reason.Rebalanced
    else:
        reason = Reason.SteadyState
    flip = _flip(search, target, final_shares)
    others = [x for x in pool if x.shares not in (target.shares, shares, final_shares)]
    runner = max(
        others, key=lambda x: (realized[x.shares][1], [-y for y in x.shares]), default=None
    )
    runner_up = (
        SplitOption(
            shares=dict(zip(names, runner.shares, strict=True)),
            gpus={v.name: realized[runner.shares][0][v.name].total_gpus for v in vs},
            predicted_value_per_s=realized[runner.shares][1],
        )
        if runner is not None
        else None
    )
    message = _message(
        spec,
        search,
        shares,
        final_shares,
        outcomes,
        runner_up,
        flip,
        declined,
        gain,
        loss,
        shares != final_shares,
    )
    plan = VariantPlan(
        variants=outcomes,
        total_gpus=total_gpus,
        budget=spec.gpu_budget,
        reason=reason,
        message=message,
        binding_constraint=binding,
        binding_variant=bound_variant,
        demand_rps=search.demand,
        predicted_value_per_s=value,
        predicted_tokens_per_s=tokens_total,
        runner_up=runner_up,
        flip=flip,
        final_shares=dict(zip(names, final_shares, strict=True)),
    )
    state = VariantPlannerState(
        demand=state.demand,
        last_traffic=state.last_traffic,
        factors=state.factors,
        rates=state.rates,
        shares=dict(zip(names, shares, strict=True)),
    )
    return plan, state


def _binding(
    search: _Search,
    target: _Split,
    vs: list[_Variant],
    plans: Mapping[str, Plan],
    declined: bool,
) -> tuple[Limit, str | None]:
    if declined:
        return Limit.StartupCost, None
    below = [v.name for v in vs if not v.eligible]
    if below:
        return Limit.QualityFloor, below[0]
    if not search.all_negative:
        free = search.splits(_combos(search.free, [0] * len(vs), [100] * len(vs)))
        if free:
            best_free = max(free, key=lambda s: s.value)
            if best_free.value > target.value * (1 + STEADY_TOLERANCE) + 1e-9:
                at_bound = [
                    v.name
                    for i, v in enumerate(vs)
                    if best_free.shares[i] != target.shares[i]
                    and target.shares[i] in (v.variant.min_share, v.variant.max_share)
                ]
                return Limit.ShareBound, at_bound[0] if at_bound else None
    for v in vs:
        if plans[v.name].binding_constraint == Limit.GpuBudget:
            return Limit.GpuBudget, v.name
    return Limit.None_, None


def _flip(search: _Search, target: _Split, shares: tuple[int, ...]) -> FlipPoint:
    """The break-even wrong-answer cost between the variant taking the most traffic and
    the best other eligible one (each alone with every GPU the others' minimums leave),
    and the total load above which the main variant, given every GPU it can have, no
    longer meets the attainment target (overflow to a faster variant starts there)."""
    vs = search.vs
    if len(vs) < 2:
        return FlipPoint()
    main = max(range(len(vs)), key=lambda i: (shares[i], -i))
    alone = {}
    for i, v in enumerate(vs):
        others_min = sum(
            int(np.argmax(np.isfinite(search.table(j, 0)))) for j in range(len(vs)) if j != i
        )
        units = max(search.size - 1 - others_min, 0)
        alone[i] = float(search.table(i, 100)[units]) if v.variant.max_share > 0 else 0.0
    rivals = [i for i in range(len(vs)) if i != main and vs[i].eligible]
    c_star = None
    rival = None
    if rivals:
        rival = max(rivals, key=lambda i: (alone[i] * vs[i].value, -i))
        c = break_even_cost(alone[main], vs[main].quality, alone[rival], vs[rival].quality)
        c_star = None if c is None or not math.isfinite(c) else c
    overflow = None
    faster = [i for i in range(len(vs)) if i != main and alone[i] > alone[main]]
    if faster and vs[main].variant.max_share > 0:
        overflow = _capacity(search, main)
    parts = []
    cost = search.spec.value.wrong_answer_cost
    if c_star is not None and rival is not None:
        # Below c*, the variant with more right answers per second wins; above it, the
        # one with fewer wrong answers per second.
        a, b = main, rival
        if alone[a] * vs[a].quality < alone[b] * vs[b].quality:
            a, b = b, a
        parts.append(
            f"each alone at this load, {vs[a].name} serves more value below a wrong-answer "
            f"cost of {c_star:.2f} and {vs[b].name} above it (now {cost:g})"
        )
    elif rival is not None:
        better = max((main, rival), key=lambda i: (alone[i] * vs[i].value, -i))
        parts.append(
            f"each alone at this load, {vs[better].name} serves more value at every "
            "wrong-answer cost"
        )
    if overflow is not None:
        f = vs[faster[0]].name
        parts.append(
            f"above {overflow:.2f} req/s in total {vs[main].name} cannot meet the SLO on "
            f"its share of the budget: traffic overflows to {f}"
        )
    return FlipPoint(
        break_even_wrong_answer_cost=c_star,
        overflow_load_rps=overflow,
        message="; ".join(parts),
    )


def _capacity(search: _Search, i: int) -> float | None:
    """The highest total demand at which variant i, taking all of it with every GPU
    the other variants' minimums leave, meets the attainment target (bisection)."""
    others_min = sum(
        int(np.argmax(np.isfinite(search.table(j, 0)))) for j in range(len(search.vs)) if j != i
    )
    units = max(search.size - 1 - others_min, 0)
    target = search.spec.slo.attainment
    out = search.output_tokens

    def meets(rate: float) -> bool:
        tokens = float(search.table(i, 100, rate)[units])
        return tokens >= rate * out * target * (1 - 1e-9)

    lo, hi = 0.0, max(search.demand, 1e-3)
    while meets(hi):
        lo, hi = hi, hi * 2.0
        if hi > 1e7:
            return None
    for _ in range(24):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if meets(mid) else (lo, mid)
    return lo


def _message(
    spec: GoodputPolicySpec,
    search: _Search,
    shares: tuple[int, ...],
    final_shares: tuple[int, ...],
    outcomes: Mapping[str, VariantOutcome],
    runner_up: SplitOption | None,
    flip: FlipPoint,
    declined: bool,
    gain: float,
    loss: float,
    interim: bool,
) -> str:
    vs = search.vs
    names = [v.name for v in vs]
    value = spec.value
    parts = []
    for v, s in zip(vs, shares, strict=True):
        o = outcomes[v.name]
        worth = (
            f"below the quality floor {value.quality_floor:g}: its answers count nothing"
            if not v.eligible
            else f"value per answer {v.value:+.3f} (quality {v.quality:.3f})"
        )
        pools = ", ".join(f"{r} {n}" for r, n in o.plan.allocation().pools.items())
        parts.append(
            f"{v.name} {s}% ({pools}; {o.plan.total_gpus} GPUs; {worth};"
            f" {o.predicted_tokens_per_s:.0f} on-time tokens/s)"
        )
    total = sum(o.predicted_value_per_s for o in outcomes.values())
    head = (
        f"split {'; '.join(parts)} for {search.demand:.2f} req/s forecast at wrong-answer"
        f" cost {value.wrong_answer_cost:g}: predicted value goodput {total:.1f}/s"
    )
    out = [head]
    if search.all_negative:
        out.append(
            "every variant loses value per answer at this wrong-answer cost: traffic goes to"
            " the least negative one as far as its maxShare allows"
        )
    if interim:
        out.append(
            "the split follows the replicas that serve now; once the new ones are ready it"
            " moves to " + _fmt_shares(names, final_shares)
        )
    if declined:
        out.append(
            f"GPUs stay where they are: the value gained over the payback window "
            f"({gain:.0f}) does not pay for the value lost while new replicas start ({loss:.0f})"
        )
    if runner_up is not None:
        out.append(
            "runner-up "
            + _fmt_shares(names, [runner_up.shares[n] for n in names])
            + f" ({runner_up.predicted_value_per_s:.1f}/s)"
        )
    if flip.message:
        out.append(flip.message)
    return "; ".join(out)


class VariantPlanner:
    """``plan_variants`` plus remembered state, for the operator and the twin."""

    name = "goodput-variants"

    def __init__(
        self,
        spec: GoodputPolicySpec,
        profiles: Mapping[str, PerformanceProfile] | None = None,
    ) -> None:
        self.spec = spec
        self.profiles = dict(profiles) if profiles else None
        self.state = VariantPlannerState()

    def decide(
        self,
        observations: Mapping[str, Observation],
        current: Mapping[str, Allocation],
        now: float,
        current_shares: Mapping[str, int] | None = None,
    ) -> VariantPlan:
        result, self.state = plan_variants(
            self.spec, observations, current, self.state, now, self.profiles, current_shares
        )
        return result


__all__ = [
    "SHARE_STEP",
    "STEADY_TOLERANCE",
    "FlipPoint",
    "SplitOption",
    "ValueModel",
    "VariantOutcome",
    "VariantPlan",
    "VariantPlanner",
    "VariantPlannerState",
    "largest_remainder",
    "plan_variants",
]
