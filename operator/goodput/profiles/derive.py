"""Regenerates the bundled profile JSON files from the published figures in
``shared/data/perf`` (a build-time tool, never imported by the operator).

Usage: ``python -m goodput.profiles.derive [PERF_DIR]`` (default: ``perf/`` of the
shared data, see :mod:`goodput.profiles.shared_data`).

Five derivations, fitted by non-negative least squares on relative error, or where
stated to the worst relative error (Lawson's iteratively reweighted least squares):

* Llama-3.1-70B: end-to-end Splitwise DGX measurements of Llama2-70B (same layer
  shapes) for prefill, single prompts and batches alike, and the batch term of decode;
  the attention terms (sum L^2 of prefill, context of decode) from the aiconfigurator
  kernel tables (Splitwise varies context too little, and its single-prompt curve alone
  confuses attention with the knee below). Splitwise's batches cost about what their
  prompts cost one after another, and every table's cost per token turns up between
  1,024 and 4,096 tokens per batch: the prefill form adds a per-sequence term and a knee
  (DistServe's form fits single prompts or batches, never both), fitted to the worst
  relative error over all the rows.
* Llama-3.3-70B FP8 on H100 TP2 (a current stack): NVIDIA NIM 1.8.0's published TTFT and
  ITL at concurrency 1 and throughput at concurrency 5-50 (perf README section 2b), and
  the TensorRT-LLM max-load throughput table (section 2c); attention terms from the
  kernel tables; the rest fitted to the worst relative error over all the rows.
* Llama-3.1-8B: no end-to-end table with a stated config exists, so each point is
  composed from kernel measurements: vidur linear ops + aiconfigurator attention x
  layers + the LM head streamed at the measured skinny-GEMM bandwidth.
* Llama-3.1-405B FP8 (TP8, H100 and H200) and Qwen3-235B-A22B FP8 (TP8, H100): TensorRT-LLM's
  max-load throughput table (perf README section 2c), one ``throughput`` point per
  ISL/OSL row at the KV-cache-limited concurrency; the step's fixed cost is the weights
  streamed once at the measured bandwidth and its context cost the measured
  decode-attention slope, so the rows fit only the per-token compute terms.
* Llama-3.1-405B W4A16 (INT4 weights; H100 TP4 and TP8): no published timing exists.
  Each FP8 H100 row is rescaled by the ratio of the INT4 to the FP8 physics (weights
  at 4 bits streamed over HBM; GEMMs at the BF16 rate W4A16 runs at; BF16 KV), an
  assumption stated in the profile, whose ``fit_tolerance`` adds the sensitivity to it.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from goodput.profiles import CalibrationPoint, PerformanceProfile
from goodput.profiles.shared_data import require_shared_data

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
# README section 1 (aiconfigurator H100 GEMM tables): max FP8 (per-tensor) and BF16
# GEMM throughput measured, and the datasheet's dense peaks.
H100_FP8_GEMM_MAX, H100_BF16_GEMM_MAX = 1601e12, 956e12
FP8_PEAK, BF16_PEAK = 1979e12, 989e12
# trtllm-bench sizes the batch to the requests whose ISL+OSL fit the KV cache, capped at
# 4096 (NVIDIA/TensorRT-LLM tensorrt_llm/bench/build/tuning.py, finetune_setting).
TRTLLM_MAX_CONCURRENCY = 4096
TRTLLM = (
    f"{README} §2c: TensorRT-LLM perf-overview.md @ 00f37686 (trtllm-bench throughput,"
    " PyTorch backend, requests at an infinite rate, ModelOpt FP8 checkpoints)"
)
NIM = (
    f"{README} §2b: NVIDIA NIM 1.8.0 benchmark (AIPerf, client-side means),"
    " docs.nvidia.com/nim/benchmarking/llm/1.0.0/performance: Llama-3.3-70B-Instruct,"
    " 2 x H100 80GB, FP8, TP2"
)
# Above this concurrency the NIM table's TTFT is queueing (8-89 s): the server runs
# fewer requests than the client keeps open, and how many is not published.
NIM_MAX_CONCURRENCY = 50


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
    "h200": Gpu(
        "h200",
        "",  # no aiconfigurator tables for H200 in shared/data/perf
        141e9,
        4.8e12,
        4.8e12 * 2.92 / 3.35,
        f"{README} §1: H200 SXM 141 GB HBM3e, 4.8 TB/s (aiconfigurator systems/h200_sxm.yaml);"
        " weight streaming not measured on H200: assumed at H100's measured fraction of peak"
        " (2.92 / 3.35 TB/s), 4.18 TB/s",
    ),
}


def _rows(base: Path, rel: str) -> list[dict[str, str]]:
    with (base / rel.removeprefix("shared/data/perf/")).open() as f:
        return list(csv.DictReader(f))


def nnls_relative(x: np.ndarray, y: np.ndarray, scale: np.ndarray | None = None) -> np.ndarray:
    """Non-negative least squares on relative error (residuals divided by ``scale``,
    default ``y``), by enumerating active sets (three coefficients: eight subsets,
    exact and dependency-free)."""
    w = 1.0 / (y if scale is None else scale)
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


LAWSON_ITERATIONS = 300
# Candidate knees (tokens per prefill batch) for the Splitwise tables: the measured batch
# totals between which the cost per token turns up, and the midpoints.
KNEE_GRID = (1024, 1536, 2048, 3072, 4096)
KNEE_TIE = 1e-3  # a knee must beat a smaller one by this much worst error to be chosen


def minimax_relative(x: np.ndarray, y: np.ndarray, offset: np.ndarray | None = None) -> np.ndarray:
    """Non-negative coefficients c minimizing the worst relative error
    max |x c + offset - y| / y, by Lawson's algorithm (weighted least squares whose row
    weights are multiplied by each row's error every round, floored at 1e-6 of the
    largest; C. L. Lawson 1961), on columns scaled to a unit maximum so the small least
    squares stay well conditioned."""
    off = np.zeros_like(y) if offset is None else offset
    col = np.abs(x).max(axis=0)
    col[col == 0] = 1.0
    xs = x / col
    w = np.full(len(y), 1.0 / len(y))
    coef = np.zeros(x.shape[1])
    for _ in range(LAWSON_ITERATIONS):
        coef = nnls_relative(xs, y - off, scale=y / np.sqrt(w))
        err = np.abs(xs @ coef + off - y) / y
        w = w * err
        w = np.maximum(w, 1e-6 * w.max())  # a row fitted exactly once may matter again
        w /= w.sum()
    return np.asarray(coef / col)


def worst_error(prof: PerformanceProfile, points: list[CalibrationPoint] | None = None) -> float:
    pts = prof.calibration if points is None else points
    return max(abs(prof.predicted_s(p) / p.measured_s - 1) for p in pts)


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


def _prefill_attn_coef_per_layer(
    attn: dict[tuple[str, str, int, int, int], float], device: str, q_heads: int
) -> tuple[float, str]:
    """Seconds per token^2 per layer of prefill attention (all q heads of the model on
    one GPU): the L^2 term of latency = x + y L + z L^2 fitted to the batch-1 rows of
    the context-attention kernel table with L >= 1024."""
    pts = sorted(
        (c, t)
        for (d, tab, q, b, c), t in attn.items()
        if d == device and tab == "context_attention_per_layer" and q == q_heads
        if b == 1 and c >= 1024
    )
    xs = np.array([[1.0, float(c), float(c) ** 2] for c, _ in pts])
    ys = np.array([t for _, t in pts])
    coef = nnls_relative(xs, ys)
    kernel = {"H100-SXM vLLM0.24.0": "FlashAttention-3", "A100-SXM4-80GB vLLM0.14.0": "FA2"}
    cite = (
        f"{AIC_ATTN}: context_attention_per_layer {device} ({kernel.get(device, device)})"
        f" {q_heads}q/8kv batch 1, L^2 term of latency fitted over {len(pts)} rows with"
        f" L = {pts[0][0]}-{pts[-1][0]} = {coef[2] * 1e12:.2f} ps/token^2/layer"
        f" (e.g. {pts[-1][1] * 1e3:.2f} ms at {pts[-1][0]} tokens)"
    )
    return float(coef[2]), cite


def _model_row(base: Path, model: str) -> dict[str, str]:
    return next(r for r in _rows(base, MODELS) if r["model"] == model)


def _common(
    base: Path,
    model: str,
    gpu: Gpu,
    tp: int,
    precision: tuple[str, float, str] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Fields every profile has. ``precision`` = (weights label, bytes per parameter,
    KV dtype "bf16" | "fp8"); None for the BF16 models (weights as the CSV gives them)."""
    m = _model_row(base, model)
    if precision is None:
        kv = int(m["kv_bytes_per_token_bf16"])
        weights = float(m["weights_GB_bf16_approx"]) * 1e9
        label = model
        weight_cite = (
            f"{MODELS} row {model}: kv_bytes_per_token_bf16={kv}, weights_GB_bf16_approx="
            f"{m['weights_GB_bf16_approx']}"
        )
    else:
        wlabel, per_param, kv_dtype = precision
        kv = int(m[f"kv_bytes_per_token_{kv_dtype}"])
        weights = float(m["params_total_B_approx"]) * 1e9 * per_param
        label = f"{model} {wlabel}"
        weight_cite = (
            f"{MODELS} row {model}: params_total_B_approx={m['params_total_B_approx']} x"
            f" {per_param:g} B ({wlabel} weights) = {weights / 1e9:.1f} GB;"
            f" kv_bytes_per_token_{kv_dtype}={kv} ({kv_dtype.upper()} KV cache)"
        )
    capacity = int((MEM_UTIL * gpu.hbm_bytes * tp - weights) / kv)
    fields: dict[str, Any] = {
        "model": label,
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
        weight_cite,
        gpu.citation,
        f"kv_capacity_tokens = ({MEM_UTIL} x {gpu.hbm_bytes / 1e9:.0f} GB x {tp} GPUs - weights)"
        f" / kv_bytes_per_token = {capacity} (vLLM default gpu_memory_utilization {MEM_UTIL})",
        f"max_batch {MAX_BATCH} (vLLM default max_num_seqs), max_prefill_tokens"
        f" {MAX_PREFILL_TOKENS} (configuration choice)",
    ]
    return fields, sources


def _splitwise_prefill_fit(
    points: list[CalibrationPoint], attn_coef: float
) -> tuple[np.ndarray, int, list[tuple[int, float]]]:
    """(a, b, d, e), the knee K and the worst error at every candidate knee: prefill =
    a + b sum L + attn_coef sum L^2 + d n + e max(0, sum L - K), the four fitted to the
    worst relative error over single prompts and batches together."""
    y = np.array([p.measured_s for p in points])
    off = np.array([attn_coef * p.batch * p.tokens**2 for p in points])
    tried: list[tuple[int, float, np.ndarray]] = []
    for knee in KNEE_GRID:
        x = np.array(
            [
                [1.0, p.batch * p.tokens, float(p.batch), max(0.0, p.batch * p.tokens - knee)]
                for p in points
            ]
        )
        coef = minimax_relative(x, y, off)
        tried.append((knee, float(np.max(np.abs(x @ coef + off - y) / y)), coef))
    best = tried[0]
    for cand in tried[1:]:
        if cand[1] < best[1] - KNEE_TIE:
            best = cand
    return best[2], best[0], [(k, e) for k, e, _ in tried]


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
    attn = _attn_table(base)
    per_layer, ctx_cite = _ctx_coef_per_layer(attn, gpu.aic_device, 64)
    ctx_coef = per_layer * 80 / tp
    pre_layer, pre_cite = _prefill_attn_coef_per_layer(attn, gpu.aic_device, 64)
    attn_coef = pre_layer * 80 / tp
    (a, b, d, e), knee, tried = _splitwise_prefill_fit(prefill, attn_coef)
    pa = np.array([a, b, attn_coef])
    da = _fit_decode(decode, ctx_coef)
    fields, sources = _common(base, "Llama-3.1-70B", gpu, tp)
    fields.update(
        prefill_per_seq_s=float(d),
        prefill_knee_tokens=float(knee),
        prefill_per_token_above_knee_s=float(e),
    )
    single = {int(p.tokens): p.measured_s for p in prefill if p.batch == 1}
    batched = {p.batch: p.measured_s for p in prefill if p.batch > 1}
    n16 = 8192 // 512
    sources = [
        f"{SPLITWISE}: Llama2-70B has Llama-3-70B layer shapes ({README} §2a);"
        " 2023-era software, so conservative",
        f"{SPLITWISE}: prefill fitted to the single prompts (128-8192 tokens) and the batches"
        f" (2-{max(batched)} prompts of 512) together. A batch costs about what its prompts"
        f" cost one after another ({n16} x 512 in {batched[n16] * 1e3:.0f} ms vs {n16} x"
        f" {single[512] * 1e3:.1f} ms; 1 x 8192 in {single[8192] * 1e3:.0f} ms), which"
        " DistServe's a + b sum L + c sum L^2 cannot express without a quadratic term many"
        " times the attention kernels' (that fit of the single prompts alone ran batches"
        " 3-68% fast): prefill_per_seq_s (d) is a cost per sequence of the batch; and the"
        " cost per token turns up between 1024 and 4096 tokens per batch, single prompts"
        " and batches alike (a function of sum L): prefill_per_token_above_knee_s (e) beyond"
        " prefill_knee_tokens (K). The engine is not stated, so neither has a stated cause",
        *sources,
        f"prefill_per_token2_s = per-layer attention L^2 term x 80 layers / TP{tp} (the"
        f" kernel, not fitted); {pre_cite}",
        "prefill a, b, d, e fitted to the worst relative error (Lawson) over the"
        f" {len(prefill)} prefill rows, at each knee K in {list(KNEE_GRID)} (worst error "
        + ", ".join(f"{k}: {err:.1%}" for k, err in tried)
        + f"); K = {knee}",
        f"decode_per_ctx_token_s = per-layer slope x 80 layers / TP{tp}; {ctx_cite}",
        "decode a, b fitted (non-negative least squares on relative error) to the decode"
        " calibration points below",
    ]
    return _finish(
        f"llama-3.1-70b-{gpu.key}-tp{tp}",
        fields,
        sources,
        pa,
        da,
        prefill + decode,
        state_fit=True,
    )


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
    margin: tuple[float, str] | None = None,
    state_fit: bool = False,
) -> PerformanceProfile:
    """The profile, its ``fit_tolerance`` the worst relative error on its points rounded
    up (at least 0.15), plus ``margin`` (size, why) when an assumption is not fitted."""
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
    worst = worst_error(draft)
    extra = margin[0] if margin else 0.0
    tol = max(0.15, math.ceil((worst + extra) * 100 + 0.5) / 100)
    if not state_fit:
        return draft.model_copy(update={"fit_tolerance": tol})
    kinds = sorted({p.kind for p in points})
    by_kind = ""
    if len(kinds) > 1:
        parts = [f"{k} {worst_error(draft, [p for p in points if p.kind == k]):.1%}" for k in kinds]
        by_kind = f" ({', '.join(parts)})"
    fit = (
        f"fit: worst relative error {worst:.1%}{by_kind} over the {len(points)} calibration"
        f" points; fit_tolerance {tol:.2f}"
    )
    if margin:
        fit += f" = that + {extra:.1%} for {margin[1]}"
    return draft.model_copy(update={"fit_tolerance": tol, "sources": [*sources, fit]})


@dataclass(frozen=True)
class TrtllmModel:
    """A model of the TensorRT-LLM throughput table (perf README section 2c)."""

    key: str  # profile name prefix
    row: str  # model_kv_and_weights.csv row
    columns: dict[str, str]  # GPU key -> column header in the README table
    tp: int
    kv_dtype: str  # "fp8" | "bf16": KV cache of the benchmark run (not stated)
    kv_why: str  # why that dtype
    notes: tuple[str, ...]


LLAMA_405B_FP8 = TrtllmModel(
    key="llama-3.1-405b-fp8",
    row="Llama-3.1-405B",
    columns={"h100": "Llama-3.1-405B H100 TP8 FP8", "h200": "405B H200 TP8 FP8"},
    tp=8,
    kv_dtype="fp8",
    kv_why="one checkpoint and recipe ran the H100 and the H200 column, so one dtype for"
    " both: FP8 has the smaller worst error over the two columns",
    notes=("tensor parallel over the 8 GPUs (8 KV heads, one per GPU)",),
)
QWEN3_235B_FP8 = TrtllmModel(
    key="qwen3-235b-a22b-fp8",
    row="Qwen3-235B-A22B",
    columns={"h100": "Qwen3-235B-A22B (MoE) H100 TP8 FP8"},  # no H200 column in §2c
    tp=8,
    kv_dtype="bf16",
    kv_why="the one with the smaller worst error",
    notes=(
        f"MoE, 22.1 B of 235 B parameters active per token ({MODELS}): experts parallel"
        " over the 8 GPUs, attention data-parallel (the MoE benchmark options of the same"
        " perf-overview.md: enable_attention_dp), so each GPU holds all 4 KV heads of its"
        " own sequences",
        "weight_bytes are all experts: at the loads fitted (hundreds of sequences) every"
        " expert is read each step; at a handful of sequences a step reads fewer experts and"
        " runs faster than this profile says (conservative at low load)",
    ),
)


def _trtllm_rows(base: Path, column: str) -> list[tuple[int, int, float]]:
    """(ISL, OSL, output tokens/s of the whole TP group) of one column of the README's
    TensorRT-LLM table; rows marked "—" (no entry) are skipped."""
    lines = (base / README.removeprefix("shared/data/perf/")).read_text().splitlines()
    start = next(
        i
        for i, line in enumerate(lines)
        if line.startswith("| ISL/OSL |") and f"| {column} |" in line
    )
    header = [c.strip() for c in lines[start].strip().strip("|").split("|")]
    col = header.index(column)
    out: list[tuple[int, int, float]] = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not cells[col].replace(",", "").replace(".", "").isdigit():
            continue
        isl, osl = cells[0].split("/")
        out.append((int(isl), int(osl), float(cells[col].replace(",", ""))))
    return out


def _concurrency(capacity_tokens: int, isl: int, osl: int) -> int:
    return max(1, min(TRTLLM_MAX_CONCURRENCY, capacity_tokens // (isl + osl)))


def _kv_read_coef(base: Path, model: str, gpu: Gpu, gpus: int, kv_dtype: str) -> tuple[float, str]:
    """Decode seconds per context token of the batch: the measured H100 decode-attention
    slope for 8 KV heads (64q/8kv, BF16 KV) scaled to the model's KV heads and layers,
    spread over ``gpus`` (heads by TP or sequences by attention DP: the same sum), halved
    for FP8 KV, and scaled by HBM bandwidth for another GPU."""
    m = _model_row(base, model)
    per_layer, cite = _ctx_coef_per_layer(_attn_table(base), GPUS["h100"].aic_device, 64)
    layers, kv_heads = int(m["layers"]), int(m["kv_heads"])
    dtype = 0.5 if kv_dtype == "fp8" else 1.0
    bw = GPUS["h100"].bandwidth / gpu.bandwidth
    coef = per_layer * kv_heads / 8 * layers / gpus * dtype * bw
    text = (
        f"decode_per_ctx_token_s = {per_layer * 1e9:.3f} ns x {kv_heads}/8 KV heads x {layers}"
        f" layers / {gpus} GPUs"
        + (" x 0.5 (FP8 KV)" if dtype != 1.0 else "")
        + (f" x {bw:.3f} (H100/{gpu.key.upper()} HBM bandwidth)" if bw != 1.0 else "")
        + f" = {coef * 1e9:.2f} ns; {cite}"
    )
    return coef, text


def _fit_throughput(
    points: list[CalibrationPoint], base_s: float, ctx_coef: float
) -> tuple[np.ndarray, np.ndarray]:
    """Prefill (a, b, c) and decode (a, b, c) from throughput points, with the step's
    fixed cost ``base_s`` (prefill and decode alike: one pass over the weights) and the
    decode context cost fixed; the per-token compute terms are fitted."""
    y = np.array([p.measured_s for p in points])
    x = np.array([[p.tokens / p.output_tokens, p.tokens**2 / p.output_tokens, 1.0] for p in points])
    fixed = np.array(
        [
            base_s * (1 + p.output_tokens) / (p.batch * p.output_tokens)
            + ctx_coef * (p.tokens + p.output_tokens / 2)
            for p in points
        ]
    )
    b_p, c_p, b_d = nnls_relative(x, y - fixed, scale=y)
    return np.array([base_s, b_p, c_p]), np.array([base_s, b_d, ctx_coef])


def _throughput_sources(
    base_s: float, weights: float, gpu: Gpu, tp: int, ctx_cite: str, n: int
) -> list[str]:
    return [
        f"prefill_base_s = decode_base_s = weights {weights / 1e9:.1f} GB / ({tp} x"
        f" {gpu.streaming_bandwidth / 1e12:.2f} TB/s streaming) = {base_s * 1e3:.2f} ms:"
        " every step reads the weights once (throughput at max load cannot separate it)",
        ctx_cite,
        f"calibration: 'throughput' points, seconds per output token of the replica ="
        f" 1 / (output tokens/s), at concurrency min({TRTLLM_MAX_CONCURRENCY},"
        " kv_capacity_tokens // (ISL + OSL)) (trtllm-bench sizes its batch to the requests"
        " whose ISL+OSL fit the KV cache: NVIDIA/TensorRT-LLM tensorrt_llm/bench/build/"
        f"tuning.py); per that many requests: their prefill + OSL decode steps at mean"
        f" context ISL + OSL/2; prefill_per_token(2)_s and decode_per_seq_s fitted"
        f" (non-negative least squares on relative error) to the {n} rows",
    ]


def _trtllm_draft(
    base: Path, spec: TrtllmModel, gpu: Gpu, kv_dtype: str
) -> tuple[PerformanceProfile, float]:
    """The profile of one README column under one assumption on the run's KV dtype,
    and its worst relative error."""
    column = spec.columns[gpu.key]
    fields, sources = _common(base, spec.row, gpu, spec.tp, ("FP8", 1.0, kv_dtype))
    weights, capacity = fields["weight_bytes"], fields["kv_capacity_tokens"]
    base_s = weights / (spec.tp * gpu.streaming_bandwidth)
    ctx_coef, ctx_cite = _kv_read_coef(base, spec.row, gpu, spec.tp, kv_dtype)
    points = [
        CalibrationPoint(
            stage="throughput",
            batch=_concurrency(capacity, isl, osl),
            tokens=isl,
            output_tokens=osl,
            measured_s=1.0 / tput,
            source=f"{README} §2c row {isl}/{osl}, column '{column}': {tput:,.0f} output"
            f" tokens/s; concurrency {_concurrency(capacity, isl, osl)}",
        )
        for isl, osl, tput in _trtllm_rows(base, column)
    ]
    pa, da = _fit_throughput(points, base_s, ctx_coef)
    sources = [
        f"{TRTLLM}; column '{column}'",
        *spec.notes,
        *sources,
        *_throughput_sources(base_s, weights, gpu, spec.tp, ctx_cite, len(points)),
    ]
    name = f"{spec.key}-{gpu.key}-tp{spec.tp}"
    prof = _finish(name, fields, sources, pa, da, points, state_fit=True)
    return prof, max(abs(prof.predicted_s(p) / p.measured_s - 1) for p in points)


def derive_trtllm(base: Path, spec: TrtllmModel, gpu: Gpu) -> PerformanceProfile:
    """One column of the TensorRT-LLM throughput table. The run's KV-cache dtype is not
    stated; the profile takes ``spec.kv_dtype`` and says how well the other one fits."""
    prof, worst = _trtllm_draft(base, spec, gpu, spec.kv_dtype)
    other = "bf16" if spec.kv_dtype == "fp8" else "fp8"
    _, alt = _trtllm_draft(base, spec, gpu, other)
    note = (
        f"KV cache {spec.kv_dtype.upper()} (the table does not state the run's KV dtype;"
        f" {spec.kv_why}): worst fit error {worst:.1%} with it, {alt:.1%} with"
        f" {other.upper()} KV (its concurrency {'half' if other == 'bf16' else 'twice'} as"
        " large)"
    )
    return prof.model_copy(update={"sources": [*prof.sources[:1], note, *prof.sources[1:]]})


def derive_405b_w4a16(base: Path, fp8: PerformanceProfile, tp: int) -> PerformanceProfile:
    """Llama-3.1-405B with INT4 weights and BF16 activations (W4A16) on H100: each FP8
    H100 TP8 row rescaled by the ratio of the INT4 to the FP8 physics."""
    gpu = GPUS["h100"]
    fields, sources = _common(base, "Llama-3.1-405B", gpu, tp, ("W4A16", 0.5, "bf16"))
    weights, capacity = fields["weight_bytes"], fields["kv_capacity_tokens"]
    base_s = weights / (tp * gpu.streaming_bandwidth)
    ctx_coef, ctx_cite = _kv_read_coef(base, "Llama-3.1-405B", gpu, tp, "bf16")
    rate = H100_FP8_GEMM_MAX / H100_BF16_GEMM_MAX
    spread = fp8.gpus_per_replica / tp

    def physics(compute: float) -> PerformanceProfile:
        return fp8.model_copy(
            update={
                "prefill_base_s": base_s,
                "prefill_per_token_s": fp8.prefill_per_token_s * spread * compute,
                "prefill_per_token2_s": fp8.prefill_per_token2_s * spread * compute,
                "decode_base_s": base_s,
                "decode_per_seq_s": fp8.decode_per_seq_s * spread * compute,
                "decode_per_ctx_token_s": ctx_coef,
            }
        )

    model, pessimistic = physics(rate), physics(FP8_PEAK / BF16_PEAK)
    points: list[CalibrationPoint] = []
    sensitivity = 0.0
    for p in fp8.calibration:
        q = p.model_copy(
            update={"batch": _concurrency(capacity, int(p.tokens), int(p.output_tokens))}
        )
        ratio = model.predicted_s(q) / fp8.predicted_s(p)
        sensitivity = max(sensitivity, pessimistic.predicted_s(q) / model.predicted_s(q) - 1)
        points.append(
            q.model_copy(
                update={
                    "measured_s": p.measured_s * ratio,
                    "source": f"composed: FP8 H100 TP8 {p.source} x INT4/FP8 physics ratio"
                    f" {ratio:.4f} at concurrency {q.batch}",
                }
            )
        )
    pa, da = _fit_throughput(points, base_s, ctx_coef)
    sources = [
        "ASSUMPTION: no published W4A16 (INT4-weight) 405B timing exists in shared/data"
        " (notes/model-variants.md: not found); derived from weight bytes over HBM bandwidth"
        f" and calibrated against the FP8 H100 TP8 rows of {TRTLLM}",
        "each FP8 row (profile llama-3.1-405b-fp8-h100-tp8) x the ratio of this"
        " configuration's physics to the FP8 one's, at each one's own KV-limited"
        " concurrency: the step reads the weights at 4 bits (decode_base_s below); GEMMs"
        " run at the BF16 rate (W4A16 keeps BF16 activations): per-token compute x"
        f" {fp8.gpus_per_replica}/{tp} GPUs x {rate:.3f} (measured H100 FP8/BF16 GEMM"
        f" maximum, {H100_FP8_GEMM_MAX / 1e12:.0f}/{H100_BF16_GEMM_MAX / 1e12:.0f} TFLOP/s,"
        f" {README} §1); BF16 KV cache (the serving default)",
        "not modelled: group scales (+1.6% bytes at group size 128) and an unquantized"
        " LM head (+3 GB): the weight floor below is a lower bound",
        *sources,
        *_throughput_sources(base_s, weights, gpu, tp, ctx_cite, len(points)),
    ]
    why = (
        "the GEMM-rate assumption (composed points move by up to this much at the"
        f" datasheet FP8/BF16 ratio {FP8_PEAK / BF16_PEAK:.2f} instead of {rate:.3f})"
    )
    name = f"llama-3.1-405b-w4a16-{gpu.key}-tp{tp}"
    return _finish(name, fields, sources, pa, da, points, (sensitivity, why), state_fit=True)


def _nim_rows(base: Path) -> tuple[int, int, list[tuple[int, float, float, float]]]:
    """The README's fully specified NIM table: (ISL, OSL, rows of (concurrency, TTFT s,
    ITL s, output tokens/s))."""
    lines = (base / README.removeprefix("shared/data/perf/")).read_text().splitlines()
    title = next(i for i, line in enumerate(lines) if line.startswith("Fully specified table:"))
    m = re.search(r"(\d+) input / (\d+) output", lines[title])
    assert m and "Llama-3.3-70B" in lines[title] and "TP2" in lines[title], lines[title]
    start = next(i for i in range(title, len(lines)) if lines[i].startswith("| concurrency |"))
    rows: list[tuple[int, float, float, float]] = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        c, ttft, itl, tput = (x.strip().replace(",", "") for x in line.strip("|").split("|"))
        rows.append((int(c), float(ttft) / 1e3, float(itl) / 1e3, float(tput)))
    return int(m[1]), int(m[2]), rows


def _nim_second_table(base: Path) -> tuple[int, int, float, float]:
    """(ISL, OSL, TTFT s, ITL s) at concurrency 1 of the README's second NIM config."""
    text = (base / README.removeprefix("shared/data/perf/")).read_text()
    m = re.search(
        r"\*\*(\d+) input / (\d+) output\*\*: concurrency 1 gives TTFT ([\d.]+) ms,"
        r" ITL ([\d.]+) ms",
        text,
    )
    assert m, "NIM 500/2000 sentence not found"
    return int(m[1]), int(m[2]), float(m[3]) / 1e3, float(m[4]) / 1e3


FITTED = ("prefill_base_s", "prefill_per_token_s", "decode_base_s", "decode_per_seq_s")


def _fit_linear(
    template: PerformanceProfile, points: list[CalibrationPoint], fitted: tuple[str, ...]
) -> dict[str, float]:
    """The ``fitted`` coefficients minimizing the worst relative error of
    ``template.predicted_s`` over ``points``, the template's other coefficients held.
    Predictions are linear in the coefficients, so each feature is the prediction of
    the template with that one coefficient at 1 and the others (fitted ones) at 0."""
    zero = {k: 0.0 for k in fitted}
    held = template.model_copy(update=zero)
    off = np.array([held.predicted_s(p) for p in points])
    x = np.array(
        [
            [template.model_copy(update={**zero, k: 1.0}).predicted_s(p) - o for k in fitted]
            for p, o in zip(points, off, strict=True)
        ]
    )
    y = np.array([p.measured_s for p in points])
    coef = minimax_relative(x, y, off)
    return {k: float(v) for k, v in zip(fitted, coef, strict=True)}


def _current_70b_draft(base: Path, kv_dtype: str) -> PerformanceProfile:
    gpu, tp, row = GPUS["h100"], 2, "Llama-3.1-70B"
    column = "Llama-3.3-70B H100 TP2 FP8"
    fields, sources = _common(base, row, gpu, tp, ("FP8", 1.0, kv_dtype))
    fields["model"] = "Llama-3.3-70B FP8"
    capacity = fields["kv_capacity_tokens"]
    attn = _attn_table(base)
    pre_layer, pre_cite = _prefill_attn_coef_per_layer(attn, gpu.aic_device, 64)
    ctx_coef, ctx_cite = _kv_read_coef(base, row, gpu, tp, kv_dtype)
    isl, osl, nim = _nim_rows(base)
    isl2, osl2, ttft2, itl2 = _nim_second_table(base)
    first = next(r for r in nim if r[0] == 1)
    where = f"{README} §2b"
    points = [
        CalibrationPoint(
            stage="prefill",
            batch=1,
            tokens=isl,
            measured_s=first[1],
            source=f"{where} {isl}/{osl} concurrency 1: TTFT {first[1] * 1e3:.2f} ms",
        ),
        CalibrationPoint(
            stage="prefill",
            batch=1,
            tokens=isl2,
            measured_s=ttft2,
            source=f"{where} {isl2}/{osl2} concurrency 1: TTFT {ttft2 * 1e3:.2f} ms",
        ),
        CalibrationPoint(
            stage="decode",
            batch=1,
            tokens=0,
            context_tokens=isl + osl / 2,
            measured_s=first[2],
            source=f"{where} {isl}/{osl} concurrency 1: ITL {first[2] * 1e3:.2f} ms"
            " (context = ISL + OSL/2)",
        ),
        CalibrationPoint(
            stage="decode",
            batch=1,
            tokens=0,
            context_tokens=isl2 + osl2 / 2,
            measured_s=itl2,
            source=f"{where} {isl2}/{osl2} concurrency 1: ITL {itl2 * 1e3:.2f} ms"
            " (context = ISL + OSL/2)",
        ),
        *(
            CalibrationPoint(
                stage="throughput",
                batch=c,
                tokens=isl,
                output_tokens=osl,
                measured_s=1.0 / tput,
                source=f"{where} {isl}/{osl} concurrency {c}: {tput:,.2f} output tokens/s"
                f" (TTFT {ttft * 1e3:.0f} ms, ITL {itl * 1e3:.2f} ms)",
            )
            for c, ttft, itl, tput in nim
            if 1 < c <= NIM_MAX_CONCURRENCY
        ),
        *(
            CalibrationPoint(
                stage="throughput",
                batch=_concurrency(capacity, i, o),
                tokens=i,
                output_tokens=o,
                measured_s=1.0 / tput,
                source=f"{README} §2c row {i}/{o}, column '{column}': {tput:,.0f} output"
                f" tokens/s; concurrency {_concurrency(capacity, i, o)}",
            )
            for i, o, tput in _trtllm_rows(base, column)
        ),
    ]
    template = PerformanceProfile(
        name=f"llama-3.3-70b-fp8-{gpu.key}-tp{tp}",
        prefill_base_s=0.0,
        prefill_per_token_s=0.0,
        prefill_per_token2_s=pre_layer * 80 / tp,
        decode_base_s=0.0,
        decode_per_seq_s=0.0,
        decode_per_ctx_token_s=ctx_coef,
        calibration=points,
        **fields,
    )
    fit = _fit_linear(template, points, FITTED)
    skipped = [r for r in nim if r[0] > NIM_MAX_CONCURRENCY]
    plateau = f"{min(r[3] for r in skipped):,.0f}-{max(r[3] for r in skipped):,.0f}"
    trt_same = next(t for i, o, t in _trtllm_rows(base, column) if (i, o) == (isl, osl))
    sources = [
        f"{NIM}: {isl} input / {osl} output tokens at concurrency"
        f" {', '.join(str(r[0]) for r in nim)}; {isl2}/{osl2} at concurrency 1",
        f"{TRTLLM}; column '{column}'",
        f"Llama-3.3-70B has Llama-3.1-70B's architecture (80 layers, 64 q / 8 KV heads,"
        f" hidden 8192): shapes, KV bytes and weights from the {MODELS} row {row}",
        *sources,
        "NIM at concurrency 1: TTFT = one prefill of ISL tokens (a client-side mean, so it"
        " includes the request's own overhead), ITL = one decode step at batch 1 and context"
        " ISL + OSL/2",
        f"NIM at concurrency 2-{NIM_MAX_CONCURRENCY}: 'throughput' points at that concurrency"
        " (the client keeps that many requests in flight); rows above it are not fitted:"
        f" their TTFT ({min(r[1] for r in skipped):.0f}-{max(r[1] for r in skipped):.0f} s)"
        " is queueing, so the server runs fewer requests than the concurrency and how many is"
        f" not published; their plateau ({plateau} tokens/s) is the regime of the"
        f" TensorRT-LLM {isl}/{osl} max-load row ({trt_same:,.0f} tokens/s)",
        f"prefill_per_token2_s = per-layer attention L^2 term x 80 layers / TP{tp} (the BF16"
        f" kernel; an FP8 attention kernel would be faster); {pre_cite}",
        ctx_cite,
        "prefill_per_seq_s = 0 and no knee: no batched-prefill timing of this stack is"
        " published, and a chunked-prefill engine's batch costs what its tokens cost"
        " (ASSUMPTION of the form, not of a number)",
        f"calibration: TensorRT-LLM rows at concurrency min({TRTLLM_MAX_CONCURRENCY},"
        " kv_capacity_tokens // (ISL + OSL)) (trtllm-bench sizes its batch to the requests"
        " whose ISL+OSL fit the KV cache: NVIDIA/TensorRT-LLM tensorrt_llm/bench/build/"
        "tuning.py); per that many requests: their prefill + OSL decode steps at mean"
        " context ISL + OSL/2",
        f"{', '.join(FITTED)} fitted to the worst relative error (Lawson) over the"
        f" {len(points)} calibration points, the attention terms held",
    ]
    return template.model_copy(update={**fit, "sources": sources})


def derive_current_70b(base: Path) -> PerformanceProfile:
    """Llama-3.3-70B FP8 on two H100s (TP2) as NIM and TensorRT-LLM serve it today. The
    benchmarks' KV dtype is not stated: the profile takes the one that fits better and
    says how well the other does."""
    drafts = {kv: _current_70b_draft(base, kv) for kv in ("fp8", "bf16")}
    worst = {kv: worst_error(p) for kv, p in drafts.items()}
    kv = min(worst, key=lambda k: worst[k])
    other = "bf16" if kv == "fp8" else "fp8"
    prof = drafts[kv]
    note = (
        f"KV cache {kv.upper()} (neither table states the run's KV dtype; the one with the"
        f" smaller worst error): worst fit error {worst[kv]:.1%} with it, {worst[other]:.1%}"
        f" with {other.upper()} KV"
    )
    fields = {
        k: v
        for k, v in prof.model_dump().items()
        if k not in {"name", "sources", "calibration", "fit_tolerance"}
    }
    coef = [
        fields.pop(k) for k in ("prefill_base_s", "prefill_per_token_s", "prefill_per_token2_s")
    ]
    dec = [fields.pop(k) for k in ("decode_base_s", "decode_per_seq_s", "decode_per_ctx_token_s")]
    sources = [*prof.sources[:2], note, *prof.sources[2:]]
    return _finish(
        prof.name, fields, sources, np.array(coef), np.array(dec), prof.calibration, state_fit=True
    )


def derive_all(base: Path) -> list[PerformanceProfile]:
    return [
        derive_8b(base, GPUS["h100"]),
        derive_8b(base, GPUS["a100"]),
        derive_70b(base, GPUS["h100"], 4),
        derive_70b(base, GPUS["h100"], 8),
        derive_70b(base, GPUS["a100"], 4),
        derive_70b(base, GPUS["a100"], 8),
        derive_current_70b(base),
        *derive_large(base),
    ]


def derive_large(base: Path) -> list[PerformanceProfile]:
    fp8_h100 = derive_trtllm(base, LLAMA_405B_FP8, GPUS["h100"])
    return [
        fp8_h100,
        derive_trtllm(base, LLAMA_405B_FP8, GPUS["h200"]),
        derive_405b_w4a16(base, fp8_h100, 4),
        derive_405b_w4a16(base, fp8_h100, 8),
        derive_trtllm(base, QWEN3_235B_FP8, GPUS["h100"]),
    ]


FIT_REL_TOL = 1e-9  # least-squares results differ by ~1e-12 between BLAS kernels


def differences(a: Any, b: Any, rel: float = FIT_REL_TOL, where: str = "") -> list[str]:
    """Where two profiles (or their JSON) differ: floats beyond ``rel`` relative
    tolerance, anything else exactly. Empty when they are the same profile."""
    if isinstance(a, BaseModel) and isinstance(b, BaseModel):
        return differences(a.model_dump(mode="json"), b.model_dump(mode="json"), rel, where)
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{where or '<root>'}: keys {sorted(a)} != {sorted(b)}"]
        return [d for k in a for d in differences(a[k], b[k], rel, f"{where}.{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} items != {len(b)}"]
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in differences(x, y, rel, f"{where}[{i}]")
        ]
    if isinstance(a, float) and isinstance(b, float):
        return [] if math.isclose(a, b, rel_tol=rel, abs_tol=0.0) else [f"{where}: {a!r} != {b!r}"]
    return [] if a == b and type(a) is type(b) else [f"{where}: {a!r} != {b!r}"]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    base = Path(args[0]) if args else require_shared_data("perf")
    out = Path(__file__).parent
    for prof in derive_all(base):
        path = out / f"{prof.name}.json"
        old = PerformanceProfile.model_validate_json(path.read_text()) if path.exists() else None
        changed = old is None or bool(differences(old, prof))
        if changed:  # a file differing only in float noise is left as it is
            path.write_text(json.dumps(prof.model_dump(mode="json"), indent=1) + "\n")
        worst = worst_error(prof)
        print(
            f"{prof.name}: prefill a={prof.prefill_base_s * 1e3:.2f}ms"
            f" b={prof.prefill_per_token_s * 1e6:.2f}us c={prof.prefill_per_token2_s * 1e9:.4f}ns"
            f" d={prof.prefill_per_seq_s * 1e3:.2f}ms K={prof.prefill_knee_tokens:.0f}"
            f" e={prof.prefill_per_token_above_knee_s * 1e6:.2f}us;"
            f" decode a={prof.decode_base_s * 1e3:.2f}ms b={prof.decode_per_seq_s * 1e6:.1f}us"
            f" c={prof.decode_per_ctx_token_s * 1e9:.3f}ns;"
            f" floor {prof.decode_floor_s * 1e3:.2f}ms;"
            f" kv {prof.kv_capacity_tokens}; worst fit error {worst:.1%} tol {prof.fit_tolerance}"
            + ("" if changed else " (unchanged)")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
