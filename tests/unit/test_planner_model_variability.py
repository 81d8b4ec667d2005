"""The G/G/c prefill model's variability inputs (issue 12): bursty arrivals and
heavy-tailed prompt lengths raise the predicted TTFT and lower its attainment,
monotonically; more replicas and less demand never hurt; the figures are
deterministic; and at Poisson arrivals and exponential lengths the model is the M/G/c
one it replaced."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from goodput.distributions import gamma_cdf, gamma_cdf_fast
from goodput.planner.model import (
    CacheEffect,
    Demand,
    length_moments,
    prefill_curve,
    prefill_scv,
    prefill_service,
    queue_curve,
)
from goodput.profiles import load_profile

PROFILES = [
    load_profile(n)
    for n in ("llama-3.1-8b-h100-tp1", "llama-3.1-70b-h100-tp4", "llama-3.3-70b-fp8-h100-tp2")
]
SETTINGS = settings(max_examples=80, deadline=None)
N = 12
# Attainments are compared to the tabulated gamma CDF's error bound (1e-3; see
# goodput.distributions), within which the two-moment fit of wait + prefill may wobble.
ATT_TOL = 1e-3


@st.composite
def loads(draw: st.DrawFn) -> tuple[int, Demand, float, float]:
    """(profile index, demand at Poisson/exponential, TTFT SLO, hit fraction)."""
    k = draw(st.integers(0, len(PROFILES) - 1))
    prof = PROFILES[k]
    inp = draw(st.floats(100.0, 8000.0))
    fixed, variable = prefill_service(prof, 1.0, Demand(1.0, inp, 100.0), CacheEffect())
    # Up to ~90 % of what N replicas serve, so most curves have a queue somewhere.
    rate = draw(st.floats(0.01, 0.9)) * N / (fixed + variable)
    slo = (fixed + variable) * draw(st.floats(1.2, 6.0))
    return k, Demand(rate, inp, 100.0), slo, draw(st.sampled_from([0.0, 0.3]))


def curve(k: int, demand: Demand, slo: float, hit: float) -> tuple[np.ndarray, np.ndarray]:
    c = prefill_curve(PROFILES[k], 1.0, demand, CacheEffect(hit), slo, N)
    return c.mean_latency[1:], c.attainment[1:]


def with_scv(d: Demand, arrival: float = 1.0, lengths: float = 1.0) -> Demand:
    return Demand(d.rate_rps, d.input_tokens, d.output_tokens, arrival, lengths)


@SETTINGS
@given(loads(), st.floats(0.1, 50.0), st.floats(1.01, 4.0))
def test_burstier_arrivals_raise_ttft_and_lower_attainment(
    load: tuple[int, Demand, float, float], ca2: float, more: float
) -> None:
    k, d, slo, hit = load
    mean_lo, att_lo = curve(k, with_scv(d, ca2), slo, hit)
    mean_hi, att_hi = curve(k, with_scv(d, ca2 * more), slo, hit)
    finite = np.isfinite(mean_lo)
    assert np.all(mean_hi[finite] >= mean_lo[finite] - 1e-12)
    assert np.all(att_hi <= att_lo + ATT_TOL)


def test_burstiness_raises_a_loaded_pools_ttft_strictly() -> None:
    prof = PROFILES[1]
    base = Demand(6.0, 2000.0, 100.0)
    n = 4
    means = [
        prefill_curve(prof, 1.0, with_scv(base, ca2), CacheEffect(), 0.63, n).mean_latency[n]
        for ca2 in (1.0, 5.0, 25.0, 100.0)
    ]
    atts = [
        prefill_curve(prof, 1.0, with_scv(base, ca2), CacheEffect(), 0.63, n).attainment[n]
        for ca2 in (1.0, 5.0, 25.0, 100.0)
    ]
    assert means == sorted(means) and means[-1] > 2 * means[0]
    assert atts == sorted(atts, reverse=True) and atts[0] - atts[-1] > 0.1


@SETTINGS
@given(loads(), st.floats(0.1, 5.0), st.floats(1.01, 3.0))
def test_heavier_prompt_tails_raise_mean_ttft(
    load: tuple[int, Demand, float, float], scv: float, more: float
) -> None:
    k, d, slo, hit = load
    mean_lo, _ = curve(k, with_scv(d, lengths=scv), slo, hit)
    mean_hi, _ = curve(k, with_scv(d, lengths=scv * more), slo, hit)
    finite = np.isfinite(mean_lo)
    assert np.all(mean_hi[finite] >= mean_lo[finite] - 1e-12)


def test_heavy_tailed_prompts_lower_the_attainment_of_a_loose_slo() -> None:
    # A heavy tail puts more requests far above the mean: the share within a few means
    # falls (a tight SLO below the mean may gain, as more mass sits near zero).
    prof = PROFILES[1]
    d = Demand(3.0, 2000.0, 100.0)
    fixed, variable = prefill_service(prof, 1.0, d, CacheEffect())
    slo = fixed + 3 * variable
    atts = [
        prefill_curve(prof, 1.0, with_scv(d, lengths=s), CacheEffect(), slo, 4).attainment[4]
        for s in (0.5, 1.0, 2.0, 4.0)
    ]
    assert atts == sorted(atts, reverse=True) and atts[0] - atts[-1] > 0.05


@SETTINGS
@given(loads(), st.floats(0.1, 50.0), st.floats(0.1, 5.0))
def test_more_replicas_never_hurt_and_more_demand_never_helps(
    load: tuple[int, Demand, float, float], ca2: float, scv: float
) -> None:
    k, d, slo, hit = load
    dem = with_scv(d, ca2, scv)
    mean, att = curve(k, dem, slo, hit)
    assert np.all(np.diff(att) >= -ATT_TOL)  # in replicas
    finite = np.isfinite(mean)
    assert np.all(np.diff(mean[finite]) <= 1e-9)
    more = Demand(d.rate_rps * 1.3, d.input_tokens, d.output_tokens, ca2, scv)
    mean_more, att_more = curve(k, more, slo, hit)
    assert np.all(att_more <= att + ATT_TOL)
    ok = np.isfinite(mean) & np.isfinite(mean_more)
    assert np.all(mean_more[ok] >= mean[ok] - 1e-12)


@SETTINGS
@given(loads(), st.floats(0.1, 50.0), st.floats(0.1, 5.0))
def test_the_model_is_deterministic(
    load: tuple[int, Demand, float, float], ca2: float, scv: float
) -> None:
    k, d, slo, hit = load
    a = curve(k, with_scv(d, ca2, scv), slo, hit)
    b = curve(k, with_scv(d, ca2, scv), slo, hit)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_poisson_and_exponential_lengths_keep_the_mgc_wait() -> None:
    # ca^2 = 1: Allen-Cunneen's factor is (1 + cs^2) / 2, the old M/G/c one.
    one = queue_curve(3, 20.0, 0.1, 0.7, 1.0)
    assert one[3][3] == pytest.approx(queue_curve(3, 20.0, 0.1, 0.7)[3][3])
    # ... and the wait scales with (ca^2 + cs^2) / 2.
    bursty = queue_curve(3, 20.0, 0.1, 0.7, 9.0)
    assert bursty[3][3] == pytest.approx(one[3][3] * (9.0 + 0.7) / (1.0 + 0.7))


def test_gamma_length_moments() -> None:
    # Exponential: k! m^k; SCV 0.5 (shape 2): m^2 1.5, m^3 1.5 * 2, m^4 1.5 * 2 * 2.5.
    assert length_moments(10.0, 1.0) == pytest.approx((10.0, 200.0, 6000.0, 240000.0))
    assert length_moments(1.0, 0.5) == pytest.approx((1.0, 1.5, 3.0, 7.5))
    # A prefill linear in the length has the lengths' SCV.
    lin = PROFILES[0].model_copy(
        update={"prefill_base_s": 0.0, "prefill_per_token_s": 1.0, "prefill_per_token2_s": 0.0}
    )
    got = prefill_scv(lin, Demand(1.0, 300.0, 1.0, input_scv=2.5), CacheEffect())
    assert got == pytest.approx(2.5)


def test_the_tabulated_gamma_cdf_matches_the_exact_one() -> None:
    rng = np.random.default_rng(3)
    shape = np.exp(rng.uniform(math.log(1 / 400), math.log(20), 20000))
    x = shape * np.exp(rng.uniform(math.log(1e-4), math.log(300), 20000))
    assert np.max(np.abs(gamma_cdf(shape, x) - gamma_cdf_fast(shape, x))) < 1e-3
    # Known values: exponential, Erlang-3, and P(1/2, x) = erf(sqrt(x)).
    xs = np.array([0.1, 1.0, 4.0])
    assert gamma_cdf(np.ones(3), xs) == pytest.approx(1 - np.exp(-xs), abs=1e-12)
    erlang3 = 1 - np.exp(-xs) * (1 + xs + xs**2 / 2)
    assert gamma_cdf(np.full(3, 3.0), xs) == pytest.approx(erlang3, abs=1e-12)
    half = [math.erf(math.sqrt(v)) for v in xs]
    assert gamma_cdf(np.full(3, 0.5), xs) == pytest.approx(half, abs=1e-12)
