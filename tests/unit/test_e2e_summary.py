"""The e2e summary's definitions (tests/harness/e2e.py): dips below the attainment
target and the intervals until it is back, the phases of the replayed day."""

from __future__ import annotations

import numpy as np
import pytest

from goodput.sim.emulator_trace import PeakTrace
from goodput.sim.traces import Trace
from tests.harness.e2e import INTERVAL_S, _phase, _recoveries


def test_a_dip_after_the_load_step_counts_from_the_step() -> None:
    att: list[float | None] = [1.0, 1.0, 1.0, 1.0, 0.5, 0.2, 0.95, 1.0]
    (dip,) = _recoveries(att, step_t=2 * INTERVAL_S, peak_end_t=6 * INTERVAL_S)
    assert dip == {
        "from_interval": 2,
        "dip_interval": 4,
        "back_at_target_interval": 6,
        "intervals": 4,
        "at_load_step": True,
    }


def test_dips_before_the_step_count_from_themselves_and_an_unrecovered_one_is_none() -> None:
    att: list[float | None] = [0.1, 0.95, 1.0, 0.8, None, 0.5]
    early, late = _recoveries(att, step_t=3 * INTERVAL_S, peak_end_t=5 * INTERVAL_S)
    assert (early["from_interval"], early["intervals"], early["at_load_step"]) == (0, 1, False)
    # An interval without arrivals does not end a dip.
    assert late["dip_interval"] == 3 and late["intervals"] is None
    assert late["back_at_target_interval"] is None


def test_no_dip_no_entry() -> None:
    assert _recoveries([1.0, 0.9, None, 0.99], step_t=10.0, peak_end_t=30.0) == []


def test_a_dip_after_the_peak_is_its_own_not_the_load_steps() -> None:
    att: list[float | None] = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.7, 1.0]
    (dip,) = _recoveries(att, step_t=1 * INTERVAL_S, peak_end_t=4 * INTERVAL_S)
    assert (dip["from_interval"], dip["intervals"], dip["at_load_step"]) == (6, 1, False)


def test_phases_follow_the_replayed_hour() -> None:
    # 24 h in 600 s from 02:00: 25 s per hour.
    pt = PeakTrace(
        Trace("t", np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64)), 144.0, 2.0
    )
    assert pt.hour_at(0.0) == pytest.approx(2.0)
    assert pt.t_of_hour(19.0) == pytest.approx(17 * 25.0)
    assert _phase(pt, 17 * 25.0 - 1) == "before"
    assert _phase(pt, 17 * 25.0 + 1) == "during"
    assert _phase(pt, 20 * 25.0 + 1) == "after"
    assert _phase(pt, 599.0) == "after"
