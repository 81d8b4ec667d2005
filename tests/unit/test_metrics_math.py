"""The metrics layer's arithmetic against hand-computed values (see each comment)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from goodput.metrics.math import (
    Coverage,
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
    window_coverage,
    window_overlaps,
    worst_coverage,
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
    def test_estimate_between_independence_and_comonotone_and_bounds(self) -> None:
        e = goodput_estimate(0.9, 0.8, 1000.0, 1.0)
        assert e.attainment == pytest.approx(0.8 * 0.9**0.5)  # sqrt(0.72 * 0.8)
        assert 0.72 < e.attainment < 0.8
        assert e.attainment_lower == pytest.approx(0.7)
        assert e.attainment_upper == pytest.approx(0.8)
        assert e.goodput_tokens_per_s == pytest.approx(1000.0 * 0.8 * 0.9**0.5)

    def test_one_marginal_met_is_the_other(self) -> None:
        assert goodput_estimate(1.0, 0.6, 10.0, 1.0).attainment == pytest.approx(0.6)
        assert goodput_estimate(0.6, 1.0, 10.0, 1.0).attainment == pytest.approx(0.6)

    def test_quality_weights_goodput(self) -> None:
        got = goodput_estimate(0.9, 0.8, 1000.0, 0.5).goodput_tokens_per_s
        assert got == pytest.approx(500.0 * 0.8 * 0.9**0.5)

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
def test_point_estimate_lies_within_bounds(a: float, b: float) -> None:
    e = goodput_estimate(a, b, 1.0, 1.0)
    assert e.attainment is not None and e.attainment_lower is not None
    assert e.attainment_upper is not None
    assert e.attainment_lower - 1e-12 <= e.attainment <= e.attainment_upper + 1e-12


# ---- window coverage ----------------------------------------------------------------

LOOKBACK_S = 300.0


def scrapes(start: float, end: float, interval: float) -> list[float]:
    n = math.floor((end - start) / interval + 1e-9)
    return [start + i * interval for i in range(n + 1)]


def coverage_of(
    samples: list[float],
    now: float,
    window: float,
    step: float,
    stale_from: tuple[float, ...] = (),
) -> Coverage:
    """What the coverage query returns, modelled on Prometheus 2.x semantics: steps at
    multiples of ``step`` in the closed range [now - window, now]; at each step (and
    at the window start) the newest sample within the 5 min lookback, unless a
    staleness marker (written at a time in ``stale_from``) came after it; ages only
    at steps before the newest sample."""
    start = now - window
    ts = sorted(t for t in samples if t <= now)
    newest = ts[-1]

    def latest_at(s: float) -> float | None:
        before = [t for t in ts if t <= s]
        if not before or s - before[-1] > LOOKBACK_S:
            return None
        if any(before[-1] < m <= s for m in stale_from):
            return None
        return before[-1]

    steps = [k * step for k in range(math.ceil(start / step), math.floor(now / step) + 1)]
    present, silence = 0, None
    for s in steps:
        latest = latest_at(s)
        if latest is None:
            continue
        present += 1
        if latest < newest:
            silence = s - latest if silence is None else max(silence, s - latest)
    at_start = latest_at(start)
    return window_coverage(
        window_s=window,
        step_s=step,
        steps=len(steps),
        present_steps=present,
        longest_silence_s=silence,
        start_age_s=None if at_start is None else start - at_start,
        samples=len([t for t in ts if start <= t <= now]),
        trailing_s=now - newest,
    )


class TestWindowCoverage:
    @settings(max_examples=60, deadline=None)
    @given(phase=st.floats(0, 15), now=st.floats(10_000, 10_015))
    def test_steady_scrapes_cover_the_minimum_window(self, phase: float, now: float) -> None:
        # The API's lower bound: window = 4 scrape intervals (15 s scrapes, 1 m window).
        cov = coverage_of(scrapes(phase, now, 15.0), now, 60.0, 1.0)
        assert not cov.partial and cov.covered_s == 60.0

    @settings(max_examples=60, deadline=None)
    @given(phase=st.floats(0, 1), now=st.floats(1000, 1001))
    def test_steady_scrapes_cover_a_short_window(self, phase: float, now: float) -> None:
        # The integration tests' setting: 1 s scrapes, a 3 s window, 0.1 s steps.
        assert not coverage_of(scrapes(phase, now, 1.0), now, 3.0, 0.1).partial

    def test_one_missed_scrape_is_tolerated_two_are_not(self) -> None:
        ts = scrapes(0.3, 1000, 1.0)
        one = [t for t in ts if abs(t - 980.3) > 0.01]
        assert not coverage_of(one, 1000.0, 60.0, 1.0).partial
        three = [t for t in ts if not 979 < t < 983]
        cov = coverage_of(three, 1000.0, 60.0, 1.0)
        assert cov.partial and cov.silence_s == pytest.approx(4.0, abs=1.0)

    @pytest.mark.parametrize("back_for", [2.0, 5.0, 20.0, 55.0])
    def test_after_prometheus_was_down_the_window_is_partial(self, back_for: float) -> None:
        # Scrapes until t=900, none until 1000 - back_for (no staleness markers: the
        # newest sample just ages), then every second again; window 60 s.
        now = 1000.0
        ts = scrapes(0.25, 900, 1.0) + scrapes(now - back_for, now, 1.0)
        cov = coverage_of(ts, now, 60.0, 1.0)
        assert cov.partial
        assert cov.covered_s == pytest.approx(back_for, abs=1.5)

    def test_a_full_window_after_the_outage_is_not_partial(self) -> None:
        # Until the window starts after the first sample back, however little of it
        # lies before: the whole outage is one silence.
        ts = scrapes(0.25, 900, 1.0) + scrapes(945.0, 1010, 1.0)
        assert coverage_of(ts, 1000.0, 60.0, 1.0).partial  # window starts at 940
        assert coverage_of(ts, 1004.9, 60.0, 1.0).partial  # 944.9
        assert not coverage_of(ts, 1005.1, 60.0, 1.0).partial  # 945.1: all after it

    def test_a_vanished_target_is_seen_through_its_staleness_markers(self) -> None:
        # The target's series went away at 950 (markers at the next scrape) and came
        # back at 980: absent steps, not ages.
        now = 1000.0
        ts = [t for t in scrapes(0.5, now, 1.0) if not 950 < t < 980]
        cov = coverage_of(ts, now, 60.0, 1.0, stale_from=(951.0,))
        assert cov.partial and cov.starts_covered
        assert cov.covered_s == pytest.approx(31.0, abs=1.5)

    def test_a_window_starting_while_series_were_stale_marked_is_partial(self) -> None:
        # Gone from 900 to 945 with staleness markers: partial until the window starts
        # after their return, not merely once little of it is left (rate() would
        # still extrapolate less).
        ts = [t for t in scrapes(0.5, 1010, 1.0) if not 900 < t < 945]

        def at(now: float) -> Coverage:
            return coverage_of(ts, now, 60.0, 1.0, stale_from=(901.0,))

        assert at(1000.0).partial and not at(1000.0).starts_covered
        assert at(1000.0).covered_s == pytest.approx(55.0, abs=1.5)
        assert at(1004.9).partial
        assert not at(1005.6).partial

    def test_an_outage_in_the_middle_of_the_window_is_partial(self) -> None:
        ts = [t for t in scrapes(0.5, 1000, 1.0) if not 960 < t < 975]
        assert coverage_of(ts, 1000.0, 60.0, 1.0).partial

    def test_ingestion_delay_at_the_end_is_staleness_not_a_gap(self) -> None:
        # A remote-write backend 8 s behind: the silence after the newest sample is
        # judged by maxStaleness, so it must not make every observation partial.
        assert not coverage_of(scrapes(0.5, 992, 1.0), 1000.0, 60.0, 1.0).partial

    def test_no_or_one_sample_is_partial(self) -> None:
        none = window_coverage(
            window_s=60.0,
            step_s=1.0,
            steps=61,
            present_steps=0,
            longest_silence_s=None,
            start_age_s=None,
            samples=None,
            trailing_s=70.0,
        )
        assert none.partial and none.covered_s == 0.0
        one = coverage_of([*scrapes(0.5, 900, 1.0), 999.0], 1000.0, 60.0, 1.0)
        assert one.partial and one.samples == 1

    def test_garbage_figures_count_against_coverage(self) -> None:
        cov = window_coverage(
            window_s=60.0,
            step_s=1.0,
            steps=61,
            present_steps=math.nan,
            longest_silence_s=1.0,
            start_age_s=0.5,
            samples=60,
            trailing_s=0.5,
        )
        assert cov.partial  # every step counted absent

    def test_worst_coverage_and_overlap(self) -> None:
        full = Coverage(60.0, 1.0, 3.0, 60)
        half = Coverage(60.0, 30.0, 3.0, 30, uncovered_s=30.0)
        assert worst_coverage([full, half, full]) is half
        assert worst_coverage([]) is None
        assert window_overlaps(100.0, 60.0, 40.0) and window_overlaps(100.0, 60.0, 100.0)
        assert not window_overlaps(100.0, 60.0, 39.9)
        assert not window_overlaps(100.0, 60.0, None)
