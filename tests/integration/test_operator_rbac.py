"""The chart's RBAC is exactly what the operator uses (issue 10).

`helm template` renders the chart; its ServiceAccount, (Cluster)Roles, bindings and
peering object are applied to the real API server (the workload is not: KWOK would not
run it), and `goodput run` is started as a process with the chart's own arguments and
a TokenRequest kubeconfig of the chart's ServiceAccount. It runs ticks on a policy that
reads a Secret, is over its budget (so it patches /scale, after the decode pods'
pod-deletion-cost: per-pod running requests are served for them) and carries the
finalizer of older versions (so kopf patches it off). Then:

* its log has no ERROR line and no word of a refused permission, at any level;
* the API server's audit log shows no request of that ServiceAccount refused, and every
  rule the chart grants was used, except the few this test cannot exercise (named in
  ``NOT_EXERCISED`` with the reason);
* `kubectl auth can-i` confirms what stays denied.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from goodput.reasons import Reason
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
from tests.harness.pod_load import PodLoadExporter
from tests.harness.process import wait_until
from tests.harness.prometheus import PrometheusServer
from tests.integration.exporters import ExporterHub
from tests.integration.test_operator import _deployment, _events, _policy, _replicas, _status

pytestmark = pytest.mark.integration

RELEASE_NS = "goodput-rbac"
# Granted, and used by the operator, but not reachable in this test.
NOT_EXERCISED = {
    ("apps", "statefulsets", "get"): "no StatefulSet target here",
    ("apps", "statefulsets/scale", "get"): "no StatefulSet target here",
    ("apps", "statefulsets/scale", "patch"): "no StatefulSet target here",
    ("leaderworkerset.x-k8s.io", "leaderworkersets", "get"): "LWS CRD not installed",
    ("leaderworkerset.x-k8s.io", "leaderworkersets/scale", "get"): "LWS CRD not installed",
    ("leaderworkerset.x-k8s.io", "leaderworkersets/scale", "patch"): "LWS CRD not installed",
    **{
        ("gateway.networking.k8s.io", "httproutes", verb): "no traffic split (issue 13) here"
        for verb in ("get", "list", "watch", "patch")
    },
}
DENIED = [
    ("patch", "deployments.apps"),  # /scale only, never the spec
    ("delete", "deployments.apps"),
    ("create", "pods"),
    ("delete", "pods"),  # patch only: the pod-deletion-cost annotation, never a delete
    ("list", "secrets"),
    ("get", "goodputpolicies.goodput.dev"),
    ("delete", "goodputpolicies.goodput.dev"),
    ("create", "customresourcedefinitions.apiextensions.k8s.io"),
    ("create", "kopfpeerings.kopf.dev"),
]
# "403" not preceded by a comma, so a log timestamp's milliseconds (00:28:33,403) are not
# read as an HTTP status.
_REFUSAL = re.compile(r"forbidden|(?<!,)\b403\b|permission|not allowed|unauthori", re.IGNORECASE)


def _granted(docs: list[dict[str, Any]], sa: str, ns: str) -> set[tuple[str, str, str]]:
    """(apiGroup, resource[/subresource], verb) of every rule bound to the ServiceAccount."""
    bound = set()
    for b in of_kind(docs, "ClusterRoleBinding", "RoleBinding"):
        if any(s["name"] == sa and s.get("namespace") == ns for s in b["subjects"]):
            bound.add((b["roleRef"]["kind"], b["roleRef"]["name"], b["metadata"].get("namespace")))
    out = set()
    for role in of_kind(docs, "ClusterRole", "Role"):
        key = (role["kind"], role["metadata"]["name"], role["metadata"].get("namespace"))
        if key not in bound:
            continue
        for rule in role["rules"]:
            for g in rule["apiGroups"]:
                for r in rule["resources"]:
                    for v in rule["verbs"]:
                        out.add((g, r, v))
    return out


def _used(events: list[dict[str, Any]]) -> tuple[set[tuple[str, str, str]], list[str]]:
    used, refused = set(), []
    for ev in events:
        ref = ev.get("objectRef")
        if ref is None:  # a non-resource URL: discovery (/api, /apis)
            continue
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        key = (ref.get("apiGroup", ""), resource, ev["verb"])
        code = (ev.get("responseStatus") or {}).get("code", 0)
        if code == 403:
            refused.append(f"{key} {ref.get('namespace', '')}/{ref.get('name', '')}")
        else:
            used.add(key)
    return used, refused


def _can(cluster: LocalCluster, user: str, verb: str, resource: str, ns: str) -> bool:
    resource, _, sub = resource.partition("/")
    extra = [f"--subresource={sub}"] if sub else []
    out = cluster.kubectl(
        "auth", "can-i", verb, resource, *extra, f"--as={user}", "-n", ns, check=False
    )
    return out.stdout.strip() == "yes"


@pytest.fixture
def pod_loads(prometheus: PrometheusServer) -> Iterator[tuple[ExporterHub, str]]:
    hub = ExporterHub().start()
    job = f"rbac-{int(time.time() * 1000) % 10**8}"
    prometheus.add_target(job, hub.target)
    try:
        yield hub, job
    finally:
        hub.stop()


def _serve_pod_loads(
    cluster: LocalCluster,
    prometheus: PrometheusServer,
    pod_loads: tuple[ExporterHub, str],
    ns: str,
) -> str:
    """Running requests per decode pod (by its real name), and nothing else: every
    other signal stays missing (the policy holds with MetricsMissing)."""
    hub, job = pod_loads

    def decode_pods() -> list[str]:
        out = cluster.kubectl(
            "get", "pods", "-n", ns, "-l", "app=decode", "-o", "jsonpath={.items[*].metadata.name}"
        ).stdout
        return out.split()

    wait_until(lambda: len(decode_pods()) == 2, 60, "2 decode pods")
    exporter = PodLoadExporter("op", "decode")
    exporter.set(dict(zip(sorted(decode_pods()), (3.0, 0.0), strict=True)))
    hub.add(exporter)  # type: ignore[arg-type]  # any collector: the hub merges families
    sel = f'vllm:num_requests_running{{job="{job}",pool="decode"}}'
    wait_until(lambda: len(prometheus.query(sel)) == 2, 30, "the per-pod series")
    return job


@pytest.mark.parametrize("scope", ["namespaced", "clusterwide"])
def test_chart_rbac_is_what_the_operator_uses(
    cluster: LocalCluster,
    prometheus: PrometheusServer,
    helm_bin: Path,
    tmp_path: Path,
    scope: str,
    pod_loads: tuple[ExporterHub, str],
) -> None:
    ns = cluster.create_namespace("rbac")
    release = f"rbac-{scope[0]}{int(time.time() * 1000) % 100000}"
    sets = [f"peering.name={release}", "peering.lifetime=10"]
    if scope == "namespaced":
        sets.append(f"watchNamespaces={{{ns}}}")
    docs = render(helm_bin, release, RELEASE_NS, *sets)
    (sa_doc,) = of_kind(docs, "ServiceAccount")
    sa = sa_doc["metadata"]["name"]
    user = f"system:serviceaccount:{RELEASE_NS}:{sa}"
    apply_parts(cluster, docs, *RBAC_KINDS, *PEERING_KINDS)
    kubeconfig = cluster.service_account_kubeconfig(RELEASE_NS, sa, tmp_path / "kubeconfig")

    # A policy that exercises every path: auth Secret, over budget, older finalizer,
    # and drain-aware scale-down (per-pod running requests of the decode pods, so the
    # shrink patches their pod-deletion-cost first).
    cluster.apply(_deployment("prefill", ns, 1, 1))
    cluster.apply(_deployment("decode", ns, 2, 1))
    job = _serve_pod_loads(cluster, prometheus, pod_loads, ns)
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "prom", "namespace": ns},
            "stringData": {"token": "s3cret"},
        }
    )
    policy = _policy(ns, prometheus.url, job, "Enforce")
    policy["spec"]["gpuBudget"] = 2
    policy["spec"]["metrics"]["auth"] = {"bearerTokenSecretRef": {"name": "prom", "key": "token"}}
    policy["metadata"]["finalizers"] = ["goodput.dev/finalizer"]
    cluster.apply(policy)

    # Exactly the chart's arguments, as pod 0 of its StatefulSet.
    args = [
        a
        for a in container_args(docs)[1:]  # after "run" (the image's entrypoint is goodput)
        if not a.startswith(("--metrics-port", "--liveness"))
    ]
    op = OperatorProcess(tmp_path, f"operator-{scope}", args, kubeconfig, env={"POD_ID": f"{sa}-0"})
    started = time.monotonic()
    try:
        _run_and_check(cluster, op, ns, user, docs, sa, started)
        # What stays denied.
        for verb, resource in DENIED:
            assert not _can(cluster, user, verb, resource, ns), (verb, resource)
    finally:
        op.stop()
        delete_parts(cluster, docs, *PEERING_KINDS, *RBAC_KINDS)


def _finalizers(cluster: LocalCluster, ns: str) -> str:
    return cluster.kubectl(
        "get", "gp", "chat", "-n", ns, "-o", "jsonpath={.metadata.finalizers}"
    ).stdout.strip()


def _run_and_check(
    cluster: LocalCluster,
    op: OperatorProcess,
    ns: str,
    user: str,
    docs: list[dict[str, Any]],
    sa: str,
    started: float,
) -> None:
    def shrunk() -> bool:
        op.assert_alive()
        return _replicas(cluster, ns, "decode") == 1

    wait_until(shrunk, 60, "the over-budget shrink")
    wait_until(
        lambda: (
            (_status(cluster, ns).get("lastDecision") or {}).get("reason")
            == Reason.MetricsMissing.value
        ),
        30,
        "a tick's status",
    )
    wait_until(lambda: _finalizers(cluster, ns) in ("", "[]"), 30, "kopf to drop the old finalizer")
    assert any(e["reason"] == Reason.OverBudget.value for e in _events(cluster, ns))
    drained = [e for e in _events(cluster, ns) if e["reason"] == Reason.DrainMarked.value]
    assert drained and "0 refused" in drained[0]["message"], drained
    assert op.metric("goodput_operator_active") == 1.0
    time.sleep(5)  # a few more ticks (interval 2 s)
    ran = time.monotonic() - started
    code = op.stop()  # SIGTERM: kopf withdraws from the peering on the way out
    log = op.log()
    assert code in (0, -15), log[-3000:]
    # At the signal the policy loops stop: nothing is decided (or written) after it.
    after = log.partition("signal SIGTERM: the policy loops stop now")[2]
    assert after, log[-3000:]
    assert " decision " not in after, after[:3000]
    bad = [
        line
        for line in log.splitlines()
        if " ERROR " in line or "Traceback" in line or _REFUSAL.search(line)
    ]
    assert not bad, "\n".join(bad)
    assert "this replica acts" in log

    used, refused = _used(cluster.audit_events(user))
    print(
        f"{user} used {len(used)} (group, resource, verb) in {ran:.0f} s:",
        *sorted(used),
        sep="\n  ",
    )
    assert not refused, f"refused by RBAC within {ran:.0f} s: {refused}"
    granted = _granted(docs, sa, RELEASE_NS)
    assert used <= granted, f"used without a grant: {sorted(used - granted)}"
    unused = granted - used - set(NOT_EXERCISED)
    assert not unused, f"granted but never used: {sorted(unused)}"
