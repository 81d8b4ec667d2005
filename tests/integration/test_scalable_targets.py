"""Targets other than Deployments: "any workload with a scale subresource", shown on
the real API server rather than assumed.

**LeaderWorkerSet, with no controller behind it.** The LWS controller could not be
built here: the Go module proxy refused ``sigs.k8s.io/lws`` (403 Forbidden, "This
module version is not available"). So the tests install LeaderWorkerSet's published
CRD (``crds/leaderworkerset/``: LWS v0.10.0's schema, the two PodSpecs trimmed, its
scale subresource unchanged) and **no controller runs behind it: no StatefulSets, no
pods, and ``status`` stays empty unless a test writes it.** What is tested is what the
operator itself does with the kind: /scale reads and writes through the API server's
scale subresource for the CRD, GPUs per replica counted from the stored object over a
whole group (leader + ``size - 1`` workers, after the API server's defaulting), and
the budget at the spec level (replicas asked for x GPUs per group, sampled every 50 ms).
Pod-level budget safety for LWS (leaders and workers running and terminating) is not
tested.

**InferenceReplicas, a CRD of our own with an in-test controller.** A kind nobody
ships (group ``serving.goodput-test.dev``) with ``spec.replicas``, ``status.replicas``
and ``status.selector`` behind its scale subresource, and no pod template the operator
could read (its GPUs are in a field of its own), so ``gpusPerReplica`` is required.
A small controller in this file (a thread, like a ReplicaSet: it replaces a missing
pod at once, even while others terminate) creates the pods, which the real scheduler
places on a KWOK node of their own and KWOK runs; the pods' GPUs are sampled every
100 ms through a rebalance and a scale-down.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from goodput.actuator.kube import KubeScaleClient
from goodput.api.spec import TargetRef
from goodput.reasons import Reason
from tests.harness.cluster import LocalCluster, _fake_node
from tests.harness.process import wait_until
from tests.harness.prometheus import PrometheusServer
from tests.integration.exporters import ServingExporter
from tests.integration.test_operator import QUIET, _condition, _events, _policy, _status
from tests.integration.test_operator_invariants import HeldLog

pytestmark = pytest.mark.integration

LWS_CRD = (
    Path(__file__).parent
    / "crds"
    / "leaderworkerset"
    / "leaderworkerset.x-k8s.io_leaderworkersets.yaml"
)
LWS_GROUP, LWS_VERSION, LWS_PLURAL = "leaderworkerset.x-k8s.io", "v1", "leaderworkersets"
LWS_API = f"{LWS_GROUP}/{LWS_VERSION}"

IR_GROUP, IR_VERSION, IR_PLURAL = "serving.goodput-test.dev", "v1alpha1", "inferencereplicas"
IR_API = f"{IR_GROUP}/{IR_VERSION}"
IR_LABEL = f"{IR_GROUP}/inferencereplicas"
# The InferenceReplicas pods get a KWOK node of their own (tainted, so no other test's
# pods land on it, and big enough that a pod is never Pending for lack of GPUs), so they
# run whatever other tests in the session left on the harness's two nodes.
NODE = "kwok-targets-0"
NODE_TAINT = "goodput-test.dev/scalable-targets"


# -- fixtures -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lws_crd(cluster: LocalCluster) -> None:
    cluster.kubectl("apply", "--server-side", "-f", str(LWS_CRD))
    cluster.kubectl(
        "wait", "--for=condition=established", "--timeout=60s", f"crd/{LWS_PLURAL}.{LWS_GROUP}"
    )


def _ir_crd() -> dict[str, Any]:
    replicas = {"type": "integer", "format": "int32", "minimum": 0}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{IR_PLURAL}.{IR_GROUP}"},
        "spec": {
            "group": IR_GROUP,
            "names": {
                "kind": "InferenceReplicas",
                "listKind": "InferenceReplicasList",
                "plural": IR_PLURAL,
                "singular": "inferencereplica",
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": IR_VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "required": ["replicas", "model"],
                                    "properties": {
                                        "replicas": replicas,
                                        "model": {"type": "string"},
                                        # The GPUs live here, not in a pod template:
                                        # the operator cannot read them.
                                        "acceleratorsPerReplica": {
                                            "type": "integer",
                                            "minimum": 1,
                                            "default": 1,
                                        },
                                    },
                                },
                                "status": {
                                    "type": "object",
                                    "properties": {
                                        "replicas": replicas,
                                        "readyReplicas": replicas,
                                        "selector": {"type": "string"},
                                    },
                                },
                            },
                        }
                    },
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                }
            ],
        },
    }


@pytest.fixture(scope="module")
def ir_crd(cluster: LocalCluster) -> None:
    cluster.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(_ir_crd()))
    cluster.kubectl(
        "wait", "--for=condition=established", "--timeout=60s", f"crd/{IR_PLURAL}.{IR_GROUP}"
    )


@pytest.fixture(scope="module")
def targets_node(cluster: LocalCluster) -> Iterator[str]:
    node = _fake_node(NODE, 16)
    node["metadata"]["labels"]["type"] = "kwok-targets"  # not one of the harness's nodes
    node["spec"] = {"taints": [{"key": NODE_TAINT, "value": "true", "effect": "NoSchedule"}]}
    cluster.apply(node)

    def ready() -> bool:
        out = json.loads(cluster.kubectl("get", "node", NODE, "-o", "json").stdout)
        conds = out.get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)

    wait_until(ready, 60, f"node {NODE} Ready")
    try:
        yield NODE
    finally:
        cluster.kubectl("delete", "node", NODE, "--wait=false", check=False)


# -- helpers ------------------------------------------------------------------------------
def _pod_template(app: str, gpus: int) -> dict[str, Any]:
    limits = {"resources": {"limits": {"nvidia.com/gpu": str(gpus)}}} if gpus else {}
    return {
        "metadata": {"labels": {"app": app}},
        "spec": {"containers": [{"name": "vllm", "image": "vllm/vllm-openai:latest", **limits}]},
    }


def _lws(
    name: str, ns: str, *, size: int | None, leader_gpus: int | None, worker_gpus: int
) -> dict[str, Any]:
    """A LeaderWorkerSet at 1 replica; ``leader_gpus=None``: no leaderTemplate (the
    leader runs the worker template); ``size=None``: left to the CRD's default."""
    lwt: dict[str, Any] = {"workerTemplate": _pod_template(name, worker_gpus)}
    if leader_gpus is not None:
        lwt["leaderTemplate"] = _pod_template(name, leader_gpus)
    if size is not None:
        lwt["size"] = size
    return {
        "apiVersion": LWS_API,
        "kind": "LeaderWorkerSet",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"replicas": 1, "leaderWorkerTemplate": lwt},
    }


def _raw_scale(cluster: LocalCluster, api: str, plural: str, ns: str, name: str) -> dict[str, Any]:
    path = f"/apis/{api}/namespaces/{ns}/{plural}/{name}/scale"
    scale: dict[str, Any] = json.loads(cluster.kubectl("get", "--raw", path).stdout)
    return scale


def _spec_replicas(cluster: LocalCluster, api: str, plural: str, ns: str, name: str) -> int:
    return int(_raw_scale(cluster, api, plural, ns, name)["spec"].get("replicas", 0))


def _retarget(policy: dict[str, Any], api: str, kind: str, budget: int) -> dict[str, Any]:
    """test_operator's policy, its two pools pointed at ``kind`` objects named after
    their roles."""
    policy["spec"]["gpuBudget"] = budget
    for pool in policy["spec"]["pools"]:
        pool["targetRef"] = {"apiVersion": api, "kind": kind, "name": pool["role"]}
    return policy


class SpecWatch:
    """Samples /scale spec.replicas of some targets every 50 ms: GPUs asked for at the
    spec level, ``sum(replicas x GPUs per replica)``, with the time of each sample."""

    def __init__(
        self, cluster: LocalCluster, group: str, version: str, plural: str, ns: str,
        gpus: dict[str, int],
    ) -> None:  # fmt: skip
        from kubernetes import client

        self.api: Any = client.CustomObjectsApi(cluster.api_client())
        self.where = (group, version, ns, plural)
        self.gpus = gpus
        self.samples: list[tuple[float, dict[str, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        group, version, ns, plural = self.where
        while not self._stop.is_set():
            replicas = {
                name: int(
                    self.api.get_namespaced_custom_object_scale(group, version, ns, plural, name)[
                        "spec"
                    ].get("replicas", 0)
                )
                for name in self.gpus
            }
            self.samples.append((time.monotonic(), replicas))
            time.sleep(0.05)

    def held(self, replicas: dict[str, int]) -> int:
        return sum(n * self.gpus[k] for k, n in replicas.items())

    def held_between(self, start: float, end: float = float("inf")) -> list[int]:
        return [self.held(r) for t, r in self.samples if start <= t < end]

    def __enter__(self) -> SpecWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class InferenceReplicasController:
    """What a ReplicaSet does, for InferenceReplicas: keep ``spec.replicas`` live pods
    (a pod being deleted is not live, so it is replaced at once), each with
    ``acceleratorsPerReplica`` GPUs, and report ``status.replicas`` (live pods),
    ``status.readyReplicas`` and ``status.selector``. Polls every 100 ms."""

    def __init__(self, cluster: LocalCluster, ns: str, names: list[str], node: str) -> None:
        from kubernetes import client

        api_client = cluster.api_client()
        self.custom: Any = client.CustomObjectsApi(api_client)
        self.core: Any = client.CoreV1Api(api_client)
        self.ns = ns
        self.names = names
        self.node = node
        self.created = 0
        self.deleted = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _pod(self, owner: dict[str, Any]) -> dict[str, Any]:
        name = owner["metadata"]["name"]
        gpus = str(owner["spec"].get("acceleratorsPerReplica", 1))
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "generateName": f"{name}-",
                "labels": {IR_LABEL: name},
                "ownerReferences": [
                    {
                        "apiVersion": IR_API,
                        "kind": "InferenceReplicas",
                        "name": name,
                        "uid": owner["metadata"]["uid"],
                        "controller": True,
                    }
                ],
            },
            "spec": {
                "nodeSelector": {"kubernetes.io/hostname": self.node},
                "tolerations": [{"key": NODE_TAINT, "operator": "Exists", "effect": "NoSchedule"}],
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {
                        "name": "server",
                        "image": f"example.invalid/{owner['spec']['model']}:test",
                        "resources": {"limits": {"nvidia.com/gpu": gpus}},
                    }
                ],
            },
        }

    def _reconcile(self, name: str) -> None:
        owner = self.custom.get_namespaced_custom_object(
            IR_GROUP, IR_VERSION, self.ns, IR_PLURAL, name
        )
        want = int(owner["spec"]["replicas"])
        pods = self.core.list_namespaced_pod(self.ns, label_selector=f"{IR_LABEL}={name}").items
        live = [
            p
            for p in pods
            if p.metadata.deletion_timestamp is None
            and (p.status is None or p.status.phase not in ("Succeeded", "Failed"))
        ]
        for _ in range(want - len(live)):
            self.core.create_namespaced_pod(self.ns, self._pod(owner))
            self.created += 1
        for p in sorted(live, key=lambda p: (p.metadata.creation_timestamp, p.metadata.name))[
            want:
        ]:
            self.core.delete_namespaced_pod(p.metadata.name, self.ns)
            self.deleted += 1
        ready = sum(
            1
            for p in live
            if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        )
        status = {"replicas": len(live), "readyReplicas": ready, "selector": f"{IR_LABEL}={name}"}
        if owner.get("status") != status:
            self.custom.patch_namespaced_custom_object_status(
                IR_GROUP, IR_VERSION, self.ns, IR_PLURAL, name, {"status": status}
            )

    def _run(self) -> None:
        while not self._stop.is_set():
            for name in self.names:
                try:
                    self._reconcile(name)
                except Exception as err:  # recorded and asserted on by the test
                    self.errors.append(f"{name}: {err}"[:300])
            time.sleep(0.1)

    def __enter__(self) -> InferenceReplicasController:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _pods(cluster: LocalCluster, ns: str, name: str) -> list[dict[str, Any]]:
    out = cluster.kubectl("get", "pods", "-n", ns, "-l", f"{IR_LABEL}={name}", "-o", "json")
    pods: list[dict[str, Any]] = json.loads(out.stdout)["items"]
    return pods


def _running_on_node(cluster: LocalCluster, ns: str, name: str, node: str) -> int:
    return sum(
        1
        for p in _pods(cluster, ns, name)
        if p["status"].get("phase") == "Running"
        and p["spec"].get("nodeName") == node
        and not p["metadata"].get("deletionTimestamp")
    )


# -- LeaderWorkerSet (CRD only) -----------------------------------------------------------
def test_leaderworkerset_scale_reads_writes_and_gpus_per_group(
    cluster: LocalCluster, lws_crd: None
) -> None:
    """KubeScaleClient on LeaderWorkerSets as the API server stores them (CRD defaults
    applied): GPUs per replica over leader + size - 1 workers, /scale read and written.
    No LWS controller runs: status is empty until this test writes what LWS v0.10.0's
    controller would (replicas, hpaPodSelector), and no pods exist."""
    ns = cluster.create_namespace("lws-read")
    # name: (size, leader GPUs (None: no leaderTemplate), worker GPUs, GPUs per group)
    cases = {
        "leader-and-workers": (3, 1, 2, 1 + 2 * 2),
        "no-leader-template": (2, None, 2, 2 * 2),
        "cpu-leader": (4, 0, 8, 3 * 8),
        "default-size": (None, 1, 4, 1),  # size defaults to 1: the leader alone
        "single": (1, None, 8, 8),
    }
    for name, (size, leader, worker, _) in cases.items():
        cluster.apply(_lws(name, ns, size=size, leader_gpus=leader, worker_gpus=worker))
    stored = cluster.kubectl(
        "get", "lws", "default-size", "-n", ns, "-o", "jsonpath={.spec.leaderWorkerTemplate.size}"
    )
    assert stored.stdout == "1"  # the CRD's default, applied by the API server

    client = KubeScaleClient(cluster.api_client())

    def ref(name: str) -> TargetRef:
        return TargetRef(api_version=LWS_API, kind="LeaderWorkerSet", name=name)

    for name, (*_, gpus) in cases.items():
        s = asyncio.run(client.read(ref(name), ns))
        assert s.template_gpus == gpus, (name, s)
        assert (s.spec_replicas, s.status_replicas, s.selector, s.pods_present) == (1, 0, "", 0)

    # A write through /scale lands in .spec.replicas (specReplicasPath).
    asyncio.run(client.write(ref("leader-and-workers"), ns, 3))
    replicas = cluster.kubectl(
        "get", "lws", "leader-and-workers", "-n", ns, "-o", "jsonpath={.spec.replicas}"
    )
    assert replicas.stdout == "3"
    assert _raw_scale(cluster, LWS_API, LWS_PLURAL, ns, "leader-and-workers")["spec"] == {
        "replicas": 3
    }

    # The status LWS's controller writes (hpaPodSelector selects the leaders, one pod
    # per group), written here by hand: /scale reports it as status.selector.
    leaders = (
        "leaderworkerset.sigs.k8s.io/name=leader-and-workers,"
        "leaderworkerset.sigs.k8s.io/worker-index=0"
    )
    cluster.kubectl(
        "patch", "lws", "leader-and-workers", "-n", ns, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"replicas": 3, "hpaPodSelector": leaders}}),
    )  # fmt: skip
    s = asyncio.run(client.read(ref("leader-and-workers"), ns))
    assert (s.spec_replicas, s.status_replicas, s.selector) == (3, 3, leaders)
    assert s.pods_present == 0  # no controller, so no leader pods


def test_policy_scales_leaderworkersets_within_budget_at_the_spec_level(
    cluster: LocalCluster,
    prometheus: PrometheusServer,
    operator: None,
    heavy_exporter: tuple[ServingExporter, str],
    lws_crd: None,
) -> None:
    """A GoodputPolicy on two LeaderWorkerSets (no controller behind them, so no pods:
    the budget is checked on the replicas asked for). prefill: leader 1 GPU + 2 workers
    x 2 GPUs = 5 per group; decode: no leaderTemplate, size 2 x 2 GPUs = 4 per group;
    gpusPerReplica unset, so the operator reads both from the stored objects. Heavy load
    grows them within the budget; a budget cut shrinks them within a tick or two."""
    budget, cut = 18, 9
    gpus = {"prefill": 5, "decode": 4}
    _, job = heavy_exporter
    ns = cluster.create_namespace("lws")
    cluster.apply(_lws("prefill", ns, size=3, leader_gpus=1, worker_gpus=2))
    cluster.apply(_lws("decode", ns, size=2, leader_gpus=None, worker_gpus=2))
    time.sleep(4)  # a full rate window of scrapes
    policy = _retarget(
        _policy(ns, prometheus.url, job, "Enforce"), LWS_API, "LeaderWorkerSet", budget
    )
    for pool in policy["spec"]["pools"]:
        assert "gpusPerReplica" not in pool

    def spec(name: str) -> int:
        return _spec_replicas(cluster, LWS_API, LWS_PLURAL, ns, name)

    with SpecWatch(cluster, LWS_GROUP, LWS_VERSION, LWS_PLURAL, ns, gpus) as watch:
        start = time.monotonic()
        cluster.apply(policy)
        wait_until(lambda: spec("prefill") + spec("decode") > 2, 60, "the LWS scale-up")
        wait_until(
            lambda: (
                _status(cluster, ns).get("lastDecision", {}).get("applied") is not None
                and _condition(_status(cluster, ns), "Ready").get("status") == "True"
            ),
            30,
            "Ready after the scale-up",
        )
        p, d = spec("prefill"), spec("decode")
        assert 5 * p + 4 * d <= budget, (p, d)
        # The operator's own count of GPUs held (read at the start of a tick, so the one
        # after the writes): leader + workers per group, x groups.
        wait_until(
            lambda: _status(cluster, ns).get("gpusAllocated") == 5 * p + 4 * d,
            20,
            f"status.gpusAllocated = 5 x {p} + 4 x {d}",
        )
        assert _status(cluster, ns)["gpuBudget"] == budget
        scaled = [e for e in _events(cluster, ns) if e["reason"] == Reason.ScaledUp.value]
        assert any("LeaderWorkerSet/" in e["message"] for e in scaled), scaled

        cut_at = time.monotonic()
        cluster.kubectl(
            "patch", "gp", "chat", "-n", ns, "--type=merge", "-p",
            json.dumps({"spec": {"gpuBudget": cut}}),
        )  # fmt: skip
        wait_until(lambda: spec("prefill") + spec("decode") == 2, 20, "the shrink to 1 + 1")
        shrunk = time.monotonic() - cut_at
        wait_until(
            lambda: _condition(_status(cluster, ns), "WithinBudget").get("status") == "True",
            20,
            "WithinBudget after the cut",
        )
        settled = time.monotonic()
        time.sleep(3)
    assert shrunk < 8, shrunk
    before_cut = watch.held_between(start, cut_at)
    assert len(before_cut) > 20 and max(before_cut) <= budget, max(before_cut)
    assert max(watch.held_between(settled)) <= cut
    assert _status(cluster, ns)["gpusAllocated"] == 9
    over = [e for e in _events(cluster, ns) if e["reason"] == Reason.OverBudget.value]
    assert over and over[0]["type"] == "Warning" and "LeaderWorkerSet/" in over[0]["message"]


# -- InferenceReplicas (our CRD, in-test controller, KWOK pods) ---------------------------
def test_policy_scales_a_custom_kind_with_scale_and_pods_on_kwok_within_budget(
    cluster: LocalCluster,
    prometheus: PrometheusServer,
    operator: None,
    heavy_exporter: tuple[ServingExporter, str],
    ir_crd: None,
    targets_node: str,
) -> None:
    """Any kind with /scale: two InferenceReplicas objects, 2 GPUs per replica in a
    field of their own, prefill at 1 and decode at 3 (8 GPUs: the whole budget), the
    policy's decode maxReplicas 2. Without gpusPerReplica the policy holds and says why.
    With it, a rebalance under heavy load: decode shrinks to 2, its pod goes, and only
    then prefill grows (the controller would start a new pod at once, beside the
    terminating one); zero traffic then shrinks both to 1. Pods Running on KWOK, GPUs
    held by pods (terminating ones included) never above the budget."""
    budget = 8
    exporter, job = heavy_exporter
    ns = cluster.create_namespace("ir")
    for role, replicas in (("prefill", 1), ("decode", 3)):
        cluster.apply(
            {
                "apiVersion": IR_API,
                "kind": "InferenceReplicas",
                "metadata": {"name": role, "namespace": ns},
                "spec": {
                    "replicas": replicas,
                    "model": "llama-3.1-8b",
                    "acceleratorsPerReplica": 2,
                },
            }
        )

    def spec(name: str) -> int:
        return _spec_replicas(cluster, IR_API, IR_PLURAL, ns, name)

    def running() -> dict[str, int]:
        return {r: _running_on_node(cluster, ns, r, targets_node) for r in ("prefill", "decode")}

    try:
        with InferenceReplicasController(cluster, ns, ["prefill", "decode"], targets_node) as ctl:
            wait_until(lambda: running() == {"prefill": 1, "decode": 3}, 60, "first pods Running")
            # /scale as the operator reads it: the controller's status, through the CRD's paths.
            wait_until(
                lambda: (
                    _raw_scale(cluster, IR_API, IR_PLURAL, ns, "decode")["status"]
                    == {"replicas": 3, "selector": f"{IR_LABEL}=decode"}
                ),
                10,
                "status.replicas 3 on decode's /scale",
            )
            assert _raw_scale(cluster, IR_API, IR_PLURAL, ns, "decode")["spec"] == {"replicas": 3}
            time.sleep(4)  # a full rate window of scrapes

            # No pod template to read the GPUs from: hold, naming the field to set.
            policy = _retarget(
                _policy(ns, prometheus.url, job, "Enforce"), IR_API, "InferenceReplicas", budget
            )
            policy["spec"]["pools"][1]["maxReplicas"] = 2
            assert policy["spec"]["pools"][1]["role"] == "decode"
            cluster.apply(policy)
            wait_until(
                lambda: (
                    "gpusPerReplica is not set"
                    in _condition(_status(cluster, ns), "Ready").get("message", "")
                ),
                60,
                "the hold for gpusPerReplica",
            )
            ready = _condition(_status(cluster, ns), "Ready")
            assert ready["status"] == "False" and ready["reason"] == Reason.InvalidPolicy.value
            assert "InferenceReplicas/prefill" in ready["message"], ready
            assert spec("prefill") == 1 and spec("decode") == 3

            with HeldLog(cluster, ns) as held:
                for pool in policy["spec"]["pools"]:
                    pool["gpusPerReplica"] = 2
                set_at = time.monotonic()
                cluster.apply(policy)
                wait_until(lambda: spec("prefill") >= 2, 60, "the rebalance toward prefill")
                grown_at = time.monotonic()
                wait_until(
                    lambda: (
                        _status(cluster, ns).get("lastDecision", {}).get("applied") is not None
                        and _condition(_status(cluster, ns), "Ready").get("status") == "True"
                    ),
                    30,
                    "Ready after the rebalance",
                )
                want = {r: spec(r) for r in ("prefill", "decode")}
                assert want == {"prefill": 2, "decode": 2}, want
                wait_until(lambda: running() == want, 60, f"{want} pods Running on {targets_node}")
                wait_until(
                    lambda: _status(cluster, ns).get("gpusAllocated") == 2 * sum(want.values()),
                    20,
                    "status.gpusAllocated = 2 x replicas",
                )
                reasons = [(e["reason"], e["message"]) for e in _events(cluster, ns)]
                assert any(
                    r == Reason.ScaledUp.value and "InferenceReplicas/prefill" in m
                    for r, m in reasons
                ), reasons
                rebalanced = held.samples[-1][0]

                # Traffic stops: back to the minimums, the removed pods terminating.
                exporter.set_traffic("prefill", **QUIET.__dict__)
                exporter.set_traffic("decode", **QUIET.__dict__)
                wait_until(
                    lambda: spec("prefill") == 1 and spec("decode") == 1, 90, "the scale-down"
                )
                wait_until(lambda: held.samples[-1][1] == 4, 30, "the removed pods to go")
                assert running() == {"prefill": 1, "decode": 1}
            assert not ctl.errors, ctl.errors[:5]
        during = [h for t, h in held.samples if set_at <= t <= grown_at]
        # Shrink, wait for the decode pod to go, grow: held dipped below the budget.
        assert min(during) <= budget - 2, during
        assert len(held.samples) > 50
        peak = max(h for _, h in held.samples)
        assert peak <= budget, f"GPUs held by pods peaked at {peak} > budget {budget}"
        assert max(held.after(rebalanced)) >= 2 * sum(want.values())  # counted while running
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
