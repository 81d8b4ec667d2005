"""The chart, installed by the real helm CLI into the real control plane."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.harness.chart import CHART, container_args, of_kind, render
from tests.harness.cluster import LocalCluster
from tests.harness.process import wait_until

pytestmark = pytest.mark.integration

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


def _can(
    cluster: LocalCluster, verb: str, resource: str, ns: str = "default", name: str = ""
) -> bool:
    """`kubectl auth can-i` as the operator's ServiceAccount; "kind/sub" names a subresource."""
    resource, _, sub = resource.partition("/")
    extra = [f"--subresource={sub}"] if sub else []
    resource = f"{resource}/{name}" if name else resource
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
        [str(helm_bin), "template", "t", str(CHART), "--set", "replicaCount=10"],
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0 and "replicaCount" in out.stderr
    out = subprocess.run(
        [str(helm_bin), "template", "t", str(CHART), "--set", "peering.lifetime=1"],
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0 and "lifetime" in out.stderr
    out = subprocess.run(
        [str(helm_bin), "template", "t", str(CHART), "--set", "bogus=1"],
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0 and "bogus" in out.stderr


def test_replicas_get_distinct_priorities_a_peering_and_a_pdb(helm_bin: Path) -> None:
    one = render(helm_bin, RELEASE, NS)
    assert not of_kind(one, "PodDisruptionBudget")
    (peering,) = of_kind(one, "ClusterKopfPeering")
    assert peering["metadata"]["name"] == "goodput-operator"  # `goodput run`'s default
    crds = {d["metadata"]["name"] for d in of_kind(one, "CustomResourceDefinition")}
    assert {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"} <= crds

    two = render(helm_bin, RELEASE, NS, "replicaCount=2", "watchNamespaces={a,b}")
    (pdb,) = of_kind(two, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    (sts,) = of_kind(two, "StatefulSet")
    assert sts["spec"]["replicas"] == 2
    assert sts["spec"]["podManagementPolicy"] == "OrderedReady"
    pod = sts["spec"]["template"]["spec"]
    args = container_args(two)
    # Pod N gets priority 1000 - N: distinct by construction, never standalone.
    assert "--priority-from-pod-name" in args and "--peering=goodput-operator" in args
    assert not any(a.startswith("--standalone") for a in args)
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["POD_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert sorted(p["metadata"]["namespace"] for p in of_kind(two, "KopfPeering")) == ["a", "b"]
    assert not of_kind(two, "ClusterKopfPeering")


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
        lambda: cluster.kubectl("get", "statefulset", "-n", NS, "-o", "name").stdout == "",
        60,
        "the operator StatefulSet to go",
    )
    # keep: uninstalling the chart never deletes every policy with the CRD.
    assert cluster.kubectl("get", "crd", "goodputpolicies.goodput.dev", check=False).returncode == 0


def _check_installed(helm_bin: Path, cluster: LocalCluster) -> None:
    status = json.loads(_helm(helm_bin, cluster, "status", RELEASE, "-n", NS, "-o", "json"))
    assert status["info"]["status"] == "deployed"

    sts = json.loads(
        cluster.kubectl(
            "get", "statefulset", f"{RELEASE}-goodput-operator", "-n", NS, "-o", "json"
        ).stdout
    )
    assert sts["status"].get("availableReplicas") == 1
    pod_sc = sts["spec"]["template"]["spec"]["securityContext"]
    assert pod_sc["runAsNonRoot"] is True
    container = sts["spec"]["template"]["spec"]["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert "--all-namespaces" in container["args"]
    assert "--peering=goodput-operator" in container["args"]
    # kopf's peering CRDs (from crds/) and the peering object the operator joins.
    assert cluster.kubectl("get", "clusterkopfpeering", "goodput-operator").returncode == 0

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
    # kopf: peering keep-alives, and CRD scanning (a CRD added later is noticed).
    assert _can(cluster, "patch", "clusterkopfpeerings.kopf.dev", name="goodput-operator")
    assert not _can(cluster, "patch", "clusterkopfpeerings.kopf.dev", name="someone-elses")
    assert _can(cluster, "watch", "clusterkopfpeerings.kopf.dev")
    assert _can(cluster, "watch", "customresourcedefinitions.apiextensions.k8s.io")
    assert not _can(cluster, "delete", "clusterkopfpeerings.kopf.dev")
    assert not _can(cluster, "list", "namespaces")  # only a namespaced kopf follows them


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
        assert _can(cluster, "patch", "kopfpeerings.kopf.dev", watched, name="goodput-operator")
        assert not _can(cluster, "patch", "kopfpeerings.kopf.dev", other, name="goodput-operator")
        assert not _can(cluster, "watch", "clusterkopfpeerings.kopf.dev")
        assert _can(cluster, "watch", "namespaces")  # a namespaced kopf follows them
        args = json.loads(
            cluster.kubectl(
                "get", "statefulset", f"{RELEASE}-goodput-operator", "-n", NS, "-o", "json"
            ).stdout
        )["spec"]["template"]["spec"]["containers"][0]["args"]
        assert f"--namespace={watched}" in args
        assert (
            cluster.kubectl("get", "kopfpeering", "goodput-operator", "-n", watched).returncode == 0
        )
    finally:
        _helm(helm_bin, cluster, "uninstall", RELEASE, "-n", NS, "--wait")
