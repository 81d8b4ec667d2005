"""One operator process, many policies (issue 14, "Scale"): `make scale`.

What a platform team would run: `goodput run` as its own process with the helm chart's
arguments and its ServiceAccount's token (RBAC and peering applied from the chart), on a
real control plane with KWOK GPU nodes, reading a real Prometheus that scrapes every pod
of every policy's fleet from the fleet emulator (goodput.sim.emulator_live; all fleets
in this one process, each replaying its own ServeGen day compressed to the run, with
Azure request lengths, around its own mean rate). ``policies`` policies, ``per_namespace``
to a namespace (the chart's watchNamespaces), each with a prefill and a decode
Deployment of Llama-3.1-8B on one H100 a pod, a budget of 4 GPUs and its own fleet.

After a warm-up (every policy has ticked), the measurement window:

- tick latency p50 / p95: from the operator's own /metrics histogram
  (``goodput_tick_duration_seconds``, summed over policies, the bucket counts' increase
  over the window, interpolated inside a bucket as ``histogram_quantile`` does) and,
  exact, from the ``tick_seconds`` of every decision log line in the window;
- operator CPU (utime + stime from /proc/<pid>/stat over the window, in cores) and
  memory (VmRSS at the end, VmHWM the peak, from /proc/<pid>/status);
- API requests per second: the operator's own, from the API server's audit log (every
  request of its ServiceAccount, by verb), and every client's, from the increase of
  ``apiserver_request_total`` on the API server's /metrics;
- Prometheus queries per tick: the increase of Prometheus's own
  ``prometheus_http_requests_total`` for /api/v1/query and /api/v1/query_range (nobody
  else queries it during the window) over the ticks in the window; and
  ``prometheus_engine_query_duration_seconds_count{slice="inner_eval"}``;
- decisions by reason (a hold is not a plan: the run says how many ticks planned).

Optionally ``--profile-seconds`` records the operator with py-spy (if installed) and
prints the functions that take the most samples, for "where the time goes".

``python -m tests.harness.scale --policies 200`` starts its own control plane and
Prometheus; ``run()`` takes existing ones (tests/integration/test_scale.py).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from goodput.api.spec import GoodputPolicySpec
from goodput.sim.emulator import FleetSpec
from goodput.sim.emulator_live import Emulator
from goodput.sim.emulator_trace import servegen_peak
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
from tests.harness.tools import tools

RELEASE_NS = "goodput-scale"
PROFILE = "llama-3.1-8b-h100-tp1"
BUDGET = 4
TICK_BUCKETS_NAME = "goodput_tick_duration_seconds"


@dataclass(frozen=True)
class Setup:
    policies: int = 200
    per_namespace: int = 20
    interval_s: float = 15.0
    warmup_s: float = 60.0
    duration_s: float = 300.0
    scrape_s: float = 5.0
    mean_rps: tuple[float, float] = (0.5, 2.0)  # each fleet's mean rate, spread evenly
    profile_s: float = 0.0  # py-spy over the window's last seconds (0: off)
    seed: int = 1


@dataclass
class Result:
    setup: dict[str, Any]
    window_s: float
    ticks: int
    ticks_expected: float
    tick_p50_s: float
    tick_p95_s: float
    tick_p50_log_s: float
    tick_p95_log_s: float
    tick_max_log_s: float
    cpu_cores: float
    rss_mib: float
    peak_rss_mib: float
    operator_api_rps: float
    operator_api_by_verb: dict[str, float]
    all_clients_api_rps: float
    prometheus_queries_per_tick: float
    prometheus_inner_evals_per_tick: float
    decisions: dict[str, int]
    scale_writes: int
    errors_in_log: int
    profile_top: list[tuple[str, float]] = field(default_factory=list)
    # CPU (cores) over the window of the other processes on the machine's 2 cores:
    # Prometheus, kube-apiserver, etcd, and this process (the emulator and the runner).
    others_cpu_cores: dict[str, float] = field(default_factory=dict)
    # TCP connections established to Prometheus at the window's end (its default
    # --web.max-connections is 512).
    prometheus_connections: int = 0
    command: str = ""


class ScrapePrometheus(PrometheusServer):
    """The harness's Prometheus with a longer scrape interval: hundreds of pod targets
    scraped every second would measure Prometheus, not the operator."""

    scrape_s: float = 5.0

    def _write_config(self) -> None:
        super()._write_config()
        path = self.workdir / "prometheus.yml"
        cfg = yaml.safe_load(path.read_text())
        s = f"{self.scrape_s:g}s"
        cfg["global"] = {"scrape_interval": s, "evaluation_interval": s, "scrape_timeout": s}
        path.write_text(yaml.safe_dump(cfg))


# ---- manifests ---------------------------------------------------------------------------


def _deployment(name: str, ns: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [
                        {
                            "name": "vllm",
                            "image": "vllm/vllm-openai:latest",
                            "resources": {"limits": {"nvidia.com/gpu": "1"}},
                        }
                    ],
                },
            },
        },
    }


def _window_s(scrape_s: float) -> float:
    """The policies' metrics window: six scrapes, at least 10 s (30 s at a 5 s scrape)."""
    return max(10.0, 6 * scrape_s)


def policy(
    name: str, ns: str, prom_url: str, job: str, interval_s: float, scrape_s: float
) -> dict[str, Any]:
    window = _window_s(scrape_s)
    return {
        "apiVersion": "goodput.dev/v1alpha1",
        "kind": "GoodputPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "mode": "Enforce",
            "gpuBudget": BUDGET,
            "pools": [
                {
                    "role": role,
                    "targetRef": {"kind": "Deployment", "name": f"{name}-{role}"},
                    "gpusPerReplica": 1,
                    "minReplicas": 1,
                    "maxReplicas": 3,
                    "profile": PROFILE,
                }
                for role in ("prefill", "decode")
            ],
            "slo": {"ttft": "500ms", "itl": "50ms", "attainment": 0.9},
            "metrics": {
                "prometheusUrl": prom_url,
                "preset": "vllm",
                "window": f"{window:g}s",
                "maxStaleness": f"{window:g}s",
                "selectors": {
                    r: f'job="{job}",namespace="{ns}",policy="{name}",pool="{r}"'
                    for r in ("prefill", "decode")
                },
            },
            "behavior": {"interval": f"{interval_s:g}s", "startupDelay": "10s"},
        },
    }


# ---- reading the numbers -----------------------------------------------------------------


def _get(url: str, timeout: float = 120.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return str(resp.read().decode())


def _samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (s.labels, s.value)
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name == name
    ]


def _sum(text: str, name: str, **labels: str) -> float:
    return sum(
        v for lab, v in _samples(text, name) if all(lab.get(k) == x for k, x in labels.items())
    )


def _tick_buckets(text: str) -> dict[float, float]:
    out: dict[float, float] = {}
    for lab, v in _samples(text, f"{TICK_BUCKETS_NAME}_bucket"):
        le = float(lab["le"])
        out[le] = out.get(le, 0.0) + v
    return out


def histogram_quantile(q: float, buckets: dict[float, float]) -> float:
    """Prometheus's histogram_quantile over cumulative (le -> count) buckets: linear
    inside the bucket holding the rank, the lower bound of the first bucket 0; a rank in
    the +Inf bucket gives the highest finite bound."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total <= 0:
        return math.nan
    rank = q * total
    prev_b, prev_c = 0.0, 0.0
    for b in bounds:
        c = buckets[b]
        if c >= rank:
            if math.isinf(b):
                return prev_b
            return prev_b + (b - prev_b) * ((rank - prev_c) / (c - prev_c) if c > prev_c else 0)
        prev_b, prev_c = b, c
    return prev_b


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    v = sorted(values)
    i = min(len(v) - 1, max(0, math.ceil(q * len(v)) - 1))
    return v[i]


_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")
_TICK = re.compile(r" decision \S+: .* tick_seconds=([0-9.]+)")


def _log_ticks(log: str, t0: float, t1: float) -> list[float]:
    """tick_seconds of every decision line logged in [t0, t1] (wall clock)."""
    out = []
    for line in log.splitlines():
        m, d = _LOG_TIME.match(line), _TICK.search(line)
        if m is None or d is None:
            continue
        when = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").astimezone().timestamp()
        if t0 <= when <= t1:
            out.append(float(d.group(1)))
    return out


def _proc(pid: int) -> tuple[float, float, float]:
    """(CPU seconds used, VmRSS MiB, VmHWM MiB) of a process."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    status = Path(f"/proc/{pid}/status").read_text()

    def kib(key: str) -> float:
        m = re.search(rf"^{key}:\s+(\d+) kB", status, re.MULTILINE)
        return int(m.group(1)) / 1024 if m else math.nan

    return cpu, kib("VmRSS"), kib("VmHWM")


def _audit_counts(cluster: LocalCluster, user: str, t0: float, t1: float) -> Counter[str]:
    """The operator's requests received in [t0, t1], by verb (each request once)."""
    seen: dict[str, str] = {}
    with cluster.audit_log.open() as f:
        for line in f:
            ev = json.loads(line)
            if ev.get("user", {}).get("username") != user:
                continue
            when = datetime.fromisoformat(ev["requestReceivedTimestamp"].replace("Z", "+00:00"))
            if t0 <= when.timestamp() <= t1:
                seen[ev["auditID"]] = ev["verb"]
    return Counter(seen.values())


def _apiserver_total(cluster: LocalCluster) -> float:
    text = cluster.kubectl("get", "--raw", "/metrics", timeout=60).stdout
    return _sum(text, "apiserver_request_total")


def _prom_queries(prom: PrometheusServer) -> tuple[float, float]:
    """Prometheus's own query counters; NaN when it does not answer within 60 s (its
    connections exhausted: it accepts no more, and the figure is then unknown)."""
    try:
        text = _get(f"{prom.url}/metrics", timeout=60.0)
    except OSError:
        return math.nan, math.nan
    http = sum(
        _sum(text, "prometheus_http_requests_total", handler=h)
        for h in ("/api/v1/query", "/api/v1/query_range")
    )
    inner = _sum(text, "prometheus_engine_query_duration_seconds_count", slice="inner_eval")
    return http, inner


def _connections_to(port: int) -> int:
    """Established TCP connections to a local port, from /proc/net/tcp (state 01)."""
    n = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, _remote, state = line.split()[1:4]
        if state == "01" and int(local.split(":")[1], 16) == port:
            n += 1
    return n


def _other_pids(cluster: LocalCluster, prom: PrometheusServer) -> dict[str, int]:
    import os

    pids = {p.name: p.proc.pid for p in cluster.processes if p.alive()}
    out = {k: pids[k] for k in ("kube-apiserver", "etcd", "kwok") if k in pids}
    if prom.process is not None and prom.process.alive():
        out["prometheus"] = prom.process.proc.pid
    out["emulator+runner"] = os.getpid()
    return out


def _py_spy(pid: int, seconds: float, out: Path) -> list[tuple[str, float]]:
    """Top functions by share of samples (self time), from py-spy's raw output."""
    exe = shutil.which("py-spy") or str(Path(__import__("sys").executable).parent / "py-spy")
    if not Path(exe).exists():
        return [("py-spy not installed: no profile", 0.0)]
    raw = out / "py-spy.txt"
    subprocess.run(
        [exe, "record", "-p", str(pid), "-d", str(int(seconds)), "-f", "raw", "-o", str(raw),
         "--nonblocking", "-r", "50"],
        check=True, capture_output=True, timeout=seconds + 60,
    )  # fmt: skip
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack:
            continue
        count = int(n)
        total += count
        frames = stack.split(";")
        own[frames[-1]] += count
        for fr in set(frames):
            inclusive[fr] += count
    top = [(f"self {f}", c / total) for f, c in own.most_common(12)]
    top += [(f"incl {f}", c / total) for f, c in inclusive.most_common(25)]
    return top


# ---- the run -----------------------------------------------------------------------------


def run(
    cluster: LocalCluster,
    prometheus: PrometheusServer,
    helm_bin: Path,
    workdir: Path,
    setup: Setup,
    progress: bool = False,
) -> Result:
    workdir.mkdir(parents=True, exist_ok=True)
    names = [f"p{i:03d}" for i in range(setup.policies)]
    groups = [names[i : i + setup.per_namespace] for i in range(0, len(names), setup.per_namespace)]
    namespaces = [cluster.create_namespace("scale") for _ in groups]
    release = f"scale{int(time.time() * 1000) % 100000}"
    docs = render(helm_bin, release, RELEASE_NS, "watchNamespaces={" + ",".join(namespaces) + "}")
    (sa_doc,) = of_kind(docs, "ServiceAccount")
    sa = sa_doc["metadata"]["name"]
    user = f"system:serviceaccount:{RELEASE_NS}:{sa}"
    apply_parts(cluster, docs, *RBAC_KINDS, *PEERING_KINDS)
    kubeconfig = cluster.service_account_kubeconfig(RELEASE_NS, sa, workdir / "sa-kubeconfig")
    for ns, group in zip(namespaces, groups, strict=True):
        items = [_deployment(f"{n}-{r}", ns) for n in group for r in ("prefill", "decode")]
        cluster.apply({"apiVersion": "v1", "kind": "List", "items": items})

    def ready_pods() -> int:
        n = 0
        for ns in namespaces:
            out = cluster.kubectl(
                "get", "pods", "-n", ns, "-o",
                "jsonpath={.items[*].status.conditions[?(@.type=='Ready')].status}",
            ).stdout.split()  # fmt: skip
            n += out.count("True")
        return n

    wait_until(lambda: ready_pods() >= 2 * setup.policies, 300, "every fleet's first pods Ready")

    manifests = {
        (ns, n): policy(n, ns, prometheus.url, release, setup.interval_s, setup.scrape_s)
        for ns, group in zip(namespaces, groups, strict=True)
        for n in group
    }
    minutes = (setup.warmup_s + setup.duration_s + 60.0) / 60.0
    em = Emulator(cluster.api_client(), workdir / "emulator-sd.json")
    lo, hi = setup.mean_rps
    for i, ((ns, n), m) in enumerate(manifests.items()):
        rate = lo + (hi - lo) * i / max(1, setup.policies - 1)
        spec = GoodputPolicySpec.model_validate(m["spec"])
        em.add(FleetSpec(ns, n, spec, servegen_peak(minutes, rate, setup.seed + i).trace))
    em.start()
    prometheus.add_file_sd(release, em.sd_file)
    wait_until(
        lambda: (
            sum(1 for t in prometheus.targets(release) if t["health"] == "up") >= 2 * setup.policies
        ),
        180,
        "Prometheus scraping every fleet's pods",
    )
    args = [
        a for a in container_args(docs)[1:] if not a.startswith(("--metrics-port", "--liveness"))
    ]
    op = OperatorProcess(workdir, "operator-scale", args, kubeconfig, env={"POD_ID": f"{sa}-0"})
    pid = op._proc.proc.pid
    metrics_url = f"http://127.0.0.1:{op.port}/metrics"
    try:
        for ns in namespaces:
            items = [m for (mns, _), m in manifests.items() if mns == ns]
            cluster.apply({"apiVersion": "v1", "kind": "List", "items": items})
        started = time.monotonic()

        def every_policy_ticked() -> bool:
            op.assert_alive()
            text = _get(metrics_url)
            counts = [
                lab["policy"] for lab, v in _samples(text, f"{TICK_BUCKETS_NAME}_count") if v >= 1
            ]
            return len(set(counts)) >= setup.policies

        wait_until(every_policy_ticked, setup.warmup_s + 300, "every policy's first tick")
        # A rate window that reaches back before a fleet's first samples is partial
        # (MetricsPartial, a hold): the warm-up outlasts the window and two intervals.
        warmup = max(setup.warmup_s, _window_s(setup.scrape_s) + 2 * setup.interval_s)
        rest = warmup - (time.monotonic() - started)
        if rest > 0:
            time.sleep(rest)
        if progress:
            print(f"warm-up done after {time.monotonic() - started:.0f} s", flush=True)

        # -- the window --
        m0 = _get(metrics_url)
        cpu0, _, _ = _proc(pid)
        others = _other_pids(cluster, prometheus)
        others0 = {k: _proc(p)[0] for k, p in others.items()}
        api0 = _apiserver_total(cluster)
        q0, e0 = _prom_queries(prometheus)
        w0, t0 = time.monotonic(), time.time()
        profile: list[tuple[str, float]] = []
        while time.monotonic() - w0 < setup.duration_s:
            op.assert_alive()
            left = setup.duration_s - (time.monotonic() - w0)
            if setup.profile_s > 0 and left <= setup.profile_s + 1 and not profile:
                profile = _py_spy(pid, min(setup.profile_s, left), workdir)
                continue
            time.sleep(min(10.0, max(0.0, left)))
            if progress:
                print(f"  {time.monotonic() - w0:4.0f} s of {setup.duration_s:g}", flush=True)
        w1, t1 = time.monotonic(), time.time()
        conns = _connections_to(prometheus.port)
        q1, e1 = _prom_queries(prometheus)
        api1 = _apiserver_total(cluster)
        cpu1, rss, hwm = _proc(pid)
        others1 = {k: _proc(p)[0] for k, p in others.items()}
        m1 = _get(metrics_url)
        window = w1 - w0

        b0, b1 = _tick_buckets(m0), _tick_buckets(m1)
        delta = {le: b1[le] - b0.get(le, 0.0) for le in b1}
        ticks = round(delta[math.inf])
        decisions: Counter[str] = Counter()
        for lab, v in _samples(m1, "goodput_decisions_total"):
            decisions[lab["reason"]] += round(v)
        for lab, v in _samples(m0, "goodput_decisions_total"):
            decisions[lab["reason"]] -= round(v)
        writes = _sum(m1, "goodput_scale_writes_total") - _sum(m0, "goodput_scale_writes_total")
        log = op.log()
        log_ticks = _log_ticks(log, t0, t1)
        by_verb = _audit_counts(cluster, user, t0, t1)
        result = Result(
            setup=asdict(setup),
            window_s=window,
            ticks=ticks,
            ticks_expected=setup.policies * window / setup.interval_s,
            tick_p50_s=histogram_quantile(0.5, delta),
            tick_p95_s=histogram_quantile(0.95, delta),
            tick_p50_log_s=_quantile(log_ticks, 0.5),
            tick_p95_log_s=_quantile(log_ticks, 0.95),
            tick_max_log_s=max(log_ticks) if log_ticks else math.nan,
            cpu_cores=(cpu1 - cpu0) / window,
            rss_mib=rss,
            peak_rss_mib=hwm,
            operator_api_rps=sum(by_verb.values()) / window,
            operator_api_by_verb={v: n / window for v, n in sorted(by_verb.items())},
            all_clients_api_rps=(api1 - api0) / window,
            prometheus_queries_per_tick=(q1 - q0) / max(1, ticks),
            prometheus_inner_evals_per_tick=(e1 - e0) / max(1, ticks),
            decisions={k: v for k, v in sorted(decisions.items()) if v},
            scale_writes=round(writes),
            errors_in_log=sum(1 for ln in log.splitlines() if " ERROR " in ln or "Traceback" in ln),
            profile_top=profile,
            others_cpu_cores={k: (others1[k] - others0[k]) / window for k in others},
            prometheus_connections=conns,
        )
    finally:
        op.stop()
        em.stop()
        for ns in namespaces:
            cluster.kubectl("delete", "gp", "--all", "-n", ns, "--wait=false", check=False)
        delete_parts(cluster, docs, *PEERING_KINDS, *RBAC_KINDS)
    return result


def summary(r: Result) -> str:
    s = r.setup
    verbs = ", ".join(f"{v} {n:.1f}" for v, n in r.operator_api_by_verb.items())
    planned = sum(n for k, n in r.decisions.items() if k not in _HOLDS)
    lines = [
        f"{s['policies']} policies ({s['per_namespace']} a namespace), interval "
        f"{s['interval_s']:g} s, window {r.window_s:.0f} s after a {s['warmup_s']:g} s warm-up",
        f"ticks {r.ticks} (expected at most {r.ticks_expected:.0f}); planned {planned}, "
        f"decisions {r.decisions}; scale writes {r.scale_writes}",
        f"tick p50 {r.tick_p50_s:.3f} s, p95 {r.tick_p95_s:.3f} s (operator histogram); "
        f"log: p50 {r.tick_p50_log_s:.3f} s, p95 {r.tick_p95_log_s:.3f} s, "
        f"max {r.tick_max_log_s:.3f} s",
        f"operator CPU {r.cpu_cores:.2f} cores, RSS {r.rss_mib:.0f} MiB "
        f"(peak {r.peak_rss_mib:.0f} MiB)",
        f"API requests/s: operator {r.operator_api_rps:.1f} ({verbs}); "
        f"all clients {r.all_clients_api_rps:.1f}",
        f"Prometheus: {r.prometheus_queries_per_tick:.1f} HTTP queries per tick, "
        f"{r.prometheus_inner_evals_per_tick:.1f} evaluations per tick; "
        f"{r.prometheus_connections} connections open to it",
        f"ERROR/Traceback lines in the operator log: {r.errors_in_log}",
        "other processes' CPU (cores): "
        + ", ".join(f"{k} {v:.2f}" for k, v in r.others_cpu_cores.items()),
    ]
    if r.profile_top:
        lines.append("py-spy (share of samples):")
        lines += [f"  {share:6.1%}  {fn}" for fn, share in r.profile_top]
    return "\n".join(lines)


_HOLDS = {
    "MetricsMissing",
    "MetricsStale",
    "MetricsPartial",
    "PrometheusUnreachable",
    "TargetNotFound",
    "StandingBy",
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.harness.scale", description=__doc__)
    p.add_argument("--policies", type=int, default=Setup.policies)
    p.add_argument("--per-namespace", type=int, default=Setup.per_namespace)
    p.add_argument("--interval", type=float, default=Setup.interval_s)
    p.add_argument("--warmup", type=float, default=Setup.warmup_s)
    p.add_argument("--duration", type=float, default=Setup.duration_s)
    p.add_argument("--scrape", type=float, default=Setup.scrape_s)
    p.add_argument("--profile-seconds", type=float, default=0.0)
    # The operator keeps one HTTP pool per policy (200 policies held 1200 connections
    # open): at Prometheus's default of 512 it stops accepting and every tick times out
    # (docs/bench/scale.md), which would measure that, not the tick.
    p.add_argument(
        "--prometheus-max-connections",
        type=int,
        default=4096,
        help="Prometheus --web.max-connections (0: its default, 512)",
    )
    p.add_argument("--nodes", type=int, default=0, help="KWOK nodes (0: enough for the pods)")
    p.add_argument("--out", type=Path, default=Path("out"))
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--workdir", type=Path, default=None, help="parent of the work directory")
    a = p.parse_args(argv)
    setup = Setup(
        policies=a.policies,
        per_namespace=a.per_namespace,
        interval_s=a.interval,
        warmup_s=a.warmup,
        duration_s=a.duration,
        scrape_s=a.scrape,
        profile_s=a.profile_seconds,
    )
    pods = 6 * setup.policies  # up to 3 + 3 a policy
    nodes = a.nodes or max(2, math.ceil(pods / 200))
    workdir = Path(tempfile.mkdtemp(prefix="goodput-scale-", dir=a.workdir))
    (workdir / "cluster").mkdir()
    cluster = LocalCluster(workdir / "cluster", nodes=nodes, gpus_per_node=256)
    prom = ScrapePrometheus(workdir / "prometheus")
    prom.scrape_s = setup.scrape_s
    if a.prometheus_max_connections:
        prom.extra_args.append(f"--web.max-connections={a.prometheus_max_connections}")
    try:
        cluster.start()
        prom.start()
        helm = tools().helm_bin / "helm"
        result = run(cluster, prom, helm, workdir / "run", setup, progress=True)
        result.command = "python -m tests.harness.scale " + " ".join(argv or [])
    finally:
        prom.stop()
        cluster.stop()
        if not a.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "scale.json").write_text(json.dumps(asdict(result), indent=2, default=str))
    print(summary(result))
    print(f"wrote {a.out / 'scale.json'}; finished {datetime.now(UTC):%H:%M:%S} UTC")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
