"""The closed loop, short form (issue 14, `make e2e` in about 6 minutes): the fleet
emulator serves each Ready pod's /metrics from the twin through file-based service
discovery into the real Prometheus, `goodput run` runs as its own process with the helm
chart's ServiceAccount token, and the ServeGen day from 16:00 to 04:00 rises to its
evening peak and falls, at the full run's compression (24 h in 10 min: the same rates
at the same speed, the morning left out). tests/harness/e2e.py is the scenario; this
test asserts:

- the loop closed: the operator grew the fleet as the load rose (GPUs held at the peak
  above those at the start) and gave GPUs back after it;
- the watcher saw no state above the budget and no grow while over it, at any event;
- the pods stayed Ready (no pod went unready without being deleted: the KWOK leases);
- after the peak, attainment is at the policy's target, and every dip below it from
  the load step on was back within ``RECOVERY_MAX`` policy intervals (the load step's
  counted from the step, a later one, e.g. from a scale-down, from its start; the
  loop's delay is 5 intervals: the 20 s metrics window to see the load, one 10 s
  interval to act, the 20 s start-up delay; 6 allows the step's own interval).
  Attainment *during* the peak is printed, not asserted: the ramp doubles the load in ~50 s, about
  the loop's delay, and the full run's was 0.86 against the 0.9 target
  (docs/bench/e2e.md);
- both goodputs are reported over the same window (their agreement is the lead's item
  5 and is printed, not asserted here);
- no ERROR in the operator's log, no problem in the emulator.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness.cluster import LocalCluster
from tests.harness.e2e import TARGET, Scenario, print_summary, run
from tests.harness.prometheus import PrometheusServer

pytestmark = pytest.mark.integration

# To 04:00: the load falls below the day's level at about 02:00 (the full run gave its
# GPUs back from 02:50 on); a span ending at 02:00 ended before any shrink.
START_HOUR, HOURS = 16.0, 12.0
MINUTES = HOURS / 24.0 * 10.0  # the full run's compression
RECOVERY_MAX = 6


@pytest.mark.timeout(600)
def test_the_operator_rides_the_peak_within_budget(
    cluster: LocalCluster,
    prometheus: PrometheusServer,
    helm_bin: Path,
    crd: None,
    tmp_path: Path,
) -> None:
    r = run(
        cluster,
        prometheus,
        helm_bin,
        tmp_path / "run",
        tmp_path / "out",
        Scenario(minutes=MINUTES, tail_s=20.0, start_hour=START_HOUR, hours=HOURS),
    )
    print_summary(r)
    assert (tmp_path / "out" / "e2e.json").exists() and (tmp_path / "out" / "e2e.png").exists()
    assert not r["operator_errors"], r["operator_errors"]
    assert not r["emulator_problems"], r["emulator_problems"]
    assert r["watch_events"] > 10 and r["watch_gaps"] == 0
    assert r["over_budget_states"] == 0
    assert r["grows_while_over_budget"] == 0
    assert r["peak_gpus"] <= r["budget"]
    assert r["pods_unready_without_deletion"] == 0
    assert r["kwok_nodes"]["checks"] > 50 and not r["kwok_nodes"]["not_ready"], r["kwok_nodes"]
    step_t = r["scenario"]["load_step_t"]
    at_step = [h for t, h in r["timeline"]["held"] if t <= step_t][-1]
    # It grows for the peak, unless it already held the whole budget at the step (the
    # planner may keep every GPU that adds goodput before it: then there is nothing to
    # grow into, and the scale-ups below are what show it scaled up for the day).
    assert r["gpus_held_peak_phase_max"] > at_step or at_step == r["budget"], (
        "the operator did not grow for the peak"
    )
    assert r["gpus_returned_after_peak"] > 0, "no GPUs given back after the peak"
    ups = [a for a in r["scale_actions"] if a["replicas"] > 2]
    assert ups, r["scale_actions"]
    assert r["attainment"]["after"] >= TARGET, r["attainment"]
    step_k = int(r["scenario"]["load_step_t"] // r["scenario"]["interval_s"])
    assert r["goodput_exact"] > 0
    assert r["goodput_estimated"] is not None and r["goodput_estimated"] > 0
    # Every dip from the load step on is back at the target within RECOVERY_MAX
    # intervals: the step's own counted from the step, any later one from its start; a
    # dip whose deadline lies past the last interval cannot be judged yet. (Planner v2's
    # move cost once held a move at the ramp's onset, weighed at the rate observed: 7
    # and 9 intervals; a move is now weighed at the demand when its replicas would
    # serve, and this form had no dip during the peak again.)
    n = len(r["attainment_per_interval"])
    late = []
    for dip in r["recovery_intervals"]:
        if dip["dip_interval"] < step_k:
            continue
        if dip["intervals"] is None:
            if n - dip["from_interval"] > RECOVERY_MAX:
                late.append(dip)
        elif dip["intervals"] > RECOVERY_MAX:
            late.append(dip)
    assert not late, f"not back at the target within {RECOVERY_MAX} intervals: {late}"
