"""Model variants on the real API server (issue 13): the operator's own tick (kopf, the
in-process handlers) splits traffic through the weights of a real Gateway API v1.6.3
HTTPRoute and moves GPUs between a 70B and a 405B-INT4 variant under one budget.

Recommend publishes the split and writes nothing (the route's resourceVersion and the
replicas stay); Enforce writes the weights and the replicas, and a watcher of the pods
sees no moment above the budget while GPUs move from the 70B to the 405B. A route
the policy cannot safely edit (a backendRef it does not own in the same rule) or one that
does not exist holds the policy with a condition and an event, and nothing is written."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from goodput.reasons import Reason
from tests.harness.cluster import LocalCluster
from tests.harness.prometheus import PrometheusServer
from tests.integration.exporters import ExporterHub, PoolTruth, ServingExporter
from tests.integration.test_operator import (
    GpuWatch,
    _condition,
    _deployment,
    _events,
    _replicas,
    _status,
)

pytestmark = pytest.mark.integration

BUDGET = 16  # four 4-GPU replicas, both variants together
GPUS = 4
POOL_GROUP = "inference.networking.k8s.io"
VARIANTS = {
    # name: (profile, quality, source)
    "v70": ("llama-3.1-70b-h100-tp4", 0.664, "Meta Llama-3.1-70B-Instruct card, MMLU-Pro"),
    "v405": (
        "llama-3.1-405b-w4a16-h100-tp4",
        0.728,
        "Meta Llama-3.1-405B-Instruct card, MMLU-Pro 73.3 x 0.993 W4A16 recovery",
    ),
}
# A light load both variants can serve on time: only the value model tells them apart.
LOAD = PoolTruth(
    arrival_rps=0.8,  # per variant: 1.6 req/s need more than one 405B-INT4 replica
    mean_input_tokens=1000.0,
    mean_output_tokens=200.0,
    running=4.0,
    waiting=0.0,
    kv_usage=0.2,
    prefix_hit=0.0,
    # Latencies that meet the SLO (97 % of tokens within 60 ms): a pool missing its SLO
    # is never shrunk, which would keep the idle 70B's replicas.
    itl_knots=((0.0, 0.0), (0.02, 0.3), (0.04, 0.9), (0.06, 0.97), (0.1, 1.0)),
)


@pytest.fixture
def variant_exporters(prometheus: PrometheusServer) -> Iterator[str]:
    """Each variant's vLLM series (label scenario=<variant>) in the real Prometheus."""
    hub = ExporterHub().start()
    for name in VARIANTS:
        hub.add(ServingExporter("vllm", name, pools={"aggregated": LOAD}))
    job = f"variants-{int(time.time() * 1000) % 10**8}"
    prometheus.add_target(job, hub.target)
    try:
        yield job
    finally:
        hub.stop()


def _poll(check: Any, timeout: float, what: str, show: Any = None) -> dict[str, Any]:
    """The first non-None value of ``check()`` within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            got = check()
            if got is not None:
                out: dict[str, Any] = got
                return out
        except Exception as err:  # the status is not there yet
            last = err
        time.sleep(0.5)
    seen = show() if show is not None else None
    raise AssertionError(f"timed out after {timeout}s: {what} (last error: {last}); saw {seen}")


def _route(ns: str, extra: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    refs = [
        {"group": POOL_GROUP, "kind": "InferencePool", "name": n, "weight": 50} for n in VARIANTS
    ]
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "chat", "namespace": ns},
        "spec": {
            "parentRefs": [{"name": "inference-gateway"}],
            "rules": [{"backendRefs": refs + (extra or [])}],
        },
    }


def _policy(ns: str, prom_url: str, job: str, mode: str, cost: float) -> dict[str, Any]:
    return {
        "apiVersion": "goodput.dev/v1alpha1",
        "kind": "GoodputPolicy",
        "metadata": {"name": "chat", "namespace": ns},
        "spec": {
            "mode": mode,
            "gpuBudget": BUDGET,
            "value": {"rightAnswer": 1.0, "wrongAnswerCost": cost},
            "variants": [
                {
                    "name": name,
                    "quality": {"score": quality, "source": source},
                    "backendRef": {"group": POOL_GROUP, "kind": "InferencePool", "name": name},
                    "metrics": {"selectors": {"aggregated": f'scenario="{name}"'}},
                    "pools": [
                        {
                            "role": "aggregated",
                            "targetRef": {"kind": "Deployment", "name": name},
                            "minReplicas": 1,
                            "maxReplicas": 3,
                            "profile": profile,
                        }
                    ],
                }
                for name, (profile, quality, source) in VARIANTS.items()
            ],
            "trafficSplit": {"httpRouteRef": {"name": "chat"}},
            "slo": {"ttft": "2s", "itl": "60ms", "attainment": 0.9},
            "metrics": {
                "prometheusUrl": prom_url,
                "preset": "vllm",
                "window": "3s",
                "maxStaleness": "30s",
                "selectors": {"aggregated": f'job="{job}",pool="aggregated"'},
            },
            "behavior": {
                "interval": "2s",
                # No start-up to pay for: GPUs move as soon as the split wants them.
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


def _namespace(cluster: LocalCluster, prefix: str, route: dict[str, Any] | None) -> str:
    """70B at 3 replicas and 405B-INT4 at 1: the whole budget, held by the 70B."""
    ns = cluster.create_namespace(prefix)
    cluster.apply(_deployment("v70", ns, 3, GPUS))
    cluster.apply(_deployment("v405", ns, 1, GPUS))
    if route is not None:
        route["metadata"]["namespace"] = ns
        cluster.apply(route)
    return ns


def _route_now(cluster: LocalCluster, ns: str) -> dict[str, Any]:
    out = cluster.kubectl("get", "httproute", "chat", "-n", ns, "-o", "json").stdout
    doc: dict[str, Any] = json.loads(out)
    return doc


def _weights(route: dict[str, Any]) -> dict[str, int]:
    return {r["name"]: int(r.get("weight", 1)) for r in route["spec"]["rules"][0]["backendRefs"]}


def _shares(status: dict[str, Any]) -> dict[str, int]:
    return {v["name"]: v["share"] for v in (status.get("lastDecision") or {}).get("variants", [])}


def test_recommend_publishes_the_split_and_enforce_moves_traffic_and_gpus_within_budget(
    cluster: LocalCluster,
    prometheus: PrometheusServer,
    gateway_api_crds: list[str],
    variant_exporters: str,
    operator: None,
) -> None:
    ns = _namespace(cluster, "variants", _route("-"))
    before = _route_now(cluster, ns)
    # c = 2.5: a 70B answer loses value (0.664 - 0.336 x 2.5 < 0), a 405B one does not.
    cluster.apply(_policy(ns, prometheus.url, variant_exporters, "Recommend", 2.5))

    def recommended() -> dict[str, Any] | None:
        st = _status(cluster, ns)
        return st if _shares(st) and st["lastDecision"]["reason"] == "RecommendOnly" else None

    st = _poll(recommended, 90, "no recommended split", lambda: _status(cluster, ns))
    shares = _shares(st)
    assert sum(shares.values()) == 100
    assert shares["v405"] > shares["v70"], st["lastDecision"]["message"]
    decision = st["lastDecision"]
    assert decision["predictedValuePerSecond"] > 0, json.dumps(decision)
    assert {v["name"] for v in decision["variants"]} == set(VARIANTS)
    assert decision["flip"]["message"]
    # Recommend: the split is published, the route and the replicas are the ones before.
    assert st["split"] == "v70=50,v405=50"  # the route's, unchanged
    time.sleep(5)
    after = _route_now(cluster, ns)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert _replicas(cluster, ns, "v70") == 3 and _replicas(cluster, ns, "v405") == 1
    assert {p["role"] for p in st["pools"]} == {"v70/aggregated", "v405/aggregated"}

    with GpuWatch(cluster, ns) as watch:
        cluster.kubectl(
            "patch", "gp", "chat", "-n", ns, "--type=merge", "-p", '{"spec":{"mode":"Enforce"}}'
        )

        def moved() -> dict[str, Any] | None:
            st = _status(cluster, ns)
            w = _weights(_route_now(cluster, ns))
            desired = (st.get("lastDecision") or {}).get("pools", {})
            done = (
                st["lastDecision"]["reason"] != "RecommendOnly"
                and w["v405"] > w["v70"]
                and w == _shares(st)
                and _replicas(cluster, ns, "v70") < 3
                and _replicas(cluster, ns, "v405") > 1
                and all(_replicas(cluster, ns, k.split("/")[0]) == n for k, n in desired.items())
            )
            return st if done else None

        st = _poll(
            moved, 120, "traffic and GPUs did not move to 405B", lambda: _status(cluster, ns)
        )
        time.sleep(3)  # pods of the last write start or go
    assert watch.samples > 20
    assert watch.peak <= BUDGET, f"{watch.peak} GPUs held at some moment, budget {BUDGET}"
    route = _route_now(cluster, ns)
    assert sum(_weights(route).values()) == 100
    assert route["metadata"]["annotations"]["goodput.dev/traffic-split-owner"] == f"{ns}/chat"
    assert st["split"] == ",".join(f"{n}={w}" for n, w in _weights(route).items())
    reasons = [e["reason"] for e in _events(cluster, ns)]
    assert Reason.TrafficShifted.value in reasons
    # GPUs moved: the 70B shrank and the 405B grew, with the budget full before.
    assert Reason.ScaledDown.value in reasons and Reason.ScaledUp.value in reasons
    assert GPUS * (_replicas(cluster, ns, "v70") + _replicas(cluster, ns, "v405")) <= BUDGET


@pytest.mark.parametrize(
    ("case", "route", "reason"),
    [
        (
            "foreign",
            _route(
                "-", [{"group": POOL_GROUP, "kind": "InferencePool", "name": "canary", "weight": 5}]
            ),
            Reason.RouteRefused,
        ),
        ("missing", None, Reason.RouteNotFound),
    ],
)
def test_a_route_that_cannot_be_safely_edited_holds_with_a_condition_and_an_event(
    cluster: LocalCluster,
    prometheus: PrometheusServer,
    gateway_api_crds: list[str],
    variant_exporters: str,
    operator: None,
    case: str,
    route: dict[str, Any] | None,
    reason: Reason,
) -> None:
    ns = _namespace(cluster, f"route-{case}", route)
    before = _route_now(cluster, ns) if route is not None else None
    cluster.apply(_policy(ns, prometheus.url, variant_exporters, "Enforce", 2.5))

    def held() -> dict[str, Any] | None:
        st = _status(cluster, ns)
        able = _condition(st, "AbleToScale")
        return st if able.get("reason") == reason.value else None

    st = _poll(held, 60, f"no {reason.value} condition", lambda: _status(cluster, ns))
    able = _condition(st, "AbleToScale")
    assert able["status"] == "False"
    assert "chat" in able["message"]
    if case == "foreign":
        assert "canary" in able["message"]  # says which backendRef is in the way
    assert _condition(st, "Ready")["status"] == "False"
    events = [e for e in _events(cluster, ns) if e["reason"] == reason.value]
    assert events and events[0]["type"] == "Warning"
    time.sleep(5)  # a few more ticks: still nothing written
    assert _replicas(cluster, ns, "v70") == 3 and _replicas(cluster, ns, "v405") == 1
    if before is not None:
        after = _route_now(cluster, ns)
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
