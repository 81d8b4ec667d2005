"""The API server and the pydantic models agree on generated documents, not only on
the hand-written invalid manifests: hypothesis builds specs around every rule's
boundary (a valid spec with up to two mutations; about 40% of them stay valid), the
server judges each one with a server-side dry run (strict field validation, as kubectl
does), and the models must reach the same verdict."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from goodput.api.crd import CRD_NAME
from goodput.api.spec import GROUP, PLURAL, VERSION, GoodputPolicy
from tests.harness.cluster import LocalCluster
from tests.harness.tools import REPO

pytestmark = pytest.mark.integration

CRD_FILE = REPO / "crds" / "goodput.dev_goodputpolicies.yaml"


@pytest.fixture(scope="module")
def api(cluster: LocalCluster) -> tuple[Any, str]:
    from kubernetes import client

    cluster.kubectl("apply", "-f", str(CRD_FILE))
    cluster.kubectl("wait", "--for", "condition=established", "--timeout=60s", f"crd/{CRD_NAME}")
    return client.CustomObjectsApi(cluster.api_client()), cluster.create_namespace("agree")


_duration = st.sampled_from(["0s", "500ms", "1m30s", "2m", "5 s", "1.5h", "0ms", "7d"])
_roles = st.sampled_from(
    [["prefill", "decode"], ["aggregated"], ["decode", "prefill"], ["prefill"],
     ["decode", "decode"], ["aggregated", "decode"], []]
)  # fmt: skip


def _base() -> dict[str, Any]:
    """A valid spec; each mutation below moves one part of it near a rule's boundary."""
    return {
        "gpuBudget": 8,
        "pools": [
            {"role": "prefill", "targetRef": {"name": "p"}, "gpusPerReplica": 1,
             "minReplicas": 1, "maxReplicas": 4},
            {"role": "decode", "targetRef": {"name": "d"}, "gpusPerReplica": 1,
             "minReplicas": 1, "maxReplicas": 4},
        ],
        "slo": {"ttft": "500ms", "itl": "50ms"},
    }  # fmt: skip


@st.composite
def _mutation(draw: st.DrawFn, spec: dict[str, Any]) -> None:
    kind = draw(st.integers(0, 13))
    pool = spec["pools"][draw(st.integers(0, len(spec["pools"]) - 1))] if spec["pools"] else {}
    if kind == 0:
        spec["gpuBudget"] = draw(st.one_of(st.integers(-1, 12), st.sampled_from(["8", True])))
    elif kind == 1 and pool:
        pool["minReplicas"] = draw(st.integers(-1, 6))
    elif kind == 2 and pool:
        pool["maxReplicas"] = draw(st.one_of(st.integers(-1, 6), st.just(2.5)))
    elif kind == 3 and pool:
        gpus = draw(st.one_of(st.none(), st.integers(0, 10)))
        if gpus is None:
            pool.pop("gpusPerReplica", None)
        else:
            pool["gpusPerReplica"] = gpus
    elif kind == 4:
        spec["pools"] = [
            {"role": r, "targetRef": {"name": f"w{i}"}, "gpusPerReplica": 2, "maxReplicas": 2}
            for i, r in enumerate(draw(_roles))
        ]
    elif kind == 5:
        spec["slo"][draw(st.sampled_from(["ttft", "itl"]))] = draw(_duration)
    elif kind == 6:
        spec["slo"]["attainment"] = draw(st.sampled_from([0, 0.01, 0.5, 1, 1.0001, "0.9"]))
    elif kind == 7:
        spec["kvCache"] = {
            "tiers": [
                {"name": draw(st.sampled_from(["cpu", "disk", "Disk", "-x"])),
                 "targetRef": {"name": "kv"},
                 "capacityPerReplicaGib": draw(st.sampled_from([0, 0.5, 64])),
                 "bandwidthGibPerS": draw(st.sampled_from([0, 10.0])),
                 "minReplicas": draw(st.integers(0, 3)),
                 "maxReplicas": draw(st.integers(0, 3)),
                 "gpusPerReplica": draw(st.integers(0, 4))}
                for _ in range(draw(st.integers(0, 2)))
            ]
        }  # fmt: skip
    elif kind == 8:
        quality: dict[str, Any] = {"floor": draw(st.sampled_from([0, 0.5, 1, 1.5]))}
        if draw(st.booleans()):
            quality["query"] = draw(st.sampled_from(["avg(judge_score)", ""]))
        spec["quality"] = quality
    elif kind == 9:
        keys = draw(st.sets(st.sampled_from(["prefill", "decode", "aggregated"]), max_size=2))
        spec.setdefault("metrics", {})["selectors"] = {k: 'ns="a"' for k in keys}
    elif kind == 10:
        keys = draw(st.sets(st.sampled_from(
            ["ttft", "decode.itl", "good_tokens_per_s", "prefill.good_tokens_per_s",
             "ttft_p99", "aggregated.kv_cache_usage"]), max_size=2))  # fmt: skip
        spec.setdefault("metrics", {})["overrides"] = {k: "up" for k in keys}
    elif kind == 11:
        spec["behavior"] = {
            draw(st.sampled_from(["interval", "startupDelay", "forecastHorizon"])): draw(_duration),
            "scaleDown": {"policies": [{"type": draw(st.sampled_from(["Percent", "Pods"])),
                                        "value": draw(st.integers(0, 2)),
                                        "periodSeconds": draw(st.sampled_from([0, 60, 1801]))}]},
        }  # fmt: skip
    elif kind == 12:
        spec["mode"] = draw(st.sampled_from(["Enforce", "Recommend", "enforce"]))
    elif kind == 13:
        (pool or spec)["unknownField"] = 1


@st.composite
def _spec(draw: st.DrawFn) -> dict[str, Any]:
    spec = _base()
    for _ in range(draw(st.integers(0, 2))):
        draw(_mutation(spec))
    return spec


def _server_verdict(api: Any, ns: str, body: dict[str, Any]) -> tuple[bool, str]:
    from kubernetes.client.exceptions import ApiException

    try:
        api.create_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, body, dry_run="All", field_validation="Strict"
        )
    except ApiException as exc:
        if exc.status not in (400, 422):
            raise
        return False, str(json.loads(exc.body or "{}").get("message"))
    return True, ""


def _model_verdict(body: dict[str, Any]) -> tuple[bool, str]:
    try:
        GoodputPolicy.from_manifest(body)
    except ValidationError as exc:
        return False, str(exc)
    return True, ""


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,  # the same documents on every run, so a failure reproduces
    suppress_health_check=[HealthCheck.too_slow],
)
@given(spec=_spec())
def test_server_and_models_agree(api: tuple[Any, str], spec: dict[str, Any]) -> None:
    custom, ns = api
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "GoodputPolicy",
        "metadata": {"name": "agree"},
        "spec": spec,
    }
    server_ok, server_msg = _server_verdict(custom, ns, body)
    model_ok, model_msg = _model_verdict(body)
    event("accepted" if server_ok else "refused")
    assert server_ok == model_ok, (
        f"server {'accepted' if server_ok else 'refused'}, models "
        f"{'accepted' if model_ok else 'refused'}\nspec: {json.dumps(spec)}\n"
        f"server: {server_msg}\nmodels: {model_msg}"
    )
