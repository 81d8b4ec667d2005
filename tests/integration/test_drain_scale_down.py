"""Drain-aware scale-down on the real control plane (issue 15, item 3).

A Deployment of N one-GPU pods runs on KWOK nodes; a per-pod exporter serves
``vllm:num_requests_running{pod=<each real pod name>}`` with known values to the real
Prometheus; the operator (kopf, in-process, its real edges: KubeScaleClient and
PrometheusObservationSource) runs a policy whose gpuBudget is below what the pool asks
for, so its first tick shrinks the Deployment at once. The real kube-controller-manager's
ReplicaSet controller then picks the pods to delete.

* With marking (the default): the pods deleted are exactly the k least busy, the
  ``DrainMarked`` event names them with their running requests, and the survivors
  carry the cost annotation.
* Without (``DRAIN_BY_DEFAULT = False``, as ``goodput run --no-drain``): no annotation
  is written and the ReplicaSet chooses by its own ranking.

Requests lost = the running requests on the deleted pods (what a pod without a
draining preStop would drop); both figures are printed (docs/drain.md quotes them).
The loads are assigned by pod name (names are random), not by age, so the default
choice is not set up to be the worst one.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from goodput.actuator.drain import DELETION_COST
from goodput.operator import reconcile
from goodput.reasons import Reason
from tests.harness.cluster import LocalCluster
from tests.harness.pod_load import PodLoadExporter
from tests.harness.process import wait_until
from tests.harness.prometheus import PrometheusServer
from tests.integration.exporters import ExporterHub
from tests.integration.test_operator import _deployment, _events

pytestmark = pytest.mark.integration

N, BUDGET = 6, 4  # 6 pods of 1 GPU, budget 4: 2 go
RUNS_WITHOUT = 3  # the ReplicaSet's own choice varies from run to run
# Requests running on each pod, in the order of the pods' (random) names.
LOADS = (9.0, 0.0, 14.0, 3.0, 1.0, 6.0)


@pytest.fixture
def pod_loads(prometheus: PrometheusServer) -> Iterator[tuple[ExporterHub, str]]:
    hub = ExporterHub().start()
    job = f"drain-{int(time.time() * 1000) % 10**8}"
    prometheus.add_target(job, hub.target)
    try:
        yield hub, job
    finally:
        hub.stop()


def _policy(ns: str, prom_url: str, job: str) -> dict[str, Any]:
    return {
        "apiVersion": "goodput.dev/v1alpha1",
        "kind": "GoodputPolicy",
        "metadata": {"name": "chat", "namespace": ns},
        "spec": {
            "mode": "Enforce",
            "gpuBudget": BUDGET,
            "pools": [
                {
                    "role": "aggregated",
                    "targetRef": {"kind": "Deployment", "name": "llm"},
                    "minReplicas": 1,
                    "maxReplicas": N,
                    "profile": "llama-3.1-8b-h100-tp1",
                }
            ],
            "slo": {"ttft": "500ms", "itl": "50ms", "attainment": 0.9},
            "metrics": {
                "prometheusUrl": prom_url,
                "preset": "vllm",
                "window": "3s",
                "maxStaleness": "30s",
                "selectors": {"aggregated": f'job="{job}",scenario="{ns}",pool="aggregated"'},
            },
            "behavior": {"interval": "2s", "forecastHorizon": "0s", "startupDelay": "0s"},
        },
    }


def _report(line: str) -> None:
    """A figure on the terminal (with ``-s``): kopf's test runner captures sys.stdout
    while the operator runs, so write to the process's own."""
    sys.__stdout__.write(f"\n[drain] {line}\n")
    sys.__stdout__.flush()


def _pods(cluster: LocalCluster, ns: str) -> list[dict[str, Any]]:
    out = cluster.kubectl("get", "pods", "-n", ns, "-l", "app=llm", "-o", "json").stdout
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return items


def _ready(pod: dict[str, Any]) -> bool:
    conds = (pod.get("status") or {}).get("conditions") or []
    return (pod.get("status") or {}).get("phase") == "Running" and any(
        c["type"] == "Ready" and c["status"] == "True" for c in conds
    )


def _shrink(
    cluster: LocalCluster,
    prometheus: PrometheusServer,
    pod_loads: tuple[ExporterHub, str],
    prefix: str,
) -> tuple[dict[str, float], set[str], dict[str, dict[str, Any]], list[dict[str, Any]], float]:
    """One run: N ready pods with LOADS by name, the over-budget policy, the shrink.
    Returns the loads, the pods deleted, the survivors, the policy's events and the
    seconds from the policy to the Deployment at BUDGET replicas with k pods deleted."""
    hub, job = pod_loads
    ns = cluster.create_namespace(prefix)
    cluster.apply(_deployment("llm", ns, N, 1))
    wait_until(lambda: sum(1 for p in _pods(cluster, ns) if _ready(p)) == N, 90, f"{N} ready pods")
    names = sorted(p["metadata"]["name"] for p in _pods(cluster, ns))
    loads = dict(zip(names, LOADS, strict=True))
    exporter = PodLoadExporter(ns, "aggregated")
    exporter.set(loads)
    hub.add(exporter)  # type: ignore[arg-type]  # any collector: the hub merges families
    sel = f'vllm:num_requests_running{{job="{job}",scenario="{ns}"}}'
    wait_until(lambda: len(prometheus.query(sel)) == N, 30, f"{N} per-pod series in Prometheus")

    started = time.monotonic()
    cluster.apply(_policy(ns, prometheus.url, job))

    def shrunk() -> bool:
        alive = {
            p["metadata"]["name"]
            for p in _pods(cluster, ns)
            if not p["metadata"].get("deletionTimestamp")
        }
        return len(alive) == BUDGET and len(set(names) - alive) == N - BUDGET

    wait_until(shrunk, 60, f"the Deployment down to {BUDGET} pods")
    took = time.monotonic() - started
    alive = {
        p["metadata"]["name"]: p
        for p in _pods(cluster, ns)
        if not p["metadata"].get("deletionTimestamp")
    }
    deleted = set(names) - set(alive)
    wait_until(
        lambda: any(e["reason"] == Reason.OverBudget.value for e in _events(cluster, ns)),
        30,
        "the OverBudget event",
    )
    return loads, deleted, alive, _events(cluster, ns), took


def test_marked_scale_down_removes_exactly_the_least_busy_pods(
    cluster: LocalCluster,
    prometheus: PrometheusServer,
    operator: None,
    pod_loads: tuple[ExporterHub, str],
) -> None:
    loads, deleted, alive, events, took = _shrink(cluster, prometheus, pod_loads, "drain")
    k = N - BUDGET
    least_busy = set(sorted(loads, key=lambda n: (loads[n], n))[:k])
    lost = sum(loads[n] for n in deleted)
    _report(
        f"with pod-deletion-cost: deleted {sorted(deleted)} running "
        f"{[loads[n] for n in sorted(deleted)]}: {lost:g} requests lost of "
        f"{sum(loads.values()):g} in flight ({took:.1f} s to shrink)"
    )
    assert deleted == least_busy, (sorted(deleted), loads)
    assert lost == sum(sorted(loads.values())[:k])  # the least possible: 0 + 1
    # The survivors carry a cost above every deleted pod's.
    for name, pod in alive.items():
        cost = int((pod["metadata"].get("annotations") or {})[DELETION_COST])
        assert cost == round(loads[name]) + 1, (name, cost)
    # The event says which pods, with their running requests.
    (ev,) = [e for e in events if e["reason"] == Reason.DrainMarked.value]
    assert ev["type"] == "Normal"
    order = sorted(least_busy, key=lambda n: (loads[n], n))
    listed = ", ".join(f"{n} ({loads[n]:g} running)" for n in order)
    assert f"pods to go first {listed}" in ev["message"], ev["message"]
    assert "0 refused" in ev["message"]


def test_unmarked_scale_down_is_the_replica_sets_own_choice(
    cluster: LocalCluster,
    prometheus: PrometheusServer,
    operator: None,
    pod_loads: tuple[ExporterHub, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same shrink with marking off (``goodput run --no-drain``): the control run of
    the figure. The loss is whatever the ReplicaSet's ranking makes it: at least the
    marked run's, and printed."""
    monkeypatch.setattr(reconcile, "DRAIN_BY_DEFAULT", False)
    k = N - BUDGET
    least = sum(sorted(LOADS)[:k])
    losses = []
    for run in range(RUNS_WITHOUT):
        loads, deleted, alive, events, took = _shrink(cluster, prometheus, pod_loads, "nodrain")
        lost = sum(loads[n] for n in deleted)
        losses.append(lost)
        _report(
            f"without pod-deletion-cost, run {run + 1}: deleted {sorted(deleted)} running "
            f"{[loads[n] for n in sorted(deleted)]}: {lost:g} requests lost of "
            f"{sum(loads.values()):g} in flight (the least possible: {least:g}; {took:.1f} s)"
        )
        assert len(deleted) == k
        assert lost >= least
        assert not [e for e in events if e["reason"] == Reason.DrainMarked.value]
        for pod in alive.values():
            assert DELETION_COST not in (pod["metadata"].get("annotations") or {})
    _report(
        f"without pod-deletion-cost: {sum(losses) / len(losses):g} requests lost per "
        f"scale-down on average over {len(losses)} runs ({losses}); with it: {least:g}"
    )
