"""`kubectl goodput` against the real API server: the harness's kubectl finds the
``kubectl-goodput`` console script on PATH (a kubectl plugin), reads a Recommend-mode
policy the operator (kopf, in-process) decided for under the heavy exporter's load, and
`approve` scales the Deployments to the recommendation within the budget, sampled every
50 ms."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from goodput.reasons import Reason
from tests.harness.cluster import LocalCluster
from tests.harness.process import wait_until
from tests.harness.prometheus import PrometheusServer
from tests.integration.exporters import ServingExporter
from tests.integration.test_operator import (
    BUDGET,
    QUIET,
    GpuWatch,
    _condition,
    _deployment,
    _events,
    _policy,
    _replicas,
    _serving_namespace,
    _status,
)

pytestmark = pytest.mark.integration

PLUGIN = Path(sys.executable).parent / "kubectl-goodput"


def kubectl_goodput(
    cluster: LocalCluster, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """`kubectl goodput ARGS` as a user runs it: kubectl finds the plugin on PATH; the
    plugin reads $KUBECONFIG (kubectl passes no flags placed before a plugin's name)."""
    assert PLUGIN.exists(), f"{PLUGIN} missing: reinstall the package (pip install -e .)"
    env = {
        **os.environ,
        "PATH": f"{PLUGIN.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "KUBECONFIG": str(cluster.kubeconfig),
    }
    out = subprocess.run(
        [str(cluster.tools.kubectl), "goodput", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    print(f"$ kubectl goodput {' '.join(args)}\n{out.stdout}{out.stderr}(exit {out.returncode})")
    if check:
        assert out.returncode == 0, out.stdout + out.stderr
    return out


def _recommended(cluster: LocalCluster, ns: str) -> bool:
    st = _status(cluster, ns)
    return (
        st.get("lastDecision", {}).get("reason") == Reason.RecommendOnly.value
        and _condition(st, "Ready").get("status") == "True"
        and bool(st.get("lastObservation"))
    )


def test_explain_whatif_and_approve_a_recommendation(
    cluster: LocalCluster,
    prometheus: PrometheusServer,
    operator: None,
    heavy_exporter: tuple[ServingExporter, str],
) -> None:
    exporter, job = heavy_exporter
    ns = _serving_namespace(cluster, "kgp")
    time.sleep(4)  # a full rate window of scrapes
    cluster.apply(_policy(ns, prometheus.url, job, "Recommend"))
    wait_until(lambda: _recommended(cluster, ns), 60, "a published recommendation")

    # explain: the decision, its limit, runner-up, writes, conditions, what would change it.
    out = kubectl_goodput(cluster, "explain", "chat", "-n", ns).stdout
    st = _status(cluster, ns)
    decision = st["lastDecision"]
    assert f"GoodputPolicy {ns}/chat: mode Recommend, gpuBudget {BUDGET}" in out
    assert f": {Reason.RecommendOnly.value}" in out
    assert f"Bound by: {decision['bindingConstraint']}" in out
    assert "Runner-up: " in out
    assert "Writes: none (mode Recommend publishes the decision and writes nothing)." in out
    assert "What would change the decision:" in out
    assert f"kubectl goodput approve chat -n {ns}" in out
    for role, n in decision["pools"].items():
        assert any(line.split()[:3] == [role, "1", str(n)] for line in out.splitlines()), role

    # whatif: offline plans from status.lastObservation, beside the current ones.
    out = kubectl_goodput(cluster, "whatif", "chat", "-n", ns, "--budget", "10").stdout
    assert "What if gpuBudget 10 (now 6)" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[3:] if line.strip()}
    assert rows["gpuBudget"] == ["6", "6", "6", "10"]
    running, decided, replanned, whatif = (int(x) for x in rows["GPUs"])
    assert running == 2 and decided == sum(decision["pools"].values()) and whatif <= 10
    assert whatif >= replanned  # more budget never buys a plan with fewer GPUs here
    out = kubectl_goodput(cluster, "whatif", "chat", "-n", ns, "--load", "x0.25").stdout
    assert "What if 0.25x the load" in out and "what-if: 10.0 requests/s" in out
    bad = kubectl_goodput(cluster, "whatif", "chat", "-n", ns, "--load", "lots", check=False)
    assert bad.returncode == 2 and "give a factor such as x1.5" in bad.stderr

    # approve: the recommendation, in the budget-safe order, sampled every 50 ms.
    want = dict(_status(cluster, ns)["lastDecision"]["pools"])
    with GpuWatch(cluster, ns) as watch:
        out = kubectl_goodput(cluster, "approve", "chat", "-n", ns).stdout
        assert "Done: " in out and "stays in mode Recommend" in out
        got = {r: _replicas(cluster, ns, r) for r in ("prefill", "decode")}
        assert sum(got.values()) <= BUDGET  # one GPU per replica
        assert got == want or got == dict(_status(cluster, ns)["lastDecision"]["pools"]), out
        for role, n in got.items():
            if n > 1:
                assert f"scaled Deployment/{role} ({role}) 1 -> {n}" in out
        # Traffic stops: the recommendation is the minimums, and approve shrinks to them.
        exporter.set_traffic("prefill", **QUIET.__dict__)
        exporter.set_traffic("decode", **QUIET.__dict__)
        wait_until(
            lambda: (
                _recommended(cluster, ns)
                and _status(cluster, ns)["lastDecision"]["pools"] == {"prefill": 1, "decode": 1}
            ),
            60,
            "a recommendation of the minimums",
        )
        out = kubectl_goodput(cluster, "approve", "chat", "-n", ns).stdout
        assert _replicas(cluster, ns, "prefill") == 1 and _replicas(cluster, ns, "decode") == 1
    assert watch.samples > 20 and watch.peak <= BUDGET, watch.peak
    approvals = [e for e in _events(cluster, ns) if "approved with kubectl goodput" in e["message"]]
    assert approvals and all(e["source"].get("component") == "kubectl-goodput" for e in approvals)
    out = kubectl_goodput(cluster, "approve", "chat", "-n", ns).stdout
    assert "Nothing to do: every target is already at the recommendation." in out

    # Refusals: mode Enforce, and a policy that is not Ready.
    cluster.kubectl(
        "patch", "gp", "chat", "-n", ns, "--type=merge", "-p", '{"spec":{"mode":"Enforce"}}'
    )
    out = kubectl_goodput(cluster, "approve", "chat", "-n", ns, check=False)
    assert out.returncode == 1 and "is in mode Enforce" in out.stderr
    blind = cluster.create_namespace("kgp-blind")
    cluster.apply(_deployment("prefill", blind, 1, 1))
    cluster.apply(_deployment("decode", blind, 1, 1))
    cluster.apply(_policy(blind, prometheus.url, "no-such-job", "Recommend"))
    wait_until(
        lambda: _condition(_status(cluster, blind), "MetricsAvailable").get("status") == "False",
        60,
        "a hold for missing metrics",
    )
    out = kubectl_goodput(cluster, "approve", "chat", "-n", blind, check=False)
    assert out.returncode == 1 and "is not Ready (MetricsMissing" in out.stderr
    out = kubectl_goodput(cluster, "explain", "chat", "-n", blind).stdout
    assert "MetricsAvailable False (MetricsMissing)" in out and "the serving metrics" in out
    out = kubectl_goodput(cluster, "explain", "nope", "-n", blind, check=False)
    assert (
        out.returncode == 1 and f'GoodputPolicy "nope" not found in namespace {blind}' in out.stderr
    )
