"""The arithmetic of the metrics layer, with no I/O, so every number the operator
acts on can be checked by hand.

Conventions (shared with :mod:`goodput.observation`): ``None`` means *unknown*
(missing, undefined or garbage), never zero. Functions here never raise on bad
numbers (NaN, infinities, negative counts); they return ``None`` instead.

Histogram maths follow Prometheus' own ``histogram_quantile`` so that the figures
agree with what a person sees in Grafana: the first bucket's lower bound is 0 when
its upper bound is positive, a value is spread linearly inside its bucket, and the
cumulative counts are made monotonic (rates of separate bucket series jitter) by
taking the running maximum.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from goodput.distributions import fit_gamma_scv
from goodput.observation import GoodputEstimate, LatencySummary, PoolObservation

#: A bucket wider than this fraction of the SLO threshold makes the interpolated
#: attainment uncertain enough to say so (LatencySummary.threshold_between_coarse_buckets).
COARSE_BUCKET_RELATIVE_WIDTH = 0.25

#: Thresholds closer than this (relative) to a bucket bound count as *on* the bound.
_ON_BOUND_RTOL = 1e-9

#: The note on a ratio or latency figure that needs a request when the window had none.
UNDEFINED_NO_REQUESTS = "undefined: no requests in window"

#: Which pool's figure feeds the fleet estimate, by preference of the roles present:
#: TTFT where it is produced (prefill), ITL and generated tokens where they are (decode).
TTFT_ROLES = ("prefill", "aggregated", "decode")
ITL_ROLES = ("decode", "aggregated", "prefill")


def finite(x: float | None) -> float | None:
    """``x`` if it is a finite number, else ``None`` (NaN and ±Inf are garbage)."""
    if x is None or not math.isfinite(x):
        return None
    return x


def non_negative(x: float | None) -> float | None:
    """A count, rate or gauge that cannot be negative: garbage becomes ``None``."""
    v = finite(x)
    if v is None or v < 0:
        return None
    return v


def unit_fraction(x: float | None, tolerance: float = 1e-6) -> float | None:
    """A fraction in [0, 1] (KV usage, hit rate, quality); tiny float overshoot is clamped,
    anything further out (e.g. a percentage 0-100 by mistake) is garbage -> ``None``."""
    v = finite(x)
    if v is None or v < -tolerance or v > 1 + tolerance:
        return None
    return min(1.0, max(0.0, v))


def safe_ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator`` for two non-negative rates.

    0/0 (no requests in the window) is undefined, and x/0 with x > 0 is inconsistent
    data: both give ``None`` rather than NaN, Inf or a made-up zero.
    """
    n, d = non_negative(numerator), non_negative(denominator)
    if n is None or d is None or d == 0:
        return None
    return n / d


@dataclass(frozen=True)
class Histogram:
    """Cumulative bucket counts (or rates) of one Prometheus histogram, sorted by upper
    bound, the last bound being +Inf. Build it with :func:`histogram_from_buckets`."""

    bounds: tuple[float, ...]
    cumulative: tuple[float, ...]

    @property
    def total(self) -> float:
        return self.cumulative[-1]


def histogram_from_buckets(buckets: Iterable[tuple[float, float]]) -> Histogram | None:
    """``(le, cumulative value)`` pairs, in any order, to a :class:`Histogram`.

    ``None`` when the data cannot describe a distribution: no ``+Inf`` bucket (the
    total is unknown), duplicate bounds, or any NaN/infinite/negative value.
    """
    pairs = sorted(buckets, key=lambda p: p[0])
    if not pairs or pairs[-1][0] != math.inf:
        return None
    bounds = tuple(le for le, _ in pairs)
    if any(math.isnan(b) for b in bounds) or len(set(bounds)) != len(bounds):
        return None
    running = 0.0
    cumulative: list[float] = []
    for _, value in pairs:
        v = non_negative(value)
        if v is None:
            return None
        running = max(running, v)
        cumulative.append(running)
    return Histogram(bounds, tuple(cumulative))


@dataclass(frozen=True)
class Attainment:
    """P(X <= threshold) read from a histogram, and whether reading it meant
    interpolating across a wide bucket."""

    fraction: float | None
    coarse: bool


def fraction_at_or_below(hist: Histogram, threshold: float) -> Attainment:
    """P(X <= threshold), interpolating linearly inside the bucket that holds it.

    Undefined (``None``) when the histogram counted nothing. A threshold above the
    highest finite bound counts every observation in the +Inf bucket as a miss
    (nothing is known about them) and is flagged coarse.
    """
    total = hist.total
    if total <= 0 or not math.isfinite(threshold):
        return Attainment(None, False)
    if threshold < 0:
        return Attainment(0.0, False)
    lower, below = 0.0, 0.0
    for i, upper in enumerate(hist.bounds):
        cum = hist.cumulative[i]
        if upper == math.inf:
            return Attainment(_clip01(below / total), True)
        if threshold <= upper:
            if i == 0 and upper <= 0:
                return Attainment(_clip01(cum / total), False)
            on_bound = math.isclose(threshold, upper, rel_tol=_ON_BOUND_RTOL) or math.isclose(
                threshold, lower, rel_tol=_ON_BOUND_RTOL
            )
            if math.isclose(threshold, upper, rel_tol=_ON_BOUND_RTOL):
                inside = cum
            else:
                inside = below + (cum - below) * (threshold - lower) / (upper - lower)
            coarse = not on_bound and (upper - lower) > COARSE_BUCKET_RELATIVE_WIDTH * threshold
            return Attainment(_clip01(inside / total), coarse)
        lower, below = upper, cum
    return Attainment(None, False)  # unreachable: the last bound is +Inf


def quantile(q: float, hist: Histogram) -> float | None:
    """The q-quantile as Prometheus' ``histogram_quantile`` computes it.

    A rank falling in the +Inf bucket gives the highest finite bound (as Prometheus
    does); ``None`` for an empty histogram, one without finite buckets, or q outside [0, 1].
    """
    if not 0 <= q <= 1 or hist.total <= 0 or len(hist.bounds) < 2:
        return None
    rank = q * hist.total
    finite_n = len(hist.bounds) - 1
    idx = next((i for i in range(finite_n) if hist.cumulative[i] >= rank), finite_n)
    if idx == finite_n:
        return hist.bounds[finite_n - 1]
    upper = hist.bounds[idx]
    if idx == 0 and upper <= 0:
        return upper
    lower = 0.0 if idx == 0 else hist.bounds[idx - 1]
    below = 0.0 if idx == 0 else hist.cumulative[idx - 1]
    in_bucket = hist.cumulative[idx] - below
    if in_bucket <= 0:
        return upper
    return lower + (upper - lower) * (rank - below) / in_bucket


def latency_summary(hist: Histogram, threshold: float, mean: float | None = None) -> LatencySummary:
    """One latency histogram (bucket rates or increases over the window) as the operator
    reads it: the attainment ``P(X <= threshold)`` interpolated in its bucket, the
    P50/P90/P99 as ``histogram_quantile`` computes them, and the ``mean`` (from the
    ``_sum``/``_count`` rates, computed by the caller). An empty histogram (no request in
    the window) has every figure undefined."""
    if hist.total <= 0:
        return LatencySummary()
    att = fraction_at_or_below(hist, threshold)
    return LatencySummary(
        attainment=att.fraction,
        p50_s=quantile(0.5, hist),
        p90_s=quantile(0.9, hist),
        p99_s=quantile(0.99, hist),
        mean_s=mean,
        threshold_between_coarse_buckets=att.coarse,
    )


def first_role(
    pools: Mapping[str, PoolObservation], order: Sequence[str]
) -> PoolObservation | None:
    """The first pool present among the roles in ``order``."""
    for role in order:
        if role in pools:
            return pools[role]
    return None


def fleet_estimate(pools: Mapping[str, PoolObservation], quality: float | None) -> GoodputEstimate:
    """:func:`goodput_estimate` for a fleet: ``a_ttft`` from the pool that produces the
    first token (:data:`TTFT_ROLES`), ``a_itl`` and the generation rate from the one that
    produces the rest (:data:`ITL_ROLES`). ``quality`` as for :func:`goodput_estimate`."""
    ttft_pool = first_role(pools, TTFT_ROLES)
    itl_pool = first_role(pools, ITL_ROLES)
    a_ttft = ttft_pool.ttft.attainment if ttft_pool and ttft_pool.ttft else None
    a_itl = itl_pool.itl.attainment if itl_pool and itl_pool.itl else None
    gen = itl_pool.generation_tokens_per_s if itl_pool else None
    return goodput_estimate(a_ttft, a_itl, gen, quality)


def frechet_bounds(a_ttft: float, a_itl: float) -> tuple[float, float]:
    """Bounds on P(TTFT ok and ITL ok) from its two marginals, whatever their dependence
    (Fréchet–Hoeffding): ``max(0, a + b - 1) <= A <= min(a, b)``."""
    return max(0.0, a_ttft + a_itl - 1.0), min(a_ttft, a_itl)


def effective_quality(score: float | None, floor: float) -> float | None:
    """The quality weight q used in goodput: a score below the policy's floor counts as 0."""
    s = unit_fraction(score)
    if s is None:
        return None
    return 0.0 if s < floor else s


def goodput_estimate(
    a_ttft: float | None,
    a_itl: float | None,
    generation_tokens_per_s: float | None,
    quality: float | None,
) -> GoodputEstimate:
    """DESIGN section 2: ``A`` within the Fréchet bounds, ``G ~ generation_tokens_per_s
    * A * q``, with the point estimate ``A ~ min(a, b) * sqrt(max(a, b))``.

    Why not DESIGN's independence product ``a * b``: under load a request that waited
    for its first token tends to be decoded in a crowded batch too, so TTFT and ITL misses
    come together and the product reads low (in the twin, 8% low at 30 req/s on two
    prefill and one decode Llama-3.1-8B replicas, 15% at 40, 42% at 50 req/s over 5-minute
    runs), while the comonotone upper bound ``min(a, b)`` reads high (8%, 33%, 81%). The
    log-midpoint of the two, ``sqrt(a * b * min(a, b))``, was within 7% there and within
    11% on every such regime measured (tests/unit/test_estimate_vs_twin.py, docs/metrics.md);
    it equals both when either marginal is 1 and lies inside the bounds always
    (``a * b >= a + b - 1``).

    Pass ``quality=1.0`` when the policy has no quality signal. With no generation at
    all, G is exactly 0 (no token was delivered, good or not) even though A is then
    undefined; otherwise any unknown input makes G unknown.
    """
    a = unit_fraction(a_ttft)
    b = unit_fraction(a_itl)
    attainment = lower = upper = None
    if a is not None and b is not None:
        attainment = min(a, b) * math.sqrt(max(a, b))
        lower, upper = frechet_bounds(a, b)
    gen = non_negative(generation_tokens_per_s)
    q = unit_fraction(quality)
    goodput: float | None = None
    if gen == 0.0:
        goodput = 0.0
    elif gen is not None and attainment is not None and q is not None:
        goodput = gen * attainment * q
    return GoodputEstimate(
        attainment=attainment,
        attainment_lower=lower,
        attainment_upper=upper,
        goodput_tokens_per_s=goodput,
    )


def counter_increase(samples: Sequence[tuple[float, float]]) -> float | None:
    """Increase of a counter over ``(timestamp, value)`` samples, across resets.

    A drop in value is a restart from zero, so the new value is the increase since
    the reset (Prometheus' rule). No extrapolation to window edges. ``None`` with
    fewer than two samples or any NaN/infinite/negative value.
    """
    if len(samples) < 2:
        return None
    ordered = sorted(samples, key=lambda s: s[0])
    values = [non_negative(v) for _, v in ordered]
    if any(v is None for v in values) or any(not math.isfinite(t) for t, _ in ordered):
        return None
    total = 0.0
    prev = values[0]
    for v in values[1:]:
        assert v is not None and prev is not None
        total += v - prev if v >= prev else v
        prev = v
    return total


def counter_rate(samples: Sequence[tuple[float, float]]) -> float | None:
    """Per-second rate of a counter over its samples (never negative across resets)."""
    inc = counter_increase(samples)
    if inc is None:
        return None
    ts = sorted(t for t, _ in samples)
    span = ts[-1] - ts[0]
    if span <= 0:
        return None
    return inc / span


def _clip01(x: float) -> float:
    return min(1.0, max(0.0, x))


# ---- window coverage (issue 10: data after a gap is not fresh) ---------------------

#: A stretch without samples longer than this many sampling intervals (plus one
#: coverage step) is a gap; one missed scrape is tolerated.
GAP_INTERVALS = 2.0


@dataclass(frozen=True)
class Coverage:
    """How well samples cover one rate window ``[now - window, now]``.

    ``silence_s`` is the longest stretch without a sample that overlaps the window
    (counted in full, also before the window start, so a window that starts inside an
    outage stays partial until it starts after it), up to the newest sample: the
    silence after the newest sample is staleness, judged by ``maxStaleness``.
    ``starts_covered`` says whether a series had a sample (not stale-marked) at the
    window start. ``tolerance_s`` is what counts as normal: ``GAP_INTERVALS``
    sampling intervals, estimated from the samples themselves, plus one coverage step.
    ``uncovered_s`` estimates the part of the window itself without samples.
    """

    window_s: float
    silence_s: float
    tolerance_s: float
    samples: int
    starts_covered: bool = True
    uncovered_s: float = 0.0

    @property
    def partial(self) -> bool:
        """rate() needs two samples; a window that starts without data, or holds a
        longer silence than tolerated, overlaps a gap."""
        return self.samples < 2 or not self.starts_covered or self.silence_s > self.tolerance_s

    @property
    def covered_s(self) -> float:
        """Seconds of the window with data (an estimate when partial)."""
        if not self.partial:
            return self.window_s
        return max(0.0, self.window_s - min(self.uncovered_s, self.window_s))


def _finite_or(x: float | None, default: float) -> float:
    return x if x is not None and math.isfinite(x) else default


def window_coverage(
    *,
    window_s: float,
    step_s: float,
    steps: float | None,
    present_steps: float | None,
    longest_silence_s: float | None,
    start_age_s: float | None,
    samples: float | None,
    trailing_s: float,
) -> Coverage:
    """A window's :class:`Coverage` from the coverage query's figures for one series
    name (see :func:`goodput.metrics.promql.coverage_terms`):

    - ``steps``: coverage steps in the window (``step_s`` apart);
    - ``present_steps``: steps at which some series of the name had a sample within
      the lookback and not stale-marked (a target gone: staleness markers, absent);
    - ``longest_silence_s``: the largest age of the newest sample seen at a step
      before the newest sample (Prometheus down, or series with explicit timestamps
      gone: no staleness markers, the sample just ages);
    - ``start_age_s``: age of the newest sample at the window start, ``None`` when
      there was none (stale-marked, beyond the lookback, or not yet born);
    - ``samples``: raw samples of the best-covered series in the window;
    - ``trailing_s``: age of the newest sample at the window's end.

    The sampling interval is estimated as the sampled part of the window over the
    intervals between its samples, ``(window - trailing - uncovered) / (samples - 1)``:
    exact when the gap is at the window start, an underestimate (so a stricter
    tolerance) when it is in the middle. Unknown figures (None, NaN) count against
    coverage.
    """
    n = int(samples) if samples is not None and math.isfinite(samples) and samples > 0 else 0
    total_steps = max(0.0, _finite_or(steps, 0.0))
    absent_s = max(0.0, total_steps - _finite_or(present_steps, 0.0)) * step_s
    silence = max(0.0, _finite_or(longest_silence_s, 0.0))
    start_age = start_age_s if start_age_s is not None and math.isfinite(start_age_s) else None
    trailing = max(0.0, _finite_or(trailing_s, 0.0))
    if n == 0:
        return Coverage(window_s, window_s, step_s, 0, start_age is not None, window_s)
    # The part of the window without samples: a silence that began before the window
    # counts only from the window start.
    inside = max(absent_s, silence - (start_age or 0.0))
    interval = max(0.0, window_s - trailing - inside) / (n - 1) if n >= 2 else 0.0
    return Coverage(
        window_s=window_s,
        # The start's age is exact where the steps may just miss the silence's end.
        silence_s=max(silence, absent_s, start_age or 0.0),
        tolerance_s=GAP_INTERVALS * interval + step_s,
        samples=n,
        starts_covered=start_age is not None,
        uncovered_s=inside,
    )


def worst_coverage(coverages: Iterable[Coverage]) -> Coverage | None:
    """The least covered of several (a signal reading several series names)."""
    worst: Coverage | None = None
    for c in coverages:
        if worst is None or (c.partial, -c.covered_s) > (worst.partial, -worst.covered_s):
            worst = c
    return worst


def window_overlaps(now: float, window_s: float, instant: float | None) -> bool:
    """Whether ``instant`` lies in the window ``[now - window_s, now]``."""
    return instant is not None and now - window_s <= instant <= now


# ---- variability of demand (issue 12: the prefill model's G/G/c inputs) ------------

#: Fewest per-step counts a dispersion is computed from (a trend takes two degrees of
#: freedom; below this the estimate is noise).
MIN_DISPERSION_STEPS = 6


def dispersion_from_moments(
    mean: float | None, variance: float | None, slope_per_step: float | None, steps: int
) -> float | None:
    """Index of dispersion (variance / mean) of ``steps`` equally spaced per-step counts
    with the least-squares linear trend removed, from their population mean and
    variance and the trend's slope (counts per step): a rise or fall over the span is
    the forecast's business, not burstiness. ``None`` (not measured) with too few steps,
    no requests or garbage. The residual variance is ``variance - slope^2 var(t)``
    (``var(t) = (steps^2 - 1) / 12`` in steps), rescaled by ``steps / (steps - 2)``."""
    m, v = non_negative(mean), non_negative(variance)
    slope = finite(slope_per_step)
    if m is None or v is None or slope is None or steps < MIN_DISPERSION_STEPS or m <= 0:
        return None
    var_t = (steps * steps - 1) / 12.0
    residual = max(v - slope * slope * var_t, 0.0) * steps / (steps - 2)
    return residual / m


def dispersion_index(counts: Sequence[float]) -> float | None:
    """:func:`dispersion_from_moments` of a sequence of per-step request counts."""
    vals = [finite(c) for c in counts]
    if any(c is None or c < 0 for c in vals):
        return None
    xs = [float(c) for c in vals if c is not None]
    n = len(xs)
    if n < MIN_DISPERSION_STEPS:
        return None
    mean = sum(xs) / n
    var = sum((x - mean) ** 2 for x in xs) / n
    t_mean = (n - 1) / 2.0
    var_t = (n * n - 1) / 12.0
    slope = sum((i - t_mean) * (x - mean) for i, x in enumerate(xs)) / n / var_t
    return dispersion_from_moments(mean, var, slope, n)


def histogram_scv(hist: Histogram, mean: float | None) -> float | None:
    """Squared coefficient of variation of a size distribution (prompt tokens) read from
    its histogram: the gamma with the exact ``mean`` (``_sum / _count``) whose CDF best
    fits the buckets' (:func:`goodput.distributions.fit_gamma_scv`; the planner's model
    takes prompt lengths as gamma, and vLLM's 1-2-5 buckets are too wide for
    midpoints). ``None`` when the histogram counted nothing, the mean is unknown or no
    finite bucket bound lies inside the data."""
    total = hist.total
    mu = finite(mean)
    if total <= 0 or mu is None or mu <= 0:
        return None
    pairs = [
        (b, c / total) for b, c in zip(hist.bounds, hist.cumulative, strict=True) if b != math.inf
    ]
    if not any(0.0 < f < 1.0 for _, f in pairs):
        return None
    return fit_gamma_scv(mu, [b for b, _ in pairs], [f for _, f in pairs])
