"""README "Getting started", step by step on the test cluster: helm install, the example
serving Deployments and PodMonitor (policies/examples/), the Recommend-mode policy, its
first decision (a hold: no vLLM runs here, so its metrics are missing), then, with the
test exporter standing in for vLLM's series, a recommendation, `kubectl get gp -w`,
`kubectl goodput explain`, Enforce, and the dashboard's ConfigMap.

KWOK runs no containers, so the chart's operator pod is Running but does nothing; the
operator is `goodput run` as a process with the chart's ServiceAccount (a TokenRequest
kubeconfig), arguments and pod name, as in test_peering. The transcript (every command
and its real output) is printed; the README's expected output is copied from it."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.chart import CHART, container_args, render
from tests.harness.cluster import LocalCluster
from tests.harness.operator import OperatorProcess
from tests.harness.process import wait_until
from tests.harness.prometheus import PrometheusServer
from tests.harness.tools import REPO
from tests.integration.exporters import ServingExporter

pytestmark = pytest.mark.integration

EXAMPLES = REPO / "policies" / "examples"
PROM_OPERATOR_CRDS = Path(__file__).parent / "crds" / "prometheus-operator"
RELEASE, RELEASE_NS, NS = "goodput-operator", "goodput-system", "chat"
BUDGET = 4  # policies/examples/chatbot-getting-started.yaml
CONDITIONS = 'jsonpath={range .status.conditions[*]}{.type}={.status} {.reason}{"\\n"}{end}'


class Transcript:
    def __init__(self, cluster: LocalCluster, helm_bin: Path) -> None:
        self.cluster = cluster
        self.helm_bin = helm_bin
        self.lines: list[str] = []
        self.env = {
            **os.environ,
            "KUBECONFIG": str(cluster.kubeconfig),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }

    def run(self, shown: str, argv: list[str], note: str = "") -> str:
        out = subprocess.run(
            argv, capture_output=True, text=True, env=self.env, timeout=180, cwd=REPO
        )
        assert out.returncode == 0, f"{shown}\n{out.stdout}{out.stderr}"
        self.say(f"$ {shown}" + (f"   # {note}" if note else ""), out.stdout + out.stderr)
        return out.stdout

    def kubectl(self, *args: str, note: str = "") -> str:
        shown = "kubectl " + " ".join(shlex.quote(a) for a in args)
        return self.run(shown, [str(self.cluster.tools.kubectl), *args], note)

    def helm(self, shown: str, *args: str) -> str:
        return self.run(shown, [str(self.helm_bin), *args])

    def say(self, *text: str) -> None:
        for t in text:
            self.lines.append(t.rstrip("\n"))
            print(t.rstrip("\n"), flush=True)

    def watch(self, shown: str, args: list[str], until: str, timeout: float) -> str:
        """`kubectl ... -w` until a line containing ``until`` (then Ctrl-C, as a user)."""
        proc = subprocess.Popen(
            [str(self.cluster.tools.kubectl), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env,
            cwd=REPO,
        )
        got: list[str] = []
        deadline = time.monotonic() + timeout
        try:
            assert proc.stdout is not None
            while time.monotonic() < deadline:
                line = proc.stdout.readline()
                if not line:
                    break
                got.append(line)
                if until in line:
                    break
        finally:
            proc.terminate()
            proc.wait(10)
        self.say(f"$ {shown}", "".join(got) + "^C")
        assert any(until in line for line in got), "".join(got)
        return "".join(got)


def _status(cluster: LocalCluster) -> dict[str, Any]:
    out = cluster.kubectl("get", "gp", "chatbot", "-n", NS, "-o", "json", check=False)
    if out.returncode != 0:
        return {}
    status: dict[str, Any] = json.loads(out.stdout).get("status") or {}
    return status


def _replicas(cluster: LocalCluster) -> dict[str, int]:
    out = cluster.kubectl("get", "deploy", "-n", NS, "-o", "json").stdout
    return {d["metadata"]["name"]: d["spec"]["replicas"] for d in json.loads(out)["items"]}


def test_getting_started(
    cluster: LocalCluster,
    prometheus: PrometheusServer,
    heavy_exporter: tuple[ServingExporter, str],
    helm_bin: Path,
    tmp_path: Path,
) -> None:
    _, job = heavy_exporter
    t = Transcript(cluster, helm_bin)
    # The Prometheus Operator's CRDs, as kube-prometheus-stack installs them.
    for f in sorted(PROM_OPERATOR_CRDS.glob("*.yaml")):
        cluster.kubectl("apply", "--server-side", "-f", str(f))
    cluster.kubectl("delete", "namespace", NS, "--ignore-not-found", "--wait=true")

    # 1. Install the chart (the test adds --take-ownership: other tests applied the CRD).
    t.helm(
        f"helm install {RELEASE} helm/goodput-operator -n {RELEASE_NS} --create-namespace"
        " --set dashboard.enabled=true",
        "install",
        RELEASE,
        str(CHART),
        "-n",
        RELEASE_NS,
        "--create-namespace",
        "--set",
        "dashboard.enabled=true",
        "--take-ownership",
        "--wait",
        "--timeout",
        "120s",
    )
    docs = render(helm_bin, RELEASE, RELEASE_NS, "dashboard.enabled=true")
    args = [
        a for a in container_args(docs)[1:] if not a.startswith(("--metrics-port", "--liveness"))
    ]
    kubeconfig = cluster.service_account_kubeconfig(RELEASE_NS, RELEASE, tmp_path / "kubeconfig")
    op = OperatorProcess(tmp_path, f"{RELEASE}-0", args, kubeconfig, env={"POD_ID": f"{RELEASE}-0"})
    try:
        wait_until(lambda: op.metric("goodput_operator_active") == 1.0, 60, "the operator acts")
        t.kubectl("get", "pods", "-n", RELEASE_NS)

        # 2. The serving Deployments and the PodMonitor.
        t.kubectl("create", "namespace", NS)
        t.kubectl("apply", "-n", NS, "-f", "policies/examples/chatbot-serving.yaml")
        t.kubectl("apply", "-n", NS, "-f", "policies/examples/chatbot-podmonitor.yaml")
        wait_until(
            lambda: all(
                d.get("status", {}).get("readyReplicas") == 1
                for d in json.loads(
                    cluster.kubectl("get", "deploy", "-n", NS, "-o", "json").stdout
                )["items"]
            ),
            60,
            "the serving pods ready",
        )
        t.kubectl("get", "deploy", "-n", NS)

        # 3. The policy, in mode Recommend. Its prometheusUrl is the test Prometheus.
        policy = yaml.safe_load((EXAMPLES / "chatbot-getting-started.yaml").read_text())
        assert policy["spec"]["mode"] == "Recommend"
        policy["spec"]["metrics"]["prometheusUrl"] = prometheus.url
        edited = tmp_path / "chatbot-getting-started.yaml"
        edited.write_text(yaml.safe_dump(policy, sort_keys=False))
        t.run(
            f"kubectl apply -n {NS} -f policies/examples/chatbot-getting-started.yaml",
            [str(cluster.tools.kubectl), "apply", "-n", NS, "-f", str(edited)],
            note=f"prometheusUrl: {prometheus.url} here",
        )
        wait_until(lambda: bool(_status(cluster).get("lastDecision")), 60, "a first decision")
        out = t.kubectl("get", "gp", "-n", NS)
        st = _status(cluster)
        # No vLLM runs on KWOK: nothing answers the selectors, the policy holds and says so.
        assert st["lastDecision"]["reason"] == "MetricsMissing", st["lastDecision"]
        assert "MetricsMissing" in out
        t.kubectl(
            "get",
            "gp",
            "chatbot",
            "-n",
            NS,
            "-o",
            CONDITIONS,
        )

        # 4. vLLM's series: on the test cluster the exporter stands in for them.
        selectors = {r: f'job="{job}",scenario="op",pool="{r}"' for r in ("prefill", "decode")}
        t.kubectl(
            "patch",
            "gp",
            "chatbot",
            "-n",
            NS,
            "--type=merge",
            "-p",
            json.dumps({"spec": {"metrics": {"selectors": selectors}}}),
            note="test only: the test exporter's series stand in for vLLM's",
        )
        t.watch(f"kubectl get gp -n {NS} -w", ["get", "gp", "-n", NS, "-w"], "RecommendOnly", 150)
        st = _status(cluster)
        want = st["lastDecision"]["pools"]
        assert 2 < sum(want.values()) <= BUDGET, st["lastDecision"]
        assert _replicas(cluster) == {"chatbot-prefill": 1, "chatbot-decode": 1}  # Recommend
        t.run(
            f"kubectl goodput explain chatbot -n {NS}",
            [str(Path(sys.executable).parent / "kubectl-goodput"), "explain", "chatbot", "-n", NS],
        )

        # 5. Enforce.
        t.kubectl(
            "patch",
            "gp",
            "chatbot",
            "-n",
            NS,
            "--type=merge",
            "-p",
            '{"spec":{"mode":"Enforce"}}',
        )
        wait_until(lambda: sum(_replicas(cluster).values()) > 2, 60, "the operator to scale")
        wait_until(
            lambda: (
                _status(cluster).get("lastDecision", {}).get("applied") is not None
                and _status(cluster).get("gpusAllocated", 0) > 2
            ),
            60,
            "the status to show the scale-up",
        )
        t.kubectl("get", "gp", "-n", NS)
        t.kubectl("get", "deploy", "-n", NS)
        t.kubectl(
            "get", "events", "-n", NS, "--field-selector", "involvedObject.kind=GoodputPolicy"
        )
        assert sum(_replicas(cluster).values()) <= BUDGET

        # 6. The dashboard, for Grafana's sidecar.
        out = t.kubectl("get", "configmap", "-n", RELEASE_NS, "-l", "grafana_dashboard=1")
        assert f"{RELEASE}-dashboard" in out
    finally:
        op.stop()
        (tmp_path / "transcript.txt").write_text("\n".join(t.lines) + "\n")
        cluster.kubectl("delete", "namespace", NS, "--wait=false", check=False)
        subprocess.run(
            [
                str(helm_bin),
                "--kubeconfig",
                str(cluster.kubeconfig),
                "uninstall",
                RELEASE,
                "-n",
                RELEASE_NS,
                "--wait",
            ],
            capture_output=True,
            timeout=120,
            check=False,
        )
