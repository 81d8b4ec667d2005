"""Status models and the condition helpers (Kubernetes conditions convention)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from goodput.api.crd import status_schema
from goodput.api.status import (
    Condition,
    ConditionStatus,
    ConditionType,
    GoodputPolicyStatus,
    initial_conditions,
    replica_summary,
    set_condition,
)
from goodput.reasons import Reason

T0 = datetime(2026, 11, 27, 6, 0, 0, tzinfo=UTC)
T1 = T0 + timedelta(seconds=15)


def test_first_sight_every_condition_is_unknown() -> None:
    conds = initial_conditions(T0, observed_generation=3)
    assert [c.type for c in conds] == list(ConditionType)
    assert {c.status for c in conds} == {ConditionStatus.unknown}
    assert {c.reason for c in conds} == {Reason.Initializing}
    assert {c.observed_generation for c in conds} == {3}
    names = {c.value for c in ConditionType}
    # HPA's names plus ours, as the API promises.
    assert {
        "AbleToScale",
        "ScalingActive",
        "ScalingLimited",
        "MetricsAvailable",
        "BudgetSatisfiable",
        "Ready",
        "WithinBudget",
    } == names


def test_transition_time_moves_only_when_status_changes() -> None:
    conds = initial_conditions(T0)
    conds = set_condition(
        conds, ConditionType.Ready, ConditionStatus.true, Reason.Succeeded, "ok", T0, 1
    )
    ready = next(c for c in conds if c.type == ConditionType.Ready)
    assert ready.last_transition_time == T0
    # Same status, new reason and message: the transition time stays.
    conds = set_condition(
        conds, ConditionType.Ready, ConditionStatus.true, Reason.SteadyState, "still ok", T1, 2
    )
    ready = next(c for c in conds if c.type == ConditionType.Ready)
    assert (ready.last_transition_time, ready.reason, ready.observed_generation) == (
        T0,
        Reason.SteadyState,
        2,
    )
    # Status flips: the transition time moves.
    conds = set_condition(
        conds, ConditionType.Ready, ConditionStatus.false, Reason.MetricsMissing, "no ttft", T1, 2
    )
    ready = next(c for c in conds if c.type == ConditionType.Ready)
    assert ready.last_transition_time == T1
    assert len(conds) == len(ConditionType)  # replaced, not appended
    assert [c.type for c in conds] == list(ConditionType)  # stable order


def test_replica_summary_is_current_over_desired() -> None:
    s = replica_summary({"prefill": 2, "decode": 3}, {"prefill": 2, "decode": 5})
    assert (s.prefill, s.decode, s.aggregated) == ("2/2", "3/5", None)
    assert replica_summary({}, {"aggregated": 4}).aggregated == "0/4"


def test_every_reason_matches_the_condition_reason_pattern() -> None:
    pattern = status_schema()["properties"]["conditions"]["items"]["properties"]["reason"]
    for reason in Reason:
        assert re.fullmatch(pattern["pattern"], reason.value), reason


def test_status_round_trips_through_its_wire_form() -> None:
    status = GoodputPolicyStatus(
        observed_generation=4,
        conditions=initial_conditions(T0, 4),
        gpus_allocated=12,
        replicas=replica_summary({"aggregated": 3}, {"aggregated": 3}),
    )
    wire = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert wire["conditions"][0]["lastTransitionTime"] == "2026-11-27T06:00:00Z"
    assert wire["replicas"] == {"aggregated": "3/3"}
    assert GoodputPolicyStatus.model_validate(wire) == status
    assert status.condition(ConditionType.Ready) == Condition.model_validate(wire["conditions"][0])
