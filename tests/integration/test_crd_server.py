"""The generated CRD against a real kube-apiserver: it installs as a structural schema,
every example policy applies and round-trips losslessly, every invalid manifest is
refused with a message naming the field, and `kubectl get`/`explain` show what the
API promises."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from goodput.api.crd import CRD_NAME
from goodput.api.spec import GoodputPolicy
from goodput.api.status import (
    ConditionStatus,
    ConditionType,
    Decision,
    GoodputPolicyStatus,
    GoodputStatus,
    LastScaleTime,
    PoolStatus,
    Recommendation,
    TierStatus,
    replica_summary,
    set_condition,
)
from goodput.reasons import Limit, Reason
from tests.harness.cluster import LocalCluster
from tests.harness.process import wait_until
from tests.harness.tools import REPO

pytestmark = pytest.mark.integration

CRD_FILE = REPO / "crds" / "goodput.dev_goodputpolicies.yaml"
POLICIES = sorted((REPO / "policies").glob("*.yaml"))
INVALID = sorted((Path(__file__).parent / "invalid").glob("*.yaml"))


def _header(path: Path, key: str) -> str:
    match = re.search(rf"^# {key}: (.+)$", path.read_text(), re.M)
    assert match, f"{path.name} has no '# {key}:' header"
    return match.group(1).strip()


@pytest.fixture(scope="module")
def crd_installed(cluster: LocalCluster) -> LocalCluster:
    applied = cluster.kubectl("apply", "-f", str(CRD_FILE), check=False)
    assert applied.returncode == 0, applied.stderr
    cluster.kubectl("wait", "--for", "condition=established", "--timeout=60s", f"crd/{CRD_NAME}")
    return cluster


@pytest.fixture(scope="module")
def ns(crd_installed: LocalCluster) -> str:
    return crd_installed.create_namespace("crd")


def _get(cluster: LocalCluster, ns: str, name: str) -> dict[str, Any]:
    out = cluster.kubectl("get", "goodputpolicy", name, "-n", ns, "-o", "json").stdout
    doc: dict[str, Any] = json.loads(out)
    return doc


def test_crd_is_structural_and_accepted(crd_installed: LocalCluster) -> None:
    crd = json.loads(crd_installed.kubectl("get", "crd", CRD_NAME, "-o", "json").stdout)
    conditions = {c["type"]: c for c in crd["status"]["conditions"]}
    assert conditions["Established"]["status"] == "True"
    assert conditions["NamesAccepted"]["status"] == "True"
    # A non-structural schema (or one the server had to fix up) shows up here.
    assert "NonStructuralSchema" not in conditions, conditions
    assert crd["status"]["acceptedNames"]["shortNames"] == ["gp"]
    assert crd["status"]["acceptedNames"]["categories"] == ["goodput", "autoscaling"]


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.stem)
def test_example_applies_cleanly_and_defaults_match_the_models(
    crd_installed: LocalCluster, ns: str, path: Path
) -> None:
    """The file as written: the server's defaults must equal the models' defaults."""
    result = crd_installed.kubectl("apply", "-n", ns, "-f", str(path))
    assert "created" in result.stdout or "configured" in result.stdout, result.stdout
    assert result.stderr == "", result.stderr  # no warnings either
    raw = yaml.safe_load(path.read_text())
    stored = _get(crd_installed, ns, raw["metadata"]["name"])
    assert GoodputPolicy.from_manifest(stored).spec == GoodputPolicy.from_manifest(raw).spec


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.stem)
def test_round_trip_model_yaml_server_model_is_lossless(
    crd_installed: LocalCluster, ns: str, path: Path
) -> None:
    model = GoodputPolicy.from_manifest(yaml.safe_load(path.read_text()))
    name = f"rt-{model.metadata.name}"
    sent = model.model_copy(update={"metadata": model.metadata.model_copy(update={"name": name})})
    manifest = sent.to_manifest()
    manifest["metadata"] = {"name": name}
    crd_installed.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(manifest))
    stored = _get(crd_installed, ns, name)
    back = GoodputPolicy.from_manifest(stored)
    assert back.spec == model.spec
    # Nothing was added, dropped or rewritten by the server: byte-equal specs.
    assert stored["spec"] == manifest["spec"]


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_manifest_is_refused_naming_the_field(
    crd_installed: LocalCluster, ns: str, path: Path
) -> None:
    field = _header(path, "field")
    result = crd_installed.kubectl("apply", "-n", ns, "-f", str(path), check=False)
    assert result.returncode != 0, f"{path.name} was accepted:\n{result.stdout}"
    assert field in result.stderr, f"{field!r} not named in:\n{result.stderr}"
    name = yaml.safe_load(path.read_text())["metadata"]["name"]
    gone = crd_installed.kubectl("get", "gp", name, "-n", ns, check=False)
    assert gone.returncode != 0


def _status(now: datetime) -> GoodputPolicyStatus:
    conditions = set_condition(
        [], ConditionType.Ready, ConditionStatus.true, Reason.Succeeded, "applied", now, 1
    )
    conditions = set_condition(
        conditions,
        ConditionType.ScalingLimited,
        ConditionStatus.true,
        Reason.BudgetExhausted,
        "decode wants 8 replicas, budget allows 7",
        now,
        1,
    )
    return GoodputPolicyStatus(
        observed_generation=1,
        conditions=conditions,
        gpu_budget=32,
        gpus_allocated=20,
        gpus_desired=28,
        replicas=replica_summary({"prefill": 2, "decode": 3}, {"prefill": 2, "decode": 5}),
        pools=[
            PoolStatus(
                role="prefill",
                target="Deployment/llama-70b-prefill",
                current_replicas=2,
                ready_replicas=2,
                desired_replicas=2,
                gpus_per_replica=4,
                predicted_ttft_seconds=0.31,
            ),
            PoolStatus(
                role="decode",
                target="Deployment/llama-70b-decode",
                current_replicas=3,
                ready_replicas=3,
                desired_replicas=5,
                gpus_per_replica=4,
                predicted_itl_seconds=0.042,
            ),
        ],
        tiers=[TierStatus(name="cpu", current_replicas=1, desired_replicas=2)],
        goodput=GoodputStatus(
            observed_tokens_per_second=1834.5,
            predicted_tokens_per_second=2410.0,
            observed_attainment=0.87,
            observed_attainment_lower=0.81,
            observed_attainment_upper=0.9,
            predicted_attainment=0.95,
            quality=1.0,
            observed_time=now,
        ),
        last_decision=Decision(
            time=now,
            reason=Reason.ScaledUp,
            message="decode ITL p90 above 50ms; +2 decode",
            applied=True,
            pools={"prefill": 2, "decode": 5},
            tiers={"cpu": 2},
            total_gpus=28,
            binding_constraint=Limit.None_,
        ),
        last_scale_time=LastScaleTime(up=now),
        recommendations=[Recommendation(time=now, pools={"prefill": 2, "decode": 5})],
    )


def test_status_round_trips_and_printer_columns_show_it(
    crd_installed: LocalCluster, ns: str
) -> None:
    path = REPO / "policies" / "chatbot-latency-critical.yaml"
    crd_installed.kubectl("apply", "-n", ns, "-f", str(path))
    name = yaml.safe_load(path.read_text())["metadata"]["name"]
    status = _status(datetime(2026, 11, 27, 6, 0, 0, tzinfo=UTC))
    body = {"status": status.model_dump(mode="json", by_alias=True, exclude_none=True)}
    crd_installed.kubectl(
        "patch",
        "goodputpolicy",
        name,
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(body),
    )
    stored = _get(crd_installed, ns, name)
    # Every status field is declared: nothing the operator writes is pruned.
    assert stored["status"] == body["status"]
    assert GoodputPolicy.from_manifest(stored).status == status

    table = crd_installed.kubectl("get", "gp", "-n", ns, name).stdout.splitlines()
    header = table[0].split()
    assert header == [
        "NAME",
        "MODE",
        "BUDGET",
        "GPUS",
        "PREFILL",
        "DECODE",
        "GOODPUT",
        "ATTAINMENT",
        "READY",
        "REASON",
        "AGE",
    ]
    row = table[1].split()
    assert row[:10] == [
        name, "Enforce", "32", "20", "2/2", "3/5", "1834.5", "0.87", "True", "ScaledUp"
    ]  # fmt: skip
    wide = crd_installed.kubectl("get", "gp", "-n", ns, name, "-o", "wide").stdout
    assert "AGGREGATED" in wide.splitlines()[0] and "ScaledUp" in wide
    # Category and short name reach the same object.
    assert name in crd_installed.kubectl("get", "goodput", "-n", ns).stdout


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("goodputpolicy.spec.slo.ttft", "Time-to-first-token threshold"),
        ("gp.spec.pools.targetRef", "scale subresource"),
        ("gp.spec.pools.gpusPerReplica", "nvidia.com/gpu"),
        ("gp.spec.kvCache.tiers.bandwidthGibPerS", "GiB/s"),
        ("gp.spec.behavior.scaleDown.stabilizationWindowSeconds", "HPA semantics"),
        ("gp.spec.metrics.overrides", "<role>.<signal>"),
        ("gp.status.conditions.reason", "CamelCase reason code"),
        ("gp.status.lastDecision", "last decision"),
    ],
)
def test_kubectl_explain_shows_descriptions(
    crd_installed: LocalCluster, path: str, expected: str
) -> None:
    # The server publishes a new CRD's OpenAPI asynchronously: allow it a moment.
    seen: list[str] = []

    def shows() -> bool:
        out = crd_installed.kubectl("explain", path, check=False).stdout
        seen[:] = [out]
        return expected in " ".join(out.split())

    try:
        wait_until(shows, 30, f"kubectl explain {path}")
    except TimeoutError:
        pytest.fail(f"{expected!r} not in:\n{seen[0] if seen else ''}")
