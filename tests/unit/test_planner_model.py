"""The per-pool performance model against hand-computed queueing and batching figures."""

from __future__ import annotations

import math

import numpy as np
import pytest

from goodput.planner.model import (
    ITL_BASE_CV,
    LIFETIME_AVERAGE,
    CacheEffect,
    Demand,
    decode_batch_cap,
    decode_curve,
    norm_cdf,
    prefill_capacity_service,
    prefill_curve,
    prefill_scv,
    prefill_service,
    queue_curve,
)
from goodput.profiles import load_profile

H100_8B = load_profile("llama-3.1-8b-h100-tp1")
H100_70B = load_profile("llama-3.1-70b-h100-tp4")


def test_norm_cdf_known_values() -> None:
    got = norm_cdf(np.array([-1.959964, 0.0, 1.0, 1.644854]))
    assert got == pytest.approx([0.025, 0.5, 0.841345, 0.95], abs=1e-6)


def test_single_server_queue_is_exact_mm1() -> None:
    # M/M/1, service 0.1 s, 6 req/s: rho 0.6, P(wait) = rho, mean wait = rho / (mu - lambda)
    served, wait_p, _theta, mean_wait = queue_curve(1, 6.0, 0.1, 1.0)
    assert served[1] == pytest.approx(6.0)
    assert wait_p[1] == pytest.approx(0.6)
    assert mean_wait[1] == pytest.approx(0.6 / (10.0 - 6.0))


def test_queue_serves_at_most_rho_max_of_capacity() -> None:
    served, *_ = queue_curve(4, 1000.0, 0.1, 1.0)
    assert served[4] == pytest.approx(0.95 * 40.0)


def test_prefill_time_has_linear_and_quadratic_terms() -> None:
    # Exponential prompt lengths with mean I: E[a + bL + cL^2] = a + bI + 2cI^2, plus the
    # per-sequence term d, with b the per-token rate of a full batch (the knee's share in it)
    p = H100_70B
    for length in (512.0, 4096.0):
        fixed, variable = prefill_service(p, 1.0, Demand(1.0, length, 100.0), CacheEffect())
        assert fixed + variable == pytest.approx(
            p.prefill_base_s
            + p.prefill_per_seq_s
            + p.prefill_per_token_loaded_s * length
            + 2 * p.prefill_per_token2_s * length**2
        )


def test_prefill_scv_of_exponential_lengths() -> None:
    # Linear cost only (b = 1, a = c = 0): S = L is exponential, SCV 1.
    lin = H100_8B.model_copy(
        update={"prefill_base_s": 0.0, "prefill_per_token_s": 1.0, "prefill_per_token2_s": 0.0}
    )
    assert prefill_scv(lin, Demand(1.0, 300.0, 1.0), CacheEffect()) == pytest.approx(1.0)
    # Quadratic only: S = L^2, E = 2I^2, Var = 24I^4 - 4I^4 -> SCV 5.
    quad = lin.model_copy(update={"prefill_per_token_s": 0.0, "prefill_per_token2_s": 1.0})
    assert prefill_scv(quad, Demand(1.0, 300.0, 1.0), CacheEffect()) == pytest.approx(5.0)


def test_batching_shares_the_fixed_cost_under_load() -> None:
    p = H100_8B  # max_prefill_tokens 8192: four 2000-token prompts share one batch
    demand = Demand(1.0, 2000.0, 100.0)
    fixed, variable = prefill_service(p, 1.0, demand, CacheEffect())
    assert prefill_capacity_service(p, 1.0, demand, CacheEffect()) == pytest.approx(
        fixed / 4.096 + variable
    )


def test_cache_hits_remove_their_share_and_add_load_time() -> None:
    p = H100_70B
    demand = Demand(1.0, 4000.0, 100.0)
    # 40 % of 4000 tokens hit; 1600 tokens x 327680 B at 16 GiB/s to load
    load = 1600 * 327680 / (16 * 2**30)
    cache = CacheEffect(0.4, load)
    fixed, variable = prefill_service(p, 1.0, demand, cache)
    assert variable == pytest.approx(
        p.prefill_per_seq_s
        + p.prefill_per_token_loaded_s * 2400
        + 2 * p.prefill_per_token2_s * 2400 * 4000
    )
    curve = prefill_curve(p, 1.0, Demand(1e-9, 4000.0, 100.0), cache, 10.0, 1)
    assert curve.mean_latency[1] == pytest.approx(fixed + variable + load, rel=1e-6)


def test_ttft_grows_with_load_and_attainment_falls() -> None:
    curves = [
        prefill_curve(H100_8B, 1.0, Demand(rate, 2000.0, 200.0), CacheEffect(), 0.2, 4)
        for rate in (1.0, 20.0, 60.0, 90.0)
    ]
    ttft = [c.mean_latency[4] for c in curves]
    att = [c.attainment[4] for c in curves]
    assert ttft == sorted(ttft) and ttft[0] < ttft[-1]
    assert att == sorted(att, reverse=True) and att[0] > att[-1]


LINEAR_8B = H100_8B.model_copy(update={"prefill_per_token2_s": 0.0, "prefill_per_seq_s": 0.0})


def test_unloaded_ttft_attainment_is_the_prompt_length_tail() -> None:
    # Linear prefill cost: the variable part is the prompt length scaled, so exponential
    # lengths give an exponential tail ...
    demand = Demand(1e-9, 2000.0, 200.0)
    fixed, variable = prefill_service(LINEAR_8B, 1.0, demand, CacheEffect())
    curve = prefill_curve(LINEAR_8B, 1.0, demand, CacheEffect(), 0.05, 1)
    assert curve.attainment[1] == pytest.approx(1 - math.exp(-(0.05 - fixed) / variable), rel=1e-4)
    # ... and gamma lengths with SCV 1/2 an Erlang-2 tail: 1 - e^-x (1 + x), x = 2t/mean.
    demand = Demand(1e-9, 2000.0, 200.0, input_scv=0.5)
    fixed, variable = prefill_service(LINEAR_8B, 1.0, demand, CacheEffect())
    x = 2 * (0.05 - fixed) / variable
    curve = prefill_curve(LINEAR_8B, 1.0, demand, CacheEffect(), 0.05, 1)
    assert curve.attainment[1] == pytest.approx(1 - math.exp(-x) * (1 + x), rel=1e-4)


def test_decode_itl_closed_form_and_littles_law() -> None:
    p = H100_8B
    demand = Demand(40.0, 1000.0, 200.0)
    ctx = 1000.0 + 100.0
    slope = p.decode_per_seq_s + p.decode_per_ctx_token_s * ctx
    per_replica = 40.0 / 4
    expected = p.decode_base_s / (1 - slope * per_replica * 200.0)
    curve = decode_curve(p, 1.0, demand, 0.05, 4)
    assert curve.mean_latency[4] == pytest.approx(expected)
    batch = per_replica * 200.0 * expected  # Little's law
    assert expected == pytest.approx(p.decode_step_seconds(batch, batch * ctx))


def test_decode_itl_grows_with_batch_and_context() -> None:
    p = H100_8B
    short = decode_curve(p, 1.0, Demand(40.0, 500.0, 200.0), 0.05, 8).mean_latency
    long = decode_curve(p, 1.0, Demand(40.0, 8000.0, 200.0), 0.05, 8).mean_latency
    assert long[2] > short[2]
    assert short[2] > short[8]  # fewer replicas, bigger batch, slower step


def _itl_sigma(curve_att: float, mean: float, slo: float) -> float:
    """The normal spread that gives attainment ``curve_att`` at ``slo`` around ``mean``."""
    from statistics import NormalDist

    return (slo - mean) / NormalDist().inv_cdf(curve_att)


def test_step_noise_averages_out_over_a_requests_output_tokens() -> None:
    """At one replica and no load (batch ~ 0), the per-request ITL spread is the step
    noise alone: ITL_BASE_CV x ITL / sqrt(O - 1), so 400 output tokens spread 1/sqrt(399)
    of what a 2-token request does."""
    p = H100_8B
    slos = {}
    for out in (2.0, 400.0):
        curve = decode_curve(p, 1.0, Demand(1e-9, 1000.0, out), 1.0, 1)
        mean = float(curve.mean_latency[1])
        slo = mean * (1.0 + ITL_BASE_CV / math.sqrt(out - 1.0))  # one sigma above
        att = decode_curve(p, 1.0, Demand(1e-9, 1000.0, out), slo, 1).attainment[1]
        assert att == pytest.approx(0.8413, abs=2e-3)
        slos[out] = _itl_sigma(float(att), mean, slo)
    assert slos[400.0] / slos[2.0] == pytest.approx(1.0 / math.sqrt(399.0), rel=0.02)


def test_load_balanced_replicas_share_the_batch_spread() -> None:
    """Same load per replica on 1 and on 8 replicas: the same mean ITL, but the batch
    term's variance is shared by the 8 (N / 8), so a threshold just above the mean is met
    by more requests on 8 replicas; the batch term keeps LIFETIME_AVERAGE (2/e) of its
    variance, a request averaging its batch over its lifetime."""
    p = H100_8B
    one = decode_curve(p, 1.0, Demand(10.0, 1000.0, 200.0), 1.0, 1)
    eight = decode_curve(p, 1.0, Demand(80.0, 1000.0, 200.0), 1.0, 8)
    mean = float(one.mean_latency[1])
    assert float(eight.mean_latency[8]) == pytest.approx(mean)
    slo = mean * 1.02
    a1 = float(decode_curve(p, 1.0, Demand(10.0, 1000.0, 200.0), slo, 1).attainment[1])
    a8 = float(decode_curve(p, 1.0, Demand(80.0, 1000.0, 200.0), slo, 8).attainment[8])
    assert a8 > a1 + 0.05
    ctx = 1000.0 + 100.0
    slope = p.decode_per_seq_s + p.decode_per_ctx_token_s * ctx
    batch = 10.0 * 200.0 * mean
    step = (ITL_BASE_CV * mean) ** 2 / 199.0
    for n, att in ((1, a1), (8, a8)):
        want = math.sqrt(step + LIFETIME_AVERAGE * slope**2 * batch / n)
        assert _itl_sigma(att, mean, slo) == pytest.approx(want, rel=0.02)


def test_kv_memory_caps_the_batch_and_the_served_rate() -> None:
    p = H100_70B
    demand = Demand(1000.0, 30000.0, 2000.0)
    cap = decode_batch_cap(p, demand)
    assert cap == pytest.approx(p.kv_capacity_tokens / 32000.0)
    assert cap < p.max_batch
    curve = decode_curve(p, 1.0, demand, 0.2, 3)
    itl_at_cap = p.decode_step_seconds(cap, cap * (30000.0 + 1000.0))
    assert curve.served[3] == pytest.approx(0.95 * 3 * cap / (2000.0 * itl_at_cap))


def test_correction_factor_scales_the_whole_stage() -> None:
    demand = Demand(1e-9, 2000.0, 200.0)
    one = decode_curve(H100_8B, 1.0, demand, 0.05, 1).mean_latency[1]
    two = decode_curve(H100_8B, 2.0, demand, 0.05, 1).mean_latency[1]
    assert two == pytest.approx(2 * one, rel=1e-6)
