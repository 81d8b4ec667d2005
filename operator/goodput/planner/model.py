"""Performance model of one pool: predicted latency distributions and the rate a pool
can serve, for every replica count at once (numpy vectors, so the optimizer scans
thousands of candidates in microseconds).

Prefill: TTFT = queueing wait + prefill time + KV load from the tier holding the hit.
The wait is G/G/c (Allen–Cunneen): probability of waiting from Sakasegawa's closed
form of Erlang C, the conditional wait exponential with mean scaled by the
variability factor ``(ca^2 + cs^2) / 2``. ``ca^2`` is the arrivals' squared
coefficient of variation, measured online as the index of dispersion of per-step
request counts (``Demand.arrival_scv``; 1 is Poisson); ``cs^2`` is the prefill time's,
from the prompt lengths' squared coefficient of variation (``Demand.input_scv``;
1 is exponential) through gamma-distributed lengths (moments
``E[L^k] = m^k prod_{j<k} (1 + j s)``). Real arrivals are far burstier than Poisson
(index of dispersion 14-123 on the bundled traces), and a Poisson model is badly
optimistic in the tail. TTFT attainment: a request that does not wait sees fixed +
a gamma prefill time (shape ``1 / cs_var^2``); one that waits sees fixed + a gamma
fitted to the mean and variance of wait + prefill time. At ``ca^2 = s = 1`` this is
close to the old M/G/c hypoexponential tail.

Decode: one step costs f*(a + b*N + c*N*ctx); Little's law gives N = lambda*O*ITL per
replica, so ITL = f*a / (1 - f*(b + c*ctx)*lambda*O) in closed form. KV memory caps
N, which caps the rate a replica serves. Per-request ITL (the mean of a request's
``O - 1`` steps, what the SLO is checked on) is normal around that mean, with two
sources of spread: step-to-step noise of ``ITL_BASE_CV``, which averages out over the
request's ``O - 1`` steps (variance / (O - 1)), and the batch it shares, whose size
moves the step time by ``f*(b + c*ctx)`` per sequence. Requests are routed to the
least-loaded decode replica (most free KV), so the n replicas' batches move together:
each holds about 1/n of the pool's Poisson total, variance ``N / n`` rather than ``N``,
of which a request's lifetime average keeps ``LIFETIME_AVERAGE`` (2/e).
At an ITL SLO close to the one-sequence step (1.2x on azure-conv-fp8) the old spread
(10 % of the mean per request, and ``N`` unshared) read 0.71 ITL attainment at 5 decode
replicas where the twin measures 0.995, and sent GPUs to decode that prefill needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from goodput.distributions import SCV_MAX, SCV_MIN, gamma_cdf_fast
from goodput.profiles import PerformanceProfile

Vec = npt.NDArray[np.float64]

# Highest utilization the model lets a stage run at: beyond it the queue grows
# without bound, so the served rate is capped here and the rest counts as lost.
RHO_MAX = 0.95
# Step-to-step spread of the step time that batching does not explain (10 %); a
# request's ITL averages it over its O - 1 steps.
ITL_BASE_CV = 0.10
# A request's ITL averages its batch over its own lifetime T, while the others come and
# go: for an M/M/inf batch (autocorrelation exp(-s / tau)) the average over T = tau, a
# typical request's, keeps 2 / e of the variance.
LIFETIME_AVERAGE = 2.0 / math.e
# Mooncake FAST'25 §5.3.1: a ~3M-token local cache reaches about half of the
# theoretical maximum prefix hit rate -> h(C) = h_max * (1 - exp(-C / K)), K = 3M/ln 2.
CACHE_HALF_TOKENS = 3.0e6
CACHE_SCALE_TOKENS = CACHE_HALF_TOKENS / math.log(2.0)
# Highest theoretical prefix hit rate Mooncake reports for any workload (Tool&Agent,
# FAST'25 §5.3.1); an observed rate above it is believed instead.
MAX_HIT_RATE = 0.75


@dataclass(frozen=True)
class Demand:
    """What the pools must serve: request rate and mean token counts, and the
    variability of arrivals and prompt lengths. ``arrival_scv`` (ca^2) is 1 for
    Poisson arrivals, ``input_scv`` 1 for exponential prompt lengths: the values a
    caller that measured nothing assumes, and must say it assumed (the planner
    reports in its message which were measured)."""

    rate_rps: float
    input_tokens: float
    output_tokens: float
    arrival_scv: float = 1.0
    input_scv: float = 1.0


@dataclass(frozen=True)
class CacheEffect:
    """Prefix-cache hits as a fraction of input tokens, and seconds of KV load per
    request from the offload tiers that hold them."""

    hit_fraction: float = 0.0
    load_s: float = 0.0


@dataclass(frozen=True)
class StageCurve:
    """Per replica count n (index 0..N): rate served (req/s), attainment of the stage's
    latency SLO, and the mean latency (TTFT for prefill, ITL for decode)."""

    served: Vec
    attainment: Vec
    mean_latency: Vec


def norm_cdf(x: Vec) -> Vec:
    """Standard normal CDF (Abramowitz–Stegun 7.1.26, |error| < 1.5e-7): numpy has no erf."""
    z = np.abs(x) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    erf = 1.0 - poly * np.exp(-z * z)
    return np.asarray(0.5 * (1.0 + np.sign(x) * erf), dtype=np.float64)


def hit_rate_at(capacity_tokens: float, h_max: float) -> float:
    return h_max * (1.0 - math.exp(-capacity_tokens / CACHE_SCALE_TOKENS))


def _scv(x: float) -> float:
    return min(max(x, SCV_MIN), SCV_MAX)


def length_moments(mean: float, scv: float) -> tuple[float, float, float, float]:
    """E[L], E[L^2], E[L^3], E[L^4] of gamma-distributed prompt lengths with the given
    mean and squared coefficient of variation (exponential at ``scv = 1``: k! mean^k)."""
    s = _scv(scv)
    m2 = mean * mean * (1.0 + s)
    m3 = m2 * mean * (1.0 + 2.0 * s)
    m4 = m3 * mean * (1.0 + 3.0 * s)
    return mean, m2, m3, m4


def prefill_service(
    prof: PerformanceProfile, factor: float, demand: Demand, cache: CacheEffect
) -> tuple[float, float]:
    """(fixed seconds, mean variable seconds) of one request's prefill. Prompt lengths
    are gamma around the observed mean with ``demand.input_scv`` (E[L^2] =
    (1 + s) mean^2; 2 mean^2 for exponential lengths); hits skip their share of the
    work, new tokens still attend over the whole prompt."""
    _, m2, _, _ = length_moments(demand.input_tokens, demand.input_scv)
    keep = 1.0 - cache.hit_fraction
    fixed = factor * prof.prefill_base_s
    # Per sequence (d) and the knee at a full batch (in the loaded per-token rate): what
    # a profile adds to DistServe's form; both zero unless its data asks for them.
    b = prof.prefill_per_token_loaded_s
    variable = factor * (
        prof.prefill_per_seq_s + keep * (b * demand.input_tokens + prof.prefill_per_token2_s * m2)
    )
    return fixed, variable


def prefill_scv(prof: PerformanceProfile, demand: Demand, cache: CacheEffect) -> float:
    """Squared coefficient of variation of one prefill, S = a + bL + cL^2, for gamma
    prompt lengths (``length_moments``), for Allen–Cunneen's variability factor."""
    m1, m2, m3, m4 = length_moments(demand.input_tokens, demand.input_scv)
    keep = 1.0 - cache.hit_fraction
    b, c = prof.prefill_per_token_loaded_s * keep, prof.prefill_per_token2_s * keep
    mean = prof.prefill_base_s + prof.prefill_per_seq_s + b * m1 + c * m2
    var = b * b * (m2 - m1 * m1) + c * c * (m4 - m2 * m2) + 2.0 * b * c * (m3 - m1 * m2)
    return max(var, 0.0) / max(mean * mean, 1e-300)


def _variable_scv(prof: PerformanceProfile, demand: Demand, cache: CacheEffect) -> float:
    """Squared coefficient of variation of the length-dependent part bL + cL^2 alone
    (the fixed part is added separately to the TTFT tail)."""
    m1, m2, m3, m4 = length_moments(demand.input_tokens, demand.input_scv)
    keep = 1.0 - cache.hit_fraction
    b, c = prof.prefill_per_token_loaded_s * keep, prof.prefill_per_token2_s * keep
    mean = prof.prefill_per_seq_s + b * m1 + c * m2
    var = b * b * (m2 - m1 * m1) + c * c * (m4 - m2 * m2) + 2.0 * b * c * (m3 - m1 * m2)
    return _scv(max(var, 0.0) / max(mean * mean, 1e-300))


def prefill_capacity_service(
    prof: PerformanceProfile, factor: float, demand: Demand, cache: CacheEffect
) -> float:
    """Seconds of replica time per request under load, when prefills share a batch of
    up to ``max_prefill_tokens`` new tokens and so share its fixed cost."""
    fixed, variable = prefill_service(prof, factor, demand, cache)
    new = max(demand.input_tokens * (1.0 - cache.hit_fraction), 1.0)
    per_batch = max(1.0, prof.max_prefill_tokens / new)
    return fixed / per_batch + variable


def _ttft_attainment(
    threshold: float,
    fixed: float,
    variable: Vec,
    wait_p: Vec,
    theta: Vec,
    variable_scv: float = 1.0,
) -> Vec:
    """P(W + S <= T) with S = fixed + V, V gamma with mean ``variable`` and squared
    coefficient of variation ``variable_scv``, and W = 0 w.p. 1-C else Exp(theta). The
    sum W + V of a request that waits is taken as a gamma with the same mean and
    variance (two-moment fit: exact in mean and spread, and no exponential tail assumed
    for the prefill time), and capped by P(W <= T) * P(V <= T)."""
    t = threshold - fixed
    if t <= 0:
        return np.zeros_like(wait_p)
    v = np.maximum(variable, 1e-12)
    k = 1.0 / _scv(variable_scv)
    service_ok = gamma_cdf_fast(np.full_like(v, k), k * t / v)
    w = 1.0 / np.maximum(theta, 1e-12)
    mean = v + w
    var = v * v / k + w * w
    shape = mean * mean / np.maximum(var, 1e-300)
    # W and V are non-negative and (in this model) independent, so W + V <= t needs both
    # W <= t and V <= t: P(W + V <= t) <= P(W <= t) * P(V <= t). The two-moment fit can
    # break that far below its mean (a wide gamma puts mass near 0), and then more
    # waiting would read as more attainment.
    wait_ok = -np.expm1(-t / w)
    both = np.minimum(gamma_cdf_fast(shape, shape * t / mean), service_ok * wait_ok)
    out = (1.0 - wait_p) * service_ok + wait_p * both
    return np.asarray(np.clip(out, 0.0, 1.0), dtype=np.float64)


def queue_curve(
    n_max: int, rate: float, service_s: float, scv: float, arrival_scv: float = 1.0
) -> tuple[Vec, Vec, Vec, Vec]:
    """G/G/c for c = 0..n_max: served rate, P(wait), conditional-wait rate, mean wait.
    ``service_s`` is the replica time one request costs (what sets utilization); the
    wait scales with Allen–Cunneen's ``(arrival_scv + scv) / 2`` (M/G/c at
    ``arrival_scv = 1``)."""
    n = np.arange(n_max + 1, dtype=np.float64)
    capacity = n / service_s
    served = np.minimum(rate, RHO_MAX * capacity)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.where(n > 0, served * service_s / np.maximum(n, 1.0), 0.0)
        wait_p = np.where(rho > 0, rho ** (np.sqrt(2.0 * (n + 1.0)) - 1.0), 0.0)
    wait_p = np.clip(wait_p, 0.0, 1.0)
    variability = (_scv(arrival_scv) + scv) / 2.0
    slack = np.maximum(capacity - served, 1e-12)
    theta = slack / variability
    mean_wait = np.where(n > 0, wait_p / theta, np.inf)
    return served, wait_p, theta, mean_wait


def prefill_curve(
    prof: PerformanceProfile,
    factor: float,
    demand: Demand,
    cache: CacheEffect,
    ttft_slo_s: float,
    n_max: int,
    extra_fixed_s: float = 0.0,
) -> StageCurve:
    fixed, variable = prefill_service(prof, factor, demand, cache)
    fixed += extra_fixed_s
    capacity_service = prefill_capacity_service(prof, factor, demand, cache) + extra_fixed_s
    scv = prefill_scv(prof, demand, cache)
    served, wait_p, theta, mean_wait = queue_curve(
        n_max, demand.rate_rps, capacity_service, scv, demand.arrival_scv
    )
    # Requests that queued together are prefilled in one batch and all wait for it:
    # the queue (lambda*Wq, Little) is shared by n replicas, so about lambda*Wq/n others
    # share a request's batch, up to the batch token budget.
    new = max(demand.input_tokens * (1.0 - cache.hit_fraction), 1.0)
    room = max(prof.max_prefill_tokens / new - 1.0, 0.0)
    n = np.maximum(np.arange(n_max + 1, dtype=np.float64), 1.0)
    queued = served * np.where(np.isfinite(mean_wait), mean_wait, 0.0) / n
    mates = np.minimum(queued, room)
    own = variable * (1.0 + mates)
    att = _ttft_attainment(
        ttft_slo_s - cache.load_s,
        fixed,
        own,
        wait_p,
        theta,
        _variable_scv(prof, demand, cache),
    )
    att[0] = 0.0
    # Past saturation every n runs at the same capped utilisation and the two-moment tail
    # can wobble by ~1e-3 at attainments near 0; a replica can always idle, so n + 1
    # replicas never attain less than n (what `monotone` gives the optimizer anyway).
    att = np.maximum.accumulate(att)
    return StageCurve(served, att, mean_wait + fixed + own + cache.load_s)


def decode_batch_cap(prof: PerformanceProfile, demand: Demand) -> float:
    """Sequences one replica holds: the scheduler's limit or its KV memory."""
    per_seq = max(demand.input_tokens + demand.output_tokens, 1.0)
    return float(min(prof.max_batch, prof.kv_capacity_tokens / per_seq))


def decode_curve(
    prof: PerformanceProfile,
    factor: float,
    demand: Demand,
    itl_slo_s: float,
    n_max: int,
    prefill_busy_s: float = 0.0,
) -> StageCurve:
    """``prefill_busy_s`` > 0 models an aggregated replica: that many seconds of prefill
    per request share the replica's time with decode steps."""
    out = max(demand.output_tokens, 1.0)
    ctx = demand.input_tokens + out / 2.0
    base = factor * prof.decode_base_s
    slope = factor * (prof.decode_per_seq_s + prof.decode_per_ctx_token_s * ctx)
    cap = decode_batch_cap(prof, demand)
    # Largest per-replica rate with N <= cap: solve lambda*O*ITL(lambda) = cap.
    max_rate = cap / (out * base + cap * (prefill_busy_s + slope * out))
    n = np.arange(n_max + 1, dtype=np.float64)
    served = np.minimum(demand.rate_rps, RHO_MAX * max_rate * n)
    per_replica = np.where(n > 0, served / np.maximum(n, 1.0), 0.0)
    denom = 1.0 - per_replica * (prefill_busy_s + slope * out)
    itl = np.where((n > 0) & (denom > 0), base / np.maximum(denom, 1e-12), np.inf)
    batch = per_replica * out * np.where(np.isfinite(itl), itl, 0.0)
    if demand.output_tokens <= 1.0:
        att = np.where(n > 0, 1.0, 0.0)
    else:
        # A request's ITL is the mean of its ``out - 1`` steps: step noise averages out
        # over them, the batch does not (it changes slowly), but it is shared by the n
        # load-balanced replicas: variance batch / n (module docstring).
        steps = max(out - 1.0, 1.0)
        sigma = np.sqrt(
            (ITL_BASE_CV * itl) ** 2 / steps
            + LIFETIME_AVERAGE * slope**2 * batch / np.maximum(n, 1.0)
        )
        with np.errstate(invalid="ignore"):
            z = np.where(np.isfinite(itl), (itl_slo_s - itl) / np.maximum(sigma, 1e-12), -np.inf)
        att = norm_cdf(np.nan_to_num(z, neginf=-50.0))
        att[0] = 0.0
    return StageCurve(served, np.asarray(att, dtype=np.float64), itl)


def aggregated_curve(
    prof: PerformanceProfile,
    prefill_factor: float,
    decode_factor: float,
    demand: Demand,
    cache: CacheEffect,
    ttft_slo_s: float,
    itl_slo_s: float,
    n_max: int,
) -> tuple[StageCurve, StageCurve]:
    """Both stages in one replica: prefill waits for the running decode step, decode
    gets the time prefill leaves. Returns (ttft curve, itl curve) on the same n."""
    fixed, variable = prefill_service(prof, prefill_factor, demand, cache)
    dec = decode_curve(prof, decode_factor, demand, itl_slo_s, n_max, fixed + variable)
    step = decode_factor * prof.decode_base_s
    pre = prefill_curve(prof, prefill_factor, demand, cache, ttft_slo_s, n_max, step)
    served = np.minimum(pre.served, dec.served)
    return (
        StageCurve(served, pre.attainment, pre.mean_latency),
        StageCurve(served, dec.attainment, dec.mean_latency),
    )


def monotone(curve: StageCurve) -> StageCurve:
    """A replica can always idle, so n+1 replicas are never worse than n: the running
    maximum makes the optimizer's scans valid."""
    return StageCurve(
        np.maximum.accumulate(curve.served),
        np.maximum.accumulate(curve.attainment),
        curve.mean_latency,
    )
