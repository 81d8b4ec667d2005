"""The foundation's promises, checked against the real servers."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from tests.harness.cluster import LocalCluster
from tests.harness.process import free_port, wait_until
from tests.harness.prometheus import PrometheusServer, wait_for_value
from tests.harness.tools import REPO

pytestmark = pytest.mark.integration


def _pinned(var: str) -> str:
    text = (REPO / "hack" / "build-tools.sh").read_text()
    match = re.search(rf'{var}="\$\{{{var}:-(v[0-9.]+)\}}"', text)
    assert match, f"{var} not pinned in hack/build-tools.sh"
    return match.group(1)


WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.harness.goodput.dev"},
    "spec": {
        "group": "harness.goodput.dev",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {"size": {"type": "integer", "minimum": 1}},
                            }
                        },
                    }
                },
            }
        ],
    },
}


def test_crd_and_custom_resource_round_trip(cluster: LocalCluster) -> None:
    cluster.apply(WIDGET_CRD)
    cluster.kubectl(
        "wait", "--for=condition=established", "--timeout=60s", "crd/widgets.harness.goodput.dev"
    )
    ns = cluster.create_namespace("crd")
    cluster.apply(
        {
            "apiVersion": "harness.goodput.dev/v1",
            "kind": "Widget",
            "metadata": {"name": "w1", "namespace": ns},
            "spec": {"size": 3},
        }
    )
    got = json.loads(cluster.kubectl("get", "widget", "w1", "-n", ns, "-o", "json").stdout)
    assert got["spec"] == {"size": 3}
    # The schema is enforced by the server, not by us.
    bad = cluster.kubectl(
        "apply",
        "-f",
        "-",
        check=False,
        input=json.dumps(
            {
                "apiVersion": "harness.goodput.dev/v1",
                "kind": "Widget",
                "metadata": {"name": "w2", "namespace": ns},
                "spec": {"size": 0},
            }
        ),
    )
    assert bad.returncode != 0
    assert "spec.size" in bad.stderr


def _ready_pods(cluster: LocalCluster, ns: str, app: str) -> list[dict[str, object]]:
    pods = json.loads(
        cluster.kubectl("get", "pods", "-n", ns, "-l", f"app={app}", "-o", "json").stdout
    )["items"]
    return [
        p
        for p in pods
        if p["status"].get("phase") == "Running"
        and p["metadata"].get("deletionTimestamp") is None
        and any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in p["status"].get("conditions", [])
        )
    ]


def _wait_ready_pods(cluster: LocalCluster, ns: str, app: str, n: int) -> list[dict[str, object]]:
    wait_until(lambda: len(_ready_pods(cluster, ns, app)) == n, 90, f"{n} ready pods of {app}")
    return _ready_pods(cluster, ns, app)


def test_deployment_pods_run_on_kwok_and_follow_scale_subresource(cluster: LocalCluster) -> None:
    from kubernetes import client

    ns = cluster.create_namespace("scale")
    cluster.apply(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "decode", "namespace": ns},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "decode"}},
                "template": {
                    "metadata": {"labels": {"app": "decode"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "vllm",
                                "image": "vllm/vllm-openai:latest",
                                "resources": {"limits": {"nvidia.com/gpu": "1"}},
                            }
                        ]
                    },
                },
            },
        }
    )
    pods = _wait_ready_pods(cluster, ns, "decode", 3)
    assert all(str(p["spec"]["nodeName"]).startswith("kwok-gpu-") for p in pods)  # type: ignore[index]

    apps = client.AppsV1Api(cluster.api_client())
    for replicas in (5, 1):
        apps.patch_namespaced_deployment_scale("decode", ns, {"spec": {"replicas": replicas}})
        scale = apps.read_namespaced_deployment_scale("decode", ns)
        assert scale.spec.replicas == replicas
        _wait_ready_pods(cluster, ns, "decode", replicas)
        wait_until(
            lambda r=replicas: (
                apps.read_namespaced_deployment_scale("decode", ns).status.replicas == r
            ),
            60,
            f"scale status {replicas}",
        )


@pytest.fixture
def exporter() -> Iterator[tuple[int, Gauge]]:
    registry = CollectorRegistry()
    gauge = Gauge("harness_answer", "A value the test sets", ["pool"], registry=registry)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        yield port, gauge
    finally:
        server.shutdown()
        thread.join(timeout=5)


def test_prometheus_scrapes_a_test_exporter(
    prometheus: PrometheusServer, exporter: tuple[int, Gauge]
) -> None:
    port, gauge = exporter
    gauge.labels(pool="decode").set(42.5)
    prometheus.add_target("harness-exporter", f"127.0.0.1:{port}")
    value = wait_for_value(prometheus, 'harness_answer{pool="decode"}')
    assert value == 42.5
    gauge.labels(pool="decode").set(7)
    wait_until(
        lambda: wait_for_value(prometheus, 'harness_answer{pool="decode"}') == 7.0,
        30,
        "the new value to be scraped",
    )


def test_helm_reports_the_pinned_version(helm_bin: Path) -> None:
    out = subprocess.run(
        [str(helm_bin), "version", "--short"], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().split("+")[0] == _pinned("HELM_VERSION")


def test_kubectl_version_shows_the_real_server_version(cluster: LocalCluster) -> None:
    out = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    pinned = _pinned("K8S_VERSION")
    assert out["serverVersion"]["gitVersion"] == pinned
    assert out["clientVersion"]["gitVersion"] == pinned
    assert out["serverVersion"]["minor"] == pinned.split(".")[1]


def test_helm_talks_to_the_cluster(cluster: LocalCluster, helm_bin: Path) -> None:
    out = subprocess.run(
        [str(helm_bin), "list", "-A", "--kubeconfig", str(cluster.kubeconfig), "-o", "json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(out) == []
