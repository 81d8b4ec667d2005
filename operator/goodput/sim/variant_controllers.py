"""Controllers of the variant twin (goodput.sim.variants) and the comparison they run in.

Baselines ignore answer quality, as the autoscalers a team has today do (issue 13: Dynamo
and llm-d choose between variants by cost only); each is configured as stated here:

- ``single-<variant>``: every request on one variant, with the best fixed prefill/decode
  split for it within the whole budget, chosen with hindsight by (quality-blind) goodput
  on the same trace (the single-model twin's ``static-best`` rule, goodput.sim.harness.
  static_best: every budget-spending split held from t=0, the most on-time tokens wins,
  ties to fewer GPUs), then reported as the protocol runs every controller: from the
  common even start, that split and all the traffic asked for at the first tick (the
  run held from t=0 is kept as ``SingleBest.held``). The other variants are scaled to
  zero (not deployed, whatever their minReplicas: this is the team that serves one
  model). Their runs do not depend on the wrong-answer cost, so one run gives each its
  whole line of value-weighted goodput against c (the crossover plot).
- ``hpa-fixed-split``: the tuned Kubernetes HPA of goodput.sim.controllers.KubernetesHPA
  (SLO-derived targets, HPA default behavior, pods beyond the budget wait) on each
  variant's pools, with the route's weights fixed at the split *proportional to each
  variant's capacity per GPU* (:func:`capacity_weights`). Why that split and not the
  static-best one: the static-best split of a quality-blind team is all traffic on the
  faster variant (that is ``single-<faster>``); a team that runs both variants (an A/B,
  a migration) and splits by what each can serve gives each a share its HPA can carry on
  equal GPUs, so the two HPAs share the budget evenly under load. Capacity per GPU is the
  same derivation the HPA's targets come from: the decode batch whose step time at the
  mean context meets the ITL SLO (``slo_decode_batch``) and full prefill batches of the
  mean prompt, on the profile the twin runs, at the trace's mean lengths (the HPA
  baseline's only hindsight).
- ``goodput``: the operator's own tick (goodput.operator.reconcile.Reconciler, which
  runs the value-weighted variant planner goodput.planner.variants) on the simulated
  fleet and an in-memory HTTPRoute (goodput.sim.variant_operator): its scale writes go
  to the variants' simulated clusters, its route patch sets the weights the router
  splits the next arrivals by. The one switch point is :func:`goodput_controller`
  (``GOODPUT_DRIVER``); "variant-planner" drives the planner directly instead
  (:class:`VariantPlannerLoop`, a diagnostic), and every output says which driver ran.

Every adaptive controller starts from the same even start (goodput.sim.variants.
even_start: budget split evenly between the variants and, within each, between its
pools; equal weights).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from goodput.observation import Observation
from goodput.plan import Allocation
from goodput.profiles import PerformanceProfile
from goodput.sim.controllers import KubernetesHPA, slo_decode_batch, splits
from goodput.sim.engine import DECODE, PREFILL
from goodput.sim.traces import Trace
from goodput.sim.variants import (
    FixedVariants,
    Replicas,
    VariantController,
    VariantDecision,
    VariantRunResult,
    VariantScenario,
    clamp_weights,
    even_start,
    run_variants,
)

#: How ``goodput`` is driven in the variant twin. "operator-tick" (the default since
#: goodput.operator plans variants): the operator's own Reconciler.tick on the simulated
#: fleet and HTTPRoute (goodput.sim.variant_operator). "variant-planner": the planner
#: called directly at each tick (VariantPlannerLoop), a diagnostic.
GOODPUT_DRIVER = "operator-tick"
GOODPUT_LABEL = {
    "variant-planner": "variant planner called directly each tick (not the operator's tick)",
    "operator-tick": "the operator's own tick (Reconciler) on the simulated fleet and HTTPRoute",
}

Progress = Callable[[str, float], None]

# ---------------------------------------------------------------------------- single


@dataclass
class SingleBest:
    """The hindsight choice for one variant: its best split and every split tried."""

    variant: str
    split: dict[str, int]
    result: VariantRunResult
    tried: list[tuple[dict[str, int], float]] = field(default_factory=list)
    held: VariantRunResult | None = None  # the split held from t=0 (no transition)


def only(vsc: VariantScenario, variant: str, split: Mapping[str, int]) -> Replicas:
    """All replicas on one variant; every pool of the others at zero (not deployed)."""
    return {
        v: (dict(split) if v == variant else {r: 0 for r in vsc.variants[v].sc.roles})
        for v in vsc.names
    }


def all_on(vsc: VariantScenario, variant: str) -> dict[str, int]:
    return {v: (100 if v == variant else 0) for v in vsc.names}


def single_best(
    vsc: VariantScenario,
    trace: Trace,
    variant: str,
    *,
    seed: int = 0,
    progress: Callable[[float], None] | None = None,
) -> SingleBest:
    """``single-<variant>`` (module doc): every budget-spending split of the variant held
    from t=0 with all the traffic; the most on-time tokens wins (ties: fewer GPUs)."""
    sc = vsc.variants[variant].sc
    cands = splits(sc)
    best: tuple[float, int, dict[str, int], VariantRunResult] | None = None
    tried: list[tuple[dict[str, int], float]] = []
    name = f"single-{variant}"
    for k, split in enumerate(cands):
        ctl = FixedVariants(name, only(vsc, variant, split), all_on(vsc, variant))
        res = run_variants(vsc, trace, ctl, seed=seed, label=f"all traffic on {variant}")
        tried.append((split, res.goodput))
        gpus = sum(n * sc.gpus[r] for r, n in split.items())
        if best is None or (res.goodput, -gpus) > (best[0], best[1]):
            best = (res.goodput, -gpus, split, res)
        if progress is not None:
            progress((k + 1) / len(cands))
    assert best is not None, f"variant {variant}: no split fits the budget"
    # Reported as every controller runs: from the even start, the split and all the
    # traffic asked for at the first tick (the single-model twin's static-best rule).
    ctl = FixedVariants(name, only(vsc, variant, best[2]), all_on(vsc, variant), from_start=True)
    res = run_variants(vsc, trace, ctl, seed=seed)
    res.label = (
        f"all traffic on {variant}, best static split "
        + " / ".join(f"{n} {r}" for r, n in best[2].items())
        + " (hindsight), asked for at the first tick from the even start"
    )
    return SingleBest(variant, best[2], res, tried, held=best[3])


# ---------------------------------------------------------------------------- HPA


def capacity_per_gpu(
    prefill: PerformanceProfile,
    decode: PerformanceProfile,
    ttft_slo_s: float,
    itl_slo_s: float,
    isl: float,
    osl: float,
) -> float:
    """Requests per second one GPU of the variant serves at the SLO-derived operating
    point (module doc): 1 / (prefill GPU-seconds + decode GPU-seconds per request)."""
    del ttft_slo_s  # prefill capacity is full batches; the TTFT only sets the HPA's queue
    isl = max(1.0, isl)
    m = max(1.0, float(math.floor(prefill.max_prefill_tokens / isl)))
    t_batch = prefill.prefill_seconds(m * isl, m * isl * isl, m)
    prefill_gpu_s = prefill.gpus_per_replica * t_batch / m
    b = slo_decode_batch(decode, itl_slo_s, isl, osl)
    step = decode.decode_step_seconds(b, b * (isl + osl / 2))
    decode_gpu_s = decode.gpus_per_replica * max(1.0, osl - 1) * step / b
    return 1.0 / (prefill_gpu_s + decode_gpu_s)


def capacity_weights(vsc: VariantScenario, lengths: tuple[float, float]) -> dict[str, int]:
    """The fixed split of ``hpa-fixed-split``: weights proportional to each variant's
    capacity per GPU, as integers summing to 100 within the share bounds."""
    caps: dict[str, float] = {}
    for v, info in vsc.variants.items():
        sc = info.sc
        p = sc.profiles.get(PREFILL) or next(iter(sc.profiles.values()))
        d = sc.profiles.get(DECODE) or p
        caps[v] = capacity_per_gpu(p, d, sc.twin.ttft_slo_s, sc.twin.itl_slo_s, *lengths)
    return clamp_weights(vsc, caps)


class HpaFixedSplit:
    """``hpa-fixed-split`` (module doc): one KubernetesHPA per variant, fixed weights."""

    observes = True
    label = "tuned HPA per variant, weights fixed in proportion to capacity per GPU"

    def __init__(self, vsc: VariantScenario, lengths: tuple[float, float]) -> None:
        self.name = "hpa-fixed-split"
        self.weights = capacity_weights(vsc, lengths)
        self.hpas = {
            v: KubernetesHPA(i.sc, lengths, name=f"hpa-{v}") for v, i in vsc.variants.items()
        }
        self.vsc = vsc

    def initial(self) -> tuple[Replicas, dict[str, int]]:
        """The even start's replicas, and the fixed split from the first request on."""
        replicas, _ = even_start(self.vsc)
        return replicas, dict(self.weights)

    def decide(
        self,
        observations: Mapping[str, Observation],
        current: Mapping[str, Allocation],
        weights: Mapping[str, int],
        now: float,
    ) -> VariantDecision:
        out: Replicas = {}
        for v, hpa in self.hpas.items():
            plan = hpa.decide(observations[v], current[v], now)
            if not plan.hold:
                out[v] = {r: d.replicas for r, d in plan.pools.items()}
        return VariantDecision(replicas=out, weights=dict(self.weights))


# ---------------------------------------------------------------------------- goodput


class VariantPlannerLoop:
    """``goodput`` in the variant twin: goodput.planner.variants.VariantPlanner called
    directly at each tick with every variant's observation, its current replicas and the
    route's weights now (see the module doc: not yet the operator's tick). Its plan's
    replicas are written in the budget-safe order, its shares are the new weights; a hold
    changes nothing."""

    observes = True

    def __init__(self, vsc: VariantScenario) -> None:
        from goodput.planner.variants import VariantPlanner

        self.name = "goodput"
        self.label = GOODPUT_LABEL["variant-planner"]
        self.vsc = vsc
        self.planner = VariantPlanner(vsc.spec)
        self.plans: list[tuple[float, Any]] = []

    def decide(
        self,
        observations: Mapping[str, Observation],
        current: Mapping[str, Allocation],
        weights: Mapping[str, int],
        now: float,
    ) -> VariantDecision:
        plan = self.planner.decide(observations, current, now, current_shares=weights)
        self.plans.append((now, plan))
        note = f"{plan.reason.value}: {plan.message}"
        if plan.hold:
            return VariantDecision(note=note)
        replicas: Replicas = {v: dict(a.pools) for v, a in plan.allocations().items()}
        return VariantDecision(replicas=replicas, weights=dict(plan.shares), note=note)


def goodput_controller(vsc: VariantScenario) -> VariantController:
    """The single switch point for how ``goodput`` runs in the variant twin."""
    if GOODPUT_DRIVER == "variant-planner":
        return VariantPlannerLoop(vsc)
    if GOODPUT_DRIVER == "operator-tick":
        from goodput.sim.variant_operator import OperatorVariantsLoop

        return OperatorVariantsLoop(vsc)
    raise ValueError(f"unknown GOODPUT_DRIVER {GOODPUT_DRIVER!r}")


# ---------------------------------------------------------------------------- compare


VARIANT_CONTROLLERS = ("goodput", "hpa-fixed-split", "single")


@dataclass
class VariantComparison:
    """Every controller's run on one variant scenario and trace."""

    vsc: VariantScenario
    results: dict[str, VariantRunResult]
    singles: dict[str, SingleBest]
    fixed_weights: dict[str, int]
    seed: int


def run_variant_benchmark(
    vsc: VariantScenario,
    trace: Trace,
    names: Sequence[str] = VARIANT_CONTROLLERS,
    *,
    seed: int = 0,
    progress: Progress | None = None,
) -> VariantComparison:
    """Run the named controllers ("single" = one ``single-<variant>`` per variant) on
    one variant scenario and trace, same seed for routing and correctness."""
    lengths = (
        float(np.mean(trace.input_tokens)) if len(trace) else 0.0,
        float(np.mean(trace.output_tokens)) if len(trace) else 0.0,
    )
    results: dict[str, VariantRunResult] = {}
    singles: dict[str, SingleBest] = {}

    def prog(name: str) -> Callable[[float], None]:
        def f(x: float) -> None:
            if progress is not None:
                progress(name, x)

        return f

    for name in names:
        if name == "single":
            for v in vsc.names:
                sb = single_best(vsc, trace, v, seed=seed, progress=prog(f"single-{v}"))
                singles[v] = sb
                results[f"single-{v}"] = sb.result
        elif name == "hpa-fixed-split":
            ctl: VariantController = HpaFixedSplit(vsc, lengths)
            results[name] = run_variants(vsc, trace, ctl, seed=seed, progress=prog(name))
        elif name == "goodput":
            ctl = goodput_controller(vsc)
            results[name] = run_variants(vsc, trace, ctl, seed=seed, progress=prog(name))
        else:
            raise ValueError(
                f"unknown controller {name!r}; known: {', '.join(VARIANT_CONTROLLERS)}"
            )
    return VariantComparison(vsc, results, singles, capacity_weights(vsc, lengths), seed)


@dataclass
class CostSweep:
    """Value-weighted goodput against the wrong-answer cost c: each single variant's line
    (from its one run) and the planner re-run at every c (its decisions depend on c)."""

    costs: list[float]
    singles: dict[str, list[float]]
    planner: list[float] | None
    planner_share: list[dict[str, float]]
    crossover: float | None  # the c at which the best single variant changes


def crossover_cost(
    singles: Mapping[str, VariantRunResult], lo: float = 0.0, hi: float = 10.0
) -> float | None:
    """The wrong-answer cost at which two single variants' value-weighted goodput lines
    cross (each line exact from its run: V(c) = A - c B), the first one in [lo, hi]."""
    lines = []
    for r in singles.values():
        a = r.value_goodput(0.0)
        b = a - r.value_goodput(1.0)
        lines.append((a, b))
    best: float | None = None
    for i in range(len(lines)):
        for j in range(i + 1, len(lines)):
            (a1, b1), (a2, b2) = lines[i], lines[j]
            if abs(b1 - b2) < 1e-12:
                continue
            c = (a1 - a2) / (b1 - b2)
            if lo <= c <= hi and (best is None or c < best):
                best = c
    return best


def sweep_costs(
    vsc: VariantScenario,
    trace: Trace,
    costs: Sequence[float],
    singles: Mapping[str, VariantRunResult],
    *,
    seed: int = 0,
    with_planner: bool = True,
    progress: Progress | None = None,
) -> CostSweep:
    lines = {v: [r.value_goodput(c) for c in costs] for v, r in singles.items()}
    planner: list[float] | None = None
    shares: list[dict[str, float]] = []
    if with_planner:
        planner = []
        for k, c in enumerate(costs):
            sc_c = vsc.with_cost(c)
            res = run_variants(sc_c, trace, goodput_controller(sc_c), seed=seed)
            planner.append(res.value_goodput())
            shares.append(res.share())
            if progress is not None:
                progress("goodput sweep", (k + 1) / len(costs))
    return CostSweep(list(costs), lines, planner, shares, crossover_cost(singles))


__all__ = [
    "GOODPUT_DRIVER",
    "VARIANT_CONTROLLERS",
    "CostSweep",
    "HpaFixedSplit",
    "SingleBest",
    "VariantComparison",
    "VariantPlannerLoop",
    "capacity_per_gpu",
    "capacity_weights",
    "crossover_cost",
    "goodput_controller",
    "run_variant_benchmark",
    "single_best",
    "sweep_costs",
]
