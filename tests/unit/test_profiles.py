"""The bundled profiles reproduce the published figures they were fitted to and obey
physics (no decode step faster than streaming the weights once)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from goodput.profiles import DEFAULT_PROFILE, available_profiles, load_profile

PERF = Path("/work/shared/data/perf")
REQUIRED = {
    "llama-3.1-8b-h100-tp1",
    "llama-3.1-8b-a100-tp1",
    "llama-3.1-70b-h100-tp4",
    "llama-3.1-70b-a100-tp4",
    "llama-3.1-70b-a100-tp8",
}


def test_required_profiles_are_bundled() -> None:
    assert set(available_profiles()) >= REQUIRED
    assert DEFAULT_PROFILE in available_profiles()


@pytest.mark.parametrize("name", [*sorted(REQUIRED), "llama-3.1-70b-h100-tp8"])
def test_fit_reproduces_calibration_points(name: str) -> None:
    prof = load_profile(name)
    assert len(prof.calibration) >= 10
    assert prof.fit_tolerance <= 0.25
    for point in prof.calibration:
        assert point.source
        rel = prof.predicted_s(point) / point.measured_s - 1
        assert abs(rel) <= prof.fit_tolerance, (point, rel)


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_decode_never_below_weight_streaming_floor(name: str) -> None:
    prof = load_profile(name)
    for batch in (1, 2, 16, 64, 256):
        assert prof.decode_step_seconds(batch, 0.0) >= prof.decode_floor_s


def test_kv_capacity_hand_computed() -> None:
    # (0.9 * 80 GB - 16.1 GB of weights) / 131072 B per token (README section 3)
    assert load_profile("llama-3.1-8b-h100-tp1").kv_capacity_tokens == 426483
    # 4 GPUs: (0.9 * 320 GB - 141.1 GB) / 327680 B
    assert load_profile("llama-3.1-70b-a100-tp4").kv_capacity_tokens == int(
        (0.9 * 320e9 - 141.1e9) / 327680
    )


def test_short_name_resolves_and_unknown_fails() -> None:
    assert load_profile("llama-3.1-8b-h100").name == "llama-3.1-8b-h100-tp1"
    with pytest.raises(KeyError, match="bundled"):
        load_profile("llama-3.1-70b-h100")  # ambiguous: tp4 and tp8
    with pytest.raises(KeyError):
        load_profile("gpt-5-b200")


def test_speed_orders_as_hardware_does() -> None:
    h100, a100 = load_profile("llama-3.1-70b-h100-tp4"), load_profile("llama-3.1-70b-a100-tp4")
    assert h100.prefill_seconds(2048, 2048**2) < a100.prefill_seconds(2048, 2048**2)
    assert h100.decode_step_seconds(32, 32 * 1000) < a100.decode_step_seconds(32, 32 * 1000)


@pytest.mark.skipif(not PERF.exists(), reason="shared published data not present")
def test_splitwise_points_match_published_csv() -> None:
    with (PERF / "derived/splitwise_perf_model_medians.csv").open() as f:
        rows = {
            (
                r["hardware"],
                int(r["tensor_parallel"]),
                int(r["prompt_size"]),
                int(r["batch_size"]),
            ): r
            for r in csv.DictReader(f)
            if r["model"] == "llama2-70b" and r["token_size"] == "128"
        }
    prof = load_profile("llama-3.1-70b-h100-tp4")
    for p in prof.calibration:
        prompt = int(p.tokens if p.stage == "prefill" else p.context_tokens - 64)
        row = rows[("h100-80gb", 4, prompt, p.batch)]
        col = "prompt_time" if p.stage == "prefill" else "token_time"
        assert p.measured_s == pytest.approx(float(row[col]) / 1e3)


@pytest.mark.skipif(not PERF.exists(), reason="shared published data not present")
def test_bundled_files_are_what_derive_produces() -> None:
    from goodput.profiles.derive import derive_all

    for prof in derive_all(PERF):
        assert load_profile(prof.name) == prof
