"""The value model: value per answer, value-weighted goodput, break-even costs."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from goodput.api.spec import ValueModel
from goodput.planner.value import (
    LLAMA_31_MMLU_PRO,
    RECOVERY_W4A16,
    answer_value,
    break_even_cost,
    negative_above,
    total_value_goodput,
    value_goodput,
    value_per_answer,
)

P = st.floats(0.0, 1.0, allow_nan=False)
C = st.floats(0.0, 100.0, allow_nan=False)
G = st.floats(1.0, 1e5, allow_nan=False)


def test_published_figures_turn_negative_where_the_issue_says() -> None:
    p70, p405 = LLAMA_31_MMLU_PRO["70b"], LLAMA_31_MMLU_PRO["405b"]
    assert negative_above(p70) == pytest.approx(1.976, abs=1e-3)  # "near c = 2"
    assert negative_above(p405) == pytest.approx(2.745, abs=1e-3)
    assert negative_above(p405 * RECOVERY_W4A16) == pytest.approx(2.675, abs=1e-3)
    assert value_per_answer(p70, 1.976) == pytest.approx(0.0, abs=1e-3)
    assert value_per_answer(p70, 2.0) < 0 < value_per_answer(p405, 2.0)
    assert negative_above(1.0) == math.inf


def test_value_per_answer_is_right_minus_wrong_times_cost() -> None:
    assert value_per_answer(0.8, 3.0) == pytest.approx(0.8 - 0.2 * 3.0)
    assert value_per_answer(0.8, 3.0, right_answer=10.0) == pytest.approx(2.0)
    assert value_per_answer(0.5, 0.0) == 0.5  # c = 0: quality-weighted goodput
    with pytest.raises(ValueError, match="probability"):
        value_per_answer(1.2, 0.0)
    with pytest.raises(ValueError, match=">= 0"):
        value_per_answer(0.5, -1.0)


@settings(max_examples=200, deadline=None)
@given(p=P, q=P, c=C)
def test_value_is_monotone_in_quality(p: float, q: float, c: float) -> None:
    lo, hi = sorted((p, q))
    assert value_per_answer(lo, c) <= value_per_answer(hi, c) + 1e-12


@settings(max_examples=200, deadline=None)
@given(p=P, c=C, d=C)
def test_value_falls_with_the_wrong_answer_cost(p: float, c: float, d: float) -> None:
    lo, hi = sorted((c, d))
    assert value_per_answer(p, hi) <= value_per_answer(p, lo) + 1e-12
    if p < 0.999 and hi > lo + 1e-3:
        assert value_per_answer(p, hi) < value_per_answer(p, lo)


@settings(max_examples=200, deadline=None)
@given(p=st.floats(0.01, 0.99), c=C)
def test_sign_changes_at_negative_above(p: float, c: float) -> None:
    v = value_per_answer(p, c)
    if c < negative_above(p) - 1e-9:
        assert v > 0
    elif c > negative_above(p) + 1e-9:
        assert v < 0


def test_floor_zeroes_the_value_and_goodput_weights_tokens() -> None:
    model = ValueModel(wrong_answer_cost=1.0, quality_floor=0.6)
    assert answer_value(0.59, model) == 0.0
    assert answer_value(0.7, model) == pytest.approx(0.4)
    assert value_goodput(1000.0, 0.7, model) == pytest.approx(400.0)
    both = {"a": (1000.0, 0.7), "b": (500.0, 0.5)}
    assert total_value_goodput(both, model) == pytest.approx(400.0)  # b below the floor


@settings(max_examples=300, deadline=None)
@given(ga=G, pa=st.floats(0.05, 0.95), gb=G, pb=st.floats(0.05, 0.95))
def test_break_even_is_where_the_values_are_equal(
    ga: float, pa: float, gb: float, pb: float
) -> None:
    c = break_even_cost(ga, pa, gb, pb)
    if c is None:
        # No crossing at c >= 0: one side wins at every cost we look at.
        signs = {
            math.copysign(
                1.0, round(ga * value_per_answer(pa, x) - gb * value_per_answer(pb, x), 6)
            )
            for x in (0.0, 1.0, 10.0, 100.0)
        }
        assert len(signs) == 1 or ga * value_per_answer(pa, 0) == pytest.approx(
            gb * value_per_answer(pb, 0)
        )
        return
    assert c >= 0
    a, b = ga * value_per_answer(pa, c), gb * value_per_answer(pb, c)
    assert a == pytest.approx(b, rel=1e-6, abs=1e-6 * max(ga, gb))


def test_break_even_70b_vs_405b_at_a_speed_ratio() -> None:
    """70B serving 5.8x the on-time tokens of 405B (the H100 ratio of issue 13): the
    405B wins once a wrong answer costs more than the break-even c = 1.85: a little
    before the 70B's own value turns negative (c = 1.98), since near its zero 5.8x the
    tokens at almost no value each are worth less than the 405B's."""
    p70, p405 = LLAMA_31_MMLU_PRO["70b"], LLAMA_31_MMLU_PRO["405b"]
    c = break_even_cost(5.8, p70, 1.0, p405)
    assert c is not None
    assert c == pytest.approx(1.854, abs=1e-3)
    assert 0 < c < negative_above(p70) < negative_above(p405)
    assert 5.8 * value_per_answer(p70, c - 0.01) > value_per_answer(p405, c - 0.01)
    assert 5.8 * value_per_answer(p70, c + 0.01) < value_per_answer(p405, c + 0.01)
    # With equal speed the better variant wins at every c: no crossing.
    assert break_even_cost(1.0, p70, 1.0, p405) is None


def test_class_quality_weights_each_class_by_its_share_of_requests() -> None:
    from goodput.planner.value import class_quality

    assert class_quality(0.7, [], 1000.0) == 0.7
    # Exponential lengths around a 1000-token mean: P(L >= 2000) = e^-2 = 0.135.
    mixed = class_quality(0.7, [(2000, 0.3)], 1000.0)
    share = math.exp(-2.0)
    assert mixed == pytest.approx(0.7 * (1 - share) + 0.3 * share)
    # Two classes, each counted once; a long mean moves weight to the long class.
    two = class_quality(0.7, [(2000, 0.5), (8000, 0.2)], 4000.0)
    a, b = math.exp(-0.5), math.exp(-2.0)
    assert two == pytest.approx(0.7 * (1 - a) + 0.5 * (a - b) + 0.2 * b)
    assert class_quality(0.7, [(2000, 0.3)], 8000.0) < mixed


@settings(max_examples=200, deadline=None)
@given(base=P, long=P, n=st.integers(1, 100_000), mean=st.floats(1.0, 1e5))
def test_class_quality_lies_between_the_class_scores(
    base: float, long: float, n: int, mean: float
) -> None:
    from goodput.planner.value import class_quality

    q = class_quality(base, [(n, long)], mean)
    assert min(base, long) - 1e-12 <= q <= max(base, long) + 1e-12
