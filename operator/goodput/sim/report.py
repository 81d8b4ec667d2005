"""Presenting a comparison: the table, the JSON, the per-request CSV and the plot."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from goodput.sim.harness import RunResult


def summary(results: dict[str, RunResult]) -> dict[str, dict[str, Any]]:
    """The JSON shape of `goodput simulate --json`: one object per controller."""
    oracle = results.get("oracle")
    ref = oracle.goodput if oracle is not None else None
    out: dict[str, dict[str, Any]] = {}
    for name, r in results.items():
        g = r.goodput
        out[name] = {
            "goodput_tokens_per_s": round(g, 3),
            "attainment": round(r.attainment, 5),
            "gpu_hours": round(r.gpu_hours, 4),
            "goodput_per_gpu_hour": round(r.goodput_per_gpu_hour, 1),
            "actions": r.actions,
            "peak_gpus": r.peak_gpus,
            "budget": r.budget,
            "ratio_to_oracle": (round(g / ref, 4) if ref else None),
        }
    return out


def table(results: dict[str, RunResult]) -> str:
    """A Markdown table (reads fine in a terminal too)."""
    s = summary(results)
    head = (
        "| controller | goodput tok/s | SLO attainment | GPU-hours | goodput/GPU-h "
        "| actions | peak GPUs / budget | vs oracle |"
    )
    lines = [head, "|---|--:|--:|--:|--:|--:|--:|--:|"]
    for name, v in s.items():
        ratio = v["ratio_to_oracle"]
        lines.append(
            f"| {name} | {v['goodput_tokens_per_s']:.1f} | {v['attainment']:.3f} "
            f"| {v['gpu_hours']:.2f} | {v['goodput_per_gpu_hour']:.0f} | {v['actions']} "
            f"| {v['peak_gpus']} / {v['budget']} | "
            + (f"{ratio:.3f}" if ratio is not None else "n/a")
            + " |"
        )
    return "\n".join(lines)


def write_json(results: dict[str, RunResult], path: str | Path) -> None:
    Path(path).write_text(json.dumps(summary(results), indent=2) + "\n")


def write_requests(result: RunResult, path: str | Path) -> int:
    """One row per request of one controller's run."""
    o = result.outcomes
    models = result.replica_models
    rows = 0
    with Path(path).open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "arrival_s",
                "input_tokens",
                "output_tokens",
                "cached_prefix_tokens",
                "ttft_s",
                "mean_itl_s",
                "met_slo",
                "model",
                "gpu",
            ]
        )
        for i in range(len(o.arrival)):
            rep = int(o.served_by[i])
            model, gpu = models[rep] if 0 <= rep < len(models) else ("", "")
            w.writerow(
                [
                    f"{o.arrival[i]:.6f}",
                    int(o.input_tokens[i]),
                    int(o.output_tokens[i]),
                    int(o.cached_tokens[i]),
                    "" if math.isnan(o.ttft[i]) else f"{o.ttft[i]:.6f}",
                    "" if math.isnan(o.itl[i]) else f"{o.itl[i]:.6f}",
                    int(bool(o.met[i])),
                    model,
                    gpu,
                ]
            )
            rows += 1
    return rows


def plot(results: dict[str, RunResult], path: str | Path, title: str = "") -> None:
    """Load, replicas per pool and per-interval attainment over time, per controller."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not results:
        return
    any_run = next(iter(results.values()))
    roles = list(any_run.ticks[0].serving) if any_run.ticks else []
    fig, axes = plt.subplots(
        2 + len(roles), 1, figsize=(9, 2.0 * (2 + len(roles))), sharex=True, dpi=80
    )
    t = np.asarray([k.t for k in any_run.ticks]) / 60.0
    axes[0].plot(t, [k.arrival_rps for k in any_run.ticks], color="black", lw=1)
    axes[0].set_ylabel("arrivals/s")
    if title:
        axes[0].set_title(title, fontsize=10)
    for name, r in results.items():
        tt = np.asarray([k.t for k in r.ticks]) / 60.0
        for j, role in enumerate(roles):
            axes[1 + j].step(
                tt, [k.serving.get(role, 0) for k in r.ticks], where="post", lw=1, label=name
            )
            axes[1 + j].set_ylabel(f"{role}\nreplicas")
        att = [np.nan if k.attainment is None else k.attainment for k in r.ticks]
        axes[-1].plot(tt, att, lw=1, label=name)
    axes[-1].set_ylabel("attainment")
    axes[-1].set_ylim(-0.02, 1.02)
    axes[-1].set_xlabel("minutes")
    axes[1].legend(fontsize=7, ncol=len(results), loc="upper left")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
