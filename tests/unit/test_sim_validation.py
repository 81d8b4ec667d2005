"""The twin against published measurements we did not produce (shared/data/perf).

Single-replica TTFT, ITL and end-to-end throughput of the twin, running the bundled
profiles, must land within +/-20% of Splitwise's DGX measurements of Llama2-70B
(same layer shapes as Llama-3-70B): Mutinifni/splitwise-sim data/perf_model.csv,
medians in shared/data/perf/derived/splitwise_perf_model_medians.csv.
"""

from __future__ import annotations

import numpy as np
import pytest

from goodput.profiles import load_profile
from goodput.sim.engine import DECODE, PREFILL, PoolSpec, Twin, TwinConfig
from goodput.sim.harness import outcomes
from goodput.sim.traces import Trace

TOL = 0.20


def _twin(profile: str, n_in: list[int], n_out: list[int], at: list[float]) -> Twin:
    prof = load_profile(profile)
    cfg = TwinConfig(
        pools={PREFILL: PoolSpec(PREFILL, prof), DECODE: PoolSpec(DECODE, prof)},
        ttft_slo_s=10.0,
        itl_slo_s=1.0,
        kv_link_bytes_per_s=1e30,  # Splitwise measured one machine: no transfer
    )
    tr = Trace(
        name="probe",
        arrival_s=np.asarray(at, dtype=float),
        input_tokens=np.asarray(n_in),
        output_tokens=np.asarray(n_out),
    )
    tw = Twin(cfg, tr)
    tw.add_replica(PREFILL, 0.0, 0.0)
    tw.add_replica(DECODE, 0.0, 0.0)
    tw.run_until(1e6)
    return tw


@pytest.mark.parametrize(
    ("profile", "prompt", "published_ms"),
    [
        # prompt_time, batch 1 (README section 2a table)
        ("llama-3.1-70b-h100-tp4", 1024, 105.6),
        ("llama-3.1-70b-h100-tp4", 4096, 463.5),
        ("llama-3.1-70b-a100-tp4", 2048, 403.3),
        ("llama-3.1-70b-h100-tp8", 8192, 844.9),
    ],
)
def test_ttft_matches_splitwise_prefill(profile: str, prompt: int, published_ms: float) -> None:
    o = outcomes(_twin(profile, [prompt], [2], [0.0]))
    assert o.ttft[0] * 1000 == pytest.approx(published_ms, rel=TOL)


@pytest.mark.parametrize(
    ("profile", "batch", "published_ms"),
    [
        # token_time, prompt 512, 128 output tokens
        ("llama-3.1-70b-h100-tp4", 16, 32.8),
        ("llama-3.1-70b-h100-tp4", 32, 36.9),
        ("llama-3.1-70b-a100-tp4", 16, 48.5),
        ("llama-3.1-70b-a100-tp4", 32, 52.3),
    ],
)
def test_itl_matches_splitwise_decode(profile: str, batch: int, published_ms: float) -> None:
    # `batch` requests reach the decode replica together and decode side by side.
    o = outcomes(_twin(profile, [512] * batch, [129] * batch, [0.0] * batch))
    assert np.mean(o.itl) * 1000 == pytest.approx(published_ms, rel=TOL)


@pytest.mark.parametrize(
    ("profile", "prompt", "published_e2e_ms"),
    [
        # e2e_time, batch 1, 128 output tokens: one stream's throughput
        ("llama-3.1-70b-h100-tp4", 512, 3836.8),
        ("llama-3.1-70b-a100-tp4", 1024, 5953.6),
        ("llama-3.1-70b-a100-tp4", 4096, 6852.5),
    ],
)
def test_single_stream_throughput_matches_splitwise_e2e(
    profile: str, prompt: int, published_e2e_ms: float
) -> None:
    tw = _twin(profile, [prompt], [128], [0.0])
    e2e = tw.finish[0] - tw.arrival[0]
    tokens_per_s = 128 / e2e
    assert tokens_per_s == pytest.approx(128 / (published_e2e_ms / 1000), rel=TOL)
