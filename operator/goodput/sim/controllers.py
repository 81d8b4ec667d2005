"""The controllers the benchmark compares, all behind the Autoscaler protocol.

DESIGN section 3: every controller starts from the same even split, and a baseline is
configured the way its authors document it, with the source cited next to its code.
Every controller observes the same Observation (goodput.sim.observe: what the metrics
layer reads from Prometheus scraping the twin's vLLM exporter, over `metrics.window`)
and every baseline's replicas are written through the same simulated ScaleClient in the
budget-safe order (goodput.sim.harness.PlanLoop): a grow that does not fit beside the
GPUs still held waits for a later tick, as the operator's does (WaitingForScaleDown).

- `goodput`: the operator itself: its own tick (goodput.operator.reconcile.Reconciler:
  planner, behavior limits, budget-safe writes, status), driven by the harness's
  `OperatorLoop` against the simulated cluster (`goodput-raw`: the planner's plans
  applied like a baseline's, without the behavior limits, a diagnostic).
- `static-best`: the best fixed split for the whole trace (hindsight: each split held
  from t=0), run from the even split and requested at the first tick.
- `clairvoyant`: the split that scores best when requested at the first tick from the
  even split through the same actuator and start-up delay: the ceiling for any online
  controller that holds one split.
- `hpa`: the Kubernetes HPA algorithm with targets derived from the SLO and the
  profile (waiting requests and busy fraction for prefill; running requests at the
  batch whose step time meets the ITL for decode), HPA default behavior; pods beyond
  the budget wait (`hpa-shared`: the same HPAs with their sum shared within the
  budget, a coordination plain HPAs lack).
- `dynamo`: NVIDIA Dynamo's planner as Dynamo runs it: 180 s throughput rule as a lower
  bound, ARIMA load predictor, the queue-aware load-based layer, the not-ready guard
  and the direction-preserving GPU budget guard.
- `llmd-slo`: llm-d's SLO-aware KEDA rule on P90 TTFT / TPOT over their SLOs.
- `oracle`: per interval, the best allocation for that interval's true arrivals,
  evaluated with the twin itself, applied with no start-up delay.
- Kept for comparison, labelled so: `hpa-naive` (the former `reactive`: HPA on 70% of
  busy fraction / KV usage / max_num_seqs, not SLO-aware) and `sla-planner` (Dynamo's
  2025 throughput rule with correction factors at a 15 s interval, no not-ready guard).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from goodput.observation import LatencySummary, Observation
from goodput.plan import Allocation, Plan, PoolDecision
from goodput.ports import Autoscaler
from goodput.profiles import PerformanceProfile
from goodput.reasons import Reason
from goodput.sim.engine import AGGREGATED, DECODE, PREFILL, Twin
from goodput.sim.scenario import Scenario
from goodput.sim.traces import Trace

if TYPE_CHECKING:
    from goodput.sim.harness import OperatorLoop, RunResult

# What `goodput simulate` runs by default: the operator, the online ceiling, the baselines
# as their authors run them and the one-interval-lookahead oracle.
SIMULATE_DEFAULT = ("goodput", "clairvoyant", "hpa", "dynamo", "llmd-slo", "oracle")
# Diagnostic extra: the planner's plans applied without the actuator's behavior limits.
EXTRA_CONTROLLERS = ("goodput-raw",)
# What `goodput bench` runs side by side (run_benchmark below), in report order.
BENCH_CONTROLLERS = (
    "goodput",
    "clairvoyant",
    "static-best",
    "hpa",
    "hpa-shared",
    "dynamo",
    "llmd-slo",
    "hpa-naive",
    "sla-planner",
    "oracle",
)
# Every name `goodput simulate` and `goodput bench` know.
CONTROLLERS = BENCH_CONTROLLERS
# Baselines as their authors run them (the ones the targets are checked against).
BASELINES = ("static-best", "hpa", "hpa-shared", "dynamo", "llmd-slo")
# Kept only to show what the old configurations cost; not how their authors run them.
NAIVE = ("hpa-naive", "sla-planner")
LABELS = {
    "goodput": "the operator's own tick (Reconciler) on the simulated cluster",
    "goodput-raw": "the bare planner, applied like a baseline (diagnostic)",
    "clairvoyant": "hindsight-best split requested at the first tick (online ceiling)",
    "static-best": "best split held from t=0 (hindsight), requested at the first tick",
    "hpa": "Kubernetes HPA, SLO-derived targets, default behavior, pods wait for GPUs",
    "hpa-shared": "the same HPAs with their sum shared within the budget (favours HPA)",
    "dynamo": "NVIDIA Dynamo planner as shipped (180 s, ARIMA, load layer, guards)",
    "llmd-slo": "llm-d SLO-aware KEDA rule (P90/SLO, band 0.40-0.55, warm-up credit)",
    "hpa-naive": "NAIVE: HPA at 70% of busy/KV/max_num_seqs (not SLO-aware)",
    "sla-planner": "NAIVE: Dynamo's 2025 rule at 15 s, no not-ready guard",
    "oracle": "one-interval lookahead with the twin, no start-up delay",
}


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
    """Holds one allocation: what `static-best` runs once hindsight has picked it. It
    reads no observation (the harness skips the in-process scrapes for it)."""

    observes = False

    def __init__(self, sc: Scenario, pools: dict[str, int], name: str = "static-best") -> None:
        self.name = name
        self.sc = sc
        self.pools = dict(pools)

    def decide(self, observation: Observation, current: Allocation, now: float) -> Plan:
        return make_plan(self.sc, self.pools, current, "fixed allocation")


# ---------------------------------------------------------------------------- reactive


class ReactiveHPA:
    """`hpa-naive` (formerly `reactive`), kept to show what a capacity target costs; a
    platform team deriving its targets from the SLO runs `KubernetesHPA` (`hpa`).

    Kubernetes HPA per pool (autoscaling/v2 algorithm and default behavior):
    desired = ceil(current * metric / target), 10% tolerance; scale-up at most
    max(100%, 4 pods) per 15 s; scale-down takes the highest recommendation of the
    last 300 s. Metrics: prefill busy fraction (target 70%); decode KV-cache usage
    (vLLM's gpu_cache_usage, target 70%) or running/max_batch, whichever is higher;
    aggregated the max of both. The sum is then capped at the budget. Not SLO-aware:
    70% of max_num_seqs 256 is ~179 running requests per pod, where the 70B profile's
    step time is ~88 ms against a 60 ms ITL SLO."""

    name = "reactive"

    def __init__(
        self, sc: Scenario, target: float = 0.7, tolerance: float = 0.1, name: str = "reactive"
    ) -> None:
        self.name = name
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
    """`sla-planner`: kept to show what running Dynamo's rule the wrong way costs; Dynamo
    as Dynamo runs it is `DynamoPlanner` (`dynamo`). This one decides every 15 s (Dynamo's
    default is 180 s and its docs warn against short intervals), has no "deployment not
    ready, ignoring this scaling" guard (starting replicas get cancelled) and no
    load-based layer.

    NVIDIA Dynamo SLA planner, throughput-based mode (planner-design doc, 'Step 4:
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


# ---------------------------------------------------------------------------- Kubernetes HPA
#
# The HPA algorithm as kubernetes/kubernetes implements it (read, not copied):
# - pkg/controller/podautoscaler/replica_calculator.go, calcPlainMetricReplicas (Pods
#   metrics, AverageValue targets): usage ratio = sum over ready pods / (target x ready
#   pods); inside the tolerance (default 0.1, --horizontal-pod-autoscaler-tolerance) no
#   change; pods without a metric (starting: a vLLM pod exposes no metrics before its
#   server is up; pending) count as 0 on a scale-up and as the target on a scale-down,
#   and a re-computed ratio that flips the direction or falls inside the tolerance keeps
#   the current count; desired = ceil(ratio x pods considered).
# - pkg/controller/podautoscaler/horizontal.go: computeReplicasForMetrics takes the
#   largest proposal over all metrics; stabilizeRecommendationWithBehaviors (scale-up
#   recommendation = min over the up window, scale-down = max over the down window);
#   convertDesiredReplicasWithBehaviorRate with calculateScaleUpLimitWithScalingRules /
#   calculateScaleDownLimitWithBehaviors (period start = current - added + deleted in
#   the period; Pods: start +/- value; Percent: ceil(start x (1 + v/100)) up,
#   floor(start x (1 - v/100)) down; selectPolicy Max = the largest change).
# - pkg/apis/autoscaling/v2/defaults.go: scale-up no stabilization, policies 100% and
#   4 pods per 15 s, select Max; scale-down 300 s stabilization, 100% per 15 s.
#   Sync period 15 s (--horizontal-pod-autoscaler-sync-period): the twin's tick.


class ScalingPolicy:
    """One HPAScalingPolicy: at most `value` pods or percent per `period_s`."""

    def __init__(self, kind: str, value: int, period_s: float) -> None:
        if kind not in ("Pods", "Percent"):
            raise ValueError(f"unknown HPAScalingPolicy type {kind!r}")
        self.kind = kind
        self.value = value
        self.period_s = period_s


class ScalingRules:
    """One HPAScalingRules: stabilization window, policies, select policy."""

    def __init__(
        self, window_s: float, policies: tuple[ScalingPolicy, ...], select: str = "Max"
    ) -> None:
        self.window_s = window_s
        self.policies = policies
        self.select = select


HPA_SCALE_UP = ScalingRules(0.0, (ScalingPolicy("Percent", 100, 15), ScalingPolicy("Pods", 4, 15)))
HPA_SCALE_DOWN = ScalingRules(300.0, (ScalingPolicy("Percent", 100, 15),))
HPA_TOLERANCE = 0.1


def _ceil(x: float) -> int:
    """ceil that forgives float noise (92.00000000001 -> 92)."""
    return math.ceil(x - 1e-9)


def hpa_metric_replicas(
    current: int, ready: int, total: float, target: float, tolerance: float = HPA_TOLERANCE
) -> int:
    """calcPlainMetricReplicas for a Pods metric with an AverageValue target: `total`
    is the metric summed over the `ready` pods; the other `current - ready` pods
    (starting or pending) have no metric yet."""
    if ready <= 0 or target <= 0:
        return current  # "did not receive metrics for any ready pods": HPA keeps the count
    missing = max(0, current - ready)
    ratio = total / (target * ready)
    if missing == 0:
        if abs(1.0 - ratio) <= tolerance:
            return current
        return _ceil(ratio * ready)
    filled = total + (target * missing if ratio < 1.0 else 0.0)
    new_ratio = filled / (target * (ready + missing))
    if (
        abs(1.0 - new_ratio) <= tolerance
        or (ratio < 1.0 and new_ratio > 1.0)
        or (ratio > 1.0 and new_ratio < 1.0)
    ):
        return current
    return _ceil(new_ratio * (ready + missing))


class HpaBehavior:
    """The HPA's `behavior` for one scale target: stabilization windows and rate limits
    (horizontal.go normalizeDesiredReplicasWithBehaviors), then [min, max]."""

    def __init__(
        self,
        up: ScalingRules,
        down: ScalingRules,
        min_replicas: int,
        max_replicas: int,
    ) -> None:
        self.up = up
        self.down = down
        self.min_replicas = min_replicas
        self.max_replicas = max_replicas
        self.recommendations: list[tuple[float, int]] = []
        self.up_events: list[tuple[float, int]] = []
        self.down_events: list[tuple[float, int]] = []

    @staticmethod
    def _changed(events: list[tuple[float, int]], period_s: float, now: float) -> int:
        return sum(n for t, n in events if t > now - period_s)

    def _limit(self, rules: ScalingRules, current: int, now: float, up: bool) -> int:
        best: int | None = None
        for pol in rules.policies:
            start = (
                current
                - self._changed(self.up_events, pol.period_s, now)
                + self._changed(self.down_events, pol.period_s, now)
            )
            if up:
                if pol.kind == "Pods":
                    prop = start + pol.value
                else:
                    prop = _ceil(start * (1 + pol.value / 100))
                more = rules.select != "Min"
                best = prop if best is None else (max(best, prop) if more else min(best, prop))
            else:
                if pol.kind == "Pods":
                    prop = start - pol.value
                else:
                    prop = math.floor(start * (1 - pol.value / 100) + 1e-9)
                more = rules.select != "Min"
                best = prop if best is None else (min(best, prop) if more else max(best, prop))
        return current if best is None else best

    def normalize(self, desired: int, current: int, now: float) -> int:
        if not self.recommendations:
            # The run starts mid-life (DESIGN section 3): the start allocation was the
            # recommendation at t=0, so the scale-down window first holds it.
            self.recommendations.append((0.0, current))
        up_rec = down_rec = desired
        for t, r in self.recommendations:
            if t > now - self.up.window_s:
                up_rec = min(up_rec, r)
            if t > now - self.down.window_s:
                down_rec = max(down_rec, r)
        self.recommendations.append((now, desired))
        keep = max(self.up.window_s, self.down.window_s)
        self.recommendations = [(t, r) for t, r in self.recommendations if t > now - keep]
        out = current
        if out < up_rec:
            out = up_rec
        if out > down_rec:
            out = down_rec
        if out > current:
            out = min(out, self._limit(self.up, current, now, up=True))
        elif out < current:
            out = max(out, self._limit(self.down, current, now, up=False))
        out = max(self.min_replicas, min(self.max_replicas, out))
        if out > current:
            self.up_events.append((now, out - current))
        elif out < current:
            self.down_events.append((now, current - out))
        horizon = max([p.period_s for p in self.up.policies + self.down.policies] or [0.0])
        self.up_events = [e for e in self.up_events if e[0] > now - horizon]
        self.down_events = [e for e in self.down_events if e[0] > now - horizon]
        return out


def slo_decode_batch(prof: PerformanceProfile, itl_slo_s: float, isl: float, osl: float) -> int:
    """Running requests per decode pod at the batch whose step time meets the ITL SLO:
    the largest b <= max_num_seqs whose KV reservations (input + output tokens each, as
    the twin admits them) fit and whose step time at the mean decode context
    (isl + osl/2 tokens per sequence) is within the SLO; at least 1."""
    kv_cap = int(prof.kv_capacity_tokens // max(1.0, isl + osl))
    ctx = isl + osl / 2
    best = 1
    for b in range(1, max(1, min(prof.max_batch, kv_cap)) + 1):
        if prof.decode_step_seconds(b, b * ctx) <= itl_slo_s:
            best = b
    return best


def prefill_ttft_s(prof: PerformanceProfile, queued: float, length: float) -> float:
    """Time until the first token of a prompt of `length` uncached tokens behind
    `queued` prompts of the same length on one prefill replica, batched as the twin
    does (FIFO, whole prompts, at most max_prefill_tokens per batch, a longer prompt
    alone; a batch costs prefill_seconds(sum L, sum L^2)). This is the estimate of a
    perf model fitted exactly to the twin (Dynamo's prefill regression simulates the
    queue the same way, in batches of max_num_batched_tokens)."""
    length = max(1.0, length)
    per_batch = max(1.0, float(math.floor(prof.max_prefill_tokens / length)))
    left = max(0.0, queued) + 1.0
    t = 0.0
    while left > 1e-9:
        m = min(left, per_batch)
        t += prof.prefill_seconds(m * length, m * length * length)
        left -= m
    return t


def slo_prefill_queue(prof: PerformanceProfile, ttft_slo_s: float, isl: float) -> int:
    """Waiting requests per prefill pod a TTFT SLO tolerates: the largest queue q of
    mean-length prompts ahead of a new one that still lets it finish prefill within the
    SLO; at least 1 (a queue of one is always allowed to form)."""
    q = 0
    while q < 10_000 and prefill_ttft_s(prof, q + 1, isl) <= ttft_slo_s:
        q += 1
    return max(1, q)


class KubernetesHPA:
    """`hpa`: one Kubernetes HPA per pool (autoscaling/v2, algorithm and defaults above)
    with targets a platform team derives from the SLO and the performance profile the
    twin runs, the way GKE's LLM autoscaling guide recommends (scale on server metrics:
    queue size and batch size, with thresholds chosen for the latency target;
    https://cloud.google.com/kubernetes-engine/docs/best-practices/machine-learning/inference/autoscaling):

    - prefill, two Pods metrics (the HPA takes the larger proposal):
      vllm:num_requests_waiting per pod, AverageValue = the queue a request can wait
      behind and still meet the TTFT SLO (`slo_prefill_queue`), and the busy fraction
      per pod, AverageValue `busy_target` (assumption: no source gives a number for an
      LLM prefill pool; 0.8 keeps the tolerance edge, 0.88, below saturation);
    - decode: vllm:num_requests_running per pod, AverageValue = the largest batch whose
      step time at the mean context meets the ITL SLO (`slo_decode_batch`), plus
      vllm:num_requests_waiting per pod, AverageValue 1 (assumption: running cannot
      exceed the KV-feasible batch, so when KV binds a queue is the only signal left);
    - aggregated: all of them.

    `lengths` are the team's traffic statistics (mean input, output tokens); for a
    replayed trace its own means, the only hindsight this baseline gets.

    HPAs know no GPU budget. `budget="pending"` (`hpa`) is plain Kubernetes: pods
    beyond the budget wait until GPUs free up (as Pending pods would: the harness writes
    every controller's replicas in the budget-safe order, so a grow waits for a tick at
    which it fits beside the GPUs still held), so one pool's scale-down can be taken by
    the other's waiting pods and not come back. `budget="share"` (`hpa-shared`, as the
    former `reactive` had it) caps the two pools' sum at the budget with the
    proportional share of `fit_budget`: a coordination plain HPAs do not have, reported
    as a sensitivity. Starting and waiting pods have no metrics and count as described
    above; the HPA reads back the spec it wrote."""

    def __init__(
        self,
        sc: Scenario,
        lengths: tuple[float, float],
        busy_target: float = 0.8,
        name: str = "hpa",
        budget: str = "pending",
    ) -> None:
        if budget not in ("share", "pending"):
            raise ValueError(f"budget must be 'share' or 'pending', not {budget!r}")
        self.name = name
        self.sc = sc
        self.budget = budget
        self.busy_target = busy_target
        isl, osl = lengths
        cfg = sc.twin
        self.targets: dict[str, dict[str, float]] = {}
        for role in sc.roles:
            prof = sc.profiles[role]
            t: dict[str, float] = {}
            if role in (PREFILL, AGGREGATED):
                t["waiting"] = float(slo_prefill_queue(prof, cfg.ttft_slo_s, isl))
                t["busy"] = busy_target
            if role in (DECODE, AGGREGATED):
                t["running"] = float(slo_decode_batch(prof, cfg.itl_slo_s, isl, osl))
                t.setdefault("waiting", 1.0)
            self.targets[role] = t
        self.behavior = {
            r: HpaBehavior(HPA_SCALE_UP, HPA_SCALE_DOWN, sc.min_replicas[r], sc.max_replicas[r])
            for r in sc.roles
        }
        self.spec: dict[str, int] = {}

    @staticmethod
    def _busy(obs: Observation) -> float | None:
        for note in obs.notes:
            if note.startswith("prefill_busy_fraction="):
                return float(note.split("=", 1)[1])
        return None

    def desired(self, role: str, obs: Observation, spec: int) -> int:
        """computeReplicasForMetrics: the largest proposal over this pool's metrics."""
        pool = obs.pools.get(role)
        if pool is None:
            return spec
        ready = pool.ready_replicas if pool.ready_replicas is not None else spec
        totals: dict[str, float | None] = {
            "waiting": pool.waiting_requests,
            "running": pool.running_requests,
            "busy": self._busy(obs),
        }
        proposals = []
        for metric, target in self.targets[role].items():
            total = totals[metric]
            if total is not None:
                proposals.append(hpa_metric_replicas(spec, ready, total, target))
        return max(proposals) if proposals else spec

    def decide(self, observation: Observation, current: Allocation, now: float) -> Plan:
        out: dict[str, int] = {}
        for role in self.sc.roles:
            spec = self.spec.get(role, current.pools.get(role, 0))
            want = self.desired(role, observation, spec)
            out[role] = self.behavior[role].normalize(want, spec, now)
        if self.budget == "share":
            out = fit_budget(self.sc, out)
        self.spec = dict(out)
        return make_plan(self.sc, out, current, "HPA (SLO-derived targets)")


# ---------------------------------------------------------------------------- Dynamo
#
# NVIDIA Dynamo's planner as Dynamo ships it (github.com/ai-dynamo/dynamo, read, not
# copied; components/src/dynamo/planner/):
# - defaults (config/defaults.py, BasePlannerDefaults / SLAPlannerDefaults;
#   config/planner_config.py): throughput_adjustment_interval 180 s,
#   load_adjustment_interval 5 s, load_predictor "arima", min_endpoint 1,
#   max_gpu_budget (here: the policy's budget), min_gpu_budget -1 (off),
#   max_throughput_scaling_replicas 8, load_scaling_down_sensitivity 80,
#   enable_throughput_scaling True, enable_load_scaling False by default.
#   docs/components/planner/planner-guide.md: "Enable load-based scaling when traffic
#   is bursty ... Enable both for the best of both worlds: throughput-based provides a
#   capacity floor, load-based handles bursts above it. When both are enabled, use a
#   longer throughput_adjustment_interval." The bench traces are bursty and profiles
#   are available, so both are on, with optimization_target "sla" (SLA targets).
# - throughput rule (core/throughput_scaling.py _compute_prefill_replicas /
#   _compute_decode_replicas, core/perf_model/prefill.py / decode.py): demand = predicted
#   requests / 180 s; prefill engine rate = 1 / wall time of one prompt of
#   isl x (1 - kv hit rate) (chunked at max_num_batched_tokens), replicas =
#   max(ceil(demand / rate), ceil(TTFT / SLA) if the SLA is unreachable, min_endpoint);
#   decode: the largest batch (<= min(max_kv / context, max_num_seqs)) whose step time
#   at context isl + osl/2 meets the ITL SLA, rate = batch / (osl x step), replicas =
#   max(ceil(demand / rate), min_endpoint). With load scaling on it only sets the lower
#   bounds (fitted under the GPU ceiling: core/state.py _fit_disagg_throughput_ceiling).
# - load-based layer (core/load_scaling.py _prefill_load_decision /
#   _decode_load_decision / _scale_decision / _advance_load_disagg): per worker, the
#   estimated next TTFT from queued prefill tokens (+ an average prompt, chunked) and
#   the estimated next ITL at scheduled + queued decode KV; +1 worker when the estimate
#   exceeds the SLA on every worker; -1 only when the consolidation check passes
#   (queue x N/(N-1): queue-induced TTFT < (SLA - own TTFT) x sensitivity; decode KV x
#   N/(N-1) below max KV and its ITL < SLA x sensitivity); final = max(load decision,
#   throughput lower bound, min_endpoint), then the budget guard.
# - not-ready guard (connectors kubernetes connector set_component_replicas:
#   "Deployment ... is not ready, ignoring this scaling"; core/state.py
#   _scaling_in_progress): no scaling while any replica is still starting.
# - budget (core/budget.py guard_disagg_scaling_budget, fit_directional_budget_pair,
#   proportional_clamp_pair): direction-preserving; at the GPU ceiling a scale-up is
#   admitted only as an opposing rebalance (one pool up, the other down, fitted
#   together), otherwise held.
# The performance model is the profile the twin runs (Dynamo fits its regression to
# pre-deployment sweeps and live forward-pass metrics; here it is exact, an advantage).
# Cadence: the harness calls every 15 s, so the 5 s load loop runs every 15 s
# (assumption: 3x slower than Dynamo's default; each load decision is one replica).


def _kpss_level(y: list[float]) -> float:
    """KPSS statistic for level stationarity with the short Newey-West lag
    (int(4 (n/100)^(1/4)), pmdarima's KPSSTest(lshort=True))."""
    n = len(y)
    e = np.asarray(y, dtype=float) - float(np.mean(y))
    s = np.cumsum(e)
    lags = max(0, min(n - 1, int(4 * (n / 100) ** 0.25)))
    s2 = float(np.dot(e, e)) / n
    for k in range(1, lags + 1):
        s2 += 2 * (1 - k / (lags + 1)) * float(np.dot(e[k:], e[:-k])) / n
    if s2 <= 0:
        return 0.0
    return float(np.dot(s, s)) / (n * n * s2)


def _ar_fit(z: list[float], p: int) -> tuple[float, float]:
    """Conditional-least-squares AR(p) with intercept: (AIC, one-step forecast)."""
    n = len(z)
    rows = n - p
    x = np.ones((rows, p + 1))
    for i in range(p):
        x[:, i + 1] = z[p - 1 - i : n - 1 - i]
    yv = np.asarray(z[p:], dtype=float)
    coef, *_ = np.linalg.lstsq(x, yv, rcond=None)
    resid = yv - x @ coef
    sigma2 = max(float(np.dot(resid, resid)) / rows, 1e-12)
    aic = rows * math.log(sigma2) + 2 * (p + 2)
    last = [1.0] + [z[n - 1 - i] for i in range(p)]
    return aic, float(np.dot(coef, last))


def auto_ar_forecast(y: list[float]) -> tuple[int, int, float]:
    """A small stand-in for pmdarima.auto_arima (which Dynamo's ARIMA predictor calls;
    not a dependency here): d by KPSS at 5% (critical value 0.463, up to d = 2), then
    AR(p), p <= 2, by AIC with an intercept (auto_arima's default for d <= 1). MA terms
    are left out and the fit is conditional least squares rather than exact maximum
    likelihood. Returns (p, d, forecast)."""
    z = list(y)
    d = 0
    while d < 2 and len(z) > 3 and _kpss_level(z) > 0.463:
        z = list(np.diff(z))
        d += 1
    best: tuple[float, int, float] | None = None
    for p in range(0, 3):
        if len(z) - p < p + 3:
            break
        aic, fc = _ar_fit(z, p)
        if best is None or aic < best[0]:
            best = (aic, p, fc)
    if best is None:
        return 0, d, float(y[-1])
    _, p, fc = best
    if d == 0:
        return p, d, fc
    if d == 1:
        return p, d, float(y[-1]) + fc
    return p, d, 2 * float(y[-1]) - float(y[-2]) + fc


class ArimaPredictor:
    """Dynamo's default load predictor (core/load/predictors.py ARIMAPredictor): skips
    the leading idle zeros, returns the last value until 5 points, the value itself
    when the series is constant, otherwise an auto-ARIMA forecast; when the selected
    model collapses to (0, d, 0) in raw space it refits on log1p(y) (its fallback for
    spiky series). Forecasts are clipped at 0."""

    min_points = 5

    def __init__(self) -> None:
        self.raw: list[float] = []
        self._seen_nonzero = False

    def add(self, value: float) -> None:
        v = value if math.isfinite(value) else 0.0
        if v == 0 and not self._seen_nonzero:
            return
        if v != 0:
            self._seen_nonzero = True
        self.raw.append(max(0.0, v))

    def last(self) -> float:
        return self.raw[-1] if self.raw else 0.0

    def predict(self) -> float:
        if len(self.raw) < self.min_points:
            return self.last()
        if len(set(self.raw)) == 1:
            return self.raw[0]
        p, _, fc = auto_ar_forecast(self.raw)
        if p == 0:
            _, _, lfc = auto_ar_forecast([math.log1p(v) for v in self.raw])
            return max(0.0, math.expm1(lfc))
        return max(0.0, fc)


def _within(cur: int, prop: int, val: int) -> bool:
    return min(cur, prop) <= val <= max(cur, prop)


def fit_directional_pair(
    cur: tuple[int, int], prop: tuple[int, int], gpus: tuple[int, int], max_gpus: int, mins: int
) -> tuple[int, int]:
    """Dynamo's fit_directional_budget_pair (core/budget.py) with the floor off: every
    component between its current and proposed count; an opposing rebalance moves both
    legs or neither; the closest fit to the proposal (then the least skewed, then the
    most progress) under the ceiling; nothing fits -> current."""
    (cp, cd), (pp, pd), (gp, gd) = cur, prop, gpus
    if pp >= mins and pd >= mins and pp * gp + pd * gd <= max_gpus:
        return pp, pd
    opposing = (pp < cp and pd > cd) or (pp > cp and pd < cd)
    req_p, req_d = abs(pp - cp), abs(pd - cd)
    best: tuple[tuple[int, int, int, int, int], tuple[int, int]] | None = None
    for p in range(max(min(cp, pp), mins), max(cp, pp) + 1):
        for d in range(max(min(cd, pd), mins), max(cd, pd) + 1):
            if p * gp + d * gd > max_gpus:
                continue
            if opposing and (p == cp) != (d == cd):
                continue
            prog_p, prog_d = abs(p - cp), abs(d - cd)
            score = (
                abs(pp - p) + abs(pd - d),
                abs(prog_p * req_d - prog_d * req_p),
                -(prog_p + prog_d),
                p,
                d,
            )
            if best is None or score < best[0]:
                best = (score, (p, d))
    return cur if best is None else best[1]


def guard_disagg_budget(
    cur: tuple[int, int], prop: tuple[int, int], gpus: tuple[int, int], max_gpus: int, mins: int
) -> tuple[tuple[int, int], str | None]:
    """Dynamo's guard_disagg_scaling_budget (core/budget.py) with min_gpu_budget -1:
    at the ceiling a scale-up is admitted only as an opposing rebalance fitted as a
    pair; otherwise the proportional ceiling clamp, kept only if it neither reverses
    nor amplifies the requested movement (else hold)."""
    (cp, cd), (pp, pd), (gp, gd) = cur, prop, gpus
    total_cur = cp * gp + cd * gd
    any_up = pp > cp or pd > cd
    opposing = (pp < cp and pd > cd) or (pp > cp and pd < cd)
    if total_cur >= max_gpus and any_up:
        if not opposing:
            return cur, "gpu_budget_guard_hold"
        fit = fit_directional_pair(cur, prop, gpus, max_gpus, mins)
        return (fit, None) if fit != cur else (cur, "gpu_budget_guard_hold")
    p, d = pp, pd
    total = pp * gp + pd * gd
    if total > max_gpus:  # proportional_clamp_pair, ceiling path
        scale = max_gpus / total
        max_p = (max_gpus - mins * gd) // gp
        p = max(mins, min(max_p, math.floor(pp * scale)))
        d = max(mins, (max_gpus - p * gp) // gd)
    if not (_within(cp, pp, p) and _within(cd, pd, d)) or p * gp + d * gd > max_gpus:
        return cur, "gpu_budget_guard_hold"
    return (p, d), None


class DynamoPlanner:
    """`dynamo`: NVIDIA Dynamo's planner as Dynamo runs it (sources in the comment
    above): the throughput rule every 180 s with the ARIMA predictor as a lower bound,
    the queue-aware load-based layer every tick, the not-ready guard and the
    direction-preserving GPU budget guard. Disaggregated pools only."""

    def __init__(
        self,
        sc: Scenario,
        throughput_interval_s: float = 180.0,
        sensitivity: float = 0.8,
        max_throughput_step: int = 8,
        min_endpoint: int = 1,
        name: str = "dynamo",
    ) -> None:
        if PREFILL not in sc.gpus or DECODE not in sc.gpus:
            raise ValueError("the Dynamo baseline models its disagg mode only")
        self.name = name
        self.sc = sc
        self.interval = throughput_interval_s
        self.sensitivity = sensitivity
        self.max_step = max_throughput_step
        self.min_endpoint = min_endpoint
        self.next_throughput = throughput_interval_s
        self.lower = {PREFILL: 1, DECODE: 1}
        self.predictors = {k: ArimaPredictor() for k in ("num_req", "isl", "osl")}
        self._win = [0.0, 0.0, 0.0, 0.0, 0.0]  # requests, sum isl, sum osl, prompt, cached
        self.last_hit = 0.0
        self._recent: deque[tuple[float, float, float]] = deque(maxlen=21)
        self.isl = 0.0
        self.osl = 0.0
        self.reason = ""

    # -- perf model (the profile the twin runs)
    def prefill_engine_rps(self, isl_eff: float) -> tuple[float, float]:
        """(requests/s of one prefill engine, wall time of one prompt)."""
        prof = self.sc.profiles[PREFILL]
        wt = prefill_ttft_s(prof, 0.0, max(1.0, isl_eff))
        return 1.0 / wt, wt

    def decode_engine_rps(self, isl: float, osl: float) -> float:
        prof = self.sc.profiles[DECODE]
        ctx = isl + osl / 2
        itl = self.sc.twin.itl_slo_s
        cap = max(1, min(int(prof.kv_capacity_tokens / max(ctx, 1.0)), prof.max_batch))
        best_b, best_wt = 1, prof.decode_step_seconds(1, ctx)
        if best_wt <= itl:
            lo, hi = 1, cap
            while lo <= hi:  # step time grows with the batch: binary search, as Dynamo
                mid = (lo + hi) // 2
                wt = prof.decode_step_seconds(mid, mid * ctx)
                if wt <= itl:
                    best_b, best_wt, lo = mid, wt, mid + 1
                else:
                    hi = mid - 1
        return best_b / (max(osl, 1.0) * best_wt)

    def throughput_replicas(self, num_req: float, isl: float, osl: float) -> dict[str, int]:
        demand = num_req / self.interval
        rate_p, wt = self.prefill_engine_rps(isl * (1.0 - self.last_hit))
        ttft = self.sc.twin.ttft_slo_s
        floor_p = math.ceil(wt / ttft) if wt > ttft else 1
        p = max(_ceil(demand / rate_p), floor_p, self.min_endpoint)
        d = max(_ceil(demand / self.decode_engine_rps(isl, osl)), self.min_endpoint)
        return {PREFILL: p, DECODE: d}

    # -- load-based layer
    def prefill_load(self, waiting: float, n: int) -> int | None:
        """+1 / -1 / None (no change) from the queue-aware TTFT estimate."""
        if n <= 0:
            return None
        prof = self.sc.profiles[PREFILL]
        sla = self.sc.twin.ttft_slo_s
        own = max(1.0, self.isl * (1.0 - self.last_hit))  # uncached tokens of a prompt
        queued = waiting / n  # prompts queued per worker (the twin's FIFO is shared)
        est = prefill_ttft_s(prof, queued, own)
        if est > sla:
            return n + 1
        if n > 1:
            t_own = prefill_ttft_s(prof, 0.0, own)
            budget = (sla - t_own) * self.sensitivity
            post = prefill_ttft_s(prof, queued * n / (n - 1), own) - t_own
            if budget > 0 and post < budget:
                return max(n - 1, self.min_endpoint)
        return None

    def decode_load(self, running: float, waiting: float, n: int) -> int | None:
        if n <= 0:
            return None
        prof = self.sc.profiles[DECODE]
        sla = self.sc.twin.itl_slo_s
        ctx = self.isl + self.osl / 2
        b = running / n
        sched_kv = b * ctx
        queued_kv = waiting * self.isl / n
        est = prof.decode_step_seconds(b + 1, sched_kv + queued_kv + ctx)
        if est > sla:
            return n + 1
        if n > 1:
            post_kv = (sched_kv + queued_kv) * n / (n - 1)
            if post_kv < prof.kv_capacity_tokens:
                # Dynamo's estimate keeps the batch feature at the current average + 1
                post = prof.decode_step_seconds(b + 1, post_kv + ctx)
                if post < sla * self.sensitivity:
                    return max(n - 1, self.min_endpoint)
        return None

    def _observe(self, obs: Observation) -> None:
        pool = obs.pools.get(PREFILL) or next(iter(obs.pools.values()))
        n = (pool.arrival_rate_rps or 0.0) * self.sc.interval_s
        if n > 0 and pool.mean_input_tokens is not None and pool.mean_output_tokens is not None:
            self._win[0] += n
            self._win[1] += n * pool.mean_input_tokens
            self._win[2] += n * pool.mean_output_tokens
            # Dynamo's load layer uses moving averages over its last 64 forward-pass
            # samples (5 s apart: ~320 s); here the last ~21 ticks of 15 s.
            self._recent.append((n, n * pool.mean_input_tokens, n * pool.mean_output_tokens))
            tot = sum(x[0] for x in self._recent)
            self.isl = sum(x[1] for x in self._recent) / tot
            self.osl = sum(x[2] for x in self._recent) / tot
            hit = pool.prefix_cache_hit_rate
            if hit is not None:
                self._win[3] += n * pool.mean_input_tokens
                self._win[4] += n * pool.mean_input_tokens * hit

    def _throughput_tick(self, ready: dict[str, int]) -> None:
        n, s_in, s_out, prompt, cached = self._win
        self._win = [0.0, 0.0, 0.0, 0.0, 0.0]
        self.predictors["num_req"].add(n)
        if n > 0:
            self.predictors["isl"].add(s_in / n)
            self.predictors["osl"].add(s_out / n)
        if prompt > 0:
            self.last_hit = min(1.0, max(0.0, cached / prompt))
        nr = self.predictors["num_req"].predict()
        isl, osl = self.predictors["isl"].predict(), self.predictors["osl"].predict()
        if isl <= 0 or osl <= 0:
            return
        want = self.throughput_replicas(nr, isl, osl)
        cur = (ready[PREFILL], ready[DECODE])
        prop = tuple(
            max(c - self.max_step, min(c + self.max_step, want[r]))
            for c, r in zip(cur, (PREFILL, DECODE), strict=True)
        )
        gpus = (self.sc.gpus[PREFILL], self.sc.gpus[DECODE])
        p, d = fit_directional_pair(cur, (prop[0], prop[1]), gpus, self.sc.budget, 1)
        self.lower = {PREFILL: p, DECODE: d}

    def decide(self, observation: Observation, current: Allocation, now: float) -> Plan:
        sc = self.sc
        self._observe(observation)
        ready = {
            r: (observation.pools[r].ready_replicas or 0)
            if r in observation.pools
            else current.pools.get(r, 0)
            for r in (PREFILL, DECODE)
        }
        out = dict(current.pools)
        if any(ready[r] < current.pools.get(r, 0) for r in ready):
            self.reason = "deployment is not ready, ignoring this scaling"
        else:
            pre, dec = observation.pools.get(PREFILL), observation.pools.get(DECODE)
            p_want = d_want = None
            if pre is not None and pre.waiting_requests is not None and self.isl > 0:
                p_want = self.prefill_load(pre.waiting_requests, ready[PREFILL])
            if dec is not None and dec.running_requests is not None and self.isl > 0:
                d_want = self.decode_load(
                    dec.running_requests, dec.waiting_requests or 0.0, ready[DECODE]
                )
            fp = max(ready[PREFILL] if p_want is None else p_want, self.lower[PREFILL], 1)
            fd = max(ready[DECODE] if d_want is None else d_want, self.lower[DECODE], 1)
            gpus = (sc.gpus[PREFILL], sc.gpus[DECODE])
            cur = (ready[PREFILL], ready[DECODE])
            (fp, fd), why = guard_disagg_budget(cur, (fp, fd), gpus, sc.budget, 1)
            self.reason = why or "load-based scaling"
            out = {PREFILL: fp, DECODE: fd}
        if now + 1e-9 >= self.next_throughput:
            self._throughput_tick(ready)
            self.next_throughput = now + self.interval
        return make_plan(sc, out, current, f"Dynamo planner: {self.reason}")


# ---------------------------------------------------------------------------- llm-d


LLMD_SCALE_UP = ScalingRules(
    30.0, (ScalingPolicy("Percent", 100, 60), ScalingPolicy("Pods", 4, 60))
)
LLMD_SCALE_DOWN = ScalingRules(180.0, (ScalingPolicy("Pods", 1, 120),))


def llmd_desired(s: float, n: int, r: int, up: float = 0.55, down: float = 0.40) -> int:
    """llm-d's control law (guides/workload-autoscaling/README.slo-aware.md, step 2):
    above theta_up, n + ceil(n (s c / theta_up - 1)) with the in-flight credit
    c = r/n when 0 < r < n (else 1); below theta_dn, n - floor(n (1 - s / theta_dn));
    in between, n. Assumption (the guide is silent): the credited scale-up branch never
    asks for fewer than n, since the guide states the credit only trims the ask to the
    deficit beyond warming pods and that shedding needs the uncredited signal."""
    if n <= 0:
        return n
    if s > up:
        c = r / n if 0 < r < n else 1.0
        return max(n, n + _ceil(n * (s * c / up - 1.0)))
    if s < down:
        return n - math.floor(n * (1.0 - s / down) + 1e-9)
    return n


class LlmdSloAutoscaler:
    """`llm-d-slo`: llm-d's SLO-aware KEDA autoscaling (github.com/llm-d/llm-d,
    guides/workload-autoscaling/README.slo-aware.md, read, not copied):

    - signal (recording rules, every 15 s): s_raw = P90 latency / SLO, no traffic -> 0;
      clamped at C = 2.0 per sample, averaged over 45 s (avg_over_time; 3 samples);
    - control law (`llmd_desired`): hysteresis band theta_dn 0.40 - theta_up 0.55,
      in-flight credit r/n on the scale-up branch only;
    - KEDA's HPA: composite metric with AverageValue target 1 (the formula's output is
      the desired count, so the HPA's 10% tolerance applies to it), bounds = the
      pools' [min, max]; behavior scale-up max(100%, 4 pods) per 60 s with a 30 s
      window, scale-down 1 pod per 120 s with a 180 s window.

    The guide covers one aggregated pool with s = max(P90 TTFT / S_ttft, P90 TPOT /
    S_tpot) and says that for disaggregated serving "TTFT would drive the prefill pool
    and TPOT the decode pool" (future work there): one ScaledObject per role, prefill on
    TTFT and decode on TPOT (= the twin's ITL); an aggregated pool uses the max.
    The P90s are histogram quantiles over the policy's metrics window (the
    observation every controller gets, 1 minute by default, as the guide's recording
    rules use), from measured, not predicted, latency (the guide's fallback when the
    EPP's predictor is off).
    Like any HPA it knows no GPU budget: pods beyond it stay Pending (`budget` as for
    `KubernetesHPA`; "share" takes GPUs from the pool that did not ask, which made it
    worse on three of the four bench cases, so the bench runs plain Kubernetes)."""

    def __init__(
        self, sc: Scenario, clamp: float = 2.0, window_s: float = 45.0, budget: str = "pending"
    ) -> None:
        if budget not in ("share", "pending"):
            raise ValueError(f"budget must be 'share' or 'pending', not {budget!r}")
        self.name = "llmd-slo"
        self.budget = budget
        self.sc = sc
        self.clamp = clamp
        self.window_s = window_s
        self.samples: dict[str, list[tuple[float, float]]] = {r: [] for r in sc.roles}
        self.behavior = {
            r: HpaBehavior(LLMD_SCALE_UP, LLMD_SCALE_DOWN, sc.min_replicas[r], sc.max_replicas[r])
            for r in sc.roles
        }
        self.spec: dict[str, int] = {}

    def raw_signal(self, role: str, obs: Observation) -> float:
        cfg = self.sc.twin
        pool = obs.pools.get(role) or next(iter(obs.pools.values()))

        def ratio(summary: LatencySummary | None, slo: float) -> float:
            if summary is None or summary.p90_s is None or not math.isfinite(summary.p90_s):
                return 0.0
            return summary.p90_s / slo

        ttft = ratio(pool.ttft, cfg.ttft_slo_s)
        tpot = ratio(pool.itl, cfg.itl_slo_s)
        if role == PREFILL:
            return ttft
        if role == DECODE:
            return tpot
        return max(ttft, tpot)

    def signal(self, role: str, obs: Observation, now: float) -> float:
        hist = self.samples[role]
        hist.append((now, min(self.raw_signal(role, obs), self.clamp)))
        hist[:] = [(t, v) for t, v in hist if t > now - self.window_s]
        return sum(v for _, v in hist) / len(hist)

    def decide(self, observation: Observation, current: Allocation, now: float) -> Plan:
        out: dict[str, int] = {}
        for role in self.sc.roles:
            n = self.spec.get(role, current.pools.get(role, 0))
            pool = observation.pools.get(role)
            r = pool.ready_replicas if pool is not None and pool.ready_replicas is not None else n
            s = self.signal(role, observation, now)
            d = llmd_desired(s, n, r)
            if n > 0 and abs(1.0 - d / n) <= HPA_TOLERANCE:
                d = n
            out[role] = self.behavior[role].normalize(d, n, now)
        if self.budget == "share":
            out = fit_budget(self.sc, out)
        self.spec = dict(out)
        return make_plan(self.sc, out, current, "llm-d SLO-aware rule")


# ---------------------------------------------------------------------------- oracle


Evaluator = Callable[[dict[str, int], float, float], float]


class Oracle:
    """Per control interval, the allocation the twin itself says gives the most goodput
    for that interval's true arrivals: each candidate split is applied to a fork of the
    live fleet (backlog, running batches and caches included; removed replicas still
    drain; new ones serve at once; written in the budget-safe order, a grow landing as
    soon as drained GPUs are free, as the run writes the oracle's splits), the interval
    is replayed, and then in-flight work gets `horizon_s` to finish. The score is the
    good tokens of the requests that were in flight at the decision or arrive during
    the interval. Candidates are the budget-spending splits (more than 9: a coarse
    grid, then the neighbours of its best); the current split wins ties. Run with no
    start-up delay. It starts from the even split like every controller (DESIGN
    section 3) and first moves at the first tick. An upper bound within the twin's
    physics for one-interval lookahead, not a proof of optimality (hindsight
    `clairvoyant` can beat it)."""

    name = "oracle"
    # Its privileges, stated: one interval of true arrivals, no start-up delay, and its
    # grows land as soon as the GPUs they need are free (SimCluster.pursue), not at the
    # next tick: a one-interval lookahead cannot see a rebalance that lands a tick later.
    grows_on_release = True

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
        from goodput.sim.cluster import SimCluster
        from goodput.sim.harness import run, token_goodput

        self.evaluations += 1
        penalty = 1e-6 * sum(n * self.sc.gpus[r] for r, n in alloc.items())
        if self.twin is None or t0 <= 0.0:  # before the run: an empty fleet
            sub = self.trace.window(0.0, t1, rebase=True)
            if len(sub) == 0:
                return -penalty
            res = run(self.sc, sub, None, initial=alloc, drain_horizon_s=self.horizon_s)
            return token_goodput(res.outcomes, t1) - penalty
        f = self.twin.fork()
        # The candidate is applied as the run applies the oracle's splits: budget-safe
        # writes, the grows landing as soon as drained GPUs are free.
        what_if = SimCluster(f, self.sc, 0.0)
        what_if.adopt()
        what_if.pursue(alloc)
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

    def decide(self, observation: Observation, current: Allocation, now: float) -> Plan:
        self._set_scope(now, now + self.sc.interval_s)
        alloc = self.best(now, now + self.sc.interval_s, dict(current.pools))
        return make_plan(self.sc, alloc, current, "oracle: best for the next interval")


# ---------------------------------------------------------------------------- goodput


def goodput_planner(sc: Scenario, behavior: bool = True) -> Autoscaler | OperatorLoop:
    """`goodput`: the operator's own tick (goodput.sim.harness.OperatorLoop: the
    Reconciler with the simulated cluster and the in-process metrics source). With
    ``behavior=False`` (`goodput-raw`, a diagnostic): the bare planner, its plans
    applied like a baseline's, without the behavior limits."""
    from goodput.planner import GoodputPlanner
    from goodput.sim.harness import OperatorLoop

    if behavior:
        return OperatorLoop(sc.spec)
    return GoodputPlanner(sc.spec)


def planner_available() -> bool:
    try:
        import goodput.planner as gp

        return hasattr(gp, "GoodputPlanner")
    except ImportError:
        return False


# ---------------------------------------------------------------------------- hindsight


class Hindsight:
    """The two hindsight bounds, from one set of runs.

    - `static_split`: the classic static-best choice, each budget-spending split held
      from t=0 with no transition (`held` has those goodputs);
    - every split is also run the way the protocol runs controllers: from the even
      split, requested at the first tick through the same actuator and start-up delay
      (`from_even`); `static-best` reports its split's run there, `clairvoyant` the best
      of them (ties: fewer GPUs), so clairvoyant >= static-best by construction."""

    def __init__(
        self,
        static_split: dict[str, int],
        held: list[tuple[dict[str, int], float]],
        from_even: list[tuple[dict[str, int], RunResult]],
        budget_gpus: Callable[[dict[str, int]], int],
    ) -> None:
        self.static_split = static_split
        self.held = held
        self.from_even = from_even
        best = max(from_even, key=lambda ar: (ar[1].goodput, -budget_gpus(ar[0])))
        self.clairvoyant_split = best[0]
        self.clairvoyant = _renamed(best[1], "clairvoyant")
        sb = next(r for a, r in from_even if a == static_split)
        self.static_best = _renamed(sb, "static-best")


def _renamed(res: RunResult, name: str) -> RunResult:
    import dataclasses

    return dataclasses.replace(res, controller=name)


def hindsight(
    sc: Scenario, trace: Trace, progress: Callable[[float], None] | None = None
) -> Hindsight:
    from goodput.sim.harness import run, static_best

    def half(lo: float) -> Callable[[float], None]:
        def f(x: float) -> None:
            if progress is not None:
                progress(lo + 0.5 * x)

        return f

    split, _, held = static_best(sc, trace, half(0.0))
    cands = splits(sc)
    from_even: list[tuple[dict[str, int], RunResult]] = []
    for k, alloc in enumerate(cands):
        res = run(sc, trace, FixedController(sc, alloc, "clairvoyant"), name="clairvoyant")
        from_even.append((alloc, res))
        half(0.5)((k + 1) / len(cands))
    return Hindsight(split, held, from_even, lambda a: sum(n * sc.gpus[r] for r, n in a.items()))


# ---------------------------------------------------------------------------- registry


def run_benchmark(
    sc: Scenario,
    trace: Trace,
    names: list[str],
    progress: Callable[[str, float], None] | None = None,
) -> tuple[dict[str, RunResult], Hindsight | None]:
    """Run the named controllers (BENCH_CONTROLLERS, EXTRA_CONTROLLERS) on one scenario
    and trace: same budget, SLO, delays, even start; static-best and clairvoyant share
    one hindsight search."""
    from goodput.sim.harness import run

    results: dict[str, RunResult] = {}
    hs: Hindsight | None = None
    mean_in = float(np.mean(trace.input_tokens)) if len(trace) else 0.0
    mean_out = float(np.mean(trace.output_tokens)) if len(trace) else 0.0
    for name in names:

        def prog(f: float, _n: str = name) -> None:
            if progress is not None:
                progress(_n, f)

        ctl: Autoscaler | OperatorLoop | None = None
        delay: float | None = None
        if name in ("static-best", "clairvoyant"):
            if hs is None:
                hs = hindsight(sc, trace, prog)
            results[name] = hs.static_best if name == "static-best" else hs.clairvoyant
            continue
        if name == "oracle":
            ctl, delay = Oracle(sc, trace), 0.0
        elif name == "hpa":
            ctl = KubernetesHPA(sc, (mean_in, mean_out))
        elif name == "hpa-shared":
            ctl = KubernetesHPA(sc, (mean_in, mean_out), name=name, budget="share")
        elif name == "dynamo":
            ctl = DynamoPlanner(sc)
        elif name == "llmd-slo":
            ctl = LlmdSloAutoscaler(sc)
        elif name in ("hpa-naive", "reactive"):
            ctl = ReactiveHPA(sc, name=name)
        elif name == "sla-planner":
            ctl = DynamoSlaPlanner(sc)
        elif name == "goodput":
            ctl = goodput_planner(sc)
        elif name == "goodput-raw":
            ctl = goodput_planner(sc, behavior=False)
        else:
            known = ", ".join(BENCH_CONTROLLERS + EXTRA_CONTROLLERS)
            raise ValueError(f"unknown controller {name!r}; known: {known}")
        results[name] = run(sc, trace, ctl, startup_delay_s=delay, progress=prog, name=name)
    return results, hs
