"""The operator end to end: kopf against the real API server, reading the real
Prometheus that scrapes an exporter in vLLM's format, scaling Deployments whose pods
KWOK runs, and never holding more GPUs than the budget, not even mid-rebalance."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from goodput.reasons import Reason
from tests.harness.cluster import LocalCluster
from tests.harness.process import free_port, wait_until
from tests.harness.prometheus import PrometheusServer
from tests.integration.exporters import PoolTruth, ServingExporter

pytestmark = pytest.mark.integration

BUDGET = 6
QUIET = PoolTruth(arrival_rps=0.0, running=0.0, waiting=0.0, kv_usage=0.0, prefix_hit=0.0)


def _deployment(name: str, ns: str, replicas: int, gpus: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            # Pods go at once, so a shrink shows up as terminating pods briefly.
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "vllm",
                            "image": "vllm/vllm-openai:latest",
                            "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
                        }
                    ],
                },
            },
        },
    }


def _policy(
    ns: str, prom_url: str, job: str, mode: str, prefill: str = "prefill"
) -> dict[str, Any]:
    return {
        "apiVersion": "goodput.dev/v1alpha1",
        "kind": "GoodputPolicy",
        "metadata": {"name": "chat", "namespace": ns},
        "spec": {
            "mode": mode,
            "gpuBudget": BUDGET,
            "pools": [
                {
                    "role": "prefill",
                    "targetRef": {"kind": "Deployment", "name": prefill},
                    "minReplicas": 1,
                    "maxReplicas": 5,
                    "profile": "llama-3.1-8b-h100-tp1",
                },
                {
                    "role": "decode",
                    "targetRef": {"kind": "Deployment", "name": "decode"},
                    "minReplicas": 1,
                    "maxReplicas": 5,
                    "profile": "llama-3.1-8b-h100-tp1",
                },
            ],
            "slo": {"ttft": "500ms", "itl": "50ms", "attainment": 0.9},
            "metrics": {
                "prometheusUrl": prom_url,
                "preset": "vllm",
                "window": "3s",
                "maxStaleness": "30s",
                "selectors": {
                    r: f'job="{job}",scenario="op",pool="{r}"' for r in ("prefill", "decode")
                },
            },
            "behavior": {
                "interval": "2s",
                "forecastHorizon": "0s",
                "startupDelay": "0s",
                "scaleUp": {
                    "stabilizationWindowSeconds": 0,
                    "policies": [{"type": "Replicas", "value": 10, "periodSeconds": 1}],
                },
                "scaleDown": {
                    "stabilizationWindowSeconds": 0,
                    "policies": [{"type": "Percent", "value": 100, "periodSeconds": 1}],
                },
            },
        },
    }


def _serving_namespace(cluster: LocalCluster, prefix: str) -> str:
    """A fresh namespace with one-GPU prefill and decode Deployments at 1 replica each."""
    ns = cluster.create_namespace(prefix)
    cluster.apply(_deployment("prefill", ns, 1, 1))
    cluster.apply(_deployment("decode", ns, 1, 1))
    return ns


class GpuWatch:
    """Samples the pods that hold GPUs (terminating ones too) while the operator works."""

    def __init__(self, cluster: LocalCluster, ns: str) -> None:
        from kubernetes import client

        self.core = client.CoreV1Api(cluster.api_client())
        self.ns = ns
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            pods = self.core.list_namespaced_pod(self.ns).items
            held = 0
            for p in pods:
                if p.status and p.status.phase in ("Succeeded", "Failed"):
                    continue
                for c in p.spec.containers:
                    held += int((c.resources.limits or {}).get("nvidia.com/gpu", "0"))
            self.peak = max(self.peak, held)
            self.samples += 1
            time.sleep(0.05)

    def __enter__(self) -> GpuWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _status(cluster: LocalCluster, ns: str) -> dict[str, Any]:
    out = cluster.kubectl("get", "gp", "chat", "-n", ns, "-o", "json").stdout
    status: dict[str, Any] = json.loads(out).get("status") or {}
    return status


def _condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions", []) if c["type"] == type_), {})


def _replicas(cluster: LocalCluster, ns: str, name: str) -> int:
    out = cluster.kubectl("get", "deploy", name, "-n", ns, "-o", "jsonpath={.spec.replicas}")
    return int(out.stdout)


def _events(cluster: LocalCluster, ns: str) -> list[dict[str, Any]]:
    out = cluster.kubectl("get", "events", "-n", ns, "-o", "json").stdout
    return [
        e for e in json.loads(out)["items"] if e["involvedObject"].get("kind") == "GoodputPolicy"
    ]


def test_recommend_publishes_then_enforce_scales_within_budget(
    cluster: LocalCluster,
    prometheus: PrometheusServer,
    operator: None,
    heavy_exporter: tuple[ServingExporter, str],
) -> None:
    exporter, job = heavy_exporter
    ns = _serving_namespace(cluster, "op")
    time.sleep(4)  # a full rate window of scrapes
    cluster.apply(_policy(ns, prometheus.url, job, "Recommend"))

    def recommended() -> bool:
        st = _status(cluster, ns)
        return (
            st.get("lastDecision", {}).get("reason") == Reason.RecommendOnly.value
            and _condition(st, "MetricsAvailable").get("status") == "True"
        )

    wait_until(recommended, 60, "a published recommendation")
    st = _status(cluster, ns)
    desired = st["lastDecision"]["pools"]
    assert sum(desired.values()) > 2, st["lastDecision"]  # heavy load wants more than 1+1
    assert sum(desired.values()) <= BUDGET
    assert st["gpuBudget"] == BUDGET and st["gpusAllocated"] == 2
    assert st["replicas"]["prefill"] == f"1/{desired['prefill']}"
    # Recommend changes nothing.
    assert _replicas(cluster, ns, "prefill") == 1 and _replicas(cluster, ns, "decode") == 1
    assert any(e["reason"] == Reason.RecommendOnly.value for e in _events(cluster, ns))
    table = cluster.kubectl("get", "gp", "-n", ns).stdout
    assert "BUDGET" in table and "PREFILL" in table and f"1/{desired['prefill']}" in table

    with GpuWatch(cluster, ns) as watch:
        cluster.kubectl(
            "patch", "gp", "chat", "-n", ns, "--type=merge", "-p", '{"spec":{"mode":"Enforce"}}'
        )
        wait_until(
            lambda: _replicas(cluster, ns, "prefill") + _replicas(cluster, ns, "decode") > 2,
            60,
            "the operator to scale up",
        )
        wait_until(
            lambda: (
                _status(cluster, ns).get("lastDecision", {}).get("applied") is not None
                and _condition(_status(cluster, ns), "Ready").get("status") == "True"
            ),
            30,
            "Ready",
        )
        total = _replicas(cluster, ns, "prefill") + _replicas(cluster, ns, "decode")
        assert total <= BUDGET
        assert any(e["reason"] == Reason.ScaledUp.value for e in _events(cluster, ns))

        # Traffic stops: zero demand (not missing data) scales back to the minimums.
        exporter.set_traffic("prefill", **QUIET.__dict__)
        exporter.set_traffic("decode", **QUIET.__dict__)
        wait_until(
            lambda: (
                _replicas(cluster, ns, "prefill") == 1 and _replicas(cluster, ns, "decode") == 1
            ),
            90,
            "scale-down to minimums",
        )
        assert _status(cluster, ns)["lastDecision"]["reason"] in (
            Reason.ZeroDemand.value,
            Reason.ScaledDown.value,
        )
    assert watch.samples > 20
    assert watch.peak <= BUDGET, f"GPUs held peaked at {watch.peak} > budget {BUDGET}"


def test_missing_target_and_missing_metrics_hold_and_say_why(
    cluster: LocalCluster,
    prometheus: PrometheusServer,
    operator: None,
) -> None:
    ns = cluster.create_namespace("hold")
    cluster.apply(_deployment("decode", ns, 2, 1))
    # No Deployment "nope": AbleToScale False, nothing changes.
    cluster.apply(_policy(ns, prometheus.url, "no-such-job", "Enforce", prefill="nope"))
    wait_until(
        lambda: (
            _condition(_status(cluster, ns), "AbleToScale").get("reason")
            == Reason.TargetNotFound.value
        ),
        60,
        "TargetNotFound",
    )
    st = _status(cluster, ns)
    assert _condition(st, "AbleToScale")["status"] == "False"
    assert "nope" in _condition(st, "AbleToScale")["message"]
    assert _replicas(cluster, ns, "decode") == 2
    assert any(
        e["reason"] == Reason.TargetNotFound.value and e["type"] == "Warning"
        for e in _events(cluster, ns)
    )

    # The target appears, but no series match the selectors: hold, never guess.
    cluster.apply(_deployment("nope", ns, 1, 1))
    wait_until(
        lambda: _condition(_status(cluster, ns), "MetricsAvailable").get("status") == "False",
        60,
        "MetricsAvailable False",
    )
    st = _status(cluster, ns)
    assert st["lastDecision"]["hold"] is True
    assert st["lastDecision"]["reason"] in (Reason.MetricsMissing.value, Reason.MetricsStale.value)
    assert _condition(st, "AbleToScale")["status"] == "True"
    assert _replicas(cluster, ns, "decode") == 2 and _replicas(cluster, ns, "nope") == 1


def test_refuses_to_fight_an_hpa(
    cluster: LocalCluster,
    prometheus: PrometheusServer,
    operator: None,
) -> None:
    ns = _serving_namespace(cluster, "hpa")
    cluster.apply(
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "decode-hpa", "namespace": ns},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "decode"},
                "minReplicas": 1,
                "maxReplicas": 3,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 50},
                        },
                    }
                ],
            },
        }
    )
    cluster.apply(_policy(ns, prometheus.url, "no-such-job", "Enforce"))
    wait_until(
        lambda: (
            _condition(_status(cluster, ns), "AbleToScale").get("reason")
            == Reason.ConflictingController.value
        ),
        60,
        "ConflictingController",
    )
    assert "decode-hpa" in _condition(_status(cluster, ns), "AbleToScale")["message"]


def test_goodput_run_serves_its_own_metrics(
    cluster: LocalCluster,
    prometheus: PrometheusServer,
    crd: None,
    heavy_exporter: tuple[ServingExporter, str],
    tmp_path: Path,
) -> None:
    """`goodput run` as a real process: decisions show up on its /metrics, labelled by
    the same reason codes as conditions and events."""
    _, job = heavy_exporter
    ns = _serving_namespace(cluster, "run")
    cluster.apply(_policy(ns, prometheus.url, job, "Recommend"))
    port = free_port()
    log = (tmp_path / "operator.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "goodput.cli",
            "run",
            "-n",
            ns,
            "--metrics-port",
            str(port),
            "--metrics-address",
            "127.0.0.1",
            "--liveness",
            "",
            "--standalone",  # one process; peering has its own test (test_peering.py)
        ],
        env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:

        def decided() -> bool:
            with urllib.request.urlopen(url, timeout=5) as resp:
                text = resp.read().decode()
            return f'reason="{Reason.RecommendOnly.value}"' in text

        wait_until(decided, 60, "a RecommendOnly decision on /metrics")
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        assert f'goodput_gpu_budget{{namespace="{ns}",policy="chat"}} {float(BUDGET)}' in text
        assert f'goodput_gpus_held{{namespace="{ns}",policy="chat"}} 2.0' in text
        assert "goodput_tick_duration_seconds_count" in text
        assert (
            f'goodput_condition{{namespace="{ns}",policy="chat",status="True",type="Ready"}} 1.0'
            in text
        )
        assert "goodput_operator_build_info" in text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    assert proc.returncode in (0, -15), (tmp_path / "operator.log").read_text()[-3000:]


def test_prometheus_token_comes_from_a_secret_read_every_tick(
    cluster: LocalCluster,
    prometheus: PrometheusServer,
    operator: None,
    heavy_exporter: tuple[ServingExporter, str],
) -> None:
    _, job = heavy_exporter
    ns = _serving_namespace(cluster, "auth")
    policy = _policy(ns, prometheus.url, job, "Recommend")
    policy["spec"]["metrics"]["auth"] = {"bearerTokenSecretRef": {"name": "prom", "key": "token"}}
    cluster.apply(policy)
    # No Secret yet: hold and say which Secret.
    wait_until(
        lambda: _condition(_status(cluster, ns), "MetricsAvailable").get("status") == "False",
        60,
        "MetricsAvailable False without the Secret",
    )
    msg = _condition(_status(cluster, ns), "MetricsAvailable")["message"]
    assert "404" in msg or "prom" in msg, msg
    # The Secret appears: the next tick reads it, without a spec change.
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "prom", "namespace": ns},
            "stringData": {"token": "s3cret"},
        }
    )
    wait_until(
        lambda: _condition(_status(cluster, ns), "MetricsAvailable").get("status") == "True",
        60,
        "MetricsAvailable True once the Secret exists",
    )
