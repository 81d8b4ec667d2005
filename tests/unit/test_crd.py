"""The generated CRD: committed copy in sync, structural, self-documenting, and with
schema defaults that equal the models' defaults (so a stored object reads back as
the model that was applied)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from goodput.api import crd as crd_mod
from goodput.api.spec import GoodputPolicy, GoodputPolicySpec
from goodput.cli import main as cli_main

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "crds" / "goodput.dev_goodputpolicies.yaml"
POLICIES = sorted((REPO / "policies").glob("*.yaml"))

CRD = crd_mod.crd()
VERSION = CRD["spec"]["versions"][0]
ROOT = VERSION["schema"]["openAPIV3Schema"]
SPEC = ROOT["properties"]["spec"]
STATUS = ROOT["properties"]["status"]


def _walk(node: Any, path: str = "") -> Any:
    """(path, schema node) for every schema node."""
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{name}")
    if "items" in node:
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


def apply_schema_defaults(schema: dict[str, Any], value: Any) -> Any:
    """What the API server's structural defaulting does: absent properties with a default
    get it, then defaulting recurses into every present object, array item and map value."""
    if isinstance(value, dict) and "properties" in schema:
        out = dict(value)
        for name, sub in schema["properties"].items():
            if name not in out and "default" in sub:
                out[name] = copy.deepcopy(sub["default"])
            if name in out:
                out[name] = apply_schema_defaults(sub, out[name])
        return out
    if isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        return {
            k: apply_schema_defaults(schema["additionalProperties"], v) for k, v in value.items()
        }
    if isinstance(value, list) and "items" in schema:
        return [apply_schema_defaults(schema["items"], v) for v in value]
    return value


def test_committed_crd_equals_the_generated_one() -> None:
    assert COMMITTED.read_text() == crd_mod.render(), (
        "crds/ is stale: run `goodput crd -o crds/goodput.dev_goodputpolicies.yaml`"
    )


def test_check_flag_reports_drift(tmp_path: Path) -> None:
    good = tmp_path / "crd.yaml"
    good.write_text(crd_mod.render())
    assert crd_mod.main(["--check", str(good)]) == 0
    stale = tmp_path / "stale.yaml"
    stale.write_text(crd_mod.render().replace("gpuBudget", "gpuBuget", 1))
    assert crd_mod.main(["--check", str(stale)]) == 1


def test_goodput_crd_prints_the_crd(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["crd"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == CRD


def test_names_scope_and_subresources() -> None:
    spec = CRD["spec"]
    assert CRD["metadata"]["name"] == "goodputpolicies.goodput.dev"
    assert spec["group"] == "goodput.dev" and spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "GoodputPolicy"
    assert spec["names"]["shortNames"] == ["gp"]
    assert "goodput" in spec["names"]["categories"]
    assert VERSION["name"] == "v1alpha1" and VERSION["served"] and VERSION["storage"]
    assert VERSION["subresources"] == {"status": {}}


def test_schema_is_structural() -> None:
    """What pydantic emits and Kubernetes refuses (or silently mis-handles) is gone."""
    forbidden = {
        "$ref",
        "$defs",
        "anyOf",
        "oneOf",
        "allOf",
        "not",
        "title",
        "const",
        "uniqueItems",
        "nullable",
        "examples",
    }
    for path, node in _walk(ROOT):
        assert not forbidden & node.keys(), (path, forbidden & node.keys())
        assert "type" in node, path
        if "properties" in node:
            assert node["type"] == "object", path
        assert node.get("additionalProperties", True) is not False, path
        for key in ("exclusiveMinimum", "exclusiveMaximum"):
            assert isinstance(node.get(key, True), bool), path
        if node.get("default", 0) is None:
            pytest.fail(f"{path}: null default")


def test_spec_strings_and_lists_are_bounded_for_cel_cost() -> None:
    for path, node in _walk(SPEC):
        if node["type"] == "string":
            assert "maxLength" in node or "enum" in node, path
        if node["type"] == "array":
            assert "maxItems" in node, path
        if node["type"] == "object" and "additionalProperties" in node:
            assert "maxProperties" in node, path


def test_every_field_has_a_description_for_kubectl_explain() -> None:
    for root, name in ((SPEC, "spec"), (STATUS, "status")):
        for path, node in _walk(root, name):
            if path.endswith("[]") or path.endswith("{}"):
                continue  # items are described by their list
            assert len(node.get("description", "")) >= 10, path


def test_defaults_are_documented_in_descriptions() -> None:
    assert SPEC["properties"]["mode"]["description"].endswith("Default: Recommend.")
    slo = SPEC["properties"]["slo"]["properties"]
    assert slo["attainment"]["description"].endswith("Default: 0.9.")


def test_status_has_no_defaults_and_spec_has_no_status_fields() -> None:
    assert not [p for p, n in _walk(STATUS) if "default" in n]
    assert "observedGeneration" in STATUS["properties"]


def test_cel_rules_cover_each_cross_field_constraint() -> None:
    rules = {
        (path, v["rule"])
        for path, node in _walk(SPEC, "spec")
        for v in node.get("x-kubernetes-validations", [])
    }
    paths = {p for p, _ in rules}
    assert "spec.pools[]" in paths and "spec.kvCache.tiers[]" in paths  # min <= max
    joined = " ".join(r for _, r in rules)
    for needle in (
        "minReplicas <= self.maxReplicas",
        ".sum()",
        "'aggregated'",
        "exists_one",
        "duration(self) > duration('0s')",
        "self.attainment > 0.0",
        "has(self.query)",
    ):
        assert needle in joined, needle
    for path in ("spec.pools", "spec.kvCache.tiers"):
        node = dict(_walk(SPEC, "spec"))[path]
        assert node["x-kubernetes-list-type"] == "map"


def _resolve(schema: dict[str, Any], json_path: str) -> dict[str, Any] | None:
    node: dict[str, Any] | None = schema
    for part in json_path.strip(".").split("."):
        if node is None:
            return None
        name = part.split("[", 1)[0]
        node = node.get("properties", {}).get(name)
        if node is not None and "[" in part:
            node = node.get("items")
    return node


def test_printer_columns() -> None:
    cols = VERSION["additionalPrinterColumns"]
    default_cols = [c["name"] for c in cols if c.get("priority", 0) == 0]
    assert default_cols == [
        "Mode",
        "Budget",
        "GPUs",
        "Prefill",
        "Decode",
        "Goodput",
        "Attainment",
        "Ready",
        "Reason",
        "Age",
    ]
    for col in cols:
        if col["name"] == "Age":
            continue
        path = col["jsonPath"]
        if "[?(" in path:  # .a.list[?(@.type=="X")].field -> .a.list[].field
            head, _, tail = path.partition("[?(")
            path = head + "[]" + tail.split(")]", 1)[1]
        target = _resolve(ROOT, path)
        assert target is not None, col
        want = {"integer": "integer", "number": "number", "string": "string"}[col["type"]]
        assert target["type"] == want, col


def _server_view(manifest: dict[str, Any]) -> GoodputPolicySpec:
    defaulted = apply_schema_defaults(ROOT, manifest)
    return GoodputPolicy.from_manifest(defaulted).spec


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.stem)
def test_schema_defaults_equal_model_defaults_for_examples(path: Path) -> None:
    raw = yaml.safe_load(path.read_text())
    assert _server_view(raw) == GoodputPolicy.from_manifest(raw).spec


def test_schema_defaults_fill_a_minimal_policy_like_the_models() -> None:
    raw = {
        "apiVersion": "goodput.dev/v1alpha1",
        "kind": "GoodputPolicy",
        "metadata": {"name": "m"},
        "spec": {
            "gpuBudget": 1,
            "pools": [{"role": "aggregated", "targetRef": {"name": "v"}, "maxReplicas": 1}],
            "slo": {"ttft": "1s", "itl": "100ms"},
            "kvCache": {
                "tiers": [
                    {
                        "name": "cpu",
                        "targetRef": {"name": "c"},
                        "capacityPerReplicaGib": 1,
                        "bandwidthGibPerS": 1,
                        "maxReplicas": 1,
                    }
                ]
            },
            "metrics": {
                "auth": {"bearerTokenSecretRef": {"name": "s"}, "caSecretRef": {"name": "ca"}}
            },
        },
    }
    defaulted = apply_schema_defaults(ROOT, raw)["spec"]
    model = GoodputPolicy.from_manifest(raw).spec
    # Every value the server writes is the model's value, field by field.
    dumped = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert _subset(defaulted, dumped)
    assert GoodputPolicy.from_manifest(apply_schema_defaults(ROOT, raw)).spec == model


def _subset(part: Any, whole: Any) -> bool:
    if isinstance(part, dict):
        return isinstance(whole, dict) and all(
            k in whole and _subset(v, whole[k]) for k, v in part.items()
        )
    if isinstance(part, list):
        return (
            isinstance(whole, list)
            and len(part) == len(whole)
            and all(_subset(a, b) for a, b in zip(part, whole, strict=True))
        )
    return bool(part == whole)


_policy = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["Replicas", "Percent"]),
        "value": st.integers(1, 50),
        "periodSeconds": st.integers(1, 1800),
    }
)
_rules = st.fixed_dictionaries(
    {},
    optional={
        "stabilizationWindowSeconds": st.integers(0, 3600),
        "selectPolicy": st.sampled_from(["Max", "Min", "Disabled"]),
        "policies": st.lists(_policy, max_size=3),
    },
)
_behavior = st.fixed_dictionaries(
    {},
    optional={
        "interval": st.sampled_from(["5s", "15s", "1m"]),
        "scaleUp": _rules,
        "scaleDown": _rules,
        "forecastHorizon": st.sampled_from(["0s", "2m"]),
        "startupDelay": st.sampled_from(["0s", "45s"]),
    },
)


@settings(max_examples=60, deadline=None)
@given(behavior=_behavior, mode=st.sampled_from([None, "Enforce", "Recommend"]))
def test_schema_defaults_equal_model_defaults_for_any_partial_behavior(
    behavior: dict[str, Any], mode: str | None
) -> None:
    spec: dict[str, Any] = {
        "gpuBudget": 4,
        "pools": [{"role": "aggregated", "targetRef": {"name": "v"}, "maxReplicas": 2}],
        "slo": {"ttft": "1s", "itl": "100ms"},
        "behavior": behavior,
    }
    if mode is not None:
        spec["mode"] = mode
    raw = {
        "apiVersion": "goodput.dev/v1alpha1",
        "kind": "GoodputPolicy",
        "metadata": {"name": "h"},
        "spec": spec,
    }
    assert _server_view(raw) == GoodputPolicy.from_manifest(raw).spec


def test_profile_enum_is_the_bundled_profiles() -> None:
    """The API server refuses an unknown profile; the list is generated from the JSON
    files shipped in goodput/profiles (``make crds`` after adding one)."""
    from goodput.profiles import available_profiles

    pool = SPEC["properties"]["pools"]["items"]
    assert pool["properties"]["profile"]["enum"] == available_profiles()
    assert pool["properties"]["profile"]["type"] == "string"
    assert "profile" not in pool["required"]  # absent: the operator holds, ProfileMissing
