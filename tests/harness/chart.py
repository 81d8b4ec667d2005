"""The chart's manifests as `helm template` renders them, and applying a chosen part of
them (RBAC, ServiceAccount, peering) to the test cluster without the workload, so a
test can run `goodput run` itself with exactly the chart's identity and arguments."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from tests.harness.cluster import LocalCluster
from tests.harness.tools import REPO

CHART = REPO / "helm" / "goodput-operator"
RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
PEERING_KINDS = ("ClusterKopfPeering", "KopfPeering")


def render(
    helm_bin: Path,
    release: str,
    namespace: str,
    *set_args: str,
    include_crds: bool = True,
) -> list[dict[str, Any]]:
    """`helm template` of the chart; ``set_args`` are ``--set`` values (``k=v``)."""
    argv = [str(helm_bin), "template", release, str(CHART), "-n", namespace]
    if include_crds:
        argv.append("--include-crds")
    for s in set_args:
        argv += ["--set", s]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"helm template failed: {out.stderr}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def of_kind(docs: Iterable[dict[str, Any]], *kinds: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") in kinds]


def container_args(docs: Iterable[dict[str, Any]]) -> list[str]:
    """The operator container's args from the rendered StatefulSet."""
    (sts,) = of_kind(docs, "StatefulSet")
    args: list[str] = sts["spec"]["template"]["spec"]["containers"][0]["args"]
    return args


def apply_parts(cluster: LocalCluster, docs: list[dict[str, Any]], *kinds: str) -> None:
    """CRDs first (and established), the release namespace, then the given kinds."""
    crds = of_kind(docs, "CustomResourceDefinition")
    if crds:
        _apply(cluster, crds)
        for crd in crds:
            cluster.kubectl(
                "wait",
                "--for=condition=established",
                "--timeout=60s",
                f"crd/{crd['metadata']['name']}",
            )
    for ns in {
        d["metadata"]["namespace"] for d in of_kind(docs, *kinds) if "namespace" in d["metadata"]
    }:
        cluster.kubectl("create", "namespace", ns, check=False)
    _apply(cluster, of_kind(docs, *kinds))


def delete_parts(cluster: LocalCluster, docs: list[dict[str, Any]], *kinds: str) -> None:
    """Deletes what apply_parts applied of these kinds (never the shared CRDs)."""
    parts = of_kind(docs, *kinds)
    if parts:
        cluster.kubectl(
            "delete",
            "--ignore-not-found",
            "--wait=false",
            "-f",
            "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": parts}),
            check=False,
        )


def _apply(cluster: LocalCluster, docs: list[dict[str, Any]]) -> None:
    if not docs:
        return
    # Server-side, forcing conflicts: other tests apply the same CRDs with other managers.
    cluster.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=goodput-tests",
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}),
    )
