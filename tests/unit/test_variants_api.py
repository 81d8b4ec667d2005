"""Model variants in the GoodputPolicy API: the single-model shape is unchanged, a
variants policy validates like the server does (same rules, clear messages), and
``variant_specs`` projects each variant to a single-model spec."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from goodput.api import crd as crd_mod
from goodput.api.spec import (
    DEFAULT_VARIANT,
    BackendKind,
    GoodputPolicy,
    GoodputPolicySpec,
    format_validation_error,
)
from goodput.api.status import (
    Decision,
    Flip,
    GoodputPolicyStatus,
    SplitAlternative,
    VariantDecision,
    split_summary,
)
from goodput.reasons import Reason

MMLU_PRO = "Meta Llama-3.1 instruct model card, MMLU-Pro"


def _pool(role: str, name: str, gpus: int = 4, lo: int = 1, hi: int = 8) -> dict[str, Any]:
    return {
        "role": role,
        "targetRef": {"name": name},
        "gpusPerReplica": gpus,
        "minReplicas": lo,
        "maxReplicas": hi,
    }


def _variants_spec(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "gpuBudget": 64,
        "value": {"rightAnswer": 1.0, "wrongAnswerCost": 3.0},
        "variants": [
            {
                "name": "llama-70b",
                "pools": [_pool("aggregated", "llama-70b")],
                "quality": {"score": 0.664, "source": MMLU_PRO},
                "backendRef": {"name": "llama-70b"},
                "metrics": {"selectors": {"aggregated": 'model_name="llama-70b"'}},
            },
            {
                "name": "llama-405b-int4",
                "pools": [_pool("aggregated", "llama-405b", gpus=8)],
                "quality": {"score": 0.733 * 0.993, "source": MMLU_PRO + " x 99.3% W4A16"},
                "backendRef": {
                    "name": "llama-405b",
                    "kind": "InferencePool",
                    "group": "inference.networking.k8s.io",
                },
                "minShare": 10,
            },
        ],
        "trafficSplit": {"httpRouteRef": {"name": "chat"}},
        "slo": {"ttft": "2s", "itl": "100ms"},
    }
    doc.update(changes)
    return doc


def _manifest(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "goodput.dev/v1alpha1",
        "kind": "GoodputPolicy",
        "metadata": {"name": "x"},
        "spec": spec,
    }


def _parse(spec: dict[str, Any]) -> GoodputPolicySpec:
    return GoodputPolicy.from_manifest(_manifest(spec)).spec


def _errors(spec: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as info:
        _parse(spec)
    return format_validation_error(info.value)


def _single() -> dict[str, Any]:
    return {
        "gpuBudget": 8,
        "pools": [_pool("prefill", "p", gpus=2, hi=3), _pool("decode", "d", gpus=2, hi=3)],
        "slo": {"ttft": "500ms", "itl": "50ms"},
    }


def test_a_variants_policy_validates_and_round_trips() -> None:
    spec = _parse(_variants_spec())
    assert [v.name for v in spec.variants] == ["llama-70b", "llama-405b-int4"]
    assert spec.pools == []
    assert spec.value.wrong_answer_cost == 3.0
    assert spec.variants[1].backend_ref is not None
    assert spec.variants[1].backend_ref.kind is BackendKind.InferencePool
    assert spec.variants[0].min_share == 0 and spec.variants[0].max_share == 100
    manifest = GoodputPolicy.from_manifest(_manifest(_variants_spec())).to_manifest()
    assert "pools" not in manifest["spec"]  # unset, not []: the schema refuses an empty list
    assert GoodputPolicy.from_manifest(manifest).spec == spec


def test_a_single_model_policy_dumps_no_variants_and_keeps_its_defaults() -> None:
    model = GoodputPolicy.from_manifest(_manifest(_single()))
    manifest = model.to_manifest()
    assert "variants" not in manifest["spec"]
    assert manifest["spec"]["value"] == {
        "rightAnswer": 1.0,
        "wrongAnswerCost": 0.0,
        "qualityFloor": 0.0,
    }
    assert GoodputPolicy.from_manifest(manifest) == model


def test_variant_specs_of_a_single_model_policy_is_itself_as_default() -> None:
    spec = _parse(_single())
    assert spec.variant_specs() == {DEFAULT_VARIANT: spec}
    assert DEFAULT_VARIANT == "default"


def test_variant_specs_project_pools_selectors_quality_and_keep_the_rest() -> None:
    doc = _variants_spec(metrics={"selectors": {"aggregated": 'namespace="llm"'}})
    doc["variants"][1]["quality"] = {"query": "avg(eval_right_answer_ratio)"}
    spec = _parse(doc)
    out = spec.variant_specs()
    assert list(out) == ["llama-70b", "llama-405b-int4"]
    small, big = out["llama-70b"], out["llama-405b-int4"]
    assert small.pools == spec.variants[0].pools and small.variants == []
    assert small.metrics.selectors == {"aggregated": 'namespace="llm",model_name="llama-70b"'}
    assert big.metrics.selectors == {"aggregated": 'namespace="llm"'}
    # A static score stays with the variant planner; a live query goes to the source.
    assert small.quality.query is None and big.quality.query == "avg(eval_right_answer_ratio)"
    for one in out.values():
        assert one.gpu_budget == 64 and one.slo == spec.slo and one.behavior == spec.behavior
        assert one.metrics.prometheus_url == spec.metrics.prometheus_url
        assert one.traffic_split.http_route_ref is None
        # A projection is itself a valid single-model spec.
        assert GoodputPolicySpec.model_validate(one.model_dump(by_alias=True)) == one


def _mutate(path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(_variants_spec())
    node: Any = doc
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node[part]
    last = parts[-1]
    if value is _DELETE:
        del node[int(last) if last.isdigit() else last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return doc


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "where", "text"),
    [
        ("pools", [_pool("aggregated", "a")], "spec", "exactly one of the two: both are set"),
        ("variants", _DELETE, "spec", "neither is set"),
        ("variants.1.name", "llama-70b", "spec", "variant names must be unique"),
        ("variants.1.name", "Llama_70B", "spec.variants[1].name", "should match pattern"),
        (
            "variants.1.pools",
            [_pool("decode", "x", gpus=8)],
            "spec.variants[1]",
            "either one prefill and one decode pool, or one aggregated pool",
        ),
        (
            "variants.1.pools",
            [_pool("aggregated", "llama-70b", gpus=8)],
            "spec",
            "Deployment/llama-70b is scaled by both llama-70b and llama-405b-int4",
        ),
        ("gpuBudget", 11, "spec", "the minimum replicas need 12 GPUs"),
        ("variants.1.maxShare", 5, "spec.variants[1]", "minShare (10) must be less"),
        ("variants.0.minShare", 95, "spec", "minShare must sum to at most 100 (they sum to 105)"),
        ("variants.1.quality", {"score": 0.7}, "spec.variants[1].quality", "needs a source"),
        (
            "variants.1.quality",
            {"score": 0.7, "source": "x", "query": "up"},
            "spec.variants[1].quality",
            "exactly one of score",
        ),
        ("variants.1.quality", {}, "spec.variants[1].quality", "exactly one of score"),
        (
            "variants.1.quality",
            {"score": 1.2, "source": "x"},
            "spec.variants[1].quality.score",
            "1",
        ),
        ("variants.1.backendRef", {"name": "llama-70b"}, "spec", "backendRefs must be unique"),
        ("variants.1.backendRef", _DELETE, "spec", "missing in llama-405b-int4"),
        (
            "variants.1.backendRef",
            {"name": "x", "kind": "InferencePool"},
            "spec.variants[1].backendRef",
            "an InferencePool names its group",
        ),
        (
            "variants.0.metrics",
            {"selectors": {"decode": "a"}},
            "spec.variants[0]",
            "roles of this variant's pools, not decode",
        ),
        ("quality", {"query": "up"}, "spec", "quality is per variant"),
        (
            "kvCache",
            {
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
            "spec",
            "kvCache tiers are not supported with variants",
        ),
        ("value", {"wrongAnswerCost": -1}, "spec.value.wrongAnswerCost", "greater than or equal"),
        ("value", {"rightAnswer": 0}, "spec.value.rightAnswer", "greater than 0"),
    ],
)
def test_invalid_variant_policies_are_refused_with_a_clear_message(
    path: str, value: Any, where: str, text: str
) -> None:
    lines = _errors(_mutate(path, value))
    assert any(line.startswith(where + ":") and text in line for line in lines), lines


def test_single_model_policies_refuse_variant_only_fields() -> None:
    doc = _single()
    doc["trafficSplit"] = {"httpRouteRef": {"name": "r"}}
    assert any("trafficSplit.httpRouteRef needs variants" in x for x in _errors(doc))
    doc = _single()
    doc["value"] = {"qualityFloor": 0.5}
    assert any("quality.floor" in x for x in _errors(doc))


def test_max_shares_must_reach_100() -> None:
    doc = _variants_spec()
    doc["variants"][0]["maxShare"] = 40
    doc["variants"][1]["maxShare"] = 50
    assert any("maxShare to at least 100 (they sum to 90)" in x for x in _errors(doc))


def test_budget_floor_counts_every_variant_and_equality_is_allowed() -> None:
    # 70B: 1 x 4, 405B: 1 x 8 at the minimum = 12 GPUs.
    assert _parse(_variants_spec(gpuBudget=12)).gpu_budget == 12
    assert any("need 12 GPUs" in x for x in _errors(_variants_spec(gpuBudget=11)))


def test_a_replica_larger_than_the_budget_is_refused_in_a_variant() -> None:
    doc = _mutate("variants.1.pools", [_pool("aggregated", "big", gpus=16, lo=0)])
    doc["gpuBudget"] = 12
    assert any("gpusPerReplica (16) must not exceed gpuBudget (12)" in x for x in _errors(doc))


def test_policy_selectors_may_name_the_roles_of_any_variant() -> None:
    doc = _variants_spec(metrics={"selectors": {"aggregated": 'ns="a"'}})
    assert _parse(doc).metrics.selectors == {"aggregated": 'ns="a"'}
    bad = _variants_spec(metrics={"selectors": {"prefill": 'ns="a"'}})
    assert any("not prefill" in x for x in _errors(bad))


SPEC_SCHEMA = crd_mod.spec_schema()


def _rules(node: dict[str, Any]) -> str:
    return " ".join(v["rule"] for v in node.get("x-kubernetes-validations", []))


def test_the_crd_carries_the_same_rules_as_cel() -> None:
    top = _rules(SPEC_SCHEMA)
    for needle in (
        "has(self.pools) != has(self.variants)",
        "v.minShare).sum() <= 100",
        "v.maxShare).sum() >= 100",
        "w.name == v.name",
        "q.targetRef.name != p.targetRef.name",
        "w.backendRef.name == v.backendRef.name",
        "self.variants.all(v, has(v.backendRef))",
        "self.variants.map(v, v.pools.filter(p, has(p.gpusPerReplica))",
    ):
        assert needle in top, needle
    variant = SPEC_SCHEMA["properties"]["variants"]["items"]
    assert "self.minShare <= self.maxShare" in _rules(variant)
    assert "'aggregated'" in _rules(variant)
    assert "has(self.score) != has(self.query)" in _rules(variant["properties"]["quality"])
    assert "has(self.source)" in _rules(variant["properties"]["quality"])
    assert SPEC_SCHEMA["properties"]["variants"]["x-kubernetes-list-map-keys"] == ["name"]
    assert "pools" not in SPEC_SCHEMA["required"]
    # Defaults the server writes equal the models' defaults.
    value = SPEC_SCHEMA["properties"]["value"]["properties"]
    assert value["wrongAnswerCost"]["default"] == 0.0 and value["rightAnswer"]["default"] == 1.0
    assert variant["properties"]["minShare"]["default"] == 0
    assert variant["properties"]["maxShare"]["default"] == 100


def test_the_split_printer_column_reads_a_status_string() -> None:
    cols = {c["name"]: c for c in crd_mod.PRINTER_COLUMNS}
    assert cols["Split"]["jsonPath"] == ".status.split" and cols["Split"]["priority"] == 1
    assert split_summary({"llama-70b": 80, "llama-405b": 20}) == "llama-70b=80,llama-405b=20"


def test_variant_status_fields_are_optional_and_round_trip() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 12, 2, tzinfo=UTC)
    single = Decision(time=now, reason=Reason.SteadyState)
    dumped = single.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert "flip" not in dumped and "runnerUpSplit" not in dumped
    decision = Decision(
        time=now,
        reason=Reason.TrafficShifted,
        variants=[
            VariantDecision(
                name="llama-70b",
                share=80,
                pools={"aggregated": 6},
                total_gpus=24,
                quality=0.664,
                value_per_answer=-0.344,
                predicted_tokens_per_second=9000.0,
                predicted_value_per_second=-3096.0,
            )
        ],
        predicted_value_per_second=1.0,
        runner_up_split=SplitAlternative(shares={"llama-70b": 100}, gpus={"llama-70b": 64}),
        flip=Flip(break_even_wrong_answer_cost=1.2, message="below c = 1.2, 70B"),
    )
    status = GoodputPolicyStatus(last_decision=decision, split="llama-70b=80")
    wire = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert wire["lastDecision"]["variants"][0]["valuePerAnswer"] == -0.344
    assert GoodputPolicyStatus.model_validate(wire) == status


def test_quality_classes_validate_in_increasing_order() -> None:
    doc = _variants_spec()
    doc["variants"][1]["quality"]["classes"] = [
        {"minInputTokens": 32768, "score": 0.6, "source": "eval at 32K"},
        {"minInputTokens": 65536, "score": 0.4, "source": "arXiv 2505.20276-like drop at 64K"},
    ]
    spec = _parse(doc)
    assert spec.variants[1].quality.class_scores() == [(32768, 0.6), (65536, 0.4)]
    doc["variants"][1]["quality"]["classes"].reverse()
    assert any("increasing order of minInputTokens" in x for x in _errors(doc))
    doc["variants"][1]["quality"]["classes"] = [{"minInputTokens": 10, "score": 0.5}]
    assert any("source" in x for x in _errors(doc))
    quality = SPEC_SCHEMA["properties"]["variants"]["items"]["properties"]["quality"]
    assert "isSorted()" in _rules(quality)
