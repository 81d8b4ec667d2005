"""Runs controllers against the twin side by side: same trace, budget, delays and SLO.

Every controller is driven through the Autoscaler protocol the operator uses: each
control interval the harness builds an `Observation` from the twin (what the metrics
layer would have read from Prometheus), calls `decide`, and applies the plan the way
the real actuator does: shrink first (removed replicas drain and keep their GPUs until
empty), grow only with GPUs actually free, so no controller ever holds more GPUs than
the budget at any moment.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from goodput.observation import GoodputEstimate, LatencySummary, Observation, PoolObservation
from goodput.plan import Allocation
from goodput.ports import Autoscaler
from goodput.sim.engine import DECODE, PREFILL, SERVING, STARTING, Twin
from goodput.sim.scenario import Scenario
from goodput.sim.traces import Trace

FloatArray = npt.NDArray[np.float64]
Progress = Callable[[float], None]


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


# ---------------------------------------------------------------------------- actuator


class Actuator:
    """Applies target replicas without ever exceeding the GPU budget."""

    def __init__(self, twin: Twin, sc: Scenario, startup_delay_s: float) -> None:
        self.twin = twin
        self.sc = sc
        self.delay = startup_delay_s
        self.target: dict[str, int] = {r: 0 for r in sc.roles}
        self.tiers: dict[str, int] = {}
        self.actions = 0
        self.peak_gpus = 0
        self.gpu_seconds = 0.0
        self._last_t = 0.0
        self._last_gpus = 0
        self.violations = 0

    def spec_replicas(self, role: str) -> int:
        return self.twin.count(role, (STARTING, SERVING))

    def current(self) -> Allocation:
        return Allocation(
            pools={r: self.spec_replicas(r) for r in self.sc.roles}, tiers=dict(self.tiers)
        )

    def _account(self, now: float) -> None:
        held = self.twin.gpus_held()
        self.gpu_seconds += self._last_gpus * max(0.0, now - self._last_t)
        self._last_t = max(self._last_t, now)
        self._last_gpus = held
        self.peak_gpus = max(self.peak_gpus, held)
        if held > self.sc.budget:
            self.violations += 1

    def apply(self, pools: dict[str, int], tiers: dict[str, int], now: float) -> None:
        sc = self.sc
        for role in sc.roles:
            want = pools.get(role, self.target[role])
            want = max(sc.min_replicas[role], min(sc.max_replicas[role], want))
            if want != self.target[role]:
                self.actions += 1
            self.target[role] = want
            while self.spec_replicas(role) > want:
                if not self.twin.remove_replica(role, now):
                    break
        for name, n in tiers.items():
            if name in sc.tier_max:
                n = max(sc.tier_min[name], min(sc.tier_max[name], n))
                if self.tiers.get(name) != n:
                    self.twin.set_tier_replicas(name, n)
                    self.tiers[name] = n
        self._account(now)
        self.grow(now)

    def grow(self, now: float) -> None:
        """Start replicas that fit in the GPUs free right now, largest deficit first."""
        self._account(now)
        sc = self.sc
        while True:
            free = sc.budget - self.twin.gpus_held()
            deficits = [
                (self.target[r] - self.spec_replicas(r), r)
                for r in sc.roles
                if self.target[r] > self.spec_replicas(r) and sc.gpus[r] <= free
            ]
            if not deficits:
                break
            _, role = max(deficits)
            self.twin.add_replica(role, now, self.delay)
            self._account(now)

    def on_release(self, now: float) -> None:
        self.grow(now)


# ---------------------------------------------------------------------------- observation


def latency_summary(values: FloatArray, threshold: float) -> LatencySummary | None:
    if len(values) == 0:
        return None
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return LatencySummary(
        attainment=float(np.mean(values <= threshold)),
        p50_s=float(p50),
        p90_s=float(p90),
        p99_s=float(p99),
        mean_s=float(np.mean(values)),
    )


class Observer:
    """Turns the twin's state over the last interval into an Observation."""

    def __init__(self, twin: Twin, sc: Scenario) -> None:
        self.twin = twin
        self.sc = sc
        self._t0 = 0.0
        self._gen0 = 0.0
        self._busy0 = 0.0

    def observe(self, now: float) -> tuple[Observation, float | None]:
        tw = self.twin
        tr = tw.trace
        c = tw.counters
        w = max(1e-9, now - self._t0)
        lo = int(np.searchsorted(tr.arrival_s, self._t0, side="left"))
        hi = int(np.searchsorted(tr.arrival_s, now, side="left"))
        n_arr = hi - lo
        rate = n_arr / w
        mean_in = float(np.mean(tr.input_tokens[lo:hi])) if n_arr else None
        mean_out = float(np.mean(tr.output_tokens[lo:hi])) if n_arr else None
        done = np.asarray(c.completed, dtype=np.int64)
        pre = np.asarray(c.prefilled, dtype=np.int64)
        c.completed.clear()
        c.prefilled.clear()
        arrival = tr.arrival_s
        first = np.asarray(tw.first_token)
        finish = np.asarray(tw.finish)
        out = tr.output_tokens
        ttft_s = first[done] - arrival[done] if len(done) else np.zeros(0)
        multi = done[out[done] > 1] if len(done) else done
        itl_s = (finish[multi] - first[multi]) / (out[multi] - 1) if len(multi) else np.zeros(0)
        cfg = tw.cfg
        ttft = latency_summary(ttft_s, cfg.ttft_slo_s)
        itl = latency_summary(itl_s, cfg.itl_slo_s)
        gen_rate = (c.generated_tokens - self._gen0) / w
        prompt_rate = float(np.sum(tr.input_tokens[pre])) / w if len(pre) else 0.0
        hit = (
            float(np.sum(np.asarray(tw.cached)[pre]) / max(1, np.sum(tr.input_tokens[pre])))
            if len(pre)
            else None
        )
        busy = (c.prefill_busy_s - self._busy0) / w
        self._t0, self._gen0, self._busy0 = now, c.generated_tokens, c.prefill_busy_s
        met = None
        if len(done):
            m = goodput_mask(
                ttft_s,
                np.where(out[done] > 1, _itl_all(tw, done), 0.0),
                out[done],
                cfg.ttft_slo_s,
                cfg.itl_slo_s,
            )
            met = float(np.mean(m))

        pools: dict[str, PoolObservation] = {}
        for role in self.sc.roles:
            reps = tw.active(role)
            ready = sum(1 for r in reps if r.state == SERVING)
            if role == PREFILL:
                running = float(sum(len(r.prefill_batch) for r in reps))
                waiting = float(len(tw.prefill_q))
                kv = None
            else:
                running = float(sum(r.n for r in reps))
                waiting = float(len(tw.decode_q) if role == DECODE else len(tw.prefill_q))
                cap = sum(r.profile.kv_capacity_tokens for r in reps)
                kv = min(1.0, sum(r.reserved for r in reps) / cap) if cap else None
            pools[role] = PoolObservation(
                role=role,
                ready_replicas=ready,
                arrival_rate_rps=rate,
                mean_input_tokens=mean_in,
                mean_output_tokens=mean_out,
                prompt_tokens_per_s=prompt_rate,
                generation_tokens_per_s=gen_rate,
                ttft=ttft,
                itl=itl,
                running_requests=running,
                waiting_requests=waiting,
                kv_cache_usage=kv,
                prefix_cache_hit_rate=hit,
            )
        a_t = ttft.attainment if ttft else None
        a_i = itl.attainment if itl else None
        est = GoodputEstimate()
        if a_t is not None and a_i is not None:
            a = a_t * a_i
            est = GoodputEstimate(
                attainment=a,
                attainment_lower=max(0.0, a_t + a_i - 1),
                attainment_upper=min(a_t, a_i),
                goodput_tokens_per_s=gen_rate * a,
            )
        notes = [f"prefill_busy_fraction={busy:.3f}"]
        obs = Observation(timestamp=now, pools=pools, quality=None, estimate=est, notes=notes)
        return obs, met


def _itl_all(tw: Twin, idx: npt.NDArray[np.int64]) -> FloatArray:
    first = np.asarray(tw.first_token)[idx]
    finish = np.asarray(tw.finish)[idx]
    out = tw.trace.output_tokens[idx]
    return np.asarray((finish - first) / np.maximum(out - 1, 1))


# ---------------------------------------------------------------------------- run


@dataclass
class Tick:
    t: float
    arrival_rps: float
    target: dict[str, int]
    serving: dict[str, int]
    gpus_held: int
    attainment: float | None


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


def run(
    sc: Scenario,
    trace: Trace,
    controller: Autoscaler | None,
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
    actuator: Actuator | None = None

    def release(now: float) -> None:
        if actuator is not None:
            actuator.on_release(now)

    twin = Twin(sc.twin, trace, on_release=release)
    delay = sc.startup_delay_s if startup_delay_s is None else startup_delay_s
    actuator = Actuator(twin, sc, delay)
    init = initial
    if init is None and controller is not None and hasattr(controller, "initial_allocation"):
        init = controller.initial_allocation()
    if init is None:
        init = even_split(sc)
    tiers0 = initial_tiers
    if tiers0 is None:
        tiers0 = {t.name: t.min_replicas for t in sc.spec.kv_cache.tiers}
    # Initial replicas are up at t=0 for everyone: the comparison is about scaling.
    actuator.delay = 0.0
    actuator.apply(init, tiers0, 0.0)
    actuator.delay = delay
    actuator.actions = 0
    if controller is not None and hasattr(controller, "attach"):
        controller.attach(twin)
    observer = Observer(twin, sc)
    end = trace.duration_s
    interval = sc.interval_s
    ticks: list[Tick] = []
    t = 0.0
    while t < end:
        t_next = min(end, t + interval)
        twin.run_until(t_next)
        obs, met = observer.observe(t_next)
        ticks.append(
            Tick(
                t=t_next,
                arrival_rps=obs.pools[sc.roles[0]].arrival_rate_rps or 0.0,
                target=dict(actuator.target),
                serving={r: twin.count(r, (SERVING,)) for r in sc.roles},
                gpus_held=twin.gpus_held(),
                attainment=met,
            )
        )
        if controller is not None and t_next < end:
            plan = controller.decide(obs, actuator.current(), t_next)
            actuator.apply({r: d.replicas for r, d in plan.pools.items()}, dict(plan.tiers), t_next)
        if progress is not None:
            progress(t_next / end if end else 1.0)
        t = t_next
    actuator._account(end)
    # No more control after the last arrival: let in-flight work finish.
    twin.run_until(end + drain_horizon_s)
    reps = [(r.profile.model, r.profile.gpu) for r in twin.replicas]
    return RunResult(
        controller=name or (controller.name if controller is not None else "static"),
        budget=sc.budget,
        window_s=max(end, 1e-9),
        outcomes=outcomes(twin),
        actions=actuator.actions,
        peak_gpus=actuator.peak_gpus,
        gpu_hours=actuator.gpu_seconds / 3600.0,
        budget_violations=actuator.violations,
        wall_s=time.perf_counter() - wall0,
        ticks=ticks,
        replica_models=reps,
    )


# ---------------------------------------------------------------------------- compare


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


def compare(
    sc: Scenario,
    trace: Trace,
    names: list[str],
    progress: Callable[[str, float], None] | None = None,
) -> dict[str, RunResult]:
    """Run the named controllers on one scenario and trace; same budget, SLO, delays."""
    from goodput.sim import controllers as ctl

    results: dict[str, RunResult] = {}
    for name in names:

        def prog(f: float, _n: str = name) -> None:
            if progress is not None:
                progress(_n, f)

        if name == "static-best":
            _, res, _ = static_best(sc, trace, prog)
            results[name] = res
        elif name == "oracle":
            results[name] = run(
                sc, trace, ctl.Oracle(sc, trace), startup_delay_s=0.0, progress=prog, name=name
            )
        elif name == "reactive":
            results[name] = run(sc, trace, ctl.ReactiveHPA(sc), progress=prog, name=name)
        elif name == "sla-planner":
            results[name] = run(sc, trace, ctl.DynamoSlaPlanner(sc), progress=prog, name=name)
        elif name == "goodput":
            results[name] = run(sc, trace, ctl.goodput_planner(sc), progress=prog, name=name)
        elif name == "goodput-raw":
            planner = ctl.goodput_planner(sc, behavior=False)
            results[name] = run(sc, trace, planner, progress=prog, name=name)
        else:
            raise ValueError(f"unknown controller {name!r}; known: {', '.join(ctl.CONTROLLERS)}")
    return results
