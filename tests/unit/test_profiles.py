"""The bundled profiles reproduce the published figures they were fitted to and obey
physics (no decode step faster than streaming the weights once); a pool names its
profile exactly, and nothing stands in for a missing or unknown one. Tests that read
the shared published data fail, never skip, when it is not where the one rule
(:mod:`goodput.profiles.shared_data`) says it is."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import pytest

from goodput.profiles import (
    ProfileError,
    ProfileMissing,
    ProfileNotFound,
    available_profiles,
    load_profile,
    pool_profile,
    profile_choices,
)
from goodput.profiles.shared_data import (
    ENV,
    REPOSITORY,
    SharedDataMissing,
    require_shared_data,
    shared_data_dir,
)
from goodput.reasons import Reason

REPO = Path(__file__).resolve().parents[2]
REQUIRED = {
    "llama-3.1-8b-h100-tp1",
    "llama-3.1-8b-a100-tp1",
    "llama-3.1-70b-h100-tp4",
    "llama-3.1-70b-h100-tp8",
    "llama-3.1-70b-a100-tp4",
    "llama-3.1-70b-a100-tp8",
    "llama-3.3-70b-fp8-h100-tp2",
    "llama-3.1-405b-fp8-h100-tp8",
    "llama-3.1-405b-fp8-h200-tp8",
    "llama-3.1-405b-w4a16-h100-tp4",
    "llama-3.1-405b-w4a16-h100-tp8",
    "qwen3-235b-a22b-fp8-h100-tp8",
}
# Fitted to published end-to-end or composed kernel timings: fit within 25%.
# The W4A16 profiles are an assumption (no INT4 timing is published): their tolerance
# adds the sensitivity to it, and they must say so.
ASSUMED = {"llama-3.1-405b-w4a16-h100-tp4", "llama-3.1-405b-w4a16-h100-tp8"}
# Derived from TensorRT-LLM's throughput table: they state their fit error.
LARGE = {n for n in REQUIRED if "405b" in n or "235b" in n}


@pytest.fixture(scope="module")
def perf() -> Path:
    try:
        return require_shared_data("perf")
    except SharedDataMissing as err:
        why = str(err)
    pytest.fail(f"this test needs the shared published data: {why}", pytrace=False)


def test_required_profiles_are_bundled() -> None:
    assert set(available_profiles()) >= REQUIRED


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_fit_reproduces_calibration_points(name: str) -> None:
    prof = load_profile(name)
    assert len(prof.calibration) >= 7  # the TensorRT-LLM Qwen3 column has 7 rows
    assert prof.fit_tolerance <= (0.30 if name in ASSUMED else 0.25)
    for point in prof.calibration:
        assert point.source
        rel = prof.predicted_s(point) / point.measured_s - 1
        assert abs(rel) <= prof.fit_tolerance, (point, rel)


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_decode_never_below_weight_streaming_floor(name: str) -> None:
    prof = load_profile(name)
    for batch in (1, 2, 16, 64, 256):
        assert prof.decode_step_seconds(batch, 0.0) >= prof.decode_floor_s


@pytest.mark.parametrize("name", sorted(LARGE))
def test_large_profiles_state_sources_fit_error_and_assumptions(name: str) -> None:
    prof = load_profile(name)
    text = " ".join(prof.sources)
    assert "§2c" in text  # the TensorRT-LLM table they come from
    assert "fit: worst relative error" in text
    assert ("ASSUMPTION" in text) == (name in ASSUMED)
    if name in ASSUMED:
        assert prof.fit_tolerance > 0.25  # wider, and the source says why
        assert "GEMM-rate assumption" in prof.sources[-1]


def test_large_profiles_physics_hand_computed() -> None:
    fp8 = load_profile("llama-3.1-405b-fp8-h100-tp8")
    int4 = load_profile("llama-3.1-405b-w4a16-h100-tp4")
    moe = load_profile("qwen3-235b-a22b-fp8-h100-tp8")
    # 405.85 B params x 1 B (FP8) or 0.5 B (INT4); 235.04 B x 1 B (README section 3)
    assert fp8.weight_bytes == pytest.approx(405.85e9)
    assert int4.weight_bytes == pytest.approx(202.925e9)
    assert moe.weight_bytes == pytest.approx(235.04e9)
    # HBM floors: weights / (GPUs x 3.35 TB/s)
    assert fp8.decode_floor_s == pytest.approx(405.85e9 / (8 * 3.35e12))
    assert int4.decode_floor_s == pytest.approx(202.925e9 / (4 * 3.35e12))  # 15.1 ms
    # The step's fixed cost: weights at the measured 2.92 TB/s per GPU
    assert int4.decode_base_s == pytest.approx(202.925e9 / (4 * 2.92e12))
    # KV per token: FP8 KV for the TRT-LLM FP8 405B run, BF16 otherwise
    assert fp8.kv_bytes_per_token == 258048
    assert int4.kv_bytes_per_token == 516096
    assert int4.kv_capacity_tokens == int((0.9 * 320e9 - 202.925e9) / 516096)
    # INT4 on half the GPUs at the BF16 rate: more compute per token than FP8 TP8
    assert int4.decode_per_seq_s > 2 * fp8.decode_per_seq_s
    assert int4.prefill_per_token_s > 2 * fp8.prefill_per_token_s


def test_trtllm_points_are_the_published_throughputs() -> None:
    """Hand-copied from shared/data/perf/README.md §2c: 1 / (output tokens/s)."""
    published = {
        ("llama-3.1-405b-fp8-h100-tp8", 1000, 1000): 2919,
        ("llama-3.1-405b-fp8-h100-tp8", 20000, 2000): 345,
        ("llama-3.1-405b-fp8-h200-tp8", 128, 2048): 5348,
        ("qwen3-235b-a22b-fp8-h100-tp8", 5000, 500): 3225,
    }
    for (name, isl, osl), tput in published.items():
        (point,) = [
            p for p in load_profile(name).calibration if (p.tokens, p.output_tokens) == (isl, osl)
        ]
        assert point.stage == "throughput"
        assert point.measured_s == pytest.approx(1 / tput)


def test_current_stack_points_are_the_published_figures() -> None:
    """Hand-copied from shared/data/perf/README.md §2b (NIM 1.8.0, Llama-3.3-70B FP8 TP2)
    and §2c (TensorRT-LLM, column Llama-3.3-70B H100 TP2 FP8)."""
    prof = load_profile("llama-3.3-70b-fp8-h100-tp2")
    got = {
        (p.stage, p.batch, p.tokens, p.context_tokens, p.output_tokens): p.measured_s
        for p in prof.calibration
    }
    assert got[("prefill", 1, 5000, 0, 0)] == pytest.approx(0.40677)
    assert got[("prefill", 1, 500, 0, 0)] == pytest.approx(0.04777)
    assert got[("decode", 1, 0, 5250, 0)] == pytest.approx(0.01858)
    assert got[("decode", 1, 0, 1500, 0)] == pytest.approx(0.01891)
    assert got[("throughput", 5, 5000, 0, 500)] == pytest.approx(1 / 218.48)
    assert got[("throughput", 50, 5000, 0, 500)] == pytest.approx(1 / 814.37)
    # FP8 KV: (0.9 x 160 GB - 70.55 GB) / 163840 B = 448303 tokens; 5000/500 at 448303 // 5500
    assert prof.kv_capacity_tokens == int((0.9 * 160e9 - 70.55e9) / 163840)
    assert got[("throughput", 448303 // 5500, 5000, 0, 500)] == pytest.approx(1 / 898)
    assert not any(
        p.stage == "throughput" and p.batch in (100, 150, 200, 250) for p in prof.calibration
    )
    assert prof.decode_base_s >= prof.decode_floor_s  # 70.55 GB / (2 x 3.35 TB/s) = 10.5 ms


def test_splitwise_profiles_say_why_their_prefill_form() -> None:
    for name in ("llama-3.1-70b-h100-tp4", "llama-3.1-70b-a100-tp8"):
        prof = load_profile(name)
        text = " ".join(prof.sources)
        assert "batches (2-64 prompts of 512)" in text
        assert "prefill_per_seq_s (d)" in text and "prefill_knee_tokens (K)" in text
        assert "the kernel, not fitted" in text
        assert prof.prefill_knee_tokens in (1024, 1536, 2048, 3072, 4096)
        assert "fit: worst relative error" in prof.sources[-1]


def test_kv_capacity_hand_computed() -> None:
    # (0.9 * 80 GB - 16.1 GB of weights) / 131072 B per token (README section 3)
    assert load_profile("llama-3.1-8b-h100-tp1").kv_capacity_tokens == 426483
    # 4 GPUs: (0.9 * 320 GB - 141.1 GB) / 327680 B
    assert load_profile("llama-3.1-70b-a100-tp4").kv_capacity_tokens == int(
        (0.9 * 320e9 - 141.1e9) / 327680
    )


def test_names_are_exact_and_errors_are_typed() -> None:
    with pytest.raises(ProfileNotFound) as info:
        load_profile("llama-3.1-8b-h100")  # no short aliases
    err = info.value
    assert isinstance(err, ProfileError) and isinstance(err, KeyError)
    assert err.reason == Reason.ProfileNotFound
    assert "llama-3.1-8b-h100-tp1" in str(err)  # lists the bundled names
    assert not str(err).startswith("'")  # the message, not KeyError's quoted repr
    assert err.args[0] == str(err)
    with pytest.raises(ProfileNotFound, match="gpt-5-b200"):
        load_profile("gpt-5-b200")


def test_pool_profile_refuses_missing_and_unknown_names_for_the_pool() -> None:
    with pytest.raises(ProfileMissing) as missing:
        pool_profile(None, "decode", 4)
    assert missing.value.reason == Reason.ProfileMissing
    assert missing.value.role == "decode"
    text = str(missing.value)
    assert "decode pool names no performance profile" in text
    assert "llama-3.1-405b-w4a16-h100-tp4" in text and "4 GPUs per replica" in text
    with pytest.raises(ProfileNotFound) as unknown:
        pool_profile("llama-3.1-405b-int4", "prefill")
    assert unknown.value.name == "llama-3.1-405b-int4"
    assert "prefill pool's profile 'llama-3.1-405b-int4' is not bundled" in str(unknown.value)
    assert pool_profile("llama-3.1-8b-h100-tp1", "decode").name == "llama-3.1-8b-h100-tp1"


def test_profile_choices() -> None:
    assert profile_choices() == available_profiles() == sorted(available_profiles())
    assert "llama-3.1-70b-h100" not in profile_choices()  # aliases are gone
    four = profile_choices(4)
    assert {"llama-3.1-70b-h100-tp4", "llama-3.1-405b-w4a16-h100-tp4"} <= set(four)
    assert all(load_profile(n).gpus_per_replica == 4 for n in four)
    assert profile_choices(3) == []


def test_speed_orders_as_hardware_does() -> None:
    h100, a100 = load_profile("llama-3.1-70b-h100-tp4"), load_profile("llama-3.1-70b-a100-tp4")
    assert h100.prefill_seconds(2048, 2048**2) < a100.prefill_seconds(2048, 2048**2)
    assert h100.decode_step_seconds(32, 32 * 1000) < a100.decode_step_seconds(32, 32 * 1000)
    h, g = load_profile("llama-3.1-405b-fp8-h100-tp8"), load_profile("llama-3.1-405b-fp8-h200-tp8")
    assert g.decode_step_seconds(32, 32 * 1000) < h.decode_step_seconds(32, 32 * 1000)


def test_splitwise_points_match_published_csv(perf: Path) -> None:
    with (perf / "derived/splitwise_perf_model_medians.csv").open() as f:
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


def test_bundled_files_are_what_derive_produces(perf: Path) -> None:
    """Fitted floats within 1e-9 relative (least squares differs by ~1e-12 between BLAS
    kernels on different CPUs); everything else exactly."""
    from goodput.profiles.derive import FIT_REL_TOL, derive_all, differences

    derived = derive_all(perf)
    assert sorted(p.name for p in derived) == available_profiles()
    for prof in derived:
        assert differences(load_profile(prof.name), prof, rel=FIT_REL_TOL) == [], prof.name


def test_differences_tolerates_float_noise_only() -> None:
    from goodput.profiles.derive import differences

    prof = load_profile("llama-3.1-8b-h100-tp1")
    noisy = prof.model_copy(update={"decode_base_s": prof.decode_base_s * (1 + 6e-12)})
    assert differences(prof, noisy) == []
    moved = prof.model_copy(update={"decode_base_s": prof.decode_base_s * (1 + 1e-6)})
    assert differences(prof, moved) == [
        f".decode_base_s: {prof.decode_base_s!r} != {moved.decode_base_s!r}"
    ]
    renamed = prof.model_copy(update={"sources": [*prof.sources[:-1], "other"]})
    assert differences(prof, renamed)
    assert differences(prof, prof.model_copy(update={"kv_capacity_tokens": 1}))


def test_shared_data_is_found_beside_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    assert REPOSITORY == REPO  # from the package's location, not the working directory
    assert shared_data_dir() == REPO.parent / "shared" / "data"


def test_shared_data_setting_overrides_and_absence_is_explained(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "perf").mkdir()
    monkeypatch.setenv(ENV, str(tmp_path))
    assert shared_data_dir() == tmp_path
    assert require_shared_data("perf") == tmp_path / "perf"
    with pytest.raises(SharedDataMissing, match=f"{tmp_path / 'traces'} does not exist"):
        require_shared_data("traces")
    monkeypatch.delenv(ENV)
    monkeypatch.setattr("goodput.profiles.shared_data.REPOSITORY", tmp_path / "clone")
    with pytest.raises(SharedDataMissing, match=f"set \\${ENV}") as info:
        require_shared_data("perf")
    assert isinstance(info.value, FileNotFoundError)


def test_no_file_names_a_machine_specific_path() -> None:
    """The repository and its sibling shared/ folder are wherever the clone is: no file
    may name their absolute paths (CI clones elsewhere)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=REPO,
            capture_output=True,
            check=True,
        ).stdout.split(b"\0")
        files = [REPO / rel.decode() for rel in listed if rel]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout
        caches = {".git", ".venv", "__pycache__", ".hypothesis", ".mypy_cache", ".ruff_cache"}
        caches |= {".pytest_cache", "out"}  # what tools and runs write, never committed
        files = [
            f
            for f in REPO.rglob("*")
            if not caches & set(f.relative_to(REPO).parts) and ".egg-info" not in str(f)
        ]
    needles = [str(REPO).encode(), str(REPO.parent / "shared").encode()]
    offenders = []
    for path in files:
        if path.is_file():
            data = path.read_bytes()
            offenders += [f"{path.relative_to(REPO)}: {n.decode()}" for n in needles if n in data]
    assert offenders == []
