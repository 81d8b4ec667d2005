"""Regenerates the bundled profile JSON files from the published figures in
``shared/data/perf`` (a build-time tool, never imported by the operator).

Usage: ``python -m goodput.profiles.derive [PERF_DIR]``.

Two derivations, both fitted to DistServe's form by non-negative least squares on
relative error:

* Llama-3.1-70B: end-to-end Splitwise DGX measurements of Llama2-70B (same layer
  shapes) for prefill and the batch term of decode; the context term of decode from the
  aiconfigurator decode-attention kernel table (Splitwise varies context too little).
* Llama-3.1-8B: no end-to-end table with a stated config exists, so each point is
  composed from kernel measurements: vidur linear ops + aiconfigurator attention x
  layers + the LM head streamed at the measured skinny-GEMM bandwidth.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from goodput.profiles import CalibrationPoint, PerformanceProfile

SPLITWISE = "shared/data/perf/derived/splitwise_perf_model_medians.csv"
VIDUR = "shared/data/perf/derived/vidur_linear_ops_ms_per_iter.csv"
AIC_ATTN = "shared/data/perf/derived/aiconfigurator_attention_llama_shapes.csv"
MODELS = "shared/data/perf/derived/model_kv_and_weights.csv"
README = "shared/data/perf/README.md"

# vLLM defaults: gpu_memory_utilization 0.9, max_num_seqs 256; prefill token budget 8192.
MEM_UTIL = 0.9
MAX_BATCH = 256
MAX_PREFILL_TOKENS = 8192
LLAMA3_VOCAB = 128256  # aiconfigurator model_configs/meta-llama--Meta-Llama-3.1-8B_config.json


@dataclass(frozen=True)
class Gpu:
    key: str  # as in the vidur/splitwise tables
    aic_device: str
    hbm_bytes: float
    bandwidth: float
    streaming_bandwidth: float  # measured skinny-GEMM weight streaming, median
    citation: str


GPUS = {
    "h100": Gpu(
        "h100",
        "H100-SXM vLLM0.24.0",
        80e9,
        3.35e12,
        2.92e12,
        f"{README} §1: H100 SXM5 80 GB HBM3, 3.35 TB/s (aiconfigurator systems/h100_sxm.yaml);"
        " skinny-GEMM weight streaming median 2.92 TB/s",
    ),
    "a100": Gpu(
        "a100",
        "A100-SXM4-80GB vLLM0.14.0",
        80e9,
        2.039e12,
        1.52e12,
        f"{README} §1: A100 SXM4 80 GB HBM2e, 2.039 TB/s (aiconfigurator systems/a100_sxm.yaml);"
        " skinny-GEMM weight streaming median 1.52 TB/s",
    ),
}


def _rows(base: Path, rel: str) -> list[dict[str, str]]:
    with (base / rel.removeprefix("shared/data/perf/")).open() as f:
        return list(csv.DictReader(f))


def nnls_relative(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative least squares on relative error, by enumerating active sets
    (three coefficients: eight subsets, exact and dependency-free)."""
    w = 1.0 / y
    xw, yw = x * w[:, None], y * w
    best: tuple[float, np.ndarray] | None = None
    n = x.shape[1]
    for k in range(1, n + 1):
        for cols in itertools.combinations(range(n), k):
            sol, *_ = np.linalg.lstsq(xw[:, cols], yw, rcond=None)
            if np.any(sol < 0):
                continue
            coef = np.zeros(n)
            coef[list(cols)] = sol
            err = float(np.sum((xw @ coef - yw) ** 2))
            if best is None or err < best[0]:
                best = (err, coef)
    assert best is not None
    return best[1]


def _fit_prefill(points: list[CalibrationPoint]) -> np.ndarray:
    x = np.array([[1.0, p.batch * p.tokens, p.batch * p.tokens**2] for p in points])
    y = np.array([p.measured_s for p in points])
    return nnls_relative(x, y)


def _fit_decode(points: list[CalibrationPoint], ctx_coef: float | None) -> np.ndarray:
    y = np.array([p.measured_s for p in points])
    sum_ctx = np.array([p.batch * p.context_tokens for p in points])
    if ctx_coef is None:
        x = np.array([[1.0, p.batch, s] for p, s in zip(points, sum_ctx, strict=True)])
        return nnls_relative(x, y)
    x = np.array([[1.0, p.batch] for p in points])
    ab = nnls_relative(x, y - ctx_coef * sum_ctx)
    return np.array([ab[0], ab[1], ctx_coef])


def _attn_table(base: Path) -> dict[tuple[str, str, int, int, int], float]:
    table: dict[tuple[str, str, int, int, int], float] = {}
    for r in _rows(base, AIC_ATTN):
        key = (
            r["device"],
            r["table"],
            int(r["q_heads"]),
            int(r["batch_size"]),
            int(r["tokens_or_context"]),
        )
        table[key] = float(r["latency_ms"]) / 1e3
    return table


def _ctx_coef_per_layer(
    attn: dict[tuple[str, str, int, int, int], float], device: str, q_heads: int
) -> tuple[float, str]:
    """Seconds per context token per layer of decode attention: slope of latency vs
    batch*context over the bandwidth-bound rows (batch*context >= 16k)."""
    pts = [
        (b * c, t)
        for (d, tab, q, b, c), t in attn.items()
        if d == device
        and tab == "generation_attention_per_layer"
        and q == q_heads
        and b * c >= 16384
    ]
    xs = np.array([[1.0, p[0]] for p in pts])
    ys = np.array([p[1] for p in pts])
    coef = nnls_relative(xs, ys)
    cite = (
        f"{AIC_ATTN}: generation_attention_per_layer {device} {q_heads}q/8kv, slope of latency"
        f" vs batch*context over {len(pts)} rows with batch*context>=16384 ="
        f" {coef[1] * 1e9:.3f} ns/token/layer"
    )
    return float(coef[1]), cite


def _model_row(base: Path, model: str) -> dict[str, str]:
    return next(r for r in _rows(base, MODELS) if r["model"] == model)


def _common(base: Path, model: str, gpu: Gpu, tp: int) -> tuple[dict[str, Any], list[str]]:
    m = _model_row(base, model)
    kv = int(m["kv_bytes_per_token_bf16"])
    weights = float(m["weights_GB_bf16_approx"]) * 1e9
    capacity = int((MEM_UTIL * gpu.hbm_bytes * tp - weights) / kv)
    fields: dict[str, Any] = {
        "model": model,
        "gpu": gpu.key.upper(),
        "gpus_per_replica": tp,
        "kv_bytes_per_token": kv,
        "kv_capacity_tokens": capacity,
        "max_batch": MAX_BATCH,
        "max_prefill_tokens": MAX_PREFILL_TOKENS,
        "weight_bytes": weights,
        "hbm_bandwidth_bytes_per_s": gpu.bandwidth * tp,
    }
    sources = [
        f"{MODELS} row {model}: kv_bytes_per_token_bf16={kv}, weights_GB_bf16_approx="
        f"{m['weights_GB_bf16_approx']}",
        gpu.citation,
        f"kv_capacity_tokens = ({MEM_UTIL} x {gpu.hbm_bytes / 1e9:.0f} GB x {tp} GPUs - weights)"
        f" / kv_bytes_per_token = {capacity} (vLLM default gpu_memory_utilization {MEM_UTIL})",
        f"max_batch {MAX_BATCH} (vLLM default max_num_seqs), max_prefill_tokens"
        f" {MAX_PREFILL_TOKENS} (configuration choice)",
    ]
    return fields, sources


def derive_70b(base: Path, gpu: Gpu, tp: int) -> PerformanceProfile:
    hw = f"{gpu.key}-80gb"
    rows = [
        r
        for r in _rows(base, SPLITWISE)
        if r["model"] == "llama2-70b" and r["hardware"] == hw and int(r["tensor_parallel"]) == tp
    ]
    prefill: list[CalibrationPoint] = []
    decode: list[CalibrationPoint] = []
    for r in rows:
        prompt, batch, out = int(r["prompt_size"]), int(r["batch_size"]), int(r["token_size"])
        if out != 128:
            continue
        cite = f"{SPLITWISE} row llama2-70b,{hw},TP{tp},prompt {prompt},batch {batch},tokens {out}"
        if batch == 1:
            prefill.append(
                CalibrationPoint(
                    stage="prefill",
                    batch=batch,
                    tokens=prompt,
                    measured_s=float(r["prompt_time"]) / 1e3,
                    source=cite + " (prompt_time)",
                )
            )
        decode.append(
            CalibrationPoint(
                stage="decode",
                batch=batch,
                tokens=0,
                context_tokens=prompt + out / 2,
                measured_s=float(r["token_time"]) / 1e3,
                source=cite + " (token_time; context = prompt + tokens/2)",
            )
        )
    per_layer, ctx_cite = _ctx_coef_per_layer(_attn_table(base), gpu.aic_device, 64)
    ctx_coef = per_layer * 80 / tp
    pa = _fit_prefill(prefill)
    da = _fit_decode(decode, ctx_coef)
    fields, sources = _common(base, "Llama-3.1-70B", gpu, tp)
    sources = [
        f"{SPLITWISE}: Llama2-70B has Llama-3-70B layer shapes ({README} §2a);"
        " 2023-era software, so conservative",
        f"{SPLITWISE}: batched-prompt rows (prompt 512, batch 2-64) are not fitted: their cost"
        " per token triples with batch at equal total tokens (e.g. 64x512 vs 1x8192), which the"
        " DistServe form (a function of sum L and sum L^2 only) cannot express; the"
        " single-prompt sweep 128-8192 is taken as the prefill physics",
        *sources,
        f"decode_per_ctx_token_s = per-layer slope x 80 layers / TP{tp}; {ctx_cite}",
        "prefill and decode a,b fitted (non-negative least squares on relative error) to the"
        " calibration points below",
    ]
    return _finish(f"llama-3.1-70b-{gpu.key}-tp{tp}", fields, sources, pa, da, prefill + decode)


def _interp(table: dict[int, float], n: int) -> float:
    xs = sorted(table)
    return float(np.interp(n, xs, [table[x] for x in xs]))


def derive_8b(base: Path, gpu: Gpu) -> PerformanceProfile:
    vidur = _rows(base, VIDUR)

    def linear(g: str, model: str, tp: int) -> dict[int, float]:
        return {
            int(r["num_tokens"]): float(r["linear_ops_ms_per_iter"]) / 1e3
            for r in vidur
            if r["gpu"] == g and r["model"] == model and int(r["tp"]) == tp
        }

    base_lin = linear("a100", "Meta-Llama-3-8B", 1)
    sources_lin = [f"{VIDUR} rows a100,Meta-Llama-3-8B,tp 1 (linear ops per iteration)"]
    if gpu.key == "h100":
        h70, a70 = linear("h100", "Llama-2-70b-hf", 1), linear("a100", "Llama-2-70b-hf", 1)
        lin = {n: t * h70[n] / a70[n] for n, t in base_lin.items()}
        sources_lin.append(
            f"{VIDUR}: no H100 Llama-3-8B profile; A100 Llama-3-8B scaled per token count by"
            " the measured H100/A100 ratio of Llama-2-70b-hf TP1 rows"
        )
    else:
        lin = base_lin
    attn = _attn_table(base)
    lm_head_s = 4096 * LLAMA3_VOCAB * 2 / gpu.streaming_bandwidth
    layers = 32
    prefill: list[CalibrationPoint] = []
    for n in (128, 256, 512, 1024, 2048, 4096):
        att = attn[(gpu.aic_device, "context_attention_per_layer", 32, 1, n)]
        t = lin[n] + layers * att + lm_head_s
        prefill.append(
            CalibrationPoint(
                stage="prefill",
                batch=1,
                tokens=n,
                measured_s=t,
                source=f"composed: linear({n})={lin[n] * 1e3:.3f} ms + 32 x {AIC_ATTN}"
                f" context_attention {gpu.aic_device} 32q bs1 tokens {n}={att * 1e3:.4f} ms"
                f" + lm_head {lm_head_s * 1e3:.3f} ms",
            )
        )
    decode: list[CalibrationPoint] = []
    for b in (1, 8, 32, 64, 128):
        for ctx in (1023, 4095):
            key = (gpu.aic_device, "generation_attention_per_layer", 32, b, ctx)
            if key not in attn:
                continue
            t = _interp(lin, b) + layers * attn[key] + lm_head_s
            decode.append(
                CalibrationPoint(
                    stage="decode",
                    batch=b,
                    tokens=0,
                    context_tokens=ctx,
                    measured_s=t,
                    source=f"composed: linear({b})={_interp(lin, b) * 1e3:.3f} ms + 32 x"
                    f" {AIC_ATTN} generation_attention {gpu.aic_device} 32q bs{b} ctx {ctx}="
                    f"{attn[key] * 1e3:.4f} ms + lm_head {lm_head_s * 1e3:.3f} ms",
                )
            )
    pa = _fit_prefill(prefill)
    da = _fit_decode(decode, None)
    fields, sources = _common(base, "Llama-3.1-8B", gpu, 1)
    sources = [
        *sources_lin,
        *sources,
        f"lm_head = 4096 x vocab {LLAMA3_VOCAB} x 2 B / measured streaming bandwidth"
        f" = {lm_head_s * 1e3:.3f} ms (vocab: aiconfigurator model_configs Llama-3.1-8B)",
        "attention: 32 layers x aiconfigurator per-layer kernel latency (rows cited per point)",
        "prefill and decode a,b,c fitted (non-negative least squares on relative error) to the"
        " composed calibration points below",
    ]
    return _finish(f"llama-3.1-8b-{gpu.key}-tp1", fields, sources, pa, da, prefill + decode)


def _finish(
    name: str,
    fields: dict[str, Any],
    sources: list[str],
    pa: np.ndarray,
    da: np.ndarray,
    points: list[CalibrationPoint],
) -> PerformanceProfile:
    draft = PerformanceProfile(
        name=name,
        prefill_base_s=float(pa[0]),
        prefill_per_token_s=float(pa[1]),
        prefill_per_token2_s=float(pa[2]),
        decode_base_s=float(da[0]),
        decode_per_seq_s=float(da[1]),
        decode_per_ctx_token_s=float(da[2]),
        sources=sources,
        calibration=points,
        **fields,
    )
    worst = max(abs(draft.predicted_s(p) / p.measured_s - 1) for p in points)
    tol = max(0.15, math.ceil(worst * 100 + 0.5) / 100)
    return draft.model_copy(update={"fit_tolerance": tol})


def derive_all(base: Path) -> list[PerformanceProfile]:
    return [
        derive_8b(base, GPUS["h100"]),
        derive_8b(base, GPUS["a100"]),
        derive_70b(base, GPUS["h100"], 4),
        derive_70b(base, GPUS["h100"], 8),
        derive_70b(base, GPUS["a100"], 4),
        derive_70b(base, GPUS["a100"], 8),
    ]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    base = Path(args[0]) if args else Path("/work/shared/data/perf")
    out = Path(__file__).parent
    for prof in derive_all(base):
        path = out / f"{prof.name}.json"
        path.write_text(json.dumps(prof.model_dump(mode="json"), indent=1) + "\n")
        worst = max(abs(prof.predicted_s(p) / p.measured_s - 1) for p in prof.calibration)
        print(
            f"{prof.name}: prefill a={prof.prefill_base_s * 1e3:.2f}ms"
            f" b={prof.prefill_per_token_s * 1e6:.2f}us c={prof.prefill_per_token2_s * 1e9:.4f}ns;"
            f" decode a={prof.decode_base_s * 1e3:.2f}ms b={prof.decode_per_seq_s * 1e6:.1f}us"
            f" c={prof.decode_per_ctx_token_s * 1e9:.3f}ns;"
            f" floor {prof.decode_floor_s * 1e3:.2f}ms;"
            f" kv {prof.kv_capacity_tokens}; worst fit error {worst:.1%} tol {prof.fit_tolerance}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
