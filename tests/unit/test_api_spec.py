"""GoodputPolicy spec models: the same documents the API server accepts and refuses."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from goodput.api.spec import (
    SCALE_DOWN_DEFAULTS,
    SCALE_UP_DEFAULTS,
    GoodputPolicy,
    GoodputPolicySpec,
    Mode,
    PoolRole,
    ScalingPolicyType,
    format_validation_error,
    override_keys,
    parse_duration,
)

REPO = Path(__file__).resolve().parents[2]
POLICIES = sorted((REPO / "policies").glob("*.yaml"))
INVALID = sorted((REPO / "tests" / "integration" / "invalid").glob("*.yaml"))


def _spec(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "gpuBudget": 8,
        "pools": [
            {"role": "prefill", "targetRef": {"name": "p"}, "gpusPerReplica": 2, "maxReplicas": 3},
            {"role": "decode", "targetRef": {"name": "d"}, "gpusPerReplica": 2, "maxReplicas": 3},
        ],
        "slo": {"ttft": "500ms", "itl": "50ms"},
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


def _errors(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as info:
        GoodputPolicy.from_manifest(doc)
    return format_validation_error(info.value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("2s", 2.0),
        ("1m30s", 90.0),
        ("1.5h", 5400.0),
        ("2h45m", 9900.0),
        ("0s", 0.0),
        ("15s", 15.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["5", "1d", "-1s", "", "1 m", "ms", "1.s", "5s\n", "1us"])
def test_parse_duration_refuses_what_the_pattern_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.stem)
def test_example_policy_validates_and_round_trips(path: Path) -> None:
    raw = yaml.safe_load(path.read_text())
    model = GoodputPolicy.from_manifest(raw)
    again = GoodputPolicy.from_manifest(model.to_manifest())
    assert again == model
    # Each example's comments explain its numbers: the file is mostly commentary.
    assert sum(line.startswith("#") for line in path.read_text().splitlines()) >= 15


def test_there_are_the_four_required_examples() -> None:
    specs = {
        p.stem: GoodputPolicy.from_manifest(yaml.safe_load(p.read_text())).spec for p in POLICIES
    }
    assert len(specs) >= 4
    roles = {name: sorted(str(p.role) for p in s.pools) for name, s in specs.items()}
    assert ["aggregated"] in roles.values()
    assert any(s.quality.query and s.quality.floor > 0 for s in specs.values())
    # the latency-critical one is the tightest TTFT among the disaggregated ones
    disagg = {n: s for n, s in specs.items() if roles[n] == ["decode", "prefill"]}
    tightest = min(disagg.values(), key=lambda s: s.slo.ttft_seconds)
    assert tightest.slo.ttft_seconds <= 0.5 and tightest.slo.itl_seconds <= 0.05


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_models_refuse_every_invalid_manifest_naming_the_field(path: Path) -> None:
    """The pydantic mirror of the server's rules: same documents, same field named."""
    text = path.read_text()
    header = re.search(r"^# field: (.+)$", text, re.M)
    assert header, path.name
    field = header.group(1).strip()
    lines = _errors(yaml.safe_load(text))
    last = re.split(r"[.\[]", field)[-1].rstrip("]")

    def names_field(line: str) -> bool:
        where, msg = line.split(": ", 1)
        # Exact path, or a parent path (a cross-field rule) whose message names the field.
        return where == field or (field.startswith(where) and last in msg)

    assert any(names_field(line) for line in lines), lines


def test_at_least_twelve_invalid_manifests() -> None:
    assert len(INVALID) >= 12


def test_scalars_are_strict_like_the_openapi_schema() -> None:
    assert _errors(_manifest(_spec(gpuBudget="8")))[0].startswith("spec.gpuBudget:")
    assert _errors(_manifest(_spec(gpuBudget=True)))[0].startswith("spec.gpuBudget:")
    assert _errors(_manifest(_spec(gpuBudget=8.5)))[0].startswith("spec.gpuBudget:")
    # A JSON integer is a valid number, as it is for the server.
    slo = {"ttft": "1s", "itl": "50ms", "attainment": 1}
    assert GoodputPolicy.from_manifest(_manifest(_spec(slo=slo))).spec.slo.attainment == 1.0


def test_manifests_are_read_by_wire_names_only() -> None:
    doc = _spec()
    doc["gpu_budget"] = doc.pop("gpuBudget")
    lines = _errors(_manifest(doc))
    assert "spec.gpuBudget: Field required" in lines
    assert any(line.startswith("spec.gpu_budget:") for line in lines)
    # Python code may still use snake_case names.
    spec = GoodputPolicySpec(
        gpu_budget=4,
        pools=[{"role": "aggregated", "target_ref": {"name": "v"}, "max_replicas": 2}],
        slo={"ttft": "1s", "itl": "50ms"},
    )
    assert spec.mode is Mode.Recommend and spec.pools[0].min_replicas == 1


def test_defaults() -> None:
    spec = GoodputPolicy.from_manifest(_manifest(_spec())).spec
    assert spec.mode is Mode.Recommend  # advisory unless asked to enforce
    assert spec.slo.attainment == 0.9
    assert spec.pools[0].target_ref.kind == "Deployment"
    assert spec.pools[0].target_ref.api_version == "apps/v1"
    assert spec.behavior.scale_down.stabilization_window_seconds == 300
    assert spec.behavior.scale_up.stabilization_window_seconds == 0
    up = [(p.type, p.value, p.period_seconds) for p in spec.behavior.scale_up.policies]
    assert up == [(ScalingPolicyType.Percent, 100, 15), (ScalingPolicyType.Replicas, 4, 15)]
    assert spec.metrics.auth is None and spec.quality.query is None
    assert spec.pool(PoolRole.decode) is spec.pools[1]
    assert spec.pool(PoolRole.aggregated) is None


def test_a_partly_given_direction_keeps_that_directions_defaults() -> None:
    """HPA semantics: naming only the window keeps the default policies, per direction."""
    behavior = {
        "scaleUp": {"stabilizationWindowSeconds": 30},
        "scaleDown": {"policies": [{"type": "Replicas", "value": 1, "periodSeconds": 60}]},
    }
    b = GoodputPolicy.from_manifest(_manifest(_spec(behavior=behavior))).spec.behavior
    assert b.scale_up.stabilization_window_seconds == 30
    assert (
        b.scale_up.model_dump(by_alias=True, mode="json")["policies"]
        == (SCALE_UP_DEFAULTS["policies"])
    )
    assert b.scale_down.stabilization_window_seconds == 300
    assert b.scale_down.select_policy == SCALE_DOWN_DEFAULTS["selectPolicy"]
    assert [p.value for p in b.scale_down.policies] == [1]


@pytest.mark.parametrize(
    ("budget", "ok"),
    [(12, True), (11, False)],  # 2x2 + 2x2 pools + 2x2 tier = 12 GPUs at the minimum
)
def test_gpu_floor_counts_pools_and_tiers_and_equality_is_allowed(budget: int, ok: bool) -> None:
    pools = [
        {
            "role": "prefill",
            "targetRef": {"name": "p"},
            "gpusPerReplica": 2,
            "minReplicas": 2,
            "maxReplicas": 3,
        },
        {
            "role": "decode",
            "targetRef": {"name": "d"},
            "gpusPerReplica": 2,
            "minReplicas": 2,
            "maxReplicas": 3,
        },
    ]
    tiers = [
        {
            "name": "gpu-cache",
            "targetRef": {"name": "c"},
            "capacityPerReplicaGib": 80,
            "bandwidthGibPerS": 100,
            "gpusPerReplica": 2,
            "minReplicas": 2,
            "maxReplicas": 2,
        }
    ]
    doc = _manifest(_spec(gpuBudget=budget, pools=pools, kvCache={"tiers": tiers}))
    if ok:
        GoodputPolicy.from_manifest(doc)
    else:
        (line,) = _errors(doc)
        assert "need 12 GPUs" in line and "gpuBudget (11)" in line


def test_pools_without_gpus_per_replica_skip_the_floor_check() -> None:
    pools = [
        {"role": "aggregated", "targetRef": {"name": "v"}, "minReplicas": 50, "maxReplicas": 60}
    ]
    GoodputPolicy.from_manifest(_manifest(_spec(gpuBudget=1, pools=pools)))


def test_overrides_accept_signal_and_role_scoped_keys() -> None:
    keys = override_keys()
    assert "ttft" in keys and "decode.itl" in keys and "good_tokens_per_s" in keys
    assert "decode.good_tokens_per_s" not in keys  # policy-wide only
    metrics = {"overrides": {"decode.itl": "sum by (le) (rate(x_bucket[$window]))"}}
    GoodputPolicy.from_manifest(_manifest(_spec(metrics=metrics)))
    bad = {"overrides": {"decode.good_tokens_per_s": "x"}}
    assert _errors(_manifest(_spec(metrics=bad)))[0].startswith("spec.metrics.overrides:")


def test_start_up_delay_and_forecast_horizon_may_be_zero_but_interval_may_not() -> None:
    ok = {"startupDelay": "0s", "forecastHorizon": "0s"}
    GoodputPolicy.from_manifest(_manifest(_spec(behavior=ok)))
    (line,) = _errors(_manifest(_spec(behavior={"interval": "0s"})))
    assert line.startswith("spec.behavior.interval:") and "positive" in line


def test_models_are_frozen() -> None:
    spec = GoodputPolicy.from_manifest(_manifest(_spec())).spec
    with pytest.raises(ValidationError):
        spec.gpu_budget = 100  # type: ignore[misc]


class _ReadOnlyBody(Mapping[str, Any]):
    """Like kopf's Body: a read-only mapping whose nested objects are mappings too."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        value = self._data[key]
        return _ReadOnlyBody(value) if isinstance(value, dict) else value

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def test_a_read_only_mapping_body_reads_like_a_dict() -> None:
    behavior = {"scaleDown": {"stabilizationWindowSeconds": 10}}
    doc = _manifest(_spec(behavior=behavior))
    doc["metadata"].update(uid="u-1", generation=3, resourceVersion="42")
    from_body = GoodputPolicy.from_manifest(_ReadOnlyBody(doc))
    assert from_body == GoodputPolicy.from_manifest(doc)
    assert [p.value for p in from_body.spec.behavior.scale_down.policies] == [100]


def test_direction_defaults_respect_snake_case_names_in_python() -> None:
    from goodput.api.spec import Behavior

    b = Behavior(scale_down={"stabilization_window_seconds": 10})
    assert b.scale_down.stabilization_window_seconds == 10
    assert [p.value for p in b.scale_down.policies] == [100]


def test_override_keys_are_exactly_what_the_metrics_layer_reads() -> None:
    """The API's vocabulary and the metrics layer's must not drift apart."""
    from goodput.api.spec import Metrics, Signal
    from goodput.metrics.presets import FleetSignal
    from goodput.metrics.presets import Signal as MetricsSignal
    from goodput.metrics.promql import override_errors

    assert {s.value for s in Signal} == {s.value for s in MetricsSignal} | {
        FleetSignal.good_tokens_per_s.value
    }
    for key in override_keys():
        assert override_errors(Metrics(overrides={key: "up"})) == [], key


def test_profile_is_an_exact_bundled_name_or_absent() -> None:
    from goodput.profiles import available_profiles

    named = _spec()
    named["pools"][0]["profile"] = "llama-3.1-8b-h100-tp1"
    assert GoodputPolicy.from_manifest(_manifest(named)).spec.pools[0].profile == (
        "llama-3.1-8b-h100-tp1"
    )
    # Absent is valid to the schema; the operator then holds with ProfileMissing.
    assert GoodputPolicy.from_manifest(_manifest(_spec())).spec.pools[0].profile is None
    for wrong in ("llama-3.1-8b-h100", "gpt-5-b200"):  # a former short alias, a stranger
        bad = _spec()
        bad["pools"][1]["profile"] = wrong
        (line,) = _errors(_manifest(bad))
        assert line.startswith(
            f"spec.pools[1].profile: Value error, unknown performance profile {wrong!r}"
        )
        assert all(name in line for name in available_profiles())
    typed = _spec()
    typed["pools"][0]["profile"] = 8
    assert _errors(_manifest(typed))[0].startswith("spec.pools[0].profile:")
