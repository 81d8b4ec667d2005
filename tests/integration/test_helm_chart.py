"""The chart, installed by the real helm CLI into the real control plane."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.harness.cluster import LocalCluster
from tests.harness.process import wait_until
from tests.harness.tools import REPO

pytestmark = pytest.mark.integration

CHART = REPO / "helm" / "goodput-operator"
RELEASE = "gp"
NS = "goodput-system"
SA = f"system:serviceaccount:{NS}:{RELEASE}-goodput-operator"


def _helm(helm_bin: Path, cluster: LocalCluster, *args: str) -> str:
    proc = subprocess.run(
        [str(helm_bin), "--kubeconfig", str(cluster.kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _can(cluster: LocalCluster, verb: str, resource: str, ns: str = "default") -> bool:
    """`kubectl auth can-i` as the operator's ServiceAccount; "kind/sub" names a subresource."""
    resource, _, sub = resource.partition("/")
    extra = [f"--subresource={sub}"] if sub else []
    out = cluster.kubectl(
        "auth", "can-i", verb, resource, *extra, f"--as={SA}", "-n", ns, check=False
    )
    return out.stdout.strip() == "yes"


def test_lint_strict(helm_bin: Path) -> None:
    out = subprocess.run(
        [str(helm_bin), "lint", "--strict", str(CHART)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_values_schema_rejects_unknown_keys(helm_bin: Path) -> None:
    out = subprocess.run(
        [str(helm_bin), "template", "t", str(CHART), "--set", "replicaCount=2"],
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0 and "replicaCount" in out.stderr
    out = subprocess.run(
        [str(helm_bin), "template", "t", str(CHART), "--set", "bogus=1"],
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0 and "bogus" in out.stderr


def test_install_gives_a_running_operator_with_least_privilege(
    helm_bin: Path, cluster: LocalCluster
) -> None:
    # --take-ownership: other tests may have applied the CRD with kubectl already.
    _helm(
        helm_bin,
        cluster,
        "install",
        RELEASE,
        str(CHART),
        "-n",
        NS,
        "--create-namespace",
        "--take-ownership",
        "--wait",
        "--timeout",
        "120s",
    )
    try:
        _check_installed(helm_bin, cluster)
    finally:
        _helm(helm_bin, cluster, "uninstall", RELEASE, "-n", NS, "--wait")
    wait_until(
        lambda: cluster.kubectl("get", "deploy", "-n", NS, "-o", "name").stdout == "",
        60,
        "the operator Deployment to go",
    )
    # keep: uninstalling the chart never deletes every policy with the CRD.
    assert cluster.kubectl("get", "crd", "goodputpolicies.goodput.dev", check=False).returncode == 0


def _check_installed(helm_bin: Path, cluster: LocalCluster) -> None:
    status = json.loads(_helm(helm_bin, cluster, "status", RELEASE, "-n", NS, "-o", "json"))
    assert status["info"]["status"] == "deployed"

    dep = json.loads(
        cluster.kubectl(
            "get", "deploy", f"{RELEASE}-goodput-operator", "-n", NS, "-o", "json"
        ).stdout
    )
    assert dep["status"].get("availableReplicas") == 1
    assert dep["spec"]["strategy"]["type"] == "Recreate"
    pod_sc = dep["spec"]["template"]["spec"]["securityContext"]
    assert pod_sc["runAsNonRoot"] is True
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert "--all-namespaces" in container["args"]

    crd = json.loads(
        cluster.kubectl("get", "crd", "goodputpolicies.goodput.dev", "-o", "json").stdout
    )
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"

    # What the operator needs, and nothing more.
    assert _can(cluster, "patch", "deployments.apps/scale")
    assert _can(cluster, "get", "deployments.apps/scale")
    assert _can(cluster, "patch", "goodputpolicies.goodput.dev/status")
    assert _can(cluster, "watch", "goodputpolicies.goodput.dev")
    assert _can(cluster, "create", "events")
    assert _can(cluster, "list", "pods")
    assert _can(cluster, "list", "horizontalpodautoscalers.autoscaling")
    assert not _can(cluster, "patch", "deployments.apps")  # scale only, never the spec
    assert not _can(cluster, "delete", "deployments.apps")
    assert not _can(cluster, "create", "pods")
    assert not _can(cluster, "delete", "goodputpolicies.goodput.dev")
    assert not _can(cluster, "list", "secrets")
    assert not _can(cluster, "create", "customresourcedefinitions.apiextensions.k8s.io")


def test_namespaced_install_grants_roles_only_in_watched_namespaces(
    helm_bin: Path, cluster: LocalCluster
) -> None:
    watched = cluster.create_namespace("watched")
    other = cluster.create_namespace("other")
    _helm(
        helm_bin,
        cluster,
        "install",
        RELEASE,
        str(CHART),
        "-n",
        NS,
        "--create-namespace",
        "--take-ownership",
        "--set",
        f"watchNamespaces={{{watched}}}",
        "--wait",
        "--timeout",
        "120s",
    )
    try:
        assert _can(cluster, "patch", "deployments.apps/scale", watched)
        assert not _can(cluster, "patch", "deployments.apps/scale", other)
        args = json.loads(
            cluster.kubectl(
                "get", "deploy", f"{RELEASE}-goodput-operator", "-n", NS, "-o", "json"
            ).stdout
        )["spec"]["template"]["spec"]["containers"][0]["args"]
        assert f"--namespace={watched}" in args
    finally:
        _helm(helm_bin, cluster, "uninstall", RELEASE, "-n", NS, "--wait")
