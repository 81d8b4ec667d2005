"""The goodput estimate, read through the real Prometheus from the digital twin's
vLLM-format exporter (goodput.sim.exporter), against the twin's exact per-request
truth (DESIGN section 2: "the estimate can be checked against the truth").

A disaggregated Llama-3.1-8B/H100 fleet (2 prefill, 1 decode) runs on the wall clock
with Poisson arrivals at 30 req/s (seed 7); after 22 s the twin's clock stops and the
policy's 10 s window ending there is observed; the truth is taken over the interval
the window's scrapes span. SLO 100 ms TTFT / 10 ms ITL, both vLLM bucket bounds, so
the marginals are not interpolated. Stated tolerances: rates 5%, marginal
attainments 0.03, the exact joint attainment within the Fréchet bounds ± 0.02 and
within 0.03 of the point estimate, the goodput estimate 15%.

Measured over three runs: completions 28.8/29.3/29.0 vs 28.7/28.9/29.1 req/s;
a_ttft 0.801/0.799/0.800 vs 0.800/0.798/0.800; a_itl 0.633/0.580/0.621 vs
0.632/0.573/0.607; exact A 0.578/0.519/0.553, always inside the bounds
(e.g. [0.435, 0.633]) and close to the upper one. DESIGN's independence product read
A 0.507/0.463/0.497 (12% low: under load TTFT and ITL misses come together); the point
estimate ``min(a, b) * sqrt(max(a, b))`` reads 0.566/0.518/0.555 (within 0.012). G
stays 11-13% low (2494 vs 2871 tok/s in the latest run; the product gave 2231): the
requests that meet the SLO are the longer ones (token-weighted attainment 0.65 against
0.58 by requests), which no per-request histogram separates. Over whole 5-minute runs
(tests/unit/test_estimate_vs_twin.py) the estimate is within 7%.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from goodput.api.spec import GoodputPolicySpec
from goodput.metrics.client import PrometheusClient
from goodput.metrics.source import PrometheusObservationSource
from goodput.profiles import load_profile
from goodput.sim.engine import DECODE, PREFILL, PoolSpec, Twin, TwinConfig
from goodput.sim.exporter import serve
from goodput.sim.harness import outcomes
from goodput.sim.traces import Trace
from tests.harness.process import free_port
from tests.harness.prometheus import start_prometheus

pytestmark = pytest.mark.integration

RATE, RUN_S, WINDOW_S = 30.0, 22.0, 10.0
TTFT_SLO, ITL_SLO = 0.1, 0.01


def twin() -> Twin:
    rng = np.random.default_rng(7)
    n = int(RATE * (RUN_S + 10))
    trace = Trace(
        name="poisson-30",
        arrival_s=np.cumsum(rng.exponential(1 / RATE, n)),
        input_tokens=rng.integers(200, 3000, n),
        output_tokens=rng.integers(20, 300, n),
        hash_ids=None,
    )
    prof = load_profile("llama-3.1-8b-h100-tp1")
    cfg = TwinConfig(
        pools={PREFILL: PoolSpec(PREFILL, prof), DECODE: PoolSpec(DECODE, prof)},
        ttft_slo_s=TTFT_SLO,
        itl_slo_s=ITL_SLO,
    )
    tw = Twin(cfg, trace)
    for role, count in ((PREFILL, 2), (DECODE, 1)):
        for _ in range(count):
            tw.add_replica(role, 0.0, 0.0)
    return tw


def scrape_span(url: str, at: float) -> tuple[float, float]:
    """Wall times of the first and last scrape inside the window ending at ``at``."""
    sel = f'{{__name__=~"vllm[:_]request_success_total",job="twin"}}[{WINDOW_S:g}s]'
    qs = urllib.parse.urlencode({"query": sel, "time": f"{at:.3f}"})
    with urllib.request.urlopen(f"{url}/api/v1/query?{qs}", timeout=10) as resp:
        result = json.load(resp)["data"]["result"]
    times = [float(t) for series in result for t, _ in series["values"]]
    return min(times), max(times)


def test_estimate_matches_the_twins_exact_goodput(tmp_path: Path) -> None:
    prom = start_prometheus(tmp_path / "prom")
    tw = twin()
    port = free_port()
    stop = None
    try:
        t0 = time.time()
        stop, _ = serve(tw, port)
        prom.add_target("twin", f"127.0.0.1:{port}")  # ~6 s, well before the window opens
        assert time.time() - t0 < RUN_S - WINDOW_S - 1
        time.sleep(max(0.0, t0 + RUN_S - time.time()))
        stop.set()
        t_stop = time.time()
        sim_now = t_stop - t0  # twin seconds == wall seconds (speed 1)
        time.sleep(1.5)  # a scrape after the stop; the window ends at t_stop anyway
        spec = GoodputPolicySpec.model_validate(
            {
                "gpuBudget": 8,
                "pools": [
                    {"role": r, "targetRef": {"name": r}, "maxReplicas": 4}
                    for r in ("prefill", "decode")
                ],
                "slo": {"ttft": "100ms", "itl": "10ms"},
                "metrics": {
                    "window": f"{WINDOW_S:g}s",
                    "selectors": {r: f'job="twin",pool="{r}"' for r in ("prefill", "decode")},
                },
            }
        )
        source = PrometheusObservationSource(spec, PrometheusClient(prom.url))
        obs = asyncio.run(source.observe(t_stop))
        first_scrape, last_scrape = scrape_span(prom.url, t_stop)
    finally:
        if stop is not None:
            stop.set()
        prom.stop()

    # The rates and bucket ratios span the scrapes inside the window, so the truth is
    # taken over the same interval (twin seconds == wall seconds since t0).
    lo, hi = first_scrape - t0, last_scrape - t0
    assert hi <= sim_now + 0.2 and hi - lo >= WINDOW_S - 2.5
    o = outcomes(tw)
    finish = np.asarray(tw.finish)
    first = np.asarray(tw.first_token)
    done = (finish > lo) & (finish <= hi)
    started = (first > lo) & (first <= hi)
    truth = {
        "completions": done.sum() / (hi - lo),
        "gen": o.output_tokens[done].sum() / (hi - lo),
        "a_ttft": float(np.mean(o.ttft[started] <= TTFT_SLO)),
        "a_itl": float(np.mean(o.itl[done] <= ITL_SLO)),
        "A": float(np.mean(o.met[done])),
        "G": float((o.output_tokens[done] * o.met[done]).sum() / (hi - lo)),
    }
    pre, dec = obs.pools["prefill"], obs.pools["decode"]
    assert obs.missing == [], obs.notes
    assert pre.ttft is not None and dec.itl is not None
    est = obs.estimate
    assert est.attainment_lower is not None and est.attainment_upper is not None
    got = {
        "completions": dec.arrival_rate_rps,
        "gen": dec.generation_tokens_per_s,
        "a_ttft": pre.ttft.attainment,
        "a_itl": dec.itl.attainment,
        "A": est.attainment,
        "G": est.goodput_tokens_per_s,
        "bounds": (est.attainment_lower, est.attainment_upper),
    }
    print(f"truth {truth}\nobserved {got}")  # shown with -s: the measured figures
    assert dec.arrival_rate_rps == pytest.approx(truth["completions"], rel=0.05)
    assert dec.generation_tokens_per_s == pytest.approx(truth["gen"], rel=0.05)
    assert pre.ttft.attainment == pytest.approx(truth["a_ttft"], abs=0.03)
    assert dec.itl.attainment == pytest.approx(truth["a_itl"], abs=0.03)
    assert est.attainment_lower - 0.02 <= truth["A"] <= est.attainment_upper + 0.02
    assert est.attainment == pytest.approx(truth["A"], abs=0.03)
    assert est.goodput_tokens_per_s == pytest.approx(truth["G"], rel=0.15)
