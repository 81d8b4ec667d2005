"""The controllers the benchmark compares, all behind the Autoscaler protocol.

- `goodput`: this project's planner (goodput.planner.GoodputPlanner), imported lazily,
  its plans passed through the actuator's behavior limits as in the operator
  (`goodput-raw`: the same planner without them, a diagnostic).
- `static-best`: the best fixed split for the whole trace, chosen with hindsight.
- `reactive`: HPA-style, each pool on its own utilization target with HPA's defaults.
- `sla-planner`: NVIDIA Dynamo's throughput-based SLA-planner rule.
- `oracle`: per interval, the best allocation for that interval's true arrivals,
  evaluated with the twin itself, applied with no start-up delay.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from goodput.observation import Observation
from goodput.plan import Allocation, Plan, PoolDecision
from goodput.ports import Autoscaler
from goodput.reasons import Reason
from goodput.sim.engine import AGGREGATED, DECODE, PREFILL, SERVING, STARTING, Twin
from goodput.sim.scenario import Scenario
from goodput.sim.traces import Trace

CONTROLLERS = ("goodput", "static-best", "reactive", "sla-planner", "oracle")
# Diagnostic extra: the planner's plans applied without the actuator's behavior limits.
EXTRA_CONTROLLERS = ("goodput-raw",)


def make_plan(sc: Scenario, pools: dict[str, int], current: Allocation, message: str) -> Plan:
    total = sum(pools[r] * sc.gpus[r] for r in pools)
    before = sum(current.pools.get(r, 0) * sc.gpus[r] for r in pools)
    if pools == current.pools:
        reason = Reason.SteadyState
    elif total > before:
        reason = Reason.ScaledUp
    elif total < before:
        reason = Reason.ScaledDown
    else:
        reason = Reason.Rebalanced
    return Plan(
        pools={
            r: PoolDecision(role=r, replicas=n, gpus_per_replica=sc.gpus[r])
            for r, n in pools.items()
        },
        tiers=dict(current.tiers),
        total_gpus=total,
        budget=sc.budget,
        reason=reason,
        message=message,
    )


def fit_budget(sc: Scenario, want: dict[str, int]) -> dict[str, int]:
    """Clamp to [min, max]; over the budget, Dynamo's rule: scale = budget / total,
    prefill = max(min, floor(prefill * scale)), decode gets what is left (floor)."""
    out = {r: max(sc.min_replicas[r], min(sc.max_replicas[r], n)) for r, n in want.items()}
    total = sum(out[r] * sc.gpus[r] for r in out)
    if total <= sc.budget:
        return out
    if PREFILL in out and DECODE in out:
        scale = sc.budget / total
        p = max(sc.min_replicas[PREFILL], math.floor(out[PREFILL] * scale))
        d = (sc.budget - p * sc.gpus[PREFILL]) // sc.gpus[DECODE]
        return {PREFILL: p, DECODE: max(sc.min_replicas[DECODE], min(out[DECODE], d))}
    return {r: max(sc.min_replicas[r], sc.budget // sc.gpus[r]) for r in out}


def splits(sc: Scenario) -> list[dict[str, int]]:
    """Every allocation that spends the budget (prefill/decode) or one aggregated size."""
    if AGGREGATED in sc.gpus:
        g = sc.gpus[AGGREGATED]
        n = max(sc.min_replicas[AGGREGATED], min(sc.max_replicas[AGGREGATED], sc.budget // g))
        return [{AGGREGATED: n}]
    gp, gd = sc.gpus[PREFILL], sc.gpus[DECODE]
    out: list[dict[str, int]] = []
    for p in range(max(1, sc.min_replicas[PREFILL]), sc.max_replicas[PREFILL] + 1):
        d = min(sc.max_replicas[DECODE], (sc.budget - p * gp) // gd)
        if d < max(1, sc.min_replicas[DECODE]):
            break
        out.append({PREFILL: p, DECODE: d})
    return out


# ---------------------------------------------------------------------------- fixed


class FixedController:
    """Holds one allocation: what `static-best` runs once hindsight has picked it."""

    def __init__(self, sc: Scenario, pools: dict[str, int], name: str = "static-best") -> None:
        self.name = name
        self.sc = sc
        self.pools = dict(pools)

    def decide(self, observation: Observation, current: Allocation, now: float) -> Plan:
        return make_plan(self.sc, self.pools, current, "fixed allocation")


# ---------------------------------------------------------------------------- reactive


class ReactiveHPA:
    """Kubernetes HPA per pool (autoscaling/v2 algorithm and default behavior):
    desired = ceil(current * metric / target), 10% tolerance; scale-up at most
    max(100%, 4 pods) per 15 s; scale-down takes the highest recommendation of the
    last 300 s. Metrics: prefill busy fraction (target 70%); decode KV-cache usage
    (vLLM's gpu_cache_usage, target 70%) or running/max_batch, whichever is higher;
    aggregated the max of both. The sum is then capped at the budget."""

    name = "reactive"

    def __init__(self, sc: Scenario, target: float = 0.7, tolerance: float = 0.1) -> None:
        self.sc = sc
        self.target = target
        self.tolerance = tolerance
        self.window_s = 300.0  # HPA's default scale-down stabilization window
        self.history: dict[str, deque[tuple[float, int]]] = {r: deque() for r in sc.roles}

    def _metric(self, role: str, obs: Observation, replicas: int) -> float | None:
        pool = obs.pools.get(role)
        if pool is None or replicas <= 0:
            return None
        busy = None
        for note in obs.notes:
            if note.startswith("prefill_busy_fraction="):
                busy = float(note.split("=", 1)[1]) / replicas
        batch = (pool.running_requests or 0.0) / (replicas * self.sc.profiles[role].max_batch)
        if role == PREFILL:
            return busy
        kv = pool.kv_cache_usage or 0.0
        queued = (pool.waiting_requests or 0.0) > 0
        m = max(kv, batch, 1.0 if queued else 0.0)
        if role == AGGREGATED and busy is not None:
            m = max(m, busy)
        return m

    def decide(self, observation: Observation, current: Allocation, now: float) -> Plan:
        want: dict[str, int] = {}
        for role in self.sc.roles:
            cur = current.pools.get(role, 0)
            m = self._metric(role, observation, max(cur, 1))
            desired = cur
            if m is not None:
                ratio = m / self.target
                if abs(ratio - 1.0) > self.tolerance:
                    desired = math.ceil(max(cur, 1) * ratio)
            if desired > cur:
                desired = min(desired, max(2 * cur, cur + 4))
            hist = self.history[role]
            if not hist:  # mid-life start: the initial allocation was recommended at t=0
                hist.append((0.0, cur))
            hist.append((now, desired))
            while hist and hist[0][0] < now - self.window_s:
                hist.popleft()
            if desired < cur:
                desired = min(cur, max(d for _, d in hist))
            want[role] = desired
        return make_plan(self.sc, fit_budget(self.sc, want), current, "HPA rule")


# ---------------------------------------------------------------------------- sla-planner


class DynamoSlaPlanner:
    """NVIDIA Dynamo SLA planner, throughput-based mode (planner-design doc, 'Step 4:
    Replica Calculation', docs.nvidia.com/dynamo .../planner/planner-design):

        predicted_load   = next_requests * next_isl / interval * min(1, prefill_correction)
        prefill_replicas = ceil(predicted_load / prefill_thpt_per_gpu / gpus_per_engine)
        decode_thpt      = best throughput/GPU whose ITL <= itl_slo / decode_correction
                           at context isl + osl/2
        decode_replicas  = ceil(next_requests * next_osl / interval / decode_thpt / gpus)

    with a constant load predictor (next = last interval), correction factors
    actual/expected latency from the last interval, and Dynamo's budget rule: over
    the budget, both pools scale down proportionally. The 'profiled' throughputs come
    from the same performance profile the twin runs (Dynamo profiles the deployment
    ahead of time; here the profile is that pre-deployment profiling)."""

    name = "sla-planner"

    def __init__(self, sc: Scenario) -> None:
        self.sc = sc
        self.interval = sc.interval_s

    def _prefill_thpt_per_gpu(self, isl: float) -> float:
        prof = self.sc.profiles.get(PREFILL) or self.sc.profiles[AGGREGATED]
        t = prof.prefill_seconds(isl, isl * isl)
        return isl / t / prof.gpus_per_replica

    def _decode_best(self, itl: float, ctx: float) -> float:
        prof = self.sc.profiles.get(DECODE) or self.sc.profiles[AGGREGATED]
        best = 0.0
        for b in range(1, prof.max_batch + 1):
            if b * ctx > prof.kv_capacity_tokens:
                break
            step = prof.decode_step_seconds(b, b * ctx)
            if step <= itl:
                best = max(best, b / step / prof.gpus_per_replica)
        if best == 0.0:  # SLO below the floor: the fastest it can do
            best = 1.0 / prof.decode_step_seconds(1, ctx) / prof.gpus_per_replica
        return best

    def decide(self, observation: Observation, current: Allocation, now: float) -> Plan:
        sc = self.sc
        first = next(iter(observation.pools.values()))
        rate = first.arrival_rate_rps
        isl = first.mean_input_tokens
        osl = first.mean_output_tokens
        if not rate or isl is None or osl is None:
            return make_plan(sc, dict(current.pools), current, "no load observed: hold")
        n_req = rate * self.interval
        cfg = sc.twin
        ttft_obs = next((p.ttft for p in observation.pools.values() if p.ttft), None)
        itl_obs = next((p.itl for p in observation.pools.values() if p.itl), None)
        p_corr = 1.0
        prof_p = sc.profiles.get(PREFILL) or sc.profiles[AGGREGATED]
        expected_ttft = prof_p.prefill_seconds(isl, isl * isl)
        if ttft_obs is not None and ttft_obs.mean_s:
            p_corr = ttft_obs.mean_s / expected_ttft
        d_corr = 1.0
        prof_d = sc.profiles.get(DECODE) or sc.profiles[AGGREGATED]
        dpool = observation.pools.get(DECODE) or observation.pools.get(AGGREGATED)
        if itl_obs is not None and itl_obs.mean_s and dpool is not None:
            reps = max(1, current.pools.get(dpool.role, 1))
            b = max(1.0, (dpool.running_requests or 0.0) / reps)
            expected_itl = prof_d.decode_step_seconds(b, b * (isl + osl / 2))
            d_corr = max(1e-3, itl_obs.mean_s / expected_itl)
        load = n_req * isl / self.interval * min(1.0, p_corr)
        want_p = math.ceil(load / self._prefill_thpt_per_gpu(isl) / prof_p.gpus_per_replica)
        thpt = self._decode_best(cfg.itl_slo_s / d_corr, isl + osl / 2)
        want_d = math.ceil(n_req * osl / self.interval / thpt / prof_d.gpus_per_replica)
        if AGGREGATED in sc.gpus:
            want = {AGGREGATED: max(want_p, want_d)}
        else:
            want = {PREFILL: max(1, want_p), DECODE: max(1, want_d)}
        return make_plan(sc, fit_budget(sc, want), current, "Dynamo SLA-planner rule")


# ---------------------------------------------------------------------------- oracle


Evaluator = Callable[[dict[str, int], float, float], float]


class Oracle:
    """Per control interval, the allocation the twin itself says gives the most goodput
    for that interval's true arrivals: each candidate split is applied to a fork of
    the live fleet (backlog, running batches and caches included; removed replicas
    still drain; new ones serve at once), the interval is replayed, and then in-flight
    work gets `horizon_s` to finish. The score is the good tokens of the requests that
    were in flight at the decision or arrive during the interval. Candidates are the
    budget-spending splits (more than 9: a coarse grid, then the neighbours of its
    best); the current split wins ties. Run with no start-up delay. An upper bound
    within the twin's physics for one-interval lookahead, not a proof of optimality."""

    name = "oracle"

    def __init__(self, sc: Scenario, trace: Trace, horizon_s: float = 60.0) -> None:
        self.sc = sc
        self.trace = trace
        self.horizon_s = horizon_s
        self.candidates = splits(sc)
        self.evaluations = 0
        self.twin: Twin | None = None
        self._scope: list[int] = []

    def attach(self, twin: Twin) -> None:
        self.twin = twin

    def _score(self, alloc: dict[str, int], t0: float, t1: float) -> float:
        from goodput.sim.harness import Actuator, run, token_goodput

        self.evaluations += 1
        penalty = 1e-6 * sum(n * self.sc.gpus[r] for r, n in alloc.items())
        if self.twin is None or t0 <= 0.0:  # before the run: an empty fleet
            sub = self.trace.window(0.0, t1, rebase=True)
            if len(sub) == 0:
                return -penalty
            res = run(self.sc, sub, None, initial=alloc, drain_horizon_s=self.horizon_s)
            return token_goodput(res.outcomes, t1) - penalty
        f = self.twin.fork()
        act = Actuator(f, self.sc, 0.0)
        act.target = {r: f.count(r, (STARTING, SERVING)) for r in self.sc.roles}
        f.on_release = act.on_release
        act.apply(alloc, {}, t0)
        f.run_until(t1)
        f.stop_arrivals()
        f.run_until(t1 + self.horizon_s)
        cfg = self.sc.twin
        good = 0.0
        arr, first, fin, out = f.arrival, f.first_token, f.finish, f.n_out
        for i in self._scope:
            ft = first[i]
            if ft != ft or ft - arr[i] > cfg.ttft_slo_s:  # NaN or too slow
                continue
            if out[i] > 1:
                e = fin[i]
                if e != e or (e - ft) / (out[i] - 1) > cfg.itl_slo_s:
                    continue
            good += out[i] * cfg.pools[f.replicas[f.served_by[i]].role].quality
        return good / (t1 - t0) - penalty

    def _set_scope(self, t0: float, t1: float) -> None:
        """Requests the decision can affect: unfinished at t0, or arriving before t1."""
        tw = self.twin
        if tw is None:
            self._scope = []
            return
        lo = tw._next_arrival
        hi = int(np.searchsorted(self.trace.arrival_s, t1, side="left"))
        fin = np.asarray(tw.finish[:lo])
        pending = np.flatnonzero(np.isnan(fin)).tolist()
        self._scope = pending + list(range(lo, max(lo, hi)))

    def best(self, t0: float, t1: float, current: dict[str, int] | None = None) -> dict[str, int]:
        """The best candidate; the current allocation wins ties (within 0.5%), since a
        change costs a drain and an idle interval says nothing about the next one."""
        cands = self.candidates
        scores: dict[int, float] = {}
        if len(cands) <= 9:
            scores = {i: self._score(a, t0, t1) for i, a in enumerate(cands)}
        else:
            step = max(1, len(cands) // 6)
            coarse = list(range(0, len(cands), step))
            if coarse[-1] != len(cands) - 1:
                coarse.append(len(cands) - 1)
            scores = {i: self._score(cands[i], t0, t1) for i in coarse}
            i0 = max(scores, key=lambda i: scores[i])
            for i in range(max(0, i0 - step + 1), min(len(cands), i0 + step)):
                if i not in scores:
                    scores[i] = self._score(cands[i], t0, t1)
        i_best = max(scores, key=lambda i: scores[i])
        if current is not None and current in cands:
            i_cur = cands.index(current)
            if i_cur not in scores:
                scores[i_cur] = self._score(current, t0, t1)
            if scores[i_cur] >= scores[i_best] - 0.005 * abs(scores[i_best]):
                return current
        return cands[i_best]

    def initial_allocation(self) -> dict[str, int]:
        return self.best(0.0, self.sc.interval_s)

    def decide(self, observation: Observation, current: Allocation, now: float) -> Plan:
        self._set_scope(now, now + self.sc.interval_s)
        alloc = self.best(now, now + self.sc.interval_s, dict(current.pools))
        return make_plan(self.sc, alloc, current, "oracle: best for the next interval")


# ---------------------------------------------------------------------------- goodput


class WithBehavior:
    """A controller's plans passed through the actuator's HPA-style behavior
    (stabilization windows and step limits from the policy), as the operator applies
    them between the planner and the /scale writes."""

    def __init__(self, inner: Autoscaler, sc: Scenario) -> None:
        self.inner = inner
        self.name = inner.name
        self.sc = sc
        self.history: list[Any] = []
        self.last_up: float | None = None
        self.last_down: float | None = None

    def decide(self, observation: Observation, current: Allocation, now: float) -> Plan:
        from goodput.actuator.behavior import (
            PastRecommendation,
            apply_behavior,
            target_replicas,
            tier_key,
        )

        plan = self.inner.decide(observation, current, now)
        desired = target_replicas({r: d.replicas for r, d in plan.pools.items()}, plan.tiers)
        cur = target_replicas(current.pools, current.tiers)
        if not self.history:
            # The run starts mid-life, not at a cold start: the fleet has been at its
            # initial allocation (every controller gets this same assumption).
            self.history.append(PastRecommendation(0.0, dict(cur)))
        b = self.sc.spec.behavior
        lim = apply_behavior(
            desired, cur, self.history, b.scale_up, b.scale_down, now, self.last_up, self.last_down
        )
        self.history.append(PastRecommendation(now, desired))
        horizon = max(
            b.scale_up.stabilization_window_seconds, b.scale_down.stabilization_window_seconds
        )
        self.history = [h for h in self.history if now - h.time <= horizon]
        out = lim.replicas
        if any(out[k] > cur.get(k, out[k]) for k in out):
            self.last_up = now
        if any(out[k] < cur.get(k, out[k]) for k in out):
            self.last_down = now
        pools = {r: d.model_copy(update={"replicas": out[r]}) for r, d in plan.pools.items()}
        tiers = {k: out[tier_key(k)] for k in plan.tiers}
        total = sum(d.replicas * d.gpus_per_replica for d in pools.values())
        return plan.model_copy(update={"pools": pools, "tiers": tiers, "total_gpus": total})


def goodput_planner(sc: Scenario, behavior: bool = True) -> Autoscaler:
    """This project's planner, exactly as the operator runs it: the planner's plan,
    then the actuator's behavior limits."""
    from goodput.planner import GoodputPlanner

    planner: Autoscaler = GoodputPlanner(sc.spec)
    return WithBehavior(planner, sc) if behavior else planner


def planner_available() -> bool:
    try:
        import goodput.planner as gp

        return hasattr(gp, "GoodputPlanner")
    except ImportError:
        return False
