"""Presenting a comparison: the table, the JSON, the per-request CSV and the plot."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from goodput.sim.cluster import inflight_lost
from goodput.sim.harness import RunResult

if TYPE_CHECKING:
    from goodput.sim.variant_controllers import CostSweep, VariantComparison
    from goodput.sim.variants import VariantRunResult


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
            # Changes (writes, replicas gone) after which more GPUs were held than the budget.
            "budget_violations": r.budget_violations,
            "ratio_to_oracle": (round(g / ref, 4) if ref else None),
            # Requests in flight on the replicas its scale-downs removed (docs/drain.md).
            "inflight_lost": inflight_lost(r.writes),
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


# ---------------------------------------------------------------------------- variants
#
# The variant twin (goodput.sim.variants): value-weighted goodput, traffic split and
# replicas per variant. Imported lazily so the single-model report needs none of it.


def variant_summary(
    cmp: VariantComparison, sweep: CostSweep | None = None, timeline: bool = True
) -> dict[str, Any]:
    """The JSON shape of `goodput simulate --json` on a policy with variants:
    ``controllers`` (per controller ``value_goodput`` in value units per second of trace,
    ``goodput`` on-time tokens/s, mean ``share`` per variant, and over time the route's
    weights, the arrivals each variant got, its ready replicas and the GPUs held), the
    variants, the value model, the fixed split of ``hpa-fixed-split``, the crossover cost
    and, when swept, value goodput against the wrong-answer cost."""
    from goodput.sim.variant_controllers import GOODPUT_DRIVER, crossover_cost

    vsc = cmp.vsc
    controllers: dict[str, Any] = {}
    for name, r in cmp.results.items():
        entry: dict[str, Any] = {
            "label": r.label,
            "value_goodput": round(r.value_goodput(), 3),
            "goodput": round(r.goodput, 3),
            "attainment": round(r.attainment, 5),
            "share": {v: round(s, 4) for v, s in r.share().items()},
            "goodput_by_variant": {v: round(g, 3) for v, g in r.variant_goodput().items()},
            "right_answer_fraction": {
                v: (None if f is None else round(f, 4)) for v, f in r.right_fraction().items()
            },
            "gpu_hours": round(r.gpu_hours, 4),
            "actions": r.actions,
            "peak_gpus": r.peak_gpus,
            "budget": r.budget,
        }
        if timeline:
            entry["timeline"] = {
                "t": [round(k.t, 3) for k in r.ticks],
                "arrival_rps": [round(k.arrival_rps, 3) for k in r.ticks],
                "weights": {v: [k.weights[v] for k in r.ticks] for v in r.variants},
                "share": {v: [round(k.share[v], 4) for k in r.ticks] for v in r.variants},
                "serving": {
                    v: {
                        role: [k.serving[v].get(role, 0) for k in r.ticks]
                        for role in vsc.variants[v].sc.roles
                    }
                    for v in r.variants
                },
                "gpus_held": [k.gpus_held for k in r.ticks],
            }
        controllers[name] = entry
    singles = {v: s.result for v, s in cmp.singles.items()}
    out: dict[str, Any] = {
        "controllers": controllers,
        "variants": {
            v: {
                "quality": i.quality,
                "quality_source": i.quality_source,
                "profiles": {r: p.name for r, p in i.sc.profiles.items()},
                "backend": i.backend,
                "single_best_split": cmp.singles[v].split if v in cmp.singles else None,
            }
            for v, i in vsc.variants.items()
        },
        "value": {
            "right_answer": vsc.value.right_answer,
            "wrong_answer_cost": vsc.value.wrong_answer_cost,
            "quality_floor": vsc.value.quality_floor,
        },
        "budget": vsc.budget,
        "seed": cmp.seed,
        "goodput_driver": GOODPUT_DRIVER,
        "hpa_fixed_split_weights": cmp.fixed_weights,
        "crossover_wrong_answer_cost": (
            None if (c := crossover_cost(singles)) is None else round(c, 4)
        )
        if len(singles) > 1
        else None,
    }
    if sweep is not None:
        out["cost_sweep"] = {
            "wrong_answer_cost": sweep.costs,
            "value_goodput": {
                **{f"single-{v}": [round(x, 3) for x in xs] for v, xs in sweep.singles.items()},
                **({"goodput": [round(x, 3) for x in sweep.planner]} if sweep.planner else {}),
            },
            "goodput_share": sweep.planner_share,
        }
    return out


def variant_table(cmp: VariantComparison) -> str:
    """A Markdown table of the variant comparison."""
    names = cmp.vsc.names
    head = (
        "| controller | value goodput /s | goodput tok/s | SLO attainment | "
        + " | ".join(f"share {v}" for v in names)
        + " | GPU-hours | actions | peak GPUs / budget |"
    )
    lines = [head, "|---|--:|--:|--:|" + "--:|" * len(names) + "--:|--:|--:|"]
    for name, r in cmp.results.items():
        share = r.share()
        lines.append(
            f"| {name} | {r.value_goodput():.1f} | {r.goodput:.1f} | {r.attainment:.3f} | "
            + " | ".join(f"{share[v]:.3f}" for v in names)
            + f" | {r.gpu_hours:.2f} | {r.actions} | {r.peak_gpus} / {r.budget} |"
        )
    return "\n".join(lines)


def write_variant_json(
    cmp: VariantComparison, path: str | Path, sweep: CostSweep | None = None
) -> None:
    Path(path).write_text(json.dumps(variant_summary(cmp, sweep), indent=2) + "\n")


def write_variant_requests(result: VariantRunResult, path: str | Path) -> int:
    """One row per request of one controller's variant run: its variant, whether it met
    the SLO and whether its answer was right (drawn)."""
    rows = 0
    with Path(path).open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["request", "output_tokens", "variant", "met_slo", "right_answer"])
        for i in range(len(result.assigned)):
            k = int(result.assigned[i])
            w.writerow(
                [
                    i,
                    int(result.output_tokens[i]),
                    result.variants[k] if k >= 0 else "",
                    int(bool(result.met[i])),
                    int(bool(result.right[i])),
                ]
            )
            rows += 1
    return rows


def variant_plot(
    cmp: VariantComparison, path: str | Path, sweep: CostSweep | None = None, title: str = ""
) -> None:
    """Top: value-weighted goodput against the wrong-answer cost c for each single variant
    (its exact line from its run) and the planner (re-run at each swept c), the crossover
    marked. Below, across the trace (its peak): arrivals, the traffic share each adaptive
    controller gives each variant, and the replicas (all pools) each variant has ready."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from goodput.sim.variant_controllers import crossover_cost

    names = cmp.vsc.names
    adaptive = [n for n in cmp.results if not n.startswith("single-")]
    fig, axes = plt.subplots(4, 1, figsize=(9, 11), dpi=80)
    ax = axes[0]
    singles = {v: s.result for v, s in cmp.singles.items()}
    cs = sweep.costs if sweep is not None else [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    grid = np.linspace(min(cs), max(cs), 50)
    for v, r in singles.items():
        ax.plot(grid, [r.value_goodput(c) for c in grid], lw=1.2, label=f"single-{v}")
    if sweep is not None and sweep.planner:
        ax.plot(sweep.costs, sweep.planner, "o-", color="black", lw=1.2, label="goodput (planner)")
    elif "goodput" in cmp.results:  # no sweep: the planner's run at the policy's own c
        g = cmp.results["goodput"]
        ax.plot(
            [g.wrong_answer_cost],
            [g.value_goodput()],
            "o",
            color="black",
            label="goodput (planner) at the policy's c",
        )
    cx = crossover_cost(singles, float(min(cs)), float(max(cs))) if len(singles) > 1 else None
    if cx is not None:
        ax.axvline(cx, color="grey", ls="--", lw=0.8)
        ax.annotate(
            f"crossover c = {cx:.2f}",
            (cx, 0),
            fontsize=8,
            xytext=(4, 4),
            textcoords="offset points",
        )
    c0 = cmp.vsc.value.wrong_answer_cost
    ax.axvline(c0, color="tab:red", ls=":", lw=0.8)
    ax.axhline(0, color="black", lw=0.5)
    ax.set_xlabel("wrong-answer cost c (x value of a right answer)")
    ax.set_ylabel("value goodput /s")
    ax.set_title(title or "value-weighted goodput vs wrong-answer cost", fontsize=10)
    ax.legend(fontsize=7)
    any_run = cmp.results[adaptive[0]] if adaptive else next(iter(cmp.results.values()))
    t = np.asarray([k.t for k in any_run.ticks]) / 60.0
    axes[1].plot(t, [k.arrival_rps for k in any_run.ticks], color="black", lw=1)
    axes[1].set_ylabel("arrivals/s")
    styles = ["-", "--", ":", "-."]
    for j, name in enumerate(adaptive):
        r = cmp.results[name]
        tt = np.asarray([k.t for k in r.ticks]) / 60.0
        for i, v in enumerate(names):
            axes[2].step(
                tt,
                [k.weights[v] for k in r.ticks],
                where="post",
                lw=1,
                ls=styles[j % len(styles)],
                color=f"C{i}",
                label=f"{name}: {v}",
            )
            axes[3].step(
                tt,
                [sum(k.serving[v].values()) for k in r.ticks],
                where="post",
                lw=1,
                ls=styles[j % len(styles)],
                color=f"C{i}",
                label=f"{name}: {v}",
            )
    axes[2].set_ylabel("traffic weight %")
    axes[2].set_ylim(-2, 102)
    axes[3].set_ylabel("ready replicas\n(all pools)")
    axes[3].set_xlabel("minutes")
    for a in axes[2:]:
        a.legend(fontsize=6, ncol=2, loc="upper left")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
