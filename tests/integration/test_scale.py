"""The scale runner's small form (issue 14, "Scale"): 20 policies with their emulated
fleets under one `goodput run` for 45 s, on the session's control plane and
Prometheus. It checks that every figure `make scale` reports is measured (not that a
target is met: timings on a shared machine are not asserted): the ticks in the window
are the policies' (each policy ticked about window / interval times, and the ticks
planned: the fleets' series were found), the histogram's quantiles agree with the
log's exact ones to within a bucket, CPU and memory were read from /proc, the
operator's API requests were found in the audit log, and Prometheus counted its
queries. The 200-policy figures are in docs/bench/scale.md."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.harness.cluster import LocalCluster
from tests.harness.prometheus import PrometheusServer
from tests.harness.scale import Setup, run, summary

pytestmark = pytest.mark.integration

SMALL = Setup(
    policies=20, per_namespace=10, interval_s=5.0, warmup_s=20.0, duration_s=45.0, scrape_s=1.0
)
# The operator histogram's bucket bounds around the tick times seen here.
BOUNDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


_INDEX = {b: i for i, b in enumerate((*BOUNDS, math.inf))}


def _bucket(x: float) -> float:
    return next((b for b in BOUNDS if x <= b), math.inf)


def test_twenty_policies_for_a_minute_are_measured(
    cluster: LocalCluster, prometheus: PrometheusServer, crd: None, helm_bin: Path, tmp_path: Path
) -> None:
    r = run(cluster, prometheus, helm_bin, tmp_path, SMALL)
    print(summary(r))
    # Each loop sleeps an interval after its tick: at most policies x window / interval.
    assert 0.6 * r.ticks_expected <= r.ticks <= r.ticks_expected + SMALL.policies, r.ticks
    planned = sum(n for k, n in r.decisions.items() if not k.startswith(("Metrics", "Prom")))
    assert planned >= 0.9 * r.ticks, r.decisions
    # The two counters are read a moment apart: a tick in flight may be in one only.
    assert abs(sum(r.decisions.values()) - r.ticks) <= SMALL.policies, (r.decisions, r.ticks)
    assert 0 < r.tick_p50_s <= r.tick_p95_s
    assert 0 < r.tick_p50_log_s <= r.tick_p95_log_s <= r.tick_max_log_s
    # The histogram's quantile (interpolated inside its bucket) and the log's exact one
    # agree to within a bucket (the two sets of ticks differ at the window's edges).
    both = (_bucket(r.tick_p95_log_s), _bucket(r.tick_p95_s))
    assert abs(_INDEX[both[0]] - _INDEX[both[1]]) <= 1, (r.tick_p95_log_s, r.tick_p95_s)
    assert r.cpu_cores > 0 and 50 < r.rss_mib <= r.peak_rss_mib
    assert r.operator_api_rps > 0 and r.all_clients_api_rps >= r.operator_api_rps
    assert {"get", "patch"} <= set(r.operator_api_by_verb), r.operator_api_by_verb
    assert r.prometheus_queries_per_tick >= 1 and r.prometheus_inner_evals_per_tick >= 1
    assert r.errors_in_log == 0
