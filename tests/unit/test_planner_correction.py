"""Online correction: a profile 2x too fast or too slow converges to the truth, and
the corrected planner then plans as if it had the true profile."""

from __future__ import annotations

import pytest

from goodput.observation import LatencySummary, Observation
from goodput.plan import Allocation
from goodput.planner import GoodputPlanner, plan
from goodput.planner.correction import FACTOR_MAX, FACTOR_MIN, blend, solve_factor
from goodput.planner.model import (
    CacheEffect,
    Demand,
    decode_curve,
    prefill_curve,
    prefill_service,
)
from goodput.profiles import PerformanceProfile, load_profile

from .planner_fixtures import disagg_spec, observation

NAME = "llama-3.1-8b-h100-tp1"
TRUTH = load_profile(NAME)


def scaled(p: PerformanceProfile, k: float) -> PerformanceProfile:
    return p.model_copy(
        update={
            "prefill_base_s": p.prefill_base_s * k,
            "prefill_per_token_s": p.prefill_per_token_s * k,
            "prefill_per_token2_s": p.prefill_per_token2_s * k,
            "decode_base_s": p.decode_base_s * k,
            "decode_per_seq_s": p.decode_per_seq_s * k,
            "decode_per_ctx_token_s": p.decode_per_ctx_token_s * k,
        }
    )


def true_latencies(rate: float, n_p: int, n_d: int) -> tuple[float, float]:
    demand = Demand(rate, 2000.0, 250.0)
    ttft = prefill_curve(TRUTH, 1.0, demand, CacheEffect(), 0.5, n_p).mean_latency[n_p]
    itl = decode_curve(TRUTH, 1.0, demand, 0.05, n_d).mean_latency[n_d]
    return float(ttft), float(itl)


def test_solve_factor_inverts_a_monotone_prediction_and_clamps() -> None:
    assert solve_factor(lambda f: 3.0 * f, 6.0) == pytest.approx(2.0, rel=1e-6)
    assert solve_factor(lambda f: 3.0 * f, 1000.0) == FACTOR_MAX
    assert solve_factor(lambda f: 3.0 * f, 0.0) == FACTOR_MIN
    assert blend(1.0, 4.0) == pytest.approx(2.0)  # half way in log space


@pytest.mark.parametrize("wrong_by", [0.5, 2.0])
def test_misspecified_profile_converges(wrong_by: float) -> None:
    spec = disagg_spec(32)
    planner = GoodputPlanner(spec, profiles={NAME: scaled(TRUTH, wrong_by)})
    current = Allocation(pools={"prefill": 4, "decode": 4})
    errors = []
    for step in range(12):
        rate = 20.0 + 5.0 * (step % 3)  # load varies; the truth does not
        ttft, itl = true_latencies(rate, 4, 4)
        obs = observation(
            rate,
            ttft=LatencySummary(mean_s=ttft),
            itl=LatencySummary(mean_s=itl),
            ready={"prefill": 4, "decode": 4},
            now=15.0 * step,
        )
        planner.decide(obs, current, 15.0 * step)
        f = planner.state.factors
        errors.append(
            abs(f["prefill"].prefill * wrong_by - 1) + abs(f["decode"].decode * wrong_by - 1)
        )
    assert errors[-1] < 0.01
    assert errors[-1] < errors[0] / 50  # geometric convergence, not luck
    # Corrected prediction = truth at a load it was not corrected at
    f = planner.state.factors
    demand = Demand(28.0, 2000.0, 250.0)
    wrong = scaled(TRUTH, wrong_by)
    got = decode_curve(wrong, f["decode"].decode, demand, 0.05, 4).mean_latency[4]
    assert got == pytest.approx(true_latencies(28.0, 4, 4)[1], rel=0.01)


def test_corrected_planner_plans_like_the_true_profile() -> None:
    spec = disagg_spec(48)
    wrong = GoodputPlanner(spec, profiles={NAME: scaled(TRUTH, 2.0)})
    right = GoodputPlanner(spec)
    current = Allocation(pools={"prefill": 4, "decode": 4})
    for step in range(30):
        ttft, itl = true_latencies(25.0, 4, 4)
        obs = observation(
            25.0,
            ttft=LatencySummary(mean_s=ttft),
            itl=LatencySummary(mean_s=itl),
            ready={"prefill": 4, "decode": 4},
            now=15.0 * step,
        )
        corrected = wrong.decide(obs, current, 15.0 * step)
        truth_plan = right.decide(obs, current, 15.0 * step)
    assert corrected.allocation() == truth_plan.allocation()
    uncorrected, _ = plan(spec, obs, current, None, 0.0, profiles={NAME: scaled(TRUTH, 2.0)})
    assert uncorrected.total_gpus > corrected.total_gpus  # the slow prior over-provisions


def true_median_ttft(rate: float, n: int) -> float:
    demand = Demand(rate, 2000.0, 250.0)
    lo, hi = 0.0, 10.0
    for _ in range(60):
        mid = (lo + hi) / 2
        att = prefill_curve(TRUTH, 1.0, demand, CacheEffect(), mid, n).attainment[n]
        lo, hi = (mid, hi) if att < 0.5 else (lo, mid)
    return (lo + hi) / 2


@pytest.mark.parametrize("wrong_by", [0.5, 2.0])
def test_median_ttft_correction_converges(wrong_by: float) -> None:
    planner = GoodputPlanner(disagg_spec(32), profiles={NAME: scaled(TRUTH, wrong_by)})
    current = Allocation(pools={"prefill": 4, "decode": 4})
    for step in range(12):
        obs = observation(
            20.0,
            ttft=LatencySummary(p50_s=true_median_ttft(20.0, 4), mean_s=99.0),  # p50 preferred
            ready={"prefill": 4, "decode": 4},
            now=15.0 * step,
        )
        planner.decide(obs, current, 15.0 * step)
    assert planner.state.factors["prefill"].prefill * wrong_by == pytest.approx(1.0, abs=0.01)


def bursty(obs: Observation, dispersion: float, waiting: float | None = None) -> Observation:
    """``obs`` with the front pool's measured arrival dispersion (and queue)."""
    front = obs.pools["prefill"].model_copy(
        update={"arrival_dispersion": dispersion, "waiting_requests": waiting}
    )
    return obs.model_copy(update={"pools": {**obs.pools, "prefill": front}})


def true_attainment(rate: float, n: int, dispersion: float, slo: float = 0.5) -> float:
    demand = Demand(rate, 2000.0, 250.0, dispersion, 1.0)
    c = prefill_curve(TRUTH, 1.0, demand, CacheEffect(), slo, n)
    return float(c.attainment[n]) * min(1.0, float(c.served[n]) / rate)


@pytest.mark.parametrize("wrong_by", [0.6, 1.6])
def test_tail_correction_converges_in_busy_intervals(wrong_by: float) -> None:
    """The TTFT factor is fitted to the observed attainment at the SLO, including
    intervals with a queue longer than the replica count and above 85 % utilisation
    (which the median fit skipped): a misspecified profile converges to the truth."""
    planner = GoodputPlanner(disagg_spec(32), profiles={NAME: scaled(TRUTH, wrong_by)})
    current = Allocation(pools={"prefill": 4, "decode": 4})
    fixed, variable = prefill_service(TRUTH, 1.0, Demand(1.0, 2000.0, 250.0), CacheEffect())
    capacity = 4 / (fixed + variable)
    errors = []
    for step in range(40):
        rate = capacity * (0.75 + 0.1 * (step % 3))  # up to 95 % busy
        att = true_attainment(rate, 4, 6.0)
        obs = bursty(
            observation(
                rate,
                ttft=LatencySummary(attainment=att, p50_s=99.0),  # the tail is preferred
                ready={"prefill": 4, "decode": 4},
                now=15.0 * step,
            ),
            6.0,
            waiting=12.0,  # busy: more queued than replicas
        )
        planner.decide(obs, current, 15.0 * step)
        errors.append(abs(planner.state.factors["prefill"].prefill * wrong_by - 1))
    assert errors[-1] < 0.02
    assert errors[-1] < errors[0] / 10


def test_tail_factor_stays_within_its_bounds() -> None:
    planner = GoodputPlanner(disagg_spec(32))
    current = Allocation(pools={"prefill": 4, "decode": 4})
    for step in range(60):
        obs = observation(
            10.0,
            ttft=LatencySummary(attainment=0.0, p50_s=5.0),  # nothing meets the SLO
            ready={"prefill": 4, "decode": 4},
            now=15.0 * step,
        )
        planner.decide(obs, current, 15.0 * step)
    assert planner.state.factors["prefill"].prefill == pytest.approx(FACTOR_MAX, rel=1e-3)


def test_a_window_without_a_miss_fits_the_median_not_the_tail() -> None:
    """No miss among the window's requests says only that the tail is short; fitting it
    would drive the factor to its lower bound. The median is fitted instead."""
    median = true_median_ttft(20.0, 4)
    planner = GoodputPlanner(disagg_spec(32))
    current = Allocation(pools={"prefill": 4, "decode": 4})
    for step in range(12):
        obs = observation(
            20.0,
            ttft=LatencySummary(attainment=1.0, p50_s=median),
            ready={"prefill": 4, "decode": 4},
            now=15.0 * step,
        )
        planner.decide(obs, current, 15.0 * step)
    assert planner.state.factors["prefill"].prefill == pytest.approx(1.0, abs=0.01)


def test_the_plan_says_what_was_measured_and_what_assumed() -> None:
    spec = disagg_spec(32)
    current = Allocation(pools={"prefill": 4, "decode": 4})
    assumed, _ = plan(spec, observation(20.0, now=0.0), current, None, 0.0)
    assert "arrival ca^2 1 (Poisson, assumed" in assumed.message
    assert "prompt-length SCV 1 (exponential, assumed" in assumed.message
    assert "profile correction" in assumed.message and "prefill x1.00" in assumed.message
    obs = bursty(observation(20.0, now=0.0), 7.5)
    front = obs.pools["prefill"].model_copy(update={"prompt_tokens_scv": 1.8})
    obs = obs.model_copy(update={"pools": {**obs.pools, "prefill": front}})
    measured, _ = plan(spec, obs, current, None, 0.0)
    assert "arrival ca^2 7.50 (index of dispersion of request counts, measured)" in measured.message
    assert "prompt-length SCV 1.80 (prompt-token histogram, measured)" in measured.message
    # Burstier measured arrivals never predict a better TTFT attainment.
    assert measured.pools["prefill"].predicted_attainment is not None
    assert assumed.pools["prefill"].predicted_attainment is not None
    assert (
        measured.pools["prefill"].predicted_attainment
        <= assumed.pools["prefill"].predicted_attainment + 1e-9
        or measured.total_gpus > assumed.total_gpus
    )
