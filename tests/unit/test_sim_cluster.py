"""The twin's simulated cluster (the operator's ScaleClient over the twin) and its
in-process observation source (the metrics layer's math on what Prometheus would store
from the twin's vLLM exporter), against hand-computed values."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from goodput.actuator.budget import budget_safe_writes
from goodput.actuator.kube import TargetError
from goodput.api.spec import GoodputPolicySpec, TargetRef
from goodput.metrics.math import UNDEFINED_NO_REQUESTS
from goodput.reasons import Reason
from goodput.sim.cluster import SimCluster
from goodput.sim.engine import DECODE, PREFILL, Twin
from goodput.sim.exporter import TTFT_BUCKETS, HistogramSample, PodSample, Scrape, VllmTwinCollector
from goodput.sim.observe import InProcessSource, TwinPrometheus
from goodput.sim.scenario import Scenario, build_scenario
from goodput.sim.traces import Trace

PROFILE = "llama-3.1-8b-h100-tp1"


def scenario(budget: int = 4, ttft: str = "300ms", window: str = "1m") -> Scenario:
    spec = GoodputPolicySpec.model_validate(
        {
            "mode": "Enforce",
            "gpuBudget": budget,
            "pools": [
                {"role": r, "targetRef": {"name": r}, "maxReplicas": 6, "profile": PROFILE}
                for r in ("prefill", "decode")
            ],
            "slo": {"ttft": ttft, "itl": "30ms"},
            "metrics": {"window": window},
            "behavior": {"interval": "10s", "startupDelay": "20s"},
        }
    )
    return build_scenario(spec)


def trace(at: list[float], n_in: list[int], n_out: list[int]) -> Trace:
    return Trace(
        name="t",
        arrival_s=np.asarray(at, dtype=float),
        input_tokens=np.asarray(n_in),
        output_tokens=np.asarray(n_out),
    )


def busy(n: int = 600, span: float = 120.0, seed: int = 0) -> Trace:
    rng = np.random.default_rng(seed)
    return trace(
        np.sort(rng.uniform(0, span, n)).tolist(),
        rng.integers(100, 4000, n).tolist(),
        rng.integers(2, 400, n).tolist(),
    )


def ref(name: str) -> TargetRef:
    return TargetRef.model_validate({"name": name})


def write(cl: SimCluster, name: str, n: int) -> None:
    asyncio.run(cl.write(ref(name), cl.namespace, n))


def read(cl: SimCluster, name: str):  # type: ignore[no-untyped-def]
    return asyncio.run(cl.read(ref(name), cl.namespace))


# ---------------------------------------------------------------------------- cluster


def long_decodes() -> tuple[SimCluster, Twin]:
    """1 prefill + 3 decode replicas (4 GPUs, the budget), each decode replica running
    one long request when the test starts writing (t = 1 s)."""
    sc = scenario()
    tw = Twin(sc.twin, trace([0.0, 0.0, 0.0], [200, 200, 200], [20_000, 20_000, 20_000]))
    cl = SimCluster(tw, sc, startup_delay_s=20.0)
    cl.start({PREFILL: 1, DECODE: 3})
    tw.run_until(1.0)
    assert sorted(r.n for r in tw.replicas if r.role == DECODE) == [1, 1, 1]
    return cl, tw


def test_a_shrink_drains_and_draining_replicas_are_counted() -> None:
    """decode 3 -> 1 while every replica has a request: two replicas drain, still
    present and terminating, holding their GPUs (read by the budget-safe order as
    (max(1, 1) + 2) x 1 = 3 GPUs), until their requests are done."""
    cl, tw = long_decodes()
    write(cl, "decode", 1)
    s = read(cl, "decode")
    assert (s.spec_replicas, s.pods_present, s.pods_terminating, s.pods_ready) == (1, 3, 2, 1)
    assert s.template_gpus == 1
    assert cl.state(DECODE).gpus_held == 3 == tw.gpus_held() - 1
    assert cl.gpus_held() == 4 and cl.account.violations == 0
    tw.run_until(1e5)  # the drained requests finish; their replicas go
    s = read(cl, "decode")
    assert (s.spec_replicas, s.pods_present, s.pods_terminating, s.pods_ready) == (1, 1, 0, 1)
    assert cl.gpus_held() == 2
    assert [(w.key, w.from_replicas, w.to_replicas) for w in cl.writes] == [(DECODE, 3, 1)]


def test_a_grow_starts_beside_draining_replicas_and_is_ready_after_the_delay() -> None:
    """Growing decode 1 -> 2 while two replicas drain starts a new one beside them (a
    ReplicaSet does not count terminating pods): 5 GPUs held for a moment, over the
    budget of 4. The cluster accepts the write and counts the violation; the
    budget-safe order would have deferred the grow. The new replica is ready 20 s
    (the start-up delay) after it was created."""
    cl, tw = long_decodes()
    write(cl, "decode", 1)
    assert budget_safe_writes(cl.states(), {DECODE: 2}, 4).deferred == {DECODE: 2}
    write(cl, "decode", 2)
    s = read(cl, "decode")
    assert (s.spec_replicas, s.pods_present, s.pods_terminating, s.pods_ready) == (2, 4, 2, 1)
    assert cl.gpus_held() == 5
    assert cl.account.violations == 1 and cl.account.peak == 5
    tw.run_until(20.9)
    assert read(cl, "decode").pods_ready == 1
    tw.run_until(21.1)
    assert read(cl, "decode").pods_ready == 2


def test_a_shrink_cancels_a_starting_replica_first() -> None:
    cl, _ = long_decodes()
    write(cl, "prefill", 2)  # 5 GPUs: measured, not prevented
    assert read(cl, "prefill").pods_ready == 1
    write(cl, "prefill", 1)
    s = read(cl, "prefill")
    assert (s.spec_replicas, s.pods_present, s.pods_terminating) == (1, 1, 0)
    assert cl.gpus_held() == 4


def test_pursue_grows_as_soon_as_drained_gpus_are_free() -> None:
    """The oracle's privilege: decode 3 -> 1 and prefill 1 -> 3 in one goal; the shrink
    is written at once, prefill grows exactly when a draining replica goes (never above
    the budget), with no tick in between."""
    cl, tw = long_decodes()
    cl.pursue({PREFILL: 3, DECODE: 1})
    assert cl.spec == {PREFILL: 1, DECODE: 1}  # both drained replicas still hold GPUs
    tw.run_until(1e5)
    assert cl.spec == {PREFILL: 3, DECODE: 1}
    grows = [w for w in cl.writes if w.key == PREFILL]
    assert [w.to_replicas for w in grows] == [2, 3]
    # at the instant each drained replica's last request finished
    assert {w.t for w in grows} <= {float(f) for f in tw.finish} and grows[0].t > 1.0
    assert cl.account.violations == 0 and cl.account.peak == 4


def test_targets_no_other_writers_and_unknown_refs() -> None:
    cl, _ = long_decodes()
    assert asyncio.run(cl.other_autoscalers(ref("decode"), cl.namespace)) == []
    assert asyncio.run(cl.claims(cl.namespace)) == []
    with pytest.raises(TargetError) as err:
        read(cl, "nope")
    assert err.value.reason is Reason.TargetNotFound
    with pytest.raises(TargetError):
        asyncio.run(cl.read(ref("decode"), "elsewhere"))


@settings(max_examples=20, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries({PREFILL: st.integers(0, 6), DECODE: st.integers(0, 6)}),
        min_size=1,
        max_size=8,
    )
)
def test_budget_never_exceeded_at_any_moment_while_gpus_move(asks: list[dict[str, int]]) -> None:
    """Hostile asks (over the budget, swinging) written every 10 s in the budget-safe
    order: GPUs held (draining replicas included) never exceed the budget, checked at
    every replica start and after every change; deferred grows land once GPUs free."""
    sc = scenario(budget=5)
    tw = Twin(sc.twin, busy(n=500, span=100.0))
    cl = SimCluster(tw, sc, startup_delay_s=5.0)
    cl.start({PREFILL: 2, DECODE: 3})
    seen: list[int] = []
    add = tw.add_replica

    def watched(role: str, now: float, delay: float) -> int:
        rid = add(role, now, delay)
        seen.append(cl.gpus_held())
        assert cl.gpus_held() <= sc.budget
        return rid

    tw.add_replica = watched  # type: ignore[method-assign]
    t = 0.0
    for k in range(12):
        t += 10.0
        tw.run_until(t)
        cl.apply_safe(asks[k % len(asks)])
        assert cl.gpus_held() <= sc.budget
    tw.run_until(1e5)
    assert cl.account.violations == 0 and cl.account.peak <= sc.budget
    last = {r: cl.clamp(r, n) for r, n in asks[11 % len(asks)].items()}
    if sum(last.values()) <= sc.budget:
        cl.apply_safe(last)  # everything drained: whatever fits is written now
        assert cl.spec == last


# ---------------------------------------------------------------------------- source


def hist(bounds: tuple[float, ...], below: dict[float, float], total_sum: float) -> HistogramSample:
    """Cumulative counts from counts per bucket upper bound."""
    full = (*bounds, math.inf)
    cum, run = [], 0.0
    for b in full:
        run += below.get(b, 0.0)
        cum.append(run)
    return HistogramSample(full, tuple(cum), total_sum)


def pods(t: float, ttft: HistogramSample, done: float, gen: float) -> Scrape:
    tokens = hist((100.0, 1000.0), {1000.0: done}, 500.0 * done)
    out = hist((100.0, 1000.0), {100.0: done}, 50.0 * done)
    tpot = hist((0.01, 0.05), {0.01: done}, 0.008 * done)
    pre = PodSample(
        "prefill-0",
        PREFILL,
        "m",
        {
            "vllm:prompt_tokens_total": 500.0 * done,
            "vllm:prefix_cache_hits_total": 0.0,
            "vllm:prefix_cache_queries_total": 500.0 * done,
            "goodput_twin:busy_seconds_total": 0.0,
        },
        {"vllm:time_to_first_token_seconds": ttft, "vllm:request_prompt_tokens": tokens},
        {
            "vllm:num_requests_running": 0.0,
            "vllm:num_requests_waiting": 0.0,
            "vllm:kv_cache_usage_perc": 0.0,
        },
    )
    dec = PodSample(
        "decode-1",
        DECODE,
        "m",
        {"vllm:request_success_total": done, "vllm:generation_tokens_total": gen},
        {
            "vllm:request_time_per_output_token_seconds": tpot,
            "vllm:request_generation_tokens": out,
        },
        {
            "vllm:num_requests_running": 0.0,
            "vllm:num_requests_waiting": 0.0,
            "vllm:kv_cache_usage_perc": 0.25,
        },
    )
    return Scrape(t, (pre, dec))


def source(sc: Scenario, scrapes: list[Scrape]) -> InProcessSource:
    prom = TwinPrometheus(VllmTwinCollector(Twin(sc.twin, trace([], [], []))))
    prom.history.extend(scrapes)
    return InProcessSource(sc.spec, prom)


def test_zero_traffic_is_zero_not_missing() -> None:
    """Series present and flat for the whole window: rates are 0.0 (not missing), the
    figures that need a request are undefined with the metrics layer's note, and the
    estimated goodput is exactly 0.0; the planner may scale to the minimums."""
    sc = scenario()
    ttft = hist(TTFT_BUCKETS, {0.25: 30.0}, 6.0)
    same = [pods(0.0, ttft, 30.0, 1500.0), pods(60.0, ttft, 30.0, 1500.0)]
    obs = asyncio.run(source(sc, same).observe(60.0))
    assert obs.missing == []
    pre, dec = obs.pools[PREFILL], obs.pools[DECODE]
    assert dec.arrival_rate_rps == 0.0 and pre.arrival_rate_rps == 0.0  # copied from decode
    assert dec.generation_tokens_per_s == 0.0 and pre.prompt_tokens_per_s == 0.0
    assert pre.mean_input_tokens is None and dec.mean_output_tokens is None
    assert pre.ttft is not None and pre.ttft.attainment is None
    assert f"prefill.ttft: {UNDEFINED_NO_REQUESTS}" in obs.notes
    assert f"decode.mean_output_tokens: {UNDEFINED_NO_REQUESTS}" in obs.notes
    assert dec.kv_cache_usage == 0.25
    assert obs.estimate.goodput_tokens_per_s == 0.0


def test_a_threshold_between_buckets_is_interpolated() -> None:
    """In the window: 10 TTFTs in vLLM's (0.1, 0.25] bucket and 10 in (0.25, 0.5]; the
    300 ms SLO falls inside the second: 10 + 10 x (0.3 - 0.25) / (0.5 - 0.25) = 12 of
    20 = 0.6 (flagged: the bucket is wider than 25% of the threshold). The P50 is rank
    10 at the top of the first bucket: 0.25; the P90 rank 18 is 0.25 + 0.25 x 8 / 10 =
    0.45. Rates over the 60 s window: 20 done / 60 s; mean input 500 tokens."""
    sc = scenario(ttft="300ms")
    before = hist(TTFT_BUCKETS, {0.25: 5.0}, 1.0)
    after = hist(TTFT_BUCKETS, {0.25: 15.0, 0.5: 10.0}, 1.0 + 10 * 0.2 + 10 * 0.4)
    obs = asyncio.run(
        source(sc, [pods(0.0, before, 5.0, 250.0), pods(60.0, after, 25.0, 1250.0)]).observe(60.0)
    )
    t = obs.pools[PREFILL].ttft
    assert t is not None
    assert t.attainment == pytest.approx(0.6)
    assert t.threshold_between_coarse_buckets
    assert t.p50_s == pytest.approx(0.25) and t.p90_s == pytest.approx(0.45)
    assert t.mean_s == pytest.approx(0.3)
    dec = obs.pools[DECODE]
    assert dec.arrival_rate_rps == pytest.approx(20 / 60)
    assert obs.pools[PREFILL].mean_input_tokens == pytest.approx(500.0)
    assert dec.itl is not None and dec.itl.attainment == 1.0
    # the estimate: a_ttft 0.6 x a_itl 1.0, G = 1000 / 60 tok/s x 0.6
    assert obs.estimate.attainment == pytest.approx(0.6)
    assert obs.estimate.goodput_tokens_per_s == pytest.approx(1000 / 60 * 0.6)


def test_the_window_is_the_last_window_and_a_new_pod_counts_from_zero() -> None:
    """Scrapes at 0, 30 and 90 s, window 60 s: the increase from the scrape at 30 s (at
    or before 90 - 60) over 60 s. A decode pod born after 30 s counts from zero."""
    sc = scenario()
    t0 = pods(0.0, hist(TTFT_BUCKETS, {}, 0.0), 0.0, 0.0)
    t30 = pods(30.0, hist(TTFT_BUCKETS, {0.1: 10.0}, 0.5), 10.0, 500.0)
    t90 = pods(90.0, hist(TTFT_BUCKETS, {0.1: 40.0}, 2.0), 40.0, 2000.0)
    born = PodSample(
        "decode-7",
        DECODE,
        "m",
        {"vllm:request_success_total": 6.0, "vllm:generation_tokens_total": 300.0},
        {},
        {"vllm:num_requests_running": 2.0},
    )
    t90 = Scrape(90.0, (*t90.pods, born))
    obs = asyncio.run(source(sc, [t0, t30, t90]).observe(90.0))
    dec = obs.pools[DECODE]
    assert dec.arrival_rate_rps == pytest.approx((30 + 6) / 60)
    assert dec.generation_tokens_per_s == pytest.approx((1500 + 300) / 60)
    assert dec.running_requests == 2.0


def test_in_process_rates_are_the_twins_exact_counts() -> None:
    """On a real twin, scraped every 10 s: completions per second over the last minute
    are exactly the twin's finished requests in (60, 120] / 60, and the TTFT attainment
    is within the interpolation of the exact fraction."""
    sc = scenario(budget=6)
    tw = Twin(sc.twin, busy(n=1200, span=150.0, seed=3))
    cl = SimCluster(tw, sc, startup_delay_s=0.0)
    cl.start({PREFILL: 2, DECODE: 3})
    prom = TwinPrometheus(VllmTwinCollector(tw))
    src = InProcessSource(sc.spec, prom)
    for t in range(0, 130, 10):
        tw.run_until(float(t))
        prom.scrape()
    obs = asyncio.run(src.observe(120.0))
    finish = np.asarray(tw.finish)
    first = np.asarray(tw.first_token)
    done = (finish > 60.0) & (finish <= 120.0)
    assert obs.pools[DECODE].arrival_rate_rps == pytest.approx(done.sum() / 60.0, rel=1e-12)
    started = (first > 60.0) & (first <= 120.0)
    exact = float(np.mean((first - tw.trace.arrival_s)[started] <= 0.3))
    ttft = obs.pools[PREFILL].ttft
    assert ttft is not None and ttft.attainment == pytest.approx(exact, abs=0.05)
    assert obs.missing == []
    assert any(n.startswith("prefill_busy_fraction=") for n in obs.notes)
