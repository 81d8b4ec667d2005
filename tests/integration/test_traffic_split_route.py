"""The traffic split's edge against a real kube-apiserver with the Gateway API's own
v1.6.3 CRDs: weights written and read back through the API server, only the owned
backendRefs' weights changed, every unsafe route refused unchanged, a concurrent edit
detected and the CRD's own validation surfaced in the API server's words."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from goodput.actuator.route import (
    OWNER_ANNOTATION,
    BackendKey,
    RouteConflict,
    RouteError,
    RouteOwner,
    RoutePatch,
    plan_weights,
)
from goodput.actuator.route_kube import KubeTrafficRouter
from goodput.reasons import Reason
from tests.harness.cluster import LocalCluster
from tests.harness.gateway_api import GATEWAY_API_VERSION

pytestmark = pytest.mark.integration

POOL_GROUP = "inference.networking.k8s.io"
FAST = BackendKey("llama-70b", group=POOL_GROUP, kind="InferencePool")
GOOD = BackendKey("llama-405b-int4", group=POOL_GROUP, kind="InferencePool")
OWNED = [FAST, GOOD]


@pytest.fixture(scope="module")
def ns(cluster: LocalCluster, gateway_api_crds: list[str]) -> str:
    namespace = cluster.create_namespace("route")
    cluster.apply(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GatewayClass",
            "metadata": {"name": "goodput-test"},
            "spec": {"controllerName": "goodput.dev/test-no-controller"},
        }
    )
    cluster.apply(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "inference-gateway", "namespace": namespace},
            "spec": {
                "gatewayClassName": "goodput-test",
                "listeners": [{"name": "http", "protocol": "HTTP", "port": 80}],
            },
        }
    )
    return namespace


@pytest.fixture
def router(cluster: LocalCluster) -> Iterator[KubeTrafficRouter]:
    api = cluster.api_client()
    try:
        yield KubeTrafficRouter(api)
    finally:
        api.close()


def _route(
    name: str, namespace: str, extra_refs: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    def ref(key: BackendKey, **more: Any) -> dict[str, Any]:
        return {"group": key.group, "kind": key.kind, "name": key.name, **more}

    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "llm"}},
        "spec": {
            "parentRefs": [{"name": "inference-gateway"}],
            "hostnames": ["llm.example.com"],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/v1"}}],
                    "filters": [
                        {
                            "type": "RequestHeaderModifier",
                            "requestHeaderModifier": {"set": [{"name": "x-tier", "value": "1"}]},
                        }
                    ],
                    # No weight on the first: the CRD defaults it to 1.
                    "backendRefs": [ref(FAST), ref(GOOD, weight=1), *(extra_refs or [])],
                },
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/health"}}],
                    "backendRefs": [{"name": "health", "port": 8080, "weight": 7}],
                },
            ],
        },
    }


def _get(cluster: LocalCluster, ns: str, name: str) -> dict[str, Any]:
    out = cluster.kubectl("get", "httproute", name, "-n", ns, "-o", "json").stdout
    doc: dict[str, Any] = json.loads(out)
    return doc


def _weights_on_server(cluster: LocalCluster, ns: str, name: str) -> list[int | None]:
    refs = _get(cluster, ns, name)["spec"]["rules"][0]["backendRefs"]
    return [r.get("weight") for r in refs]


def _without_weights(spec: dict[str, Any]) -> dict[str, Any]:
    spec = copy.deepcopy(spec)
    for rule in spec["rules"]:
        for ref in rule.get("backendRefs") or []:
            ref.pop("weight", None)
    return spec


def test_gateway_api_crds_are_the_v1_6_3_standard_channel(
    cluster: LocalCluster, gateway_api_crds: list[str]
) -> None:
    for plural in ("gatewayclasses", "gateways", "httproutes"):
        assert f"{plural}.gateway.networking.k8s.io" in gateway_api_crds
    crd = json.loads(
        cluster.kubectl("get", "crd", "httproutes.gateway.networking.k8s.io", "-o", "json").stdout
    )
    annotations = crd["metadata"]["annotations"]
    assert annotations["gateway.networking.k8s.io/bundle-version"] == GATEWAY_API_VERSION
    assert annotations["gateway.networking.k8s.io/channel"] == "standard"
    storage = [v["name"] for v in crd["spec"]["versions"] if v["storage"]]
    assert storage == ["v1"]  # the version the operator reads and patches


def test_weights_written_then_rewritten_and_read_back(
    cluster: LocalCluster, ns: str, router: KubeTrafficRouter
) -> None:
    cluster.apply(_route("split", ns))
    created = _get(cluster, ns, "split")
    owner = RouteOwner(ns, "support")

    before = asyncio.run(router.read_weights(ns, "split", OWNED))
    assert before.weights == {FAST: 1, GOOD: 1}  # the Gateway API default
    assert before.owner is None

    first = asyncio.run(router.set_weights(ns, "split", owner, OWNED, {FAST: 70, GOOD: 30}))
    assert first.written
    assert first.after.weights == {FAST: 70, GOOD: 30}
    assert _weights_on_server(cluster, ns, "split") == [70, 30]
    stored = _get(cluster, ns, "split")
    assert stored["metadata"]["annotations"][OWNER_ANNOTATION] == f"{ns}/support"
    # Only the weights moved: matches, filters, the other rule, parents, labels are as created.
    assert _without_weights(stored["spec"]) == _without_weights(created["spec"])
    assert stored["spec"]["rules"][1]["backendRefs"][0]["weight"] == 7
    assert stored["metadata"]["labels"] == {"app": "llm"}

    second = asyncio.run(router.set_weights(ns, "split", owner, OWNED, {FAST: 20, GOOD: 80}))
    assert second.before.weights == {FAST: 70, GOOD: 30}
    assert second.after.weights == {FAST: 20, GOOD: 80}
    assert _weights_on_server(cluster, ns, "split") == [20, 80]
    read = asyncio.run(router.read_weights(ns, "split", OWNED))
    assert read.shares == {FAST: 20.0, GOOD: 80.0}
    assert read.owner == f"{ns}/support"

    # The same split again writes nothing: the resourceVersion stays.
    rv = _get(cluster, ns, "split")["metadata"]["resourceVersion"]
    again = asyncio.run(router.set_weights(ns, "split", owner, OWNED, {FAST: 20, GOOD: 80}))
    assert not again.written
    assert _get(cluster, ns, "split")["metadata"]["resourceVersion"] == rv


def test_second_owner_refused_and_route_unchanged(
    cluster: LocalCluster, ns: str, router: KubeTrafficRouter
) -> None:
    cluster.apply(_route("owned", ns))
    asyncio.run(
        router.set_weights(ns, "owned", RouteOwner(ns, "finance"), OWNED, {FAST: 10, GOOD: 90})
    )
    rv = _get(cluster, ns, "owned")["metadata"]["resourceVersion"]
    with pytest.raises(RouteError) as refused:
        asyncio.run(
            router.set_weights(ns, "owned", RouteOwner(ns, "support"), OWNED, {FAST: 90, GOOD: 10})
        )
    assert refused.value.reason is Reason.RouteRefused
    assert f"already split by policy {ns}/finance" in refused.value.message
    after = _get(cluster, ns, "owned")
    assert after["metadata"]["resourceVersion"] == rv
    assert _weights_on_server(cluster, ns, "owned") == [10, 90]

    # Once the owner is gone (not among the live policies), the route is handed over.
    took = asyncio.run(
        router.set_weights(
            ns,
            "owned",
            RouteOwner(ns, "support"),
            OWNED,
            {FAST: 90, GOOD: 10},
            live_owners={f"{ns}/support"},
        )
    )
    assert took.took_over_from == f"{ns}/finance"
    assert _get(cluster, ns, "owned")["metadata"]["annotations"][OWNER_ANNOTATION] == (
        f"{ns}/support"
    )
    assert asyncio.run(router.release(ns, "owned", RouteOwner(ns, "support")))
    released = _get(cluster, ns, "owned")
    assert OWNER_ANNOTATION not in (released["metadata"].get("annotations") or {})
    assert _weights_on_server(cluster, ns, "owned") == [90, 10]


def test_foreign_backendref_in_the_rule_refused_and_route_unchanged(
    cluster: LocalCluster, ns: str, router: KubeTrafficRouter
) -> None:
    canary = {"name": "canary", "port": 8000, "weight": 5}
    cluster.apply(_route("shared", ns, extra_refs=[canary]))
    before = _get(cluster, ns, "shared")
    with pytest.raises(RouteError) as refused:
        asyncio.run(
            router.set_weights(ns, "shared", RouteOwner(ns, "support"), OWNED, {FAST: 50, GOOD: 50})
        )
    assert refused.value.reason is Reason.RouteRefused
    assert "Service/canary (weight 5)" in refused.value.message
    after = _get(cluster, ns, "shared")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after == before
    # Reading still works, and counts the canary in the shares.
    read = asyncio.run(router.read_weights(ns, "shared", OWNED))
    assert read.rule_total == 7
    assert read.shares[FAST] == pytest.approx(100 / 7)


def test_concurrent_edit_is_detected(
    cluster: LocalCluster, ns: str, router: KubeTrafficRouter
) -> None:
    cluster.apply(_route("moving", ns))
    seen = asyncio.run(router.get(ns, "moving"))
    planned = plan_weights(seen, RouteOwner(ns, "support"), OWNED, {FAST: 70, GOOD: 30})
    assert isinstance(planned, RoutePatch)
    # Someone else edits the route after our read: its resourceVersion moves.
    edit = [{"op": "replace", "path": "/spec/rules/0/backendRefs/1/weight", "value": 4}]
    cluster.kubectl("patch", "httproute", "moving", "-n", ns, "--type=json", "-p", json.dumps(edit))
    moved = _get(cluster, ns, "moving")
    assert moved["metadata"]["resourceVersion"] != seen["metadata"]["resourceVersion"]
    with pytest.raises(RouteConflict) as conflict:
        asyncio.run(router.apply(ns, "moving", planned))
    assert conflict.value.status in (409, 422)
    assert f"resourceVersion {seen['metadata']['resourceVersion']} is stale" in (
        conflict.value.message
    )
    # Nothing of ours landed: the other writer's weight stands.
    assert _get(cluster, ns, "moving") == moved
    assert _weights_on_server(cluster, ns, "moving") == [1, 4]


def test_invalid_weight_is_refused_by_the_crd_schema_in_its_words(
    cluster: LocalCluster, ns: str, router: KubeTrafficRouter
) -> None:
    cluster.apply(_route("bounds", ns))
    rv = _get(cluster, ns, "bounds")["metadata"]["resourceVersion"]
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
        {"op": "replace", "path": "/spec/rules/0/backendRefs/0/weight", "value": 1_000_001},
    ]
    with pytest.raises(RouteError) as refused:
        asyncio.run(router.patch(ns, "bounds", ops))
    assert not isinstance(refused.value, RouteConflict)
    assert refused.value.status == 422
    msg = refused.value.message
    # The CRD's own bound (maximum: 1000000), as the API server words it.
    assert "spec.rules[0].backendRefs[0].weight" in msg, msg
    assert "less than or equal to 1000000" in msg, msg
    assert msg.startswith("the API server refused the patch of HTTPRoute"), msg
    assert _get(cluster, ns, "bounds")["metadata"]["resourceVersion"] == rv


def test_missing_route_is_not_found_for_read_and_write(
    cluster: LocalCluster, ns: str, router: KubeTrafficRouter
) -> None:
    with pytest.raises(RouteError) as missing:
        asyncio.run(router.read_weights(ns, "no-such-route", OWNED))
    assert missing.value.reason is Reason.RouteNotFound
    assert missing.value.status == 404
    assert f"HTTPRoute {ns}/no-such-route not found" in missing.value.message
    with pytest.raises(RouteError) as write:
        asyncio.run(
            router.set_weights(
                ns, "no-such-route", RouteOwner(ns, "support"), OWNED, {FAST: 50, GOOD: 50}
            )
        )
    assert write.value.reason is Reason.RouteNotFound


def _service_account_client(
    cluster: LocalCluster, ns: str, name: str, verbs: list[str], tmp: Path
) -> Any:
    """A router authenticated as a ServiceAccount whose only permission is ``verbs`` on
    httproutes: the rule the chart must grant, tested as the operator would hold it."""
    from kubernetes import client, config

    cluster.kubectl("create", "serviceaccount", name, "-n", ns)
    cluster.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": name, "namespace": ns},
            "rules": [
                {
                    "apiGroups": ["gateway.networking.k8s.io"],
                    "resources": ["httproutes"],
                    "verbs": verbs,
                }
            ],
        }
    )
    cluster.kubectl(
        "create", "rolebinding", name, "-n", ns, f"--role={name}", f"--serviceaccount={ns}:{name}"
    )
    kubeconfig = cluster.service_account_kubeconfig(ns, name, tmp / f"{name}.kubeconfig")
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    return client.ApiClient(cfg)


def test_get_and_patch_on_httproutes_is_all_the_router_needs(
    cluster: LocalCluster, ns: str, tmp_path: Path
) -> None:
    cluster.apply(_route("rbac", ns))
    owner = RouteOwner(ns, "support")
    writer = _service_account_client(cluster, ns, "split-writer", ["get", "patch"], tmp_path)
    reader = _service_account_client(cluster, ns, "split-reader", ["get"], tmp_path)
    try:
        router = KubeTrafficRouter(writer)
        done = asyncio.run(router.set_weights(ns, "rbac", owner, OWNED, {FAST: 35, GOOD: 65}))
        assert done.written and done.after.weights == {FAST: 35, GOOD: 65}
        assert asyncio.run(router.read_weights(ns, "rbac", OWNED)).weights == {FAST: 35, GOOD: 65}
        assert asyncio.run(router.release(ns, "rbac", owner))

        rv = _get(cluster, ns, "rbac")["metadata"]["resourceVersion"]
        with pytest.raises(RouteError) as refused:
            asyncio.run(
                KubeTrafficRouter(reader).set_weights(
                    ns, "rbac", owner, OWNED, {FAST: 50, GOOD: 50}
                )
            )
        assert refused.value.status == 403
        assert refused.value.reason is Reason.RouteRefused
        msg = refused.value.message
        assert "grant the operator patch on httproutes.gateway.networking.k8s.io" in msg
        assert "cannot patch resource" in msg  # the API server's words
        assert _get(cluster, ns, "rbac")["metadata"]["resourceVersion"] == rv
    finally:
        writer.close()
        reader.close()
