"""The live goodput estimate against the twin's exact per-request truth, over whole runs.

The estimate is what the operator publishes (status ``estimates.observedGoodput``, the
``goodput_estimated_tokens_per_second`` metric): the metrics layer's own math over the
twin's vLLM-format series (``goodput.sim.observe.InProcessSource``, the same code as the
Prometheus source minus HTTP). Each run is observed every 15 s over a 60 s window; the
exact figure is the output tokens of the requests that finished in the same windows and
met both SLOs. Issue 14 asks for the estimate within 10% of the truth over a run.

Regimes on Llama-3.1-8B (one GPU per replica), 5-minute Poisson runs: two prefill and
one decode replica at 30, 40 and 50 req/s (TTFT and ITL misses together: the
independence product ``a_ttft * a_itl`` reads 8%, 15% and 42% low, the comonotone
``min`` 8%, 33% and 81% high; the estimate 0.999, 1.065, 1.024), three prefill and one
decode at 40 req/s (0.992), and light load. The test also checks that the product would
fail at 50 req/s, so a return to it cannot pass.

Not within 10%, measured and left in docs/metrics.md: three prefill and one decode at
50 req/s (1.108), and one prefill and two decode at 40-50 req/s (0.61-0.84), where the
prefill queue grows without bound. There the bounds collapse (one marginal is 1), so
the error is not the dependence but the marginal itself: the TTFT histogram counts the
requests that got their first token in the window, the exact figure the requests that
finished in it, and under a growing queue those cohorts differ.
"""

from __future__ import annotations

import numpy as np
import pytest

from goodput.api.spec import GoodputPolicySpec
from goodput.profiles import load_profile
from goodput.sim.engine import DECODE, PREFILL, PoolSpec, Twin, TwinConfig
from goodput.sim.exporter import VllmTwinCollector
from goodput.sim.harness import goodput_mask
from goodput.sim.observe import InProcessSource, TwinPrometheus
from goodput.sim.traces import Trace

TICK_S, WINDOW_S, RUN_S = 15.0, 60.0, 300.0


def _twin(rate: float, prefill: int, decode: int, ttft: float, itl: float) -> Twin:
    rng = np.random.default_rng(11)
    n = int(rate * (RUN_S + 30))
    trace = Trace(
        name=f"poisson-{rate:g}",
        arrival_s=np.cumsum(rng.exponential(1 / rate, n)),
        input_tokens=rng.integers(200, 3000, n),
        output_tokens=rng.integers(20, 300, n),
        hash_ids=None,
    )
    prof = load_profile("llama-3.1-8b-h100-tp1")
    cfg = TwinConfig(
        pools={PREFILL: PoolSpec(PREFILL, prof), DECODE: PoolSpec(DECODE, prof)},
        ttft_slo_s=ttft,
        itl_slo_s=itl,
    )
    tw = Twin(cfg, trace)
    for role, count in ((PREFILL, prefill), (DECODE, decode)):
        for _ in range(count):
            tw.add_replica(role, 0.0, 0.0)
    return tw


def _spec(ttft: float, itl: float) -> GoodputPolicySpec:
    return GoodputPolicySpec.model_validate(
        {
            "gpuBudget": 8,
            "pools": [
                {"role": r, "targetRef": {"name": r}, "maxReplicas": 4}
                for r in ("prefill", "decode")
            ],
            "slo": {"ttft": f"{ttft * 1000:g}ms", "itl": f"{itl * 1000:g}ms"},
            "metrics": {"window": f"{WINDOW_S:g}s"},
        }
    )


def _run(tw: Twin, spec: GoodputPolicySpec) -> tuple[float, float, float]:
    """Sums over the run's windows: (exact G, estimated G, independence-product G)."""
    prom = TwinPrometheus(VllmTwinCollector(tw))
    source = InProcessSource(spec, prom)
    prom.scrape()
    exact = est = indep = 0.0
    t = 0.0
    out_tokens = tw.trace.output_tokens
    while t + TICK_S <= RUN_S:
        t += TICK_S
        tw.run_until(t)
        prom.scrape()
        if t < WINDOW_S:
            continue
        obs = source.observe_now(t)
        pre, dec = obs.pools["prefill"], obs.pools["decode"]
        assert obs.missing == [], obs.notes
        assert pre.ttft is not None and dec.itl is not None
        g = obs.estimate.goodput_tokens_per_s
        assert g is not None
        finish = np.asarray(tw.finish)
        done = (finish > t - WINDOW_S) & (finish <= t)
        first = np.asarray(tw.first_token)[done]
        out = out_tokens[done]
        ttft = first - tw.trace.arrival_s[done]
        itl = np.where(out > 1, (finish[done] - first) / np.maximum(out - 1, 1), 0.0)
        met = goodput_mask(ttft, itl, out, spec.slo.ttft_seconds, spec.slo.itl_seconds)
        exact += float(np.sum(out * met)) / WINDOW_S
        est += g
        a, b = pre.ttft.attainment, dec.itl.attainment
        assert a is not None and b is not None and dec.generation_tokens_per_s is not None
        indep += dec.generation_tokens_per_s * a * b
    return exact, est, indep


@pytest.mark.parametrize(
    ("rate", "prefill", "decode", "ttft", "itl", "product_fails"),
    [
        (30.0, 2, 1, 0.1, 0.01, False),  # both pools overloaded: TTFT and ITL misses
        (40.0, 2, 1, 0.1, 0.01, False),
        (50.0, 2, 1, 0.1, 0.01, True),
        (40.0, 3, 1, 0.1, 0.01, False),
        (30.0, 2, 3, 0.1, 0.02, False),  # prefill-bound: TTFT misses only
        (8.0, 2, 2, 0.1, 0.02, False),  # light load
    ],
)
def test_live_estimate_within_10_percent_of_exact_goodput_over_a_run(
    rate: float, prefill: int, decode: int, ttft: float, itl: float, product_fails: bool
) -> None:
    exact, est, indep = _run(_twin(rate, prefill, decode, ttft, itl), _spec(ttft, itl))
    print(f"exact {exact:.0f} estimate {est:.0f} ({est / exact:.3f}) product {indep / exact:.3f}")
    assert exact > 0
    assert est == pytest.approx(exact, rel=0.10)
    if product_fails:
        # The independence product would not meet the bar here: the test can tell.
        assert indep < 0.9 * exact
