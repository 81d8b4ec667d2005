"""The metrics layer's arithmetic against hand-computed values (see each comment)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from goodput.metrics.math import (
    Histogram,
    counter_increase,
    counter_rate,
    effective_quality,
    fraction_at_or_below,
    frechet_bounds,
    goodput_estimate,
    histogram_from_buckets,
    non_negative,
    quantile,
    safe_ratio,
    unit_fraction,
)

INF = math.inf

# 100 observations: 10 in (0, 0.1], 20 in (0.1, 0.25], 40 in (0.25, 0.5],
# 20 in (0.5, 1], 10 above 1.
HIST = [(0.1, 10.0), (0.25, 30.0), (0.5, 70.0), (1.0, 90.0), (INF, 100.0)]


def hist(pairs: list[tuple[float, float]] = HIST) -> Histogram:
    h = histogram_from_buckets(pairs)
    assert h is not None
    return h


class TestBuckets:
    def test_sorts_by_bound(self) -> None:
        h = hist(list(reversed(HIST)))
        assert h.bounds == (0.1, 0.25, 0.5, 1.0, INF)
        assert h.cumulative == (10.0, 30.0, 70.0, 90.0, 100.0)
        assert h.total == 100.0

    def test_non_monotonic_rates_take_running_max(self) -> None:
        # rate() of separate bucket series can dip: 10 then 9 is repaired to 10, 10.
        h = hist([(0.1, 10.0), (0.25, 9.0), (INF, 20.0)])
        assert h.cumulative == (10.0, 10.0, 20.0)

    @pytest.mark.parametrize(
        "pairs",
        [
            [(0.1, 1.0), (1.0, 2.0)],  # no +Inf bucket: total unknown
            [(0.1, math.nan), (INF, 2.0)],
            [(0.1, -1.0), (INF, 2.0)],
            [(0.1, 1.0), (INF, math.inf)],
            [(0.1, 1.0), (0.1, 1.0), (INF, 2.0)],
            [],
        ],
    )
    def test_garbage_is_none(self, pairs: list[tuple[float, float]]) -> None:
        assert histogram_from_buckets(pairs) is None


class TestAttainment:
    def test_threshold_on_a_bound_is_exact(self) -> None:
        a = fraction_at_or_below(hist(), 0.5)
        assert a.fraction == pytest.approx(0.70)
        assert a.coarse is False

    def test_interpolates_inside_the_bucket(self) -> None:
        # 0.3 lies 0.05/0.25 = 20% into (0.25, 0.5] holding 40: 30 + 8 = 38 of 100.
        a = fraction_at_or_below(hist(), 0.3)
        assert a.fraction == pytest.approx(0.38)
        assert a.coarse is True  # bucket width 0.25 > 25% of 0.3

    def test_first_bucket_starts_at_zero(self) -> None:
        # 0.05 is half of (0, 0.1] holding 10: 5 of 100.
        assert fraction_at_or_below(hist(), 0.05).fraction == pytest.approx(0.05)

    def test_narrow_bucket_is_not_coarse(self) -> None:
        h = hist([(0.09, 0.0), (0.1, 50.0), (INF, 100.0)])
        a = fraction_at_or_below(h, 0.095)
        # halfway through (0.09, 0.1] holding 50: 25 of 100; width 0.01 < 25% of 0.095.
        assert a.fraction == pytest.approx(0.25)
        assert a.coarse is False

    def test_above_highest_finite_bound_counts_inf_bucket_as_misses(self) -> None:
        a = fraction_at_or_below(hist(), 2.0)
        assert a.fraction == pytest.approx(0.90)
        assert a.coarse is True

    def test_no_observations_is_undefined(self) -> None:
        a = fraction_at_or_below(hist([(0.1, 0.0), (INF, 0.0)]), 0.05)
        assert a.fraction is None

    def test_negative_threshold_is_zero(self) -> None:
        assert fraction_at_or_below(hist(), -1.0).fraction == 0.0


class TestQuantile:
    @pytest.mark.parametrize(
        ("q", "expected"),
        [
            (0.05, 0.05),  # rank 5 in (0, 0.1] holding 10 -> 0.1 * 5/10
            (0.5, 0.375),  # rank 50: 20 of 40 into (0.25, 0.5] -> 0.25 + 0.25 * 0.5
            (0.9, 1.0),  # rank 90 reaches the top of (0.5, 1]
            (0.99, 1.0),  # rank 99 in +Inf bucket -> highest finite bound (Prometheus)
        ],
    )
    def test_matches_prometheus_histogram_quantile(self, q: float, expected: float) -> None:
        assert quantile(q, hist()) == pytest.approx(expected)

    def test_empty_is_none(self) -> None:
        assert quantile(0.5, hist([(0.1, 0.0), (INF, 0.0)])) is None

    def test_only_inf_bucket_is_none(self) -> None:
        assert quantile(0.5, hist([(INF, 3.0)])) is None

    def test_q_outside_unit_interval_is_none(self) -> None:
        assert quantile(1.5, hist()) is None


def test_frechet_bounds() -> None:
    assert frechet_bounds(0.9, 0.8) == pytest.approx((0.7, 0.8))
    assert frechet_bounds(0.3, 0.4) == pytest.approx((0.0, 0.3))


class TestGoodput:
    def test_independence_estimate_and_bounds(self) -> None:
        e = goodput_estimate(0.9, 0.8, 1000.0, 1.0)
        assert e.attainment == pytest.approx(0.72)
        assert e.attainment_lower == pytest.approx(0.7)
        assert e.attainment_upper == pytest.approx(0.8)
        assert e.goodput_tokens_per_s == pytest.approx(720.0)

    def test_quality_weights_goodput(self) -> None:
        assert goodput_estimate(0.9, 0.8, 1000.0, 0.5).goodput_tokens_per_s == pytest.approx(360.0)

    def test_no_generation_is_zero_goodput_even_without_attainment(self) -> None:
        e = goodput_estimate(None, None, 0.0, 1.0)
        assert e.goodput_tokens_per_s == 0.0
        assert e.attainment is None

    @pytest.mark.parametrize(
        ("a", "b", "gen", "q"),
        [
            (None, 0.8, 100.0, 1.0),
            (0.9, None, 100.0, 1.0),
            (0.9, 0.8, None, 1.0),
            (0.9, 0.8, 100.0, None),
        ],
    )
    def test_unknown_input_gives_unknown_goodput(
        self, a: float | None, b: float | None, gen: float | None, q: float | None
    ) -> None:
        assert goodput_estimate(a, b, gen, q).goodput_tokens_per_s is None

    def test_garbage_attainment_is_unknown(self) -> None:
        e = goodput_estimate(1.7, 0.8, 100.0, 1.0)
        assert e.attainment is None
        assert e.goodput_tokens_per_s is None

    def test_quality_floor(self) -> None:
        assert effective_quality(0.4, 0.5) == 0.0
        assert effective_quality(0.6, 0.5) == pytest.approx(0.6)
        assert effective_quality(1.2, 0.0) is None
        assert effective_quality(None, 0.0) is None


class TestCounters:
    def test_increase_across_a_reset(self) -> None:
        # 100 -> 150 (+50), reset, -> 30 (+30 since restart), -> 60 (+30): 110 in 30 s.
        samples = [(0.0, 100.0), (10.0, 150.0), (20.0, 30.0), (30.0, 60.0)]
        assert counter_increase(samples) == pytest.approx(110.0)
        assert counter_rate(samples) == pytest.approx(110.0 / 30.0)

    def test_unsorted_samples(self) -> None:
        assert counter_rate([(10.0, 20.0), (0.0, 0.0)]) == pytest.approx(2.0)

    def test_flat_counter_is_zero_rate(self) -> None:
        assert counter_rate([(0.0, 5.0), (10.0, 5.0)]) == 0.0

    @pytest.mark.parametrize(
        "samples",
        [
            [(0.0, 1.0)],
            [(0.0, 1.0), (0.0, 2.0)],
            [(0.0, 1.0), (1.0, math.nan)],
            [(0.0, -1.0), (1.0, 2.0)],
        ],
    )
    def test_undefined_rates(self, samples: list[tuple[float, float]]) -> None:
        assert counter_rate(samples) is None

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(st.floats(min_value=0, max_value=1e9, allow_nan=False), min_size=2, max_size=30)
    )
    def test_never_negative(self, values: list[float]) -> None:
        rate = counter_rate([(float(i), v) for i, v in enumerate(values)])
        assert rate is not None and rate >= 0


class TestScalars:
    def test_ratio(self) -> None:
        assert safe_ratio(10.0, 4.0) == pytest.approx(2.5)
        assert safe_ratio(0.0, 0.0) is None  # no requests: undefined, not 0 and not NaN
        assert safe_ratio(5.0, 0.0) is None
        assert safe_ratio(math.nan, 1.0) is None
        assert safe_ratio(-1.0, 2.0) is None
        assert safe_ratio(None, 2.0) is None

    def test_unit_fraction(self) -> None:
        assert unit_fraction(1.0000001) == 1.0
        assert unit_fraction(0.42) == pytest.approx(0.42)
        assert unit_fraction(7.5) is None
        assert unit_fraction(-0.1) is None
        assert unit_fraction(math.inf) is None

    def test_non_negative(self) -> None:
        assert non_negative(0.0) == 0.0
        assert non_negative(-3.0) is None
        assert non_negative(math.nan) is None


bucket_counts = st.lists(st.integers(min_value=0, max_value=1000), min_size=2, max_size=8)


def _hist_from_counts(counts: list[int]) -> Histogram:
    bounds = [0.01 * 2**i for i in range(len(counts) - 1)] + [INF]
    cum, pairs = 0.0, []
    for b, c in zip(bounds, counts, strict=True):
        cum += c
        pairs.append((b, cum))
    return hist(pairs)


@settings(max_examples=100, deadline=None)
@given(bucket_counts, st.floats(0, 2), st.floats(0, 2))
def test_attainment_is_monotone_in_threshold(counts: list[int], x: float, y: float) -> None:
    h = _hist_from_counts(counts)
    lo, hi = sorted((x, y))
    a, b = fraction_at_or_below(h, lo).fraction, fraction_at_or_below(h, hi).fraction
    if h.total == 0:
        assert a is None and b is None
    else:
        assert a is not None and b is not None and a <= b + 1e-12


@settings(max_examples=100, deadline=None)
@given(bucket_counts, st.floats(0.01, 0.99))
def test_quantile_inverts_attainment(counts: list[int], q: float) -> None:
    h = _hist_from_counts(counts)
    x = quantile(q, h)
    if h.total == 0:
        assert x is None
        return
    assert x is not None
    if x < h.bounds[-2]:  # inside a finite bucket: P(X <= quantile(q)) == q
        frac = fraction_at_or_below(h, x).fraction
        assert frac == pytest.approx(q, abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(st.floats(0, 1), st.floats(0, 1))
def test_independence_estimate_lies_within_bounds(a: float, b: float) -> None:
    e = goodput_estimate(a, b, 1.0, 1.0)
    assert e.attainment is not None and e.attainment_lower is not None
    assert e.attainment_upper is not None
    assert e.attainment_lower - 1e-12 <= e.attainment <= e.attainment_upper + 1e-12
