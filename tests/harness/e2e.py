"""The closed loop on a live cluster (issue 14): the scenario behind `make e2e` and its
short form in tests/integration/test_e2e.py.

A real kube-apiserver/etcd/controller-manager/scheduler with KWOK GPU nodes and a real
Prometheus; two Deployments (prefill, decode; Llama-3.1-70B on H100, 4 GPUs a pod) and
one GoodputPolicy in Enforce with a 32-GPU budget; the fleet emulator
(goodput.sim.emulator_live) serving each Ready pod's /metrics from the twin, found by
Prometheus through file-based service discovery; `goodput run` as its own process with
the helm chart's ServiceAccount token and arguments; a watcher of every pod and
Deployment event (tests/harness/budget_watch.py) for the budget at every observable
state. Arrivals: the ServeGen m-small day compressed to ``minutes``
(goodput.sim.emulator_trace) with its evening peak.

``run(...)`` returns the result dict (also written as ``out/e2e.json``) and draws
``out/e2e.png``; ``python -m tests.harness.e2e`` is `make e2e` (own control plane).

Definitions (also in docs/e2e.md):
- phases by the replayed hour: before the peak 08:00-19:00, during 19:00-22:00, after
  22:00-08:00; attainment per phase = met / arrived among requests arriving in it;
- ``goodput_exact``: output tokens of requests that met the SLO and finished in the
  scored window, over its length; the window starts after the warm-up (first
  metrics window + one interval) and ends when the trace does;
- ``goodput_estimated``: the mean, over the same window, of the operator's
  ``goodput_observed_goodput_tokens_per_second`` read from its /metrics every second;
- ``recovery_intervals``: for every run of policy intervals whose exact attainment
  (requests arriving in the interval) is below the target, the intervals from its
  first interval until attainment is back at the target; the first one to begin
  during the peak is the load step's and counts from the step (19:00);
- ``gpus_returned_after_peak``: GPUs held at the peak's highest minus GPUs held at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from goodput.api.spec import GoodputPolicySpec
from goodput.sim.emulator import FleetSpec
from goodput.sim.emulator_live import Emulator
from goodput.sim.emulator_trace import PeakTrace, rate_series, servegen_peak
from tests.harness.budget_watch import BudgetWatch
from tests.harness.chart import (
    PEERING_KINDS,
    RBAC_KINDS,
    apply_parts,
    container_args,
    delete_parts,
    of_kind,
    render,
)
from tests.harness.cluster import LocalCluster
from tests.harness.operator import OperatorProcess
from tests.harness.process import wait_until
from tests.harness.prometheus import PrometheusServer

RELEASE_NS = "goodput-e2e"
JOB = "emulator"
BUDGET = 32
GPUS = 4
PROFILE = "llama-3.1-70b-h100-tp4"
INTERVAL_S = 10.0
STARTUP_S = 20.0
WINDOW = "20s"
TARGET = 0.9
PEAK_HOURS = (19.0, 22.0)
POLICY = "chat"


@dataclass(frozen=True)
class Scenario:
    minutes: float = 10.0
    mean_rps: float = 12.0
    seed: int = 7
    start_replicas: int = 2
    tail_s: float = 30.0  # after the trace ends, so the last scale-down is seen
    start_hour: float = 8.0  # the replayed span of the ServeGen day
    hours: float = 24.0


def _deployment(name: str, ns: str, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 30,
                    "containers": [
                        {
                            "name": "vllm",
                            "image": "vllm/vllm-openai:latest",
                            "resources": {"limits": {"nvidia.com/gpu": str(GPUS)}},
                        }
                    ],
                },
            },
        },
    }


def policy(ns: str, prom_url: str) -> dict[str, Any]:
    return {
        "apiVersion": "goodput.dev/v1alpha1",
        "kind": "GoodputPolicy",
        "metadata": {"name": POLICY, "namespace": ns},
        "spec": {
            "mode": "Enforce",
            "gpuBudget": BUDGET,
            "pools": [
                {
                    "role": role,
                    "targetRef": {"kind": "Deployment", "name": role},
                    "gpusPerReplica": GPUS,
                    "minReplicas": 1,
                    "maxReplicas": 7,
                    "profile": PROFILE,
                }
                for role in ("prefill", "decode")
            ],
            "slo": {"ttft": "1s", "itl": "100ms", "attainment": TARGET},
            "metrics": {
                "prometheusUrl": prom_url,
                "preset": "vllm",
                "window": WINDOW,
                "maxStaleness": "30s",
                "selectors": {
                    r: f'job="{JOB}",namespace="{ns}",pool="{r}"' for r in ("prefill", "decode")
                },
            },
            "behavior": {
                "interval": f"{INTERVAL_S:g}s",
                "startupDelay": f"{STARTUP_S:g}s",
                "forecastHorizon": "30s",
                "scaleDown": {"stabilizationWindowSeconds": 30},
            },
        },
    }


class Timeline:
    """Once a second: the fleet's replicas per pool and state, the operator's estimate
    (its /metrics), the GPUs held (the watcher's last state)."""

    def __init__(
        self, em: Emulator, op: OperatorProcess, watch: BudgetWatch, key: tuple[str, str]
    ) -> None:
        self.em, self.op, self.watch, self.key = em, op, watch, key
        self.rows: list[dict[str, Any]] = []
        self.node_checks = 0
        self.nodes_not_ready: list[str] = []  # "t node" for every check that found one
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _nodes(self, core: Any, t: float) -> None:
        for n in core.list_node(label_selector="type=kwok", _request_timeout=5).items:
            ready = any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
            if not ready:
                self.nodes_not_ready.append(f"{t:.0f} {n.metadata.name}")
        self.node_checks += 1

    def _run(self) -> None:
        from kubernetes import client

        core = client.CoreV1Api(self.em.api_client)
        k = 0
        while not self._stop.wait(1.0):
            k += 1
            with self.em.lock:
                reps = self.em.fleet(self.key).replicas()
                t = self.em.now(self.key)
            row: dict[str, Any] = {"t": t, "replicas": reps, "held": self.watch.last().held}
            try:
                metrics = _scrape(self.op.port)
            except Exception:
                metrics = {}
            row["estimated"] = metrics.get("goodput_observed_goodput_tokens_per_second")
            row["estimated_attainment"] = metrics.get("goodput_observed_slo_attainment_ratio")
            self.rows.append(row)
            if k % 2 == 0:
                try:
                    self._nodes(core, t)
                except Exception as e:
                    self.nodes_not_ready.append(f"{t:.0f} node list failed: {e}")

    def __enter__(self) -> Timeline:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _scrape(port: int) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.labels.get("policy") == POLICY:
                out[s.name] = s.value
    return out


def run(
    cluster: LocalCluster,
    prometheus: PrometheusServer,
    helm_bin: Path,
    workdir: Path,
    out_dir: Path,
    sc: Scenario,
    progress: bool = False,
) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    ns = cluster.create_namespace("e2e")
    release = f"e2e{int(time.time() * 1000) % 100000}"
    docs = render(helm_bin, release, RELEASE_NS, f"watchNamespaces={{{ns}}}")
    (sa_doc,) = of_kind(docs, "ServiceAccount")
    sa = sa_doc["metadata"]["name"]
    apply_parts(cluster, docs, *RBAC_KINDS, *PEERING_KINDS)
    kubeconfig = cluster.service_account_kubeconfig(RELEASE_NS, sa, workdir / "sa-kubeconfig")
    for role in ("prefill", "decode"):
        cluster.apply(_deployment(role, ns, sc.start_replicas))

    def pods_ready() -> bool:
        out = cluster.kubectl(
            "get",
            "pods",
            "-n",
            ns,
            "-o",
            "jsonpath={.items[*].status.conditions[?(@.type=='Ready')].status}",
        ).stdout.split()
        return out.count("True") == 2 * sc.start_replicas

    wait_until(pods_ready, 60, "the starting pods Ready")
    manifest = policy(ns, prometheus.url)
    spec = GoodputPolicySpec.model_validate(manifest["spec"])
    peak = servegen_peak(sc.minutes, sc.mean_rps, sc.seed, sc.start_hour, sc.hours)
    sd_file = workdir / "emulator-sd.json"
    em = Emulator(cluster.api_client(), sd_file, exit_drained_pods=True)
    key = em.add(FleetSpec(ns, POLICY, spec, peak.trace))
    em.start()
    prometheus.add_file_sd(JOB, sd_file)
    wait_until(
        lambda: (
            len(
                [
                    t
                    for t in prometheus.targets(JOB)
                    if t["labels"].get("namespace") == ns and t["health"] == "up"
                ]
            )
            == 2 * sc.start_replicas
        ),
        60,
        "Prometheus scraping every pod of the fleet",
    )
    args = [
        a for a in container_args(docs)[1:] if not a.startswith(("--metrics-port", "--liveness"))
    ]
    op = OperatorProcess(workdir, "operator-e2e", args, kubeconfig, env={"POD_ID": f"{sa}-0"})
    trace_end = sc.minutes * 60.0
    try:
        cluster.apply(manifest)
        with BudgetWatch(cluster, ns, policy=POLICY) as watch, Timeline(em, op, watch, key) as tl:
            while em.now(key) < trace_end + sc.tail_s:
                op.assert_alive()
                if progress:
                    print(_progress(em, key, peak, watch), flush=True)
                time.sleep(10.0)
            truth = em.truth(key)
            fleet = em.fleet(key)
            with em.lock:
                changes = list(fleet.log)
                lost = len(fleet.lost)
            spec_log = em.spec_log(ns)
            t0 = em.started_at[key]
            samples = list(watch.samples)
            over = watch.over_budget()
            grows_over = watch.grows_while_over()
            gaps = list(watch.gaps)
            rows = list(tl.rows)
            nodes = {"checks": tl.node_checks, "not_ready": list(tl.nodes_not_ready)}
        op_log = op.log()
    finally:
        op.stop()
        em.stop()
        delete_parts(cluster, docs, *PEERING_KINDS, *RBAC_KINDS)
    result = summarize(
        sc, peak, truth, rows, samples, over, grows_over, gaps, spec_log, t0, changes, lost
    )
    result["operator_errors"] = [
        line for line in op_log.splitlines() if " ERROR " in line or "Traceback" in line
    ][:20]
    result["emulator_problems"] = list(em.problems)
    result["kwok_nodes"] = nodes
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "e2e-operator.log").write_text(op_log)
    (out_dir / "e2e.json").write_text(json.dumps(result, indent=2))
    plot(result, out_dir / "e2e.png")
    return result


def _progress(em: Emulator, key: tuple[str, str], peak: PeakTrace, watch: BudgetWatch) -> str:
    with em.lock:
        t = em.now(key)
        reps = em.fleet(key).replicas()
    s = " ".join(f"{r}={v['serving']}+{v['starting']}s+{v['draining']}d" for r, v in reps.items())
    return f"t={t:5.0f}s hour {peak.hour_at(t):5.2f} held={watch.last().held} {s}"


def _phase(peak: PeakTrace, t: float) -> str:
    """Before, during or after the peak (19:00-22:00 of the replayed day)."""
    if t < peak.t_of_hour(PEAK_HOURS[0]):
        return "before"
    return "during" if t < peak.t_of_hour(PEAK_HOURS[1]) else "after"


def summarize(
    sc: Scenario,
    peak: PeakTrace,
    truth: Any,
    rows: list[dict[str, Any]],
    samples: list[Any],
    over: list[Any],
    grows_over: list[Any],
    gaps: list[tuple[float, float]],
    spec_log: list[tuple[float, str, int]],
    t0: float,
    changes: list[Any],
    lost: int,
) -> dict[str, Any]:
    end = sc.minutes * 60.0
    arr = truth.arrival
    met = truth.met
    finish = truth.arrival + np.nan_to_num(truth.ttft, nan=np.inf)  # first token
    finish = np.where(
        truth.output_tokens > 1,
        finish + np.nan_to_num(truth.itl, nan=np.inf) * np.maximum(truth.output_tokens - 1, 0),
        finish,
    )
    phases = np.asarray([_phase(peak, float(t)) for t in arr])
    attainment = {
        p: (float(met[(phases == p) & (arr < end)].mean()) if np.any(phases == p) else None)
        for p in ("before", "during", "after")
    }
    # Scored window: after the warm-up, to the end of the trace.
    warm = 20.0 + INTERVAL_S + 10.0
    w0, w1 = warm, end
    in_w = (finish >= w0) & (finish < w1)
    exact = float(np.sum(truth.output_tokens[in_w & met]) / (w1 - w0))
    est = [r["estimated"] for r in rows if w0 <= r["t"] < w1 and r["estimated"] is not None]
    estimated = float(np.mean(est)) if est else None
    # Per-interval exact attainment, by arrival.
    n_int = math.ceil(end / INTERVAL_S)
    att_int: list[float | None] = []
    for k in range(n_int):
        sel = (arr >= k * INTERVAL_S) & (arr < (k + 1) * INTERVAL_S)
        att_int.append(float(met[sel].mean()) if sel.any() else None)
    step_t = peak.t_of_hour(PEAK_HOURS[0])
    recovery = _recoveries(att_int, step_t, peak.t_of_hour(PEAK_HOURS[1]))
    held = [(s.t - t0, s.held) for s in samples]
    peak_gpus = max((h for _, h in held), default=0)
    during = [h for t, h in held if _phase(peak, t) == "during" and 0 <= t <= end]
    end_held = held[-1][1] if held else 0
    actions = [
        {"t": round(t - t0, 2), "target": name, "replicas": r} for t, name, r in spec_log if t >= t0
    ]
    # Only real changes after the first listing count as scale actions.
    first: dict[str, int] = {}
    scale_actions = []
    for a in actions:
        if a["target"] not in first:
            first[a["target"]] = a["replicas"]
            continue
        scale_actions.append(a)
    starts, rates = rate_series(peak.trace, INTERVAL_S, end)
    return {
        "scenario": {
            "minutes": sc.minutes,
            "replayed_hours": [sc.start_hour, sc.hours],
            "mean_rps": sc.mean_rps,
            "seed": sc.seed,
            "trace": peak.trace.name,
            "trace_note": peak.trace.note,
            "requests": int(np.sum(arr < end)),
            "profile": PROFILE,
            "interval_s": INTERVAL_S,
            "startup_delay_s": STARTUP_S,
            "metrics_window": WINDOW,
            "slo": {"ttft_s": 1.0, "itl_s": 0.1, "attainment": TARGET},
            "load_step_t": round(step_t, 1),
            "peak_hours": list(PEAK_HOURS),
        },
        "budget": BUDGET,
        "peak_gpus": peak_gpus,
        "over_budget_states": len(over),
        "grows_while_over_budget": len(grows_over),
        "watch_events": len(samples),
        "watch_gaps": len(gaps),
        "goodput_window_s": [w0, w1],
        "goodput_exact": exact,
        "goodput_estimated": estimated,
        "goodput_estimate_error": (estimated / exact - 1.0) if estimated and exact else None,
        "attainment": attainment,
        "attainment_overall": float(met[arr < end].mean()),
        "attainment_per_interval": att_int,
        "scale_actions": scale_actions,
        "scale_action_count": len(scale_actions),
        "recovery_intervals": recovery,
        "gpus_held_peak_phase_max": max(during, default=None),
        "gpus_held_end": end_held,
        "gpus_returned_after_peak": (max(during) - end_held) if during else None,
        "requests_lost_with_deleted_pods": lost,
        "pods_unready_without_deletion": sum(1 for c in changes if c.what == "unready"),
        "timeline": {
            "rate_t": starts.tolist(),
            "rate_rps": rates.tolist(),
            "rows": rows,
            "held": [[round(t, 2), h] for t, h in held],
        },
    }


def _recoveries(att: list[float | None], step_t: float, peak_end_t: float) -> list[dict[str, Any]]:
    """Every dip below the target and the intervals until it is back at it. The first
    dip that begins at or after the load step and before the peak ends is the load
    step's: it counts from the step's interval (``at_load_step``); any other dip (one
    after the peak, from a scale-down, say) counts from its own first interval."""
    out: list[dict[str, Any]] = []
    step_k = int(step_t // INTERVAL_S)
    end_k = math.ceil(peak_end_t / INTERVAL_S)
    k = 0
    while k < len(att):
        a = att[k]
        if a is not None and a < TARGET:
            start = k
            while k < len(att) and (att[k] is None or att[k] < TARGET):  # type: ignore[operator]
                k += 1
            of_step = step_k <= start < end_k and not any(d["at_load_step"] for d in out)
            frm = step_k if of_step else start
            out.append(
                {
                    "from_interval": frm,
                    "dip_interval": start,
                    "back_at_target_interval": k if k < len(att) else None,
                    "intervals": (k - frm) if k < len(att) else None,
                    "at_load_step": of_step,
                }
            )
        k += 1
    return out


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tl = result["timeline"]
    rows = tl["rows"]
    t = [r["t"] for r in rows]
    fig, ax = plt.subplots(4, 1, figsize=(10, 11), sharex=True)
    ax[0].step(tl["rate_t"], tl["rate_rps"], where="post", label="arrivals (req/s)")
    ax[0].axvline(
        result["scenario"]["load_step_t"], color="grey", ls=":", label="load step (19:00)"
    )
    ax[0].set_ylabel("req/s")
    ax[0].legend(loc="upper left")
    for role in ("prefill", "decode"):
        ax[1].plot(t, [r["replicas"][role]["serving"] for r in rows], label=f"{role} serving")
        ax[1].plot(
            t,
            [sum(r["replicas"][role].values()) for r in rows],
            ls="--",
            label=f"{role} with starting/draining",
        )
    ax[1].set_ylabel("replicas")
    ax[1].legend(loc="upper left")
    k_t = [
        (k + 0.5) * result["scenario"]["interval_s"]
        for k in range(len(result["attainment_per_interval"]))
    ]
    ax[2].plot(k_t, result["attainment_per_interval"], marker=".", label="exact (per interval)")
    ax[2].plot(t, [r["estimated_attainment"] for r in rows], alpha=0.7, label="operator's estimate")
    ax[2].axhline(result["scenario"]["slo"]["attainment"], color="red", ls=":", label="target")
    ax[2].set_ylabel("SLO attainment")
    ax[2].set_ylim(-0.05, 1.05)
    ax[2].legend(loc="lower left")
    ht = [h[0] for h in tl["held"]]
    ax[3].step(ht, [h[1] for h in tl["held"]], where="post", label="GPUs held (every watch event)")
    ax[3].axhline(result["budget"], color="red", ls=":", label="budget")
    ax[3].set_ylabel("GPUs")
    ax[3].set_xlabel("seconds")
    ax[3].legend(loc="upper left")
    fig.suptitle(
        f"closed loop: goodput exact {result['goodput_exact']:.0f} tok/s, "
        f"estimated {result['goodput_estimated'] or float('nan'):.0f} tok/s; "
        f"peak {result['peak_gpus']}/{result['budget']} GPUs"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def print_summary(r: dict[str, Any]) -> None:
    a = r["attainment"]
    est = None if r["goodput_estimated"] is None else round(r["goodput_estimated"], 1)
    print(
        f"budget {r['budget']} GPUs, peak held {r['peak_gpus']} "
        f"(states above budget: {r['over_budget_states']} of {r['watch_events']} watch events)\n"
        f"goodput exact {r['goodput_exact']:.1f} tok/s, estimated {est} tok/s"
        f" (error {r['goodput_estimate_error']})\n"
        f"attainment before {a['before']}, during {a['during']}, after {a['after']} "
        f"(target {r['scenario']['slo']['attainment']})\n"
        f"scale actions {r['scale_action_count']}; recovery {r['recovery_intervals']}\n"
        f"GPUs held: peak phase max {r['gpus_held_peak_phase_max']}, end {r['gpus_held_end']}, "
        f"returned {r['gpus_returned_after_peak']}; requests lost with deleted pods "
        f"{r['requests_lost_with_deleted_pods']}; pods unready without deletion "
        f"{r['pods_unready_without_deletion']}\n"
        f"KWOK nodes: {r['kwok_nodes']['checks']} checks, "
        f"{len(r['kwok_nodes']['not_ready'])} found a node not Ready"
    )


def _f(x: float | None, fmt: str = ".3f") -> str:
    return "n/a" if x is None else format(x, fmt)


def bench_section(r: dict[str, Any], command: str, wall_s: float, plot_path: str) -> str:
    """The run as a BENCHMARKS.md section (make bench includes it as written)."""
    import os
    import platform

    sc = r["scenario"]
    a = r["attainment"]
    target = sc["slo"]["attainment"]
    at_step = [d for d in r["recovery_intervals"] if d["at_load_step"]]
    step = at_step[0] if at_step else None
    recovered = (
        "no dip below the target after the load step"
        if step is None
        else (
            f"below the target from interval {step['dip_interval']} (the step is interval "
            f"{step['from_interval']}), back at it at interval "
            f"{step['back_at_target_interval']}: **{step['intervals']} intervals** after the step"
            if step["intervals"] is not None
            else "**not back at the target by the end of the run**"
        )
    )
    met = {p: (v is not None and v >= target) for p, v in a.items()}
    lines = [
        "## Closed loop on a live cluster (make e2e)",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on "
        f"{platform.machine()} with {os.cpu_count()} CPUs (shared), {wall_s / 60:.1f} min wall: "
        f"`{command}`. What runs and what each figure means: docs/e2e.md.",
        "",
        f"A real kube-apiserver/etcd/scheduler/controller-manager with KWOK GPU nodes and "
        f"a real Prometheus; the fleet emulator serves every Ready pod's vLLM metrics from "
        f"the twin; `goodput run` as its own process with the helm chart's ServiceAccount. "
        f"Policy: {sc['profile']} prefill and decode Deployments (4 GPUs a pod), budget "
        f"{r['budget']} GPUs, SLO TTFT {sc['slo']['ttft_s']:g} s / ITL "
        f"{sc['slo']['itl_s'] * 1000:g} ms / attainment {target:g}, interval "
        f"{sc['interval_s']:g} s, start-up delay {sc['startup_delay_s']:g} s. Arrivals: "
        f"{sc['trace']} ({sc['trace_note']}), {sc['requests']} requests; the load step is "
        f"19:00 of the replayed day (t = {sc['load_step_t']:g} s).",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| GPUs held at most (every watch event) | {r['peak_gpus']} of {r['budget']} |",
        f"| watch events above the budget / grows while above it | "
        f"{r['over_budget_states']} of {r['watch_events']} / {r['grows_while_over_budget']} |",
        f"| goodput, exact (emulator, per request) | {r['goodput_exact']:.1f} tokens/s |",
        f"| goodput, the operator's live estimate (same window) | "
        f"{_f(r['goodput_estimated'], '.1f')} tokens/s "
        f"({_f(r['goodput_estimate_error'] and 100 * r['goodput_estimate_error'], '+.1f')} %) |",
        f"| attainment before / during / after the peak (target {target:g}) | "
        f"{_f(a['before'])} / {_f(a['during'])} / {_f(a['after'])} |",
        f"| recovery after the load step | {recovered} |",
        f"| scale actions (spec.replicas changes) | {r['scale_action_count']} |",
        f"| GPUs held: most during the peak, at the end, returned | "
        f"{r['gpus_held_peak_phase_max']}, {r['gpus_held_end']}, "
        f"{r['gpus_returned_after_peak']} |",
        f"| requests lost with removed pods | {r['requests_lost_with_deleted_pods']} |",
        f"| KWOK node checks / found not Ready; pods unready without deletion | "
        f"{r['kwok_nodes']['checks']} / {len(r['kwok_nodes']['not_ready'])}; "
        f"{r['pods_unready_without_deletion']} |",
        "",
    ]
    short = [p for p, ok in met.items() if not ok]
    if short:
        lines += [
            "Not met: attainment "
            + ", ".join(f"{p} the peak {_f(a[p])}" for p in short)
            + f" is below the {target:g} target.",
            "",
        ]
    lines += [f"![closed loop]({plot_path})", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import os
    import shutil
    import sys
    import tempfile

    from tests.harness.tools import tools

    ap = argparse.ArgumentParser(prog="python -m tests.harness.e2e")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--mean-rps", type=float, default=12.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--start-hour", type=float, default=8.0)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--out", type=Path, default=Path("out"))
    ap.add_argument("--keep", action="store_true", help="keep the harness directory")
    ap.add_argument(
        "--bench-md",
        type=Path,
        help="also write the run as a BENCHMARKS.md section here, its plot beside it",
    )
    args = ap.parse_args(argv)
    began = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="goodput-e2e-"))
    (work / "cluster").mkdir()
    # Pods drain before they go: a terminating pod is removed when its replica has
    # drained (the emulator deletes it with grace 0) or its 30 s grace period ends.
    cluster = LocalCluster(work / "cluster", graceful_pod_delete=True).start()
    try:
        prom = PrometheusServer(work / "prometheus").start()
        try:
            res = run(
                cluster,
                prom,
                tools().helm_bin / "helm",
                work / "run",
                args.out,
                Scenario(
                    args.minutes,
                    args.mean_rps,
                    args.seed,
                    start_hour=args.start_hour,
                    hours=args.hours,
                ),
                progress=True,
            )
        finally:
            prom.stop()
    finally:
        cluster.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print_summary(res)
    print(f"wrote {args.out / 'e2e.json'} and {args.out / 'e2e.png'}")
    if args.bench_md is not None:
        png = args.bench_md.with_suffix(".png")
        shutil.copyfile(args.out / "e2e.png", png)
        cmd = "python -m tests.harness.e2e " + " ".join(sys.argv[1:] if argv is None else argv)
        if os.environ.get("MAKELEVEL"):  # run by make: say so, as a reader repeats it
            cmd = f"make e2e` (`{cmd.strip()}"
        args.bench_md.write_text(
            bench_section(res, cmd.strip(), time.monotonic() - began, str(png))
        )
        print(f"wrote {args.bench_md} and {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
