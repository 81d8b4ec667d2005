"""Online correction of a profile: one bounded multiplicative factor per stage and
pool, moved each interval toward the factor that makes the model reproduce what was
observed at the observed load. For TTFT that is the tail the SLO names: the
attainment at the SLO threshold, in busy intervals too (the intervals that matter),
so whatever the queueing model misses (bursts finer than the measured dispersion,
batching of requests that arrive together) shows as a slower prefill, within
[FACTOR_MIN, FACTOR_MAX]; without an attainment, the median or mean in steady state.
ITL: the mean. A profile 2x too fast or slow converges geometrically (each step
removes ``GAIN`` of the remaining log error; ``TAIL_GAIN`` for the noisier tail)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

FACTOR_MIN = 0.2
FACTOR_MAX = 5.0
GAIN = 0.5
# One window's attainment rests on tens to hundreds of requests: a smaller step.
TAIL_GAIN = 0.3


@dataclass(frozen=True)
class Factors:
    prefill: float = 1.0
    decode: float = 1.0


def solve_factor(predict: Callable[[float], float], observed: float) -> float:
    """The factor f in [FACTOR_MIN, FACTOR_MAX] with predict(f) = observed, by
    bisection on log f (predict must increase with f; inf means overloaded)."""
    lo, hi = math.log(FACTOR_MIN), math.log(FACTOR_MAX)
    if predict(FACTOR_MIN) >= observed:
        return FACTOR_MIN
    if predict(FACTOR_MAX) <= observed:
        return FACTOR_MAX
    # 24 halvings of log(FACTOR_MAX / FACTOR_MIN) = 3.2: relative precision 2e-7.
    for _ in range(24):
        mid = (lo + hi) / 2
        if predict(math.exp(mid)) < observed:
            lo = mid
        else:
            hi = mid
    return math.exp((lo + hi) / 2)


def blend(current: float, target: float, gain: float = GAIN) -> float:
    """Move ``gain`` of the way toward ``target`` in log space, within the bounds."""
    value = math.exp((1 - gain) * math.log(current) + gain * math.log(target))
    return min(max(value, FACTOR_MIN), FACTOR_MAX)
