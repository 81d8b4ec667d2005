"""The operator's own series of a policy go when the policy does (or when this replica
stands by), so no dashboard or alert reads a last value as current."""

from __future__ import annotations

from prometheus_client import REGISTRY

from goodput.operator import telemetry


def _value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_forget_policy_removes_its_series_and_only_its() -> None:
    for pol in ("gone", "kept"):
        telemetry.GPUS_HELD.labels(namespace="ns", policy=pol).set(4)
        telemetry.CONDITION.labels(namespace="ns", policy=pol, type="Ready", status="True").set(1)
        telemetry.STANDBY.labels(namespace="ns", policy=pol).set(1)
    telemetry.forget_policy("ns", "gone", keep_standby=True)
    assert _value("goodput_gpus_held", namespace="ns", policy="gone") is None
    cond = {"namespace": "ns", "policy": "gone", "type": "Ready", "status": "True"}
    assert _value("goodput_condition", **cond) is None
    assert _value("goodput_standby", namespace="ns", policy="gone") == 1
    assert _value("goodput_gpus_held", namespace="ns", policy="kept") == 4
    telemetry.forget_policy("ns", "gone")
    assert _value("goodput_standby", namespace="ns", policy="gone") is None
