"""The planners' memory lives in the policy's status: a restarted operator (a new
Reconciler, built from nothing but the last status) decides as the old one would have."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from goodput.api.spec import GoodputPolicySpec
from goodput.operator.facts import Outcome
from goodput.operator.reconcile import Reconciler
from goodput.planner import memory
from goodput.planner.correction import Factors
from goodput.planner.forecast import ForecastState
from goodput.planner.planner import PlannerState
from goodput.planner.variants import VariantPlannerState
from goodput.reasons import Reason
from goodput.sim.cluster import SimCluster
from goodput.sim.engine import DECODE, PREFILL
from goodput.sim.harness import OperatorLoop, run
from goodput.sim.scenario import build_scenario
from goodput.sim.traces import Trace

from .test_sim import trace


def _state() -> PlannerState:
    return PlannerState(
        forecast=ForecastState(3.25, -0.01, 0.7, 120.0, ((90.0, 5.5), (105.0, 4.25))),
        factors={"prefill": Factors(1.3, 0.9), "decode": Factors(1.0, 1.1)},
        last_traffic=(120.0, 812.5, 131.0, 44.0),
        patient=True,
        started=15.0,
        recent_desired=((105.0, (("decode", 2), ("prefill", 5))),),
    )


def test_memory_round_trips_exactly() -> None:
    state = _state()
    assert memory.load(memory.dump(state)) == state
    # Nothing yet (no forecast, not started): absent keys, not nulls, and back again.
    empty = PlannerState(patient=True)
    assert None not in memory.dump(empty).values()
    assert memory.load(memory.dump(empty)) == empty
    assert memory.load_variants(memory.dump_variants(VariantPlannerState())) == (
        VariantPlannerState()
    )
    v = VariantPlannerState(
        demand=state.forecast,
        last_traffic=state.last_traffic,
        factors={"a": dict(state.factors)},
        rates={"a": 1.5},
        shares={"a": 70, "b": 30},
    )
    assert memory.load_variants(memory.dump_variants(v)) == v


def test_every_field_of_the_planner_states_is_kept() -> None:
    """A field added to a planner's state but not to its memory would be forgotten on
    restart: this names the fields the memory knows."""
    assert {f.name for f in dataclasses.fields(PlannerState)} == {
        "forecast",
        "factors",
        "last_traffic",
        "patient",
        "started",
        "recent_desired",
    }
    assert {f.name for f in dataclasses.fields(VariantPlannerState)} == {
        "demand",
        "last_traffic",
        "factors",
        "rates",
        "shares",
    }


def test_a_memory_that_cannot_be_read_whole_is_refused() -> None:
    raw = memory.dump(_state())
    for broken in (
        {**raw, "version": 99},
        {**raw, "kind": "variants"},
        {k: v for k, v in raw.items() if k != "factors"},
        {**raw, "factors": {"prefill": {"prefil": 1.0}}},
    ):
        with pytest.raises(ValueError):
            memory.load(broken)


def _spec() -> GoodputPolicySpec:
    return GoodputPolicySpec.model_validate(
        {
            "mode": "Enforce",
            "gpuBudget": 8,
            "pools": [
                {
                    "role": "prefill",
                    "targetRef": {"name": "p"},
                    "maxReplicas": 7,
                    "profile": "llama-3.1-8b-h100-tp1",
                },
                {
                    "role": "decode",
                    "targetRef": {"name": "d"},
                    "maxReplicas": 7,
                    "profile": "llama-3.1-8b-h100-tp1",
                },
            ],
            "slo": {"ttft": "500ms", "itl": "30ms"},
            "behavior": {
                "interval": "10s",
                "startupDelay": "20s",
                "forecastHorizon": "30s",
                "scaleDown": {"stabilizationWindowSeconds": 120},
            },
        }
    )


def _bursty(seed: int = 3) -> Trace:
    """A burst, a lull and a second burst: the forecast and its patience window matter."""
    rng = np.random.default_rng(seed)
    parts = [(0.0, 60.0, 400), (60.0, 150.0, 40), (150.0, 210.0, 500), (210.0, 300.0, 30)]
    t = np.sort(np.concatenate([rng.uniform(a, b, n) for a, b, n in parts]))
    n = len(t)
    return trace(t.tolist(), rng.integers(200, 5000, n).tolist(), rng.integers(20, 300, n).tolist())


class _Restarting(OperatorLoop):
    """The operator loop, with the Reconciler replaced by a new one (a new process: no
    memory but the status) before the ticks in ``restart_at``; ``forget`` also drops
    status.plannerState (the operator as it was before the memory lived there)."""

    def __init__(self, spec: GoodputPolicySpec, restart_at: set[int], forget: bool) -> None:
        super().__init__(spec)
        self.restart_at = restart_at
        self.forget = forget
        self._args: tuple[SimCluster, Any, Callable[[], float]] | None = None

    def bind(self, cluster: SimCluster, sources: Any, clock: Callable[[], float]) -> None:
        super().bind(cluster, sources, clock)
        self._args = (cluster, sources, clock)

    async def tick(self) -> Outcome:
        if len(self.outcomes) in self.restart_at:
            assert self._args is not None and self.reconciler is not None
            self.reconciler.close()
            cluster, sources, clock = self._args
            self.reconciler = Reconciler(cluster, sources, clock=clock)
            if self.forget:
                self.raw_status.pop("plannerState", None)
        return await super().tick()


Decisions = list[tuple[float, str, dict[str, int], list[tuple[int, int]]]]


def _decisions(loop: OperatorLoop) -> Decisions:
    out = []
    for t, o in loop.outcomes:
        d = o.status.last_decision
        assert d is not None
        writes = [(w.write.from_replicas, w.write.to_replicas) for w in o.writes]
        out.append((t, d.reason.value, dict(d.pools), writes))
    return out


def _run(loop: OperatorLoop) -> Decisions:
    sc = build_scenario(_spec())
    run(sc, _bursty(), loop, initial={PREFILL: 4, DECODE: 4})
    return _decisions(loop)


def test_a_restarted_operator_decides_as_the_old_one_would_have() -> None:
    spec = _spec()
    straight = _run(OperatorLoop(spec))
    restarts = {3, 9, 16, 22}
    again = _Restarting(spec, restarts, forget=False)
    assert _run(again) == straight
    # Each restart said where its memory came from.
    for i in restarts:
        d = again.outcomes[i][1].status.last_decision
        assert d is not None
        assert Reason.StateRestored in {a.reason for a in d.adjustments}
    status = again.outcomes[-1][1].status
    assert status.planner_state is not None
    assert memory.load(status.planner_state).forecast is not None


def test_without_the_memory_in_status_a_restart_decides_differently() -> None:
    """The control: the same restarts with status.plannerState dropped (memory only in
    the process, as before) change the decisions on this trace."""
    spec = _spec()
    straight = _run(OperatorLoop(spec))
    assert _run(_Restarting(spec, {3, 9, 16, 22}, forget=True)) != straight


def test_a_new_planner_takes_the_memory_from_status_and_refuses_a_broken_one() -> None:
    from goodput.operator.reconcile import _restore
    from goodput.planner import GoodputPlanner
    from goodput.planner.variants import VariantPlanner
    from tests.unit.test_variant_planner import _spec as variant_spec

    single = GoodputPlanner(_spec())
    note = _restore(single, memory.dump(_state()))
    assert single.state == _state()
    assert note is not None and "highest 5.50" in note
    fresh = GoodputPlanner(_spec())
    assert _restore(fresh, {**memory.dump(_state()), "version": 99}) is None
    assert fresh.state == PlannerState(patient=True)  # starts fresh, as it would have
    assert _restore(fresh, None) is None
    v = VariantPlanner(variant_spec())
    remembered = VariantPlannerState(demand=_state().forecast, rates={"a": 2.0})
    assert _restore(v, memory.dump_variants(remembered)) is not None
    assert v.state == remembered
    # A single-model memory is not a variant planner's.
    assert _restore(VariantPlanner(variant_spec()), memory.dump(_state())) is None
