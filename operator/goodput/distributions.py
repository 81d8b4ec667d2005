"""The gamma distribution, vectorized without scipy: the planner's model takes prompt
lengths and TTFT tails as gamma, and the metrics layer fits a gamma to the
prompt-token histogram, so both use this one implementation. Pure numpy, no I/O."""

from __future__ import annotations

import functools
import math

import numpy as np
import numpy.typing as npt

Vec = npt.NDArray[np.float64]

# Bounds on a squared coefficient of variation the model believes: below 0.05 is a
# nearly regular stream (the formulas need a positive shape), above 400 is beyond any
# bundled trace (index of dispersion of 15 s counts at most 123).
SCV_MIN = 0.05
SCV_MAX = 400.0

_LANCZOS = (
    0.99999999999980993,
    676.5203681218851,
    -1259.1392167224028,
    771.32342877765313,
    -176.61502916214059,
    12.507343278686905,
    -0.13857109526572012,
    9.9843695780195716e-6,
    1.5056327351493116e-7,
)


def _lgamma(a: Vec) -> Vec:
    """log Gamma(a) for a > 0.5 (Lanczos, g = 7, relative error < 1e-13); numpy has none."""
    z = a - 1.0
    x = np.full_like(z, _LANCZOS[0])
    for i, c in enumerate(_LANCZOS[1:], start=1):
        x = x + c / (z + i)
    t = z + 7.5
    return np.asarray(
        0.5 * math.log(2 * math.pi) + (z + 0.5) * np.log(t) - t + np.log(x), dtype=np.float64
    )


_TERMS = 80


def gamma_cdf(shape: Vec, x: Vec) -> Vec:
    """Regularized lower incomplete gamma P(shape, x), vectorized: the series below
    shape + 1, Lentz's continued fraction of Q above (Numerical Recipes 6.2), each with
    a fixed number of terms (enough for the shapes the model uses, >= 1/SCV_MAX)."""
    a = np.maximum(np.asarray(shape, dtype=np.float64), 1.0 / SCV_MAX)
    xv = np.maximum(np.asarray(x, dtype=np.float64), 0.0)
    a, xv = np.broadcast_arrays(a, xv)
    # lgamma for small shapes via Gamma(a) = Gamma(a + 1) / a.
    lg = _lgamma(a + 1.0) - np.log(a)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        pref = np.exp(a * np.log(np.maximum(xv, 1e-300)) - xv - lg)
        # series: P = pref * sum_n x^n / (a (a+1) ... (a+n))
        term = 1.0 / a
        total = term.copy()
        for n in range(1, _TERMS):
            term = term * xv / (a + n)
            total = total + term
        series = pref * total
        # continued fraction for Q = 1 - P
        tiny = 1e-300
        b = xv + 1.0 - a
        c = np.full_like(b, 1.0 / tiny)
        d = 1.0 / np.where(np.abs(b) < tiny, tiny, b)
        h = d.copy()
        for i in range(1, _TERMS):
            an = -i * (i - a)
            b = b + 2.0
            d = an * d + b
            d = np.where(np.abs(d) < tiny, tiny, d)
            c = b + an / c
            c = np.where(np.abs(c) < tiny, tiny, c)
            d = 1.0 / d
            h = h * d * c
        cf = 1.0 - pref * h
    out = np.where(xv < a + 1.0, series, cf)
    out = np.where(xv <= 0.0, 0.0, out)
    return np.asarray(np.clip(np.nan_to_num(out, nan=1.0), 0.0, 1.0), dtype=np.float64)


# Candidate SCVs of a gamma fit to a histogram: log-spaced over [SCV_MIN, 20].
_FIT_GRID = np.exp(np.linspace(math.log(SCV_MIN), math.log(20.0), 97))


def fit_gamma_scv(mean: float, bounds: list[float], cdf: list[float]) -> float:
    """The SCV of the gamma with the given mean whose CDF is closest (least squares) to
    ``cdf`` at the finite ``bounds``: what a histogram says about the spread of sizes
    without assuming where inside a bucket they lie."""
    b = np.asarray(bounds, dtype=np.float64)[None, :]
    f = np.asarray(cdf, dtype=np.float64)[None, :]
    k = (1.0 / _FIT_GRID)[:, None]
    model = gamma_cdf(np.broadcast_to(k, (len(_FIT_GRID), b.shape[1])), k * b / mean)
    err = np.sum((model - f) ** 2, axis=1)
    return float(_FIT_GRID[int(np.argmin(err))])


# A table of the unit-mean gamma CDF over (log shape, log x/shape), so the planner's
# hot path is one bilinear interpolation (a few numpy operations) rather than 80
# series or continued-fraction terms: error below 1e-3 for shapes in [1/SCV_MAX, 1/SCV_MIN].
_LOG_SHAPE = np.linspace(math.log(1.0 / SCV_MAX), math.log(1.0 / SCV_MIN), 97)
_LOG_U = np.linspace(math.log(1e-5), math.log(400.0), 641)


@functools.cache
def _table() -> Vec:
    k = np.exp(_LOG_SHAPE)[:, None]
    u = np.exp(_LOG_U)[None, :]
    return gamma_cdf(np.broadcast_to(k, (k.shape[0], u.shape[1])), k * u)


def gamma_cdf_fast(shape: Vec, x: Vec) -> Vec:
    """:func:`gamma_cdf` by interpolation in a precomputed table (the planner's path)."""
    a, xv = np.broadcast_arrays(
        np.asarray(shape, dtype=np.float64), np.asarray(x, dtype=np.float64)
    )
    table = _table()
    ls = np.clip(np.log(np.maximum(a, 1e-300)), _LOG_SHAPE[0], _LOG_SHAPE[-1])
    with np.errstate(divide="ignore"):
        lu = np.log(np.maximum(xv, 0.0) / np.maximum(a, 1e-300))
    fi = (ls - _LOG_SHAPE[0]) / (_LOG_SHAPE[1] - _LOG_SHAPE[0])
    fj = (np.clip(lu, _LOG_U[0], _LOG_U[-1]) - _LOG_U[0]) / (_LOG_U[1] - _LOG_U[0])
    i = np.minimum(fi.astype(np.int64), len(_LOG_SHAPE) - 2)
    j = np.minimum(fj.astype(np.int64), len(_LOG_U) - 2)
    di, dj = fi - i, fj - j
    out = (
        table[i, j] * (1 - di) * (1 - dj)
        + table[i + 1, j] * di * (1 - dj)
        + table[i, j + 1] * (1 - di) * dj
        + table[i + 1, j + 1] * di * dj
    )
    out = np.where(lu > _LOG_U[-1], 1.0, out)
    out = np.where(xv <= 0.0, 0.0, out)
    return np.asarray(out, dtype=np.float64)
