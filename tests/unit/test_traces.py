"""Trace readers and the rate-curve synthesiser, on small inline files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from goodput.sim.traces import (
    Trace,
    read_azure,
    read_mooncake,
    read_rate_curve,
    read_trace,
    synthesize_from_rates,
)

AZURE = """TIMESTAMP,ContextTokens,GeneratedTokens
2023-11-16 18:15:46.6805900,374,44
2023-11-16 18:15:50.9951690,396,109
2023-11-16 18:16:46.0000000,1000,0
"""

MOONCAKE = """{"timestamp": 0, "input_length": 6758, "output_length": 500, "hash_ids": [0, 1, 2]}
{"timestamp": 2997, "input_length": 1200, "output_length": 3, "hash_ids": [0, 7, 8]}

{"timestamp": 1000, "input_length": 10, "output_length": 1, "hash_ids": []}
"""

RATES = """window_start_s,total_rate_rps,active_clients,top_client_rate_rps
0,2.0,3,1.0
600,0,0,0
1200,4.0,3,2.0
"""


def test_azure_reader_rebases_time_and_keeps_tokens(tmp_path: Path) -> None:
    p = tmp_path / "a.csv"
    p.write_text(AZURE)
    tr = read_azure(p)
    # 7 fractional digits: 50.9951690 - 46.6805900 = 4.314579 s
    assert tr.arrival_s == pytest.approx([0.0, 4.314579, 59.31941], abs=1e-6)
    assert tr.input_tokens.tolist() == [374, 396, 1000]
    # a zero-output row still produces one token (the first comes from prefill)
    assert tr.output_tokens.tolist() == [44, 109, 1]
    assert tr.hash_ids is None
    assert read_trace(p).input_tokens.tolist() == [374, 396, 1000]


def test_mooncake_reader_sorts_converts_ms_and_keeps_hashes(tmp_path: Path) -> None:
    p = tmp_path / "m.jsonl"
    p.write_text(MOONCAKE)
    tr = read_mooncake(p)
    assert tr.arrival_s.tolist() == [0.0, 1.0, 2.997]
    assert tr.input_tokens.tolist() == [6758, 10, 1200]
    assert tr.hash_ids is not None
    assert [list(h) for h in tr.hash_ids] == [[0, 1, 2], [], [0, 7, 8]]
    assert len(read_trace(p)) == 3


def test_unknown_csv_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "r.csv"
    p.write_text(RATES)
    with pytest.raises(ValueError, match="not an Azure trace"):
        read_trace(p)


def test_window_and_scaling() -> None:
    tr = Trace(
        name="t",
        arrival_s=np.array([0.0, 1.0, 2.0, 3.0]),
        input_tokens=np.array([1, 2, 3, 4]),
        output_tokens=np.array([5, 6, 7, 8]),
    )
    w = tr.window(1.0, 3.0)
    assert w.arrival_s.tolist() == [0.0, 1.0]
    assert w.input_tokens.tolist() == [2, 3]
    assert tr.scaled(2.0).arrival_s.tolist() == [0.0, 0.5, 1.0, 1.5]
    with pytest.raises(ValueError):
        Trace("bad", np.array([1.0, 0.0]), np.array([1, 1]), np.array([1, 1]))


def test_rate_curve_masks_gaps(tmp_path: Path) -> None:
    p = tmp_path / "r.csv"
    p.write_text(RATES)
    starts, rates = read_rate_curve(p)
    assert starts.tolist() == [0.0, 600.0, 1200.0]
    assert rates.tolist() == [2.0, 2.0, 4.0]  # the zero window is a collection gap


def test_synthesis_follows_the_curve_and_is_seeded() -> None:
    lengths = Trace(
        name="len",
        arrival_s=np.array([0.0, 1.0]),
        input_tokens=np.array([100, 200]),
        output_tokens=np.array([10, 20]),
    )
    starts = np.array([0.0, 600.0, 1200.0, 1800.0])
    rates = np.array([1.0, 1.0, 3.0, 3.0])
    a = synthesize_from_rates(starts, rates, lengths, seed=7, compress=10.0)
    b = synthesize_from_rates(starts, rates, lengths, seed=7, compress=10.0)
    c = synthesize_from_rates(starts, rates, lengths, seed=8, compress=10.0)
    assert np.array_equal(a.arrival_s, b.arrival_s)
    assert not np.array_equal(a.arrival_s, c.arrival_s)
    # 2400 s of curve in 240 s; the same request count per window as the curve
    # (expected 600+600+1800+1800 = 4800), at 10x the rate.
    assert a.arrival_s[-1] < 240.0
    assert len(a) == pytest.approx(4800, rel=0.05)
    first_half = np.sum(a.arrival_s < 120.0)
    assert first_half / len(a) == pytest.approx(0.25, abs=0.03)
    assert set(a.input_tokens.tolist()) <= {100, 200}
    m = synthesize_from_rates(starts, rates, lengths, seed=1, compress=10.0, mean_rps=5.0)
    assert len(m) / 240.0 == pytest.approx(5.0, rel=0.06)


def test_bundled_slice_is_the_documented_azure_window() -> None:
    import hashlib
    from importlib import resources

    data = resources.files("goodput.sim").joinpath("data")
    raw = data.joinpath("azure2023_code_15min.csv").read_bytes()
    readme = data.joinpath("README.md").read_text()
    assert hashlib.sha256(raw).hexdigest() in readme
    tr = read_azure(str(data.joinpath("azure2023_code_15min.csv")))
    assert len(tr) == 2834
    assert tr.duration_s < 900.0
    assert data.joinpath("demo-policy.yaml").is_file()
