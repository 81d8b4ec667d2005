"""The digital twin with several model variants behind a weighted router (issue 13, item 5).

One :class:`~goodput.sim.engine.Twin` per variant, each with its own profiles, pools and
simulated cluster (goodput.sim.cluster.SimCluster), all under the policy's one GPU budget;
the requests of one real trace are split between them by integer weights, as an HTTPRoute's
backendRefs split them (goodput.sim.router). What is the same as the single-model twin
(goodput.sim.harness), so that the comparison means the same thing:

- each variant's pods export vLLM's series (goodput.sim.exporter), scraped in-process and
  read through the metrics layer's own math (goodput.sim.observe.InProcessSource, with
  the variant's projected spec from ``GoodputPolicySpec.variant_specs()``): a controller
  sees per variant what the operator would read from Prometheus, nothing exact;
- replicas are written through each variant's simulated /scale client in
  goodput.actuator.budget's order, over the targets of *every* variant at once: shrinks
  first, a grow only as far as it fits beside every GPU still held by any variant
  (draining ones included); a grow that does not fit waits for a later tick;
- new replicas serve after the policy's start-up delay; scale-down drains.

What is new: a weight change applies at once, to the requests arriving after it (the
route's weights are data-plane configuration, no start-up delay); each request's answer
is right or wrong by a seeded draw against its variant's quality; and the scoreboard adds
``value_goodput``: the sum over on-time requests of output tokens x (rightAnswer if the
answer was right, else -wrongAnswerCost x rightAnswer), per second of trace, beside the
plain ``goodput`` (on-time tokens per second, quality 1).

Why a subclass of Twin: the engine replays a whole trace; a routed twin is given the whole
trace too and ignores the arrivals routed elsewhere (``_on_arrival``), so the engine itself
is untouched and each variant's figures (exporter, outcomes) cover only its own requests.

GPUs held across variants are checked after every write and every replica gone, and the
run stops with :class:`BudgetExceeded` if they were ever above the budget. Between ticks a
variant's GPUs only fall (replicas drain and go; nothing starts without a write), so the
sum read while the other twins have not yet reached the same instant is an upper bound of
the truth: checking it is sound.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from goodput.actuator.budget import budget_safe_writes
from goodput.api.spec import GoodputPolicySpec, ValueModel, parse_duration
from goodput.observation import Observation
from goodput.plan import Allocation
from goodput.sim.cluster import SimCluster, ordered
from goodput.sim.engine import SERVING, Twin, TwinConfig
from goodput.sim.exporter import VllmTwinCollector
from goodput.sim.harness import even_split, goodput_mask, outcomes, scrape_every
from goodput.sim.observe import InProcessSource, TwinPrometheus
from goodput.sim.router import WeightedRouter, integer_weights
from goodput.sim.scenario import Scenario, build_scenario
from goodput.sim.traces import Trace

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
Progress = Callable[[float], None]
Replicas = dict[str, dict[str, int]]  # variant -> pool role -> replicas


class BudgetExceeded(AssertionError):
    """GPUs held across the variants went above the policy's budget (a twin bug or a
    writer that bypassed the budget-safe order): the run is not scored."""


# ---------------------------------------------------------------------------- scenario


@dataclass(frozen=True)
class VariantInfo:
    name: str
    sc: Scenario  # the variant's projected single-model scenario (full policy budget)
    quality: float  # probability that an answer is right
    quality_source: str
    min_share: int
    max_share: int
    backend: str | None  # kind/name of the HTTPRoute backendRef, when declared
    # quality.classes: (minInputTokens, score), increasing; a request with at least that
    # many input tokens is right with that class's score, shorter ones with ``quality``.
    classes: tuple[tuple[int, float], ...] = ()

    def request_quality(self, input_tokens: IntArray) -> FloatArray:
        """Each request's probability of a right answer on this variant."""
        q = np.full(len(input_tokens), self.quality, dtype=np.float64)
        for lo, score in self.classes:
            q[input_tokens >= lo] = score
        return q


@dataclass(frozen=True)
class VariantScenario:
    """A policy with variants turned into what the variant twin needs."""

    spec: GoodputPolicySpec
    variants: dict[str, VariantInfo]
    interval_s: float
    startup_delay_s: float

    @property
    def budget(self) -> int:
        return self.spec.gpu_budget

    @property
    def value(self) -> ValueModel:
        return self.spec.value

    @property
    def names(self) -> list[str]:
        return list(self.variants)

    def quality(self) -> dict[str, float]:
        return {v: i.quality for v, i in self.variants.items()}

    def gpus(self, replicas: Mapping[str, Mapping[str, int]]) -> int:
        return sum(
            n * self.variants[v].sc.gpus[r]
            for v, pools in replicas.items()
            for r, n in pools.items()
        )

    def with_cost(self, wrong_answer_cost: float) -> VariantScenario:
        """The same fleet and trace under another wrong-answer cost (the crossover sweep)."""
        value = self.spec.value.model_copy(update={"wrong_answer_cost": float(wrong_answer_cost)})
        return build_variant_scenario(self.spec.model_copy(update={"value": value}))


def build_variant_scenario(
    spec: GoodputPolicySpec, quality: Mapping[str, float] | None = None
) -> VariantScenario:
    """Per variant its projected spec's scenario (profiles resolved, ProfileError if
    missing) and its quality: the static score, or ``quality[name]`` for a variant whose
    quality is a live query (the twin has no evaluation job to ask)."""
    if not spec.variants:
        raise ValueError("the variant twin needs a policy with spec.variants")
    projected = spec.variant_specs()
    out: dict[str, VariantInfo] = {}
    for v in spec.variants:
        q = (quality or {}).get(v.name, v.quality.score)
        if q is None:
            raise ValueError(
                f"variant {v.name}: quality is a live query ({v.quality.query}); the twin "
                "needs a number for it (build_variant_scenario(..., quality={name: p}))"
            )
        src = v.quality.source or ("given to the twin" if v.quality.score is None else "")
        if quality and v.name in quality:
            src = "given to the twin"
        backend = f"{v.backend_ref.kind.value}/{v.backend_ref.name}" if v.backend_ref else None
        out[v.name] = VariantInfo(
            name=v.name,
            sc=build_scenario(projected[v.name]),
            quality=float(q),
            quality_source=src,
            min_share=v.min_share,
            max_share=v.max_share,
            backend=backend,
            classes=tuple(v.quality.class_scores()),
        )
    return VariantScenario(
        spec=spec,
        variants=out,
        interval_s=parse_duration(spec.behavior.interval),
        startup_delay_s=parse_duration(spec.behavior.startup_delay),
    )


def clamp_weights(vsc: VariantScenario, shares: Mapping[str, float]) -> dict[str, int]:
    """Integer weights summing to 100 from any non-negative shares, within every variant's
    [minShare, maxShare]: largest remainder, then the excess or shortfall moved to the
    variants that still have room (in declaration order)."""
    w = integer_weights({v: shares.get(v, 0.0) for v in vsc.names})
    info = vsc.variants
    for _ in range(len(w) * 100):
        over = {v: w[v] - info[v].max_share for v in w if w[v] > info[v].max_share}
        under = {v: info[v].min_share - w[v] for v in w if w[v] < info[v].min_share}
        if not over and not under:
            break
        for v, x in over.items():
            w[v] -= x
        for v, x in under.items():
            w[v] += x
        gap = 100 - sum(w.values())
        for v in vsc.names:
            if gap == 0:
                break
            room = (info[v].max_share - w[v]) if gap > 0 else (w[v] - info[v].min_share)
            step = max(0, min(abs(gap), room))
            w[v] += step if gap > 0 else -step
            gap += -step if gap > 0 else step
    return w


def even_start(vsc: VariantScenario) -> tuple[Replicas, dict[str, int]]:
    """Where every controller that adapts starts: the budget split evenly between the
    variants by GPUs, each share split evenly between its pools (the single-model twin's
    even split), and equal weights within the share bounds."""
    share = vsc.budget // len(vsc.variants)
    replicas: Replicas = {}
    for v, info in vsc.variants.items():
        replicas[v] = even_split(info.sc.with_budget(max(1, share)))
    return replicas, clamp_weights(vsc, {v: 1.0 for v in vsc.names})


# ---------------------------------------------------------------------------- the fleet


class RoutedTwin(Twin):
    """A variant's twin: the whole trace, but only the requests the router sent here
    arrive (see the module doc)."""

    def __init__(self, cfg: TwinConfig, trace: Trace, router: WeightedRouter, index: int) -> None:
        super().__init__(cfg, trace)
        self._assigned = router.assigned
        self._me = index

    def _on_arrival(self, i: int, now: float) -> None:
        if self._assigned[i] == self._me:
            super()._on_arrival(i, now)


@dataclass
class FleetAccount:
    """GPUs held across every variant, checked after every change."""

    budget: int
    peak: int = 0
    samples: int = 0

    def sample(self, held: int) -> None:
        self.samples += 1
        self.peak = max(self.peak, held)
        if held > self.budget:
            raise BudgetExceeded(
                f"{held} GPUs held across the variants, above the budget of {self.budget}"
            )


class VariantFleet:
    """Per variant a routed twin, its simulated cluster and its in-process metrics source;
    one router; budget-safe writes over all of them (see the module doc)."""

    def __init__(
        self, vsc: VariantScenario, trace: Trace, router: WeightedRouter, delay_s: float
    ) -> None:
        self.vsc = vsc
        self.router = router
        self.twins: dict[str, RoutedTwin] = {}
        self.clusters: dict[str, SimCluster] = {}
        self.proms: dict[str, TwinPrometheus] = {}
        self.sources: dict[str, InProcessSource] = {}
        self.account = FleetAccount(vsc.budget)
        for k, (v, info) in enumerate(vsc.variants.items()):
            twin = RoutedTwin(info.sc.twin, trace, router, k)
            cluster = SimCluster(twin, info.sc, delay_s)
            twin.on_release = self._on_release(cluster)
            prom = TwinPrometheus(VllmTwinCollector(twin))
            self.twins[v], self.clusters[v], self.proms[v] = twin, cluster, prom
            # The variant's projected spec: its pools and selectors, the policy's SLO and
            # metrics window. A static score is the planner's to apply, not the source's.
            self.sources[v] = InProcessSource(info.sc.spec, prom, quality=info.quality)

    def _on_release(self, cluster: SimCluster) -> Callable[[float], None]:
        def released(now: float) -> None:
            cluster.released(now)
            self.account.sample(self.gpus_held())

        return released

    def gpus_held(self) -> int:
        return sum(c.gpus_held() for c in self.clusters.values())

    def start(self, replicas: Replicas) -> None:
        for v, cl in self.clusters.items():
            cl.start(replicas.get(v, {}))
        self.account.sample(self.gpus_held())

    def spec(self) -> Replicas:
        return {v: {k: cl.spec[k] for k in cl.targets} for v, cl in self.clusters.items()}

    def serving(self) -> Replicas:
        return {
            v: {r: tw.count(r, (SERVING,)) for r in self.vsc.variants[v].sc.roles}
            for v, tw in self.twins.items()
        }

    def apply_safe(
        self, desired: Mapping[str, Mapping[str, int]], bounded: bool = True
    ) -> Replicas:
        """One round of writes toward ``desired`` (each clamped to its pool's [min, max]
        unless ``bounded`` is False: a baseline that does not deploy a variant at all) in
        goodput.actuator.budget's order over every variant's targets at once; returns
        the goal. What did not fit waits for the next call."""
        states = {}
        goal: dict[str, int] = {}
        current: dict[str, int] = {}
        for v, cl in self.clusters.items():
            for k in cl.targets:
                key = f"{v}/{k}"
                states[key] = cl.state(k)
                current[key] = cl.spec[k]
                if k in desired.get(v, {}):
                    want = desired[v][k]
                    goal[key] = cl.clamp(k, want) if bounded else max(0, want)
        safe = budget_safe_writes(states, goal, self.vsc.budget)
        for key, n in ordered(current, safe.replicas):
            v, k = key.split("/", 1)
            self.clusters[v].set_replicas(k, n)
            self.account.sample(self.gpus_held())
        out: Replicas = {}
        for key, n in goal.items():
            v, k = key.split("/", 1)
            out.setdefault(v, {})[k] = n
        return out

    def observe(self, now: float) -> dict[str, Observation]:
        """Per variant what the metrics layer reads, ready replicas filled from the
        cluster as the operator fills them (goodput.sim.harness.PlanLoop)."""
        out: dict[str, Observation] = {}
        for v, src in self.sources.items():
            cl = self.clusters[v]
            obs = src.observe_now(now)
            pools = {
                role: p.model_copy(update={"ready_replicas": cl.scale(role).pods_ready})
                if p.ready_replicas is None and role in cl.targets
                else p
                for role, p in obs.pools.items()
            }
            out[v] = obs.model_copy(update={"pools": pools})
        return out

    def scrape(self) -> None:
        for p in self.proms.values():
            p.scrape()


# ---------------------------------------------------------------------------- controllers


@dataclass(frozen=True)
class VariantDecision:
    """What a variant controller asks: replicas per variant and pool (a variant or pool
    left out keeps its spec), and the route's weights (None: unchanged)."""

    replicas: Replicas = field(default_factory=dict)
    weights: dict[str, int] | None = None
    note: str = ""


class VariantController(Protocol):
    """A controller of the variant twin. ``observes = False`` skips the scrapes."""

    name: str
    observes: bool

    def decide(
        self,
        observations: Mapping[str, Observation],
        current: Mapping[str, Allocation],
        weights: Mapping[str, int],
        now: float,
    ) -> VariantDecision: ...


class FixedVariants:
    """One allocation and one split: held from t=0 (``from_start=False``: how a
    hindsight choice is searched), or asked for at every tick from the common even start
    (``from_start=True``: how it is reported, paying the same transition as every
    controller). Pool bounds do not apply: a variant given no replicas is not deployed."""

    observes = False
    bounded = False

    def __init__(
        self,
        name: str,
        replicas: Replicas,
        weights: Mapping[str, int],
        *,
        from_start: bool = False,
    ) -> None:
        self.name = name
        self.replicas = {v: dict(p) for v, p in replicas.items()}
        self.weights = dict(weights)
        self.from_start = from_start

    def initial(self) -> tuple[Replicas, dict[str, int]] | None:
        return None if self.from_start else (self.replicas, self.weights)

    def decide(
        self,
        observations: Mapping[str, Observation],
        current: Mapping[str, Allocation],
        weights: Mapping[str, int],
        now: float,
    ) -> VariantDecision:
        if not self.from_start:
            return VariantDecision()
        return VariantDecision(replicas=self.replicas, weights=dict(self.weights))


# ---------------------------------------------------------------------------- results


@dataclass
class VariantTick:
    t: float
    arrival_rps: float  # the trace's arrivals in the interval ending at t
    weights: dict[str, int]  # the route's weights during the interval
    share: dict[str, float]  # fraction of the interval's arrivals each variant got
    serving: Replicas  # ready replicas per variant and pool at t
    target: Replicas  # spec replicas at t (before this tick's writes)
    gpus_held: int


@dataclass
class VariantRunResult:
    controller: str
    label: str
    budget: int
    window_s: float
    variants: list[str]
    quality: dict[str, float]
    right_answer: float
    wrong_answer_cost: float
    assigned: IntArray  # variant index per request (-1: never routed)
    met: BoolArray  # request met the SLO
    right: BoolArray  # its answer was right (drawn)
    output_tokens: IntArray
    ticks: list[VariantTick]
    peak_gpus: int
    gpu_hours: float
    actions: int
    wall_s: float
    decisions: list[tuple[float, str]] = field(default_factory=list)

    @property
    def goodput(self) -> float:
        """On-time output tokens per second (quality 1: the quality-blind figure)."""
        return float(np.sum(self.output_tokens * self.met)) / self.window_s

    @property
    def attainment(self) -> float:
        return float(np.mean(self.met)) if len(self.met) else 0.0

    def value_goodput(self, wrong_answer_cost: float | None = None) -> float:
        """Sum over on-time requests of tokens x (R if right else -c R), per second. The
        run's own c unless another is given: a quality-blind controller's run does not
        depend on c, so one run gives its whole line against c."""
        c = self.wrong_answer_cost if wrong_answer_cost is None else wrong_answer_cost
        per = np.where(self.right, self.right_answer, -c * self.right_answer)
        return float(np.sum(self.output_tokens * self.met * per)) / self.window_s

    def share(self) -> dict[str, float]:
        """Mean traffic share per variant: the fraction of the trace's requests it got."""
        n = max(1, len(self.assigned))
        return {v: float(np.sum(self.assigned == k)) / n for k, v in enumerate(self.variants)}

    def variant_goodput(self) -> dict[str, float]:
        return {
            v: float(np.sum(self.output_tokens * (self.met & (self.assigned == k)))) / self.window_s
            for k, v in enumerate(self.variants)
        }

    def right_fraction(self) -> dict[str, float | None]:
        """Observed fraction of right answers per variant (None when it served nothing)."""
        out: dict[str, float | None] = {}
        for k, v in enumerate(self.variants):
            m = self.assigned == k
            out[v] = float(np.mean(self.right[m])) if np.any(m) else None
        return out


# ---------------------------------------------------------------------------- run


def request_quality(vsc: VariantScenario, trace: Trace, assigned: IntArray) -> FloatArray:
    """Each request's probability of a right answer on the variant it was routed to: the
    variant's score, or its request class's (``quality.classes``) by input tokens."""
    q = np.zeros(len(trace), dtype=np.float64)
    for k, info in enumerate(vsc.variants.values()):
        m = assigned == k
        q[m] = info.request_quality(trace.input_tokens[m])
    return q


def run_variants(
    vsc: VariantScenario,
    trace: Trace,
    controller: VariantController,
    *,
    seed: int = 0,
    initial: tuple[Replicas, dict[str, int]] | None = None,
    drain_horizon_s: float = 600.0,
    progress: Progress | None = None,
    label: str = "",
) -> VariantRunResult:
    """Replay ``trace`` through the variant twin under ``controller``: route each
    interval's arrivals with the weights in force, step every variant's twin, scrape,
    let the controller decide at the tick, apply the weights at once and the replicas in
    the budget-safe order. ``seed`` fixes routing and correctness draws."""
    wall0 = time.perf_counter()
    router = WeightedRouter(vsc.names, len(trace), seed)
    fleet = VariantFleet(vsc, trace, router, vsc.startup_delay_s)
    init = initial
    if init is None:
        own = getattr(controller, "initial", None)
        init = own() if callable(own) else None
    replicas, weights = init if init is not None else even_start(vsc)
    weights = dict(weights)
    fleet.start(replicas)
    bind = getattr(controller, "bind", None)
    if callable(bind):  # a controller with its own clients (the operator's tick)
        bind(fleet, weights)
    observes = bool(getattr(controller, "observes", True))
    own_sources = bool(getattr(controller, "own_sources", False))
    bounded = bool(getattr(controller, "bounded", True))
    if observes:
        fleet.scrape()
    any_sc = next(iter(vsc.variants.values())).sc
    sub = max(1, math.ceil(vsc.interval_s / scrape_every(any_sc) - 1e-9))
    end = trace.duration_s
    arrivals = trace.arrival_s
    routed = 0
    ticks: list[VariantTick] = []
    decisions: list[tuple[float, str]] = []
    t = 0.0
    while t < end:
        t_next = min(end, t + vsc.interval_s)
        hi = int(np.searchsorted(arrivals, t_next, side="right"))
        got = router.route(routed, hi, weights)
        n_int = hi - routed
        share = {
            v: (float(np.sum(got == k)) / n_int if n_int else 0.0) for k, v in enumerate(vsc.names)
        }
        routed = hi
        for k in range(1, sub + 1):
            upto = t + (t_next - t) * k / sub
            for tw in fleet.twins.values():
                tw.run_until(upto)
            if observes:
                fleet.scrape()
        tick = VariantTick(
            t=t_next,
            arrival_rps=n_int / max(t_next - t, 1e-9),
            weights=dict(weights),
            share=share,
            serving=fleet.serving(),
            target=fleet.spec(),
            gpus_held=fleet.gpus_held(),
        )
        fleet.account.sample(tick.gpus_held)
        if t_next < end:
            obs = fleet.observe(t_next) if observes and not own_sources else {}
            spec = fleet.spec()
            current = {v: Allocation(pools=p) for v, p in spec.items()}
            d = controller.decide(obs, current, weights, t_next)
            if d.weights is not None:
                router.cumulative(d.weights)  # refuses weights a route could not carry
                weights = {v: int(d.weights.get(v, 0)) for v in vsc.names}
            if d.replicas:
                fleet.apply_safe(d.replicas, bounded=bounded)
            if d.note:
                decisions.append((t_next, d.note))
        ticks.append(tick)
        if progress is not None:
            progress(t_next / end if end else 1.0)
        t = t_next
    close = getattr(controller, "close", None)
    if callable(close):
        close()
    for cl in fleet.clusters.values():
        cl.freeze(end)
    for tw in fleet.twins.values():
        tw.run_until(end + drain_horizon_s)
    met = np.zeros(len(trace), dtype=np.bool_)
    for k, (_v, tw) in enumerate(fleet.twins.items()):
        o = outcomes(tw)
        met |= goodput_mask(o.ttft, o.itl, o.output_tokens, tw.cfg.ttft_slo_s, tw.cfg.itl_slo_s) & (
            router.assigned == k
        )
    value = vsc.value
    return VariantRunResult(
        controller=controller.name,
        label=label or getattr(controller, "label", controller.name),
        budget=vsc.budget,
        window_s=max(end, 1e-9),
        variants=vsc.names,
        quality=vsc.quality(),
        right_answer=value.right_answer,
        wrong_answer_cost=value.wrong_answer_cost,
        assigned=router.assigned.copy(),
        met=met,
        right=router.right_at(request_quality(vsc, trace, router.assigned)),
        output_tokens=trace.output_tokens,
        ticks=ticks,
        peak_gpus=fleet.account.peak,
        gpu_hours=sum(c.account.gpu_seconds for c in fleet.clusters.values()) / 3600.0,
        actions=sum(len(c.writes) for c in fleet.clusters.values()),
        wall_s=time.perf_counter() - wall0,
        decisions=decisions,
    )
