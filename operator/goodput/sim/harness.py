"""Runs controllers against the twin side by side: same trace, budget, delays and SLO,
and the same path from the fleet to a decision and back that the operator has in a
cluster (DESIGN section 6):

- the fleet is a simulated cluster (goodput.sim.cluster.SimCluster, the operator's
  ScaleClient): /scale replicas per pool, pods starting, serving and draining, ready only
  after the start-up delay, draining ones holding their GPUs until empty;
- what a controller observes is what the operator's metrics layer would read from
  Prometheus scraping the twin's vLLM exporter (goodput.sim.observe.InProcessSource:
  window increases of the cumulative counters and histograms, the metrics layer's own
  math), the same Observation for every controller;
- `goodput` is the operator's own tick (goodput.operator.reconcile.Reconciler.tick:
  decide, the writes, conclude), its status fed back as the next tick's raw status,
  its clock the twin's (`OperatorLoop`);
- every other controller keeps its own decision rule (goodput.ports.Autoscaler); its
  replicas are clamped to the pools' bounds and written through the same ScaleClient
  in the budget-safe order of goodput.actuator.budget (shrink first; a grow only as far
  as it fits beside every GPU still held, the rest waits for a later tick), `PlanLoop`.

The scoreboard is the twin's exact per-request truth (`outcomes`, `token_goodput`), not
an estimate any controller sees; GPUs held (draining included) are counted after every
change, so a moment above the budget would show as a violation.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from goodput.actuator.behavior import target_replicas, tier_key
from goodput.api.spec import GoodputPolicySpec, parse_duration
from goodput.observation import Observation
from goodput.operator.facts import Outcome
from goodput.operator.reconcile import PolicyRef, Reconciler
from goodput.plan import Allocation
from goodput.ports import Autoscaler
from goodput.sim.cluster import SimCluster, WriteLog
from goodput.sim.engine import DECODE, PREFILL, SERVING, Twin
from goodput.sim.exporter import VllmTwinCollector
from goodput.sim.observe import InProcessSource, TwinPrometheus, source_factory
from goodput.sim.scenario import Scenario
from goodput.sim.traces import Trace

FloatArray = npt.NDArray[np.float64]
Progress = Callable[[float], None]
SourceFactory = Callable[[GoodputPolicySpec, str], Awaitable[Any]]
T = TypeVar("T")
# ---------------------------------------------------------------------------- outcomes


@dataclass(frozen=True)
class Outcomes:
    """Per-request results of one run (NaN where a request never finished)."""

    arrival: FloatArray
    input_tokens: npt.NDArray[np.int64]
    output_tokens: npt.NDArray[np.int64]
    cached_tokens: npt.NDArray[np.int64]
    ttft: FloatArray
    itl: FloatArray
    met: npt.NDArray[np.bool_]
    quality: FloatArray
    served_by: npt.NDArray[np.int64]


def outcomes(twin: Twin) -> Outcomes:
    tr = twin.trace
    arrival = tr.arrival_s
    first = np.asarray(twin.first_token)
    finish = np.asarray(twin.finish)
    out = tr.output_tokens
    ttft = first - arrival
    with np.errstate(invalid="ignore", divide="ignore"):
        itl = np.where(out > 1, (finish - first) / np.maximum(out - 1, 1), 0.0)
    served = np.asarray(twin.served_by, dtype=np.int64)
    q_by_rep = np.asarray(
        [twin.cfg.pools[r.role].quality for r in twin.replicas] or [1.0], dtype=np.float64
    )
    quality = np.where(served >= 0, q_by_rep[np.maximum(served, 0)], 0.0)
    met = goodput_mask(ttft, itl, out, twin.cfg.ttft_slo_s, twin.cfg.itl_slo_s)
    return Outcomes(
        arrival=arrival,
        input_tokens=tr.input_tokens,
        output_tokens=out,
        cached_tokens=np.asarray(twin.cached, dtype=np.int64),
        ttft=ttft,
        itl=itl,
        met=met,
        quality=quality,
        served_by=served,
    )


def goodput_mask(
    ttft: FloatArray,
    itl: FloatArray,
    out: npt.NDArray[np.int64],
    ttft_slo: float,
    itl_slo: float,
) -> npt.NDArray[np.bool_]:
    """DESIGN section 2: TTFT <= slo.ttft and (a 1-token request) or ITL <= slo.itl.
    Unfinished requests (NaN) never meet it."""
    ok_ttft = np.nan_to_num(ttft, nan=math.inf) <= ttft_slo
    ok_itl = (out <= 1) | (np.nan_to_num(itl, nan=math.inf) <= itl_slo)
    return np.asarray(ok_ttft & ok_itl)


def token_goodput(o: Outcomes, window_s: float) -> float:
    """G = sum(out_i * q_i over requests meeting the SLO) / W."""
    if window_s <= 0:
        return 0.0
    return float(np.sum(o.output_tokens * o.quality * o.met) / window_s)


# ---------------------------------------------------------------------------- drivers


class OperatorLoop:
    """The `goodput` controller: the operator's own tick against the simulated cluster.

    Each tick is ``Reconciler.tick(policy, generation, raw_spec, raw_status)`` with the
    simulated ScaleClient and the in-process observation source; the outcome's status,
    serialized as the kopf loop writes it (``model_dump(mode="json", by_alias=True,
    exclude_none=True)``), is the next tick's raw status, so stabilization windows and
    recommendations live in status as in a cluster. ``outcomes`` keeps every tick's
    outcome (writes, status, events)."""

    def __init__(
        self,
        spec: GoodputPolicySpec,
        name: str = "goodput",
        *,
        policy: str = "goodput",
        generation: int = 1,
        created: datetime | None = None,
        raw_spec: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.spec = spec
        self.policy_name = policy
        self.generation = generation
        self.created = created
        self.raw_spec = (
            raw_spec
            if raw_spec is not None
            else spec.model_dump(mode="json", by_alias=True, exclude_none=True)
        )
        self.raw_status: dict[str, Any] = {}
        self.outcomes: list[tuple[float, Outcome]] = []
        self.reconciler: Reconciler | None = None
        self.namespace = ""

    def bind(self, cluster: SimCluster, sources: SourceFactory, clock: Callable[[], float]) -> None:
        self.reconciler = Reconciler(cluster, sources, clock=clock)
        self.namespace = cluster.namespace

    async def tick(self) -> Outcome:
        assert self.reconciler is not None, "bind() first"
        policy = PolicyRef(self.namespace, self.policy_name, self.created)
        now = self.reconciler.clock()
        out = await self.reconciler.tick(policy, self.generation, self.raw_spec, self.raw_status)
        self.raw_status = out.status.model_dump(mode="json", by_alias=True, exclude_none=True)
        self.outcomes.append((now, out))
        return out

    def close(self) -> None:
        if self.reconciler is not None:
            self.reconciler.close()


class PlanLoop:
    """Any other controller (an Autoscaler): its own decision from the same observation
    the operator would make (ready replicas from the cluster, as the operator fills
    them), its replicas clamped to the pools' [min, max] and written through the same
    ScaleClient in the budget-safe order; a grow that does not fit yet waits for a later
    tick. A plan that holds writes nothing."""

    def __init__(self, controller: Autoscaler, cluster: SimCluster) -> None:
        self.controller = controller
        self.name = controller.name
        self.cluster = cluster
        self.observes = bool(getattr(controller, "observes", True))
        # The oracle's privilege: its grows land when the GPUs free, not at a later tick.
        self.grows_on_release = bool(getattr(controller, "grows_on_release", False))

    def tick(self, source: InProcessSource | None, now: float) -> dict[str, int]:
        cl = self.cluster
        scales = {k: cl.scale(k) for k in cl.targets}
        obs = (
            source.observe_now(now)
            if source is not None and self.observes
            else Observation(timestamp=now, pools={})
        )
        pools = {
            role: p.model_copy(update={"ready_replicas": scales[role].pods_ready})
            if p.ready_replicas is None and role in scales
            else p
            for role, p in obs.pools.items()
        }
        obs = obs.model_copy(update={"pools": pools})
        spec = {k: s.spec_replicas for k, s in scales.items()}
        pool_keys = [k for k, t in cl.targets.items() if t.role is not None]
        tiers = {t.tier: spec[k] for k, t in cl.targets.items() if t.tier is not None}
        current = Allocation(pools={k: spec[k] for k in pool_keys}, tiers=tiers)
        plan = self.controller.decide(obs, current, now)
        if plan.hold:
            return spec
        asked = target_replicas({r: d.replicas for r, d in plan.pools.items()}, plan.tiers)
        if self.grows_on_release:
            return {**spec, **cl.pursue(asked)}
        return {**spec, **cl.apply_safe(asked)}


def _run_sync(runner: asyncio.Runner, coro: Coroutine[Any, Any, T]) -> T:
    return runner.run(coro)


# ---------------------------------------------------------------------------- run


@dataclass
class Tick:
    t: float
    arrival_rps: float  # the trace's true arrivals in the interval ending at t
    target: dict[str, int]  # spec replicas per pool at t (before this tick's writes)
    serving: dict[str, int]
    gpus_held: int
    attainment: float | None  # true SLO attainment of the requests finished in it
    desired: dict[str, int] = field(default_factory=dict)  # what the controller asked at t


@dataclass
class RunResult:
    controller: str
    budget: int
    window_s: float
    outcomes: Outcomes
    actions: int
    peak_gpus: int
    gpu_hours: float
    budget_violations: int
    wall_s: float
    ticks: list[Tick] = field(default_factory=list)
    replica_models: list[tuple[str, str]] = field(default_factory=list)
    writes: list[WriteLog] = field(default_factory=list)  # every /scale write, in order

    @property
    def goodput(self) -> float:
        return token_goodput(self.outcomes, self.window_s)

    @property
    def attainment(self) -> float:
        n = len(self.outcomes.met)
        return float(np.mean(self.outcomes.met)) if n else 0.0

    @property
    def goodput_per_gpu_hour(self) -> float:
        if self.gpu_hours <= 0:
            return 0.0
        return self.goodput * self.window_s / self.gpu_hours


def even_split(sc: Scenario) -> dict[str, int]:
    """The starting allocation every controller gets: the budget split evenly by GPUs."""
    roles = sc.roles
    if len(roles) == 1:
        r = roles[0]
        return {r: min(sc.max_replicas[r], sc.budget // sc.gpus[r])}
    half = sc.budget // 2
    p = max(sc.min_replicas[PREFILL], half // sc.gpus[PREFILL])
    d = max(sc.min_replicas[DECODE], (sc.budget - p * sc.gpus[PREFILL]) // sc.gpus[DECODE])
    return {PREFILL: p, DECODE: d}


def scrape_every(sc: Scenario) -> float:
    """The in-process Prometheus's scrape interval: every tick, and at least four scrapes
    per rate window (the spec's own advice for ``metrics.window``)."""
    window = parse_duration(sc.spec.metrics.window)
    return min(sc.interval_s, window / 4) if window > 0 else sc.interval_s


class _Truth:
    """Per-tick scoreboard from the twin's exact per-request figures (not observed)."""

    def __init__(self, twin: Twin) -> None:
        self.twin = twin
        self.done_at = 0

    def attainment(self) -> float | None:
        tw = self.twin
        done = tw.counters.completed
        idx = np.asarray(done[self.done_at :], dtype=np.int64)
        self.done_at = len(done)
        if len(idx) == 0:
            return None
        arr = tw.trace.arrival_s[idx]
        first = np.asarray(tw.first_token)[idx]
        fin = np.asarray(tw.finish)[idx]
        out = tw.trace.output_tokens[idx]
        ttft = first - arr
        itl = np.where(out > 1, (fin - first) / np.maximum(out - 1, 1), 0.0)
        m = goodput_mask(ttft, itl, out, tw.cfg.ttft_slo_s, tw.cfg.itl_slo_s)
        return float(np.mean(m))


def run(
    sc: Scenario,
    trace: Trace,
    controller: Autoscaler | OperatorLoop | None,
    *,
    initial: dict[str, int] | None = None,
    initial_tiers: dict[str, int] | None = None,
    startup_delay_s: float | None = None,
    drain_horizon_s: float = 600.0,
    progress: Progress | None = None,
    name: str | None = None,
) -> RunResult:
    """Replay `trace` under `controller` (None = hold the initial allocation)."""
    wall0 = time.perf_counter()
    twin = Twin(sc.twin, trace)
    delay = sc.startup_delay_s if startup_delay_s is None else startup_delay_s
    cluster = SimCluster(twin, sc, delay)
    init = initial
    if init is None and controller is not None and hasattr(controller, "initial_allocation"):
        init = controller.initial_allocation()
    if init is None:
        init = even_split(sc)
    tiers0 = initial_tiers
    if tiers0 is None:
        tiers0 = {t.name: t.min_replicas for t in sc.spec.kv_cache.tiers}
    # Initial replicas are up at t=0 for everyone: the comparison is about scaling.
    cluster.start({**init, **{tier_key(k): n for k, n in tiers0.items()}})
    if controller is not None and hasattr(controller, "attach"):
        controller.attach(twin)
    prom = TwinPrometheus(VllmTwinCollector(twin))
    quality = _twin_quality(sc)
    source: InProcessSource | None = None
    plans: PlanLoop | None = None
    operator: OperatorLoop | None = None
    if isinstance(controller, OperatorLoop):
        operator = controller
        operator.bind(cluster, source_factory(prom, quality), clock=lambda: twin.now)
    elif controller is not None:
        plans = PlanLoop(controller, cluster)
        if plans.observes:
            source = InProcessSource(sc.spec, prom, quality=quality)
    observing = operator is not None or source is not None
    if observing:
        prom.scrape()
    end = trace.duration_s
    interval = sc.interval_s
    sub = max(1, math.ceil(interval / scrape_every(sc) - 1e-9))
    truth = _Truth(twin)
    ticks: list[Tick] = []
    t = 0.0
    # The operator's tick is async (it awaits its ScaleClient and source); one event
    # loop per run, and none for the others (the oracle's what-if runs nest in a tick).
    with asyncio.Runner() if operator is not None else contextlib.nullcontext() as runner:
        while t < end:
            t_next = min(end, t + interval)
            for k in range(1, sub + 1):
                twin.run_until(t + (t_next - t) * k / sub)
                if observing:
                    prom.scrape()
            lo, hi = np.searchsorted(trace.arrival_s, [t, t_next], side="left")
            tick = Tick(
                t=t_next,
                arrival_rps=float(hi - lo) / max(t_next - t, 1e-9),
                target={r: cluster.spec[r] for r in sc.roles},
                serving={r: twin.count(r, (SERVING,)) for r in sc.roles},
                gpus_held=cluster.gpus_held(),
                attainment=truth.attainment(),
            )
            if t_next < end:
                if operator is not None:
                    assert runner is not None
                    out = _run_sync(runner, operator.tick())
                    d = out.status.last_decision
                    tick.desired = dict(d.pools) if d is not None else {}
                elif plans is not None:
                    want = plans.tick(source, t_next)
                    tick.desired = {r: want[r] for r in sc.roles if r in want}
            ticks.append(tick)
            if progress is not None:
                progress(t_next / end if end else 1.0)
            t = t_next
    if operator is not None:
        operator.close()
    cluster.freeze(end)
    # No more control after the last arrival: let in-flight work finish.
    twin.run_until(end + drain_horizon_s)
    reps = [(r.profile.model, r.profile.gpu) for r in twin.replicas]
    acct = cluster.account
    return RunResult(
        controller=name or (controller.name if controller is not None else "static"),
        budget=sc.budget,
        window_s=max(end, 1e-9),
        outcomes=outcomes(twin),
        actions=len(cluster.writes),
        peak_gpus=acct.peak,
        gpu_hours=acct.gpu_seconds / 3600.0,
        budget_violations=acct.violations,
        wall_s=time.perf_counter() - wall0,
        ticks=ticks,
        replica_models=reps,
        writes=list(cluster.writes),
    )


def _twin_quality(sc: Scenario) -> float:
    """What a quality query would report for the twin: its pools' configured quality."""
    qs = [p.quality for p in sc.twin.pools.values()]
    return float(min(qs)) if qs else 1.0


# ---------------------------------------------------------------------------- static


def static_best(
    sc: Scenario, trace: Trace, progress: Progress | None = None
) -> tuple[dict[str, int], RunResult, list[tuple[dict[str, int], float]]]:
    """Hindsight: simulate every budget-spending split on the whole trace, keep the one
    with the most goodput (ties: fewer GPUs)."""
    from goodput.sim.controllers import splits

    cands = splits(sc)
    best: tuple[float, int, dict[str, int], RunResult] | None = None
    tried: list[tuple[dict[str, int], float]] = []
    for k, alloc in enumerate(cands):
        res = run(sc, trace, None, initial=alloc, name="static-best")
        tried.append((alloc, res.goodput))
        gpus = sum(n * sc.gpus[r] for r, n in alloc.items())
        key = (res.goodput, -gpus)
        if best is None or key > (best[0], best[1]):
            best = (res.goodput, -gpus, alloc, res)
        if progress is not None:
            progress((k + 1) / len(cands))
    assert best is not None
    return best[2], best[3], tried


# ---------------------------------------------------------------------------- compare
