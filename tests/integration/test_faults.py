"""Faults on the live setup (issue 14, "Faults"): the budget holds through each, the
operator says what it sees while the fault lasts, and it recovers within a stated
number of intervals after.

The setup is what a platform team runs: `goodput run` as a process with exactly the
chart's arguments and the chart's ServiceAccount (a TokenRequest kubeconfig; the
chart's RBAC and KopfPeering applied to the real API server), on the session's real
control plane with KWOK pods, reading a private real Prometheus (private so that it can
be killed without touching other tests) that scrapes one exporter hub, one emulated
fleet per test (``ServingExporter``: vLLM-format series with set rates and latency
distributions; the latencies meet the SLO so the planner's plan follows the load).

One operator process (replica 0 of the chart's StatefulSet) serves every test of the
module, each in its own namespace (all listed in the chart's watchNamespaces); each
test deletes its policy at the end so the next test's ticks run alone. A
:class:`BudgetWatch` records every watch event of the namespace's pods, Deployments
and policy, and each test checks at *every* event that the GPUs held (terminating pods
included) never exceed the budget of that moment, except where the test itself puts
them above (a hand scale, a budget cut): then nothing may grow until they are back.

Interval 2 s everywhere; the recovery bounds below are in intervals, each with why.
What each test adds to existing ones: test_operator_invariants.py already proves the
hand scale and the budget cut with an in-process kopf and admin credentials, and the
window-over-an-outage rule (MetricsPartial) with a Prometheus restart; test_peering.py
the takeover on a blind policy. Here the same faults hit the chart's operator under
load, with the watcher.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from goodput.reasons import Reason
from tests.harness.budget_watch import BudgetWatch
from tests.harness.chart import (
    PEERING_KINDS,
    RBAC_KINDS,
    apply_parts,
    container_args,
    delete_parts,
    of_kind,
    render,
)
from tests.harness.cluster import LocalCluster
from tests.harness.operator import OperatorProcess
from tests.harness.process import wait_until
from tests.harness.prometheus import PrometheusServer, start_prometheus
from tests.integration.exporters import ExporterHub, PoolTruth, ServingExporter
from tests.integration.test_operator import _condition, _deployment, _events, _policy, _status

pytestmark = pytest.mark.integration

RELEASE_NS = "goodput-faults"
INTERVAL_S = 2.0  # every policy's behavior.interval
LIFETIME_S = 10  # the chart's peering.lifetime here (default 30)
JOB = "faults"
SCENARIOS = ("prom", "target", "hand", "cut", "kill", "api", "peer")

# Latencies inside the SLO (TTFT 500 ms, ITL 50 ms): the observed attainment agrees
# with the profile's, so the plan follows the load.
_GOOD = {
    "prefix_hit": 0.0,
    "ttft_knots": ((0.0, 0.0), (0.05, 0.5), (0.1, 1.0)),
    "itl_knots": ((0.0, 0.0), (0.01, 0.5), (0.02, 1.0)),
}
# Wants 4 prefill + 2 decode = 6 GPUs (the module's budget) from any start.
PEAK = PoolTruth(
    arrival_rps=40.0,
    mean_input_tokens=2000.0,
    mean_output_tokens=300.0,
    running=120.0,
    waiting=60.0,
    kv_usage=0.9,
    **_GOOD,  # type: ignore[arg-type]
)
# Long prompts, one-token answers: 4 prefill + 1 decode (from 1 + 4: a rebalance).
PROMPTS = PoolTruth(
    arrival_rps=6.0,
    mean_input_tokens=4000.0,
    mean_output_tokens=10.0,
    running=4.0,
    waiting=2.0,
    kv_usage=0.2,
    **_GOOD,  # type: ignore[arg-type]
)
QUIET = PoolTruth(arrival_rps=0.0, running=0.0, waiting=0.0, kv_usage=0.0, **_GOOD)  # type: ignore[arg-type]
BUDGET = 6


@dataclass
class Live:
    cluster: LocalCluster
    prometheus: PrometheusServer
    hub: ExporterHub
    namespaces: dict[str, str]
    args: list[str]
    kubeconfig: Path
    sa: str
    workdir: Path
    runs: int = 0
    replicas: dict[int, OperatorProcess] = field(default_factory=dict)
    fleets: dict[str, ServingExporter] = field(default_factory=dict)

    def replica(self, ordinal: int = 0) -> OperatorProcess:
        """Replica ``ordinal`` running (started now if it is not)."""
        op = self.replicas.get(ordinal)
        if op is None or not op.alive():
            self.runs += 1
            op = OperatorProcess(
                self.workdir,
                f"replica{ordinal}-{self.runs}",
                self.args,
                self.kubeconfig,
                env={"POD_ID": f"{self.sa}-{ordinal}"},
            )
            self.replicas[ordinal] = op
        return op

    def fleet(self, key: str, truth: PoolTruth) -> ServingExporter:
        self.fleets[key] = self.hub.add(
            ServingExporter("vllm", key, pools={"prefill": truth, "decode": truth})
        )
        return self.fleets[key]

    def load(self, key: str, truth: PoolTruth) -> None:
        """The fleet's traffic from now on (both pools)."""
        for pool in ("prefill", "decode"):
            self.fleets[key].set_traffic(pool, **truth.__dict__)


@pytest.fixture(scope="module")
def live(
    cluster: LocalCluster, crd: None, helm_bin: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    workdir = tmp_path_factory.mktemp("faults")
    namespaces = {k: cluster.create_namespace(f"fault-{k}") for k in SCENARIOS}
    release = f"faults{int(time.time() * 1000) % 100000}"
    docs = render(
        helm_bin,
        release,
        RELEASE_NS,
        "watchNamespaces={" + ",".join(namespaces.values()) + "}",
        f"peering.name={release}",
        f"peering.lifetime={LIFETIME_S}",
        "replicaCount=2",
    )
    (sa_doc,) = of_kind(docs, "ServiceAccount")
    sa = sa_doc["metadata"]["name"]
    apply_parts(cluster, docs, *RBAC_KINDS, *PEERING_KINDS)
    kubeconfig = cluster.service_account_kubeconfig(RELEASE_NS, sa, workdir / "kubeconfig")
    args = [
        a
        for a in container_args(docs)[1:]  # after "run" (the image's entrypoint is goodput)
        if not a.startswith(("--metrics-port", "--liveness"))
    ]
    prometheus = start_prometheus(workdir / "prometheus")
    hub = ExporterHub().start()
    live = Live(cluster, prometheus, hub, namespaces, args, kubeconfig, sa, workdir)
    try:
        prometheus.add_target(JOB, hub.target)
        op = live.replica(0)
        wait_until(lambda: op.metric("goodput_operator_active") == 1.0, 60, "replica 0 active")
        yield live
    finally:
        for op in live.replicas.values():
            op.stop()
        hub.stop()
        prometheus.stop()
        delete_parts(cluster, docs, *PEERING_KINDS, *RBAC_KINDS)


# ---- helpers ------------------------------------------------------------------------------


def _fault_policy(live: Live, key: str, budget: int = BUDGET) -> dict[str, Any]:
    ns = live.namespaces[key]
    policy = _policy(ns, live.prometheus.url, JOB, "Enforce")
    policy["spec"]["gpuBudget"] = budget
    policy["spec"]["metrics"]["selectors"] = {
        r: f'job="{JOB}",scenario="{key}",pool="{r}"' for r in ("prefill", "decode")
    }
    return policy


def _start(live: Live, key: str, truth: PoolTruth, prefill: int = 1, decode: int = 1) -> str:
    """The fleet's exporter, its Deployments and, once a rate window of samples is in
    Prometheus, its policy; the namespace."""
    ns = live.namespaces[key]
    live.fleet(key, truth)
    live.cluster.apply(_deployment("prefill", ns, prefill, 1))
    live.cluster.apply(_deployment("decode", ns, decode, 1))
    sel = f'vllm:request_success_total{{job="{JOB}",scenario="{key}",pool="decode"}}'
    wait_until(lambda: len(live.prometheus.query(sel)) == 1, 30, f"the {key} fleet's series")
    time.sleep(4)  # a whole 3 s rate window
    return ns


def _replicas(live: Live, ns: str) -> tuple[int, int]:
    out = live.cluster.kubectl(
        "get",
        "deploy",
        "-n",
        ns,
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}={.spec.replicas} {end}",
    ).stdout
    got = dict(item.split("=") for item in out.split())
    return int(got.get("prefill", -1)), int(got.get("decode", -1))


def _decision(live: Live, ns: str) -> dict[str, Any]:
    d: dict[str, Any] = _status(live.cluster, ns).get("lastDecision") or {}
    return d


def _reasons_since(live: Live, ns: str, since_iso: str = "") -> list[tuple[str, str, str]]:
    return [
        (e["type"], e["reason"], e.get("message", ""))
        for e in _events(live.cluster, ns)
        if (e.get("lastTimestamp") or e.get("eventTime") or "") >= since_iso
    ]


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1))


def _writes(op: OperatorProcess, ns: str) -> float:
    return op.metric("goodput_scale_writes_total", namespace=ns)


def _at_peak(live: Live, ns: str, timeout: float = 60) -> None:
    """Until the plan is reached: 4 + 2 written and a planned (not held) decision."""
    wait_until(lambda: _replicas(live, ns) == (4, 2), timeout, "the peak allocation 4 + 2")
    wait_until(
        lambda: (
            _decision(live, ns).get("hold") is False
            and _condition(_status(live.cluster, ns), "WithinBudget").get("status") == "True"
        ),
        30,
        "a planned decision within budget",
    )


def _never_over(watch: BudgetWatch, since: float = 0.0, until: float = float("inf")) -> None:
    over = watch.over_budget(since, until)
    assert not over, f"{len(over)} observed states above the budget, first: {over[0]}"


def _end(live: Live, ns: str) -> None:
    """Delete the policy: its loop stops, so the next test's ticks run alone."""
    live.cluster.kubectl("delete", "gp", "chat", "-n", ns, "--ignore-not-found", "--wait=false")


def _log_since(op: OperatorProcess, mark: int) -> str:
    return op.log()[mark:]


def _errors(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if " ERROR " in ln or "Traceback" in ln]


# ---- the faults ---------------------------------------------------------------------------

PROM_DOWN_INTERVALS = 5
# After Prometheus is ready again: its first scrapes come ~5 s later (service discovery
# first; MetricsMissing until a 3 s window holds two samples), then MetricsPartial until
# the window is clear of the gap, then the next tick plans. Measured: 5.4 intervals.
PROM_RECOVERY_INTERVALS = 8


def test_prometheus_killed_for_several_intervals_holds_blind_then_resumes(live: Live) -> None:
    """Prometheus down for 5 intervals while the load drops: every tick holds with
    PrometheusUnreachable (MetricsAvailable False, a Warning event), nothing is written
    although the load that would shrink the fleet is already gone; after the restart
    the policy plans again and scales down within PROM_RECOVERY_INTERVALS."""
    op = live.replica(0)
    ns = _start(live, "prom", PEAK)
    live.cluster.apply(_fault_policy(live, "prom"))
    with BudgetWatch(live.cluster, ns) as watch:
        _at_peak(live, ns)
        writes_before = _writes(op, ns)
        since = _now_iso()
        mark = len(op.log())
        seen: dict[str, Any] = {}

        def while_down() -> None:
            live.load("prom", QUIET)

            def blind() -> bool:
                st = _status(live.cluster, ns)
                cond = _condition(st, "MetricsAvailable")
                if cond.get("reason") == Reason.PrometheusUnreachable.value:
                    seen["status"] = st
                    return True
                return False

            wait_until(blind, 6 * INTERVAL_S, "PrometheusUnreachable while down")

        down_at = time.monotonic()
        live.prometheus.restart(down_s=PROM_DOWN_INTERVALS * INTERVAL_S, while_down=while_down)
        back_at = time.monotonic()
        assert _writes(op, ns) == writes_before, "a write while Prometheus was down"
        changed = [s for s in watch.since(down_at) if s.kind == "Deployment" and s.t < back_at]
        assert not changed, changed
        st = seen["status"]
        assert _condition(st, "MetricsAvailable")["status"] == "False"
        assert st["lastDecision"]["hold"] is True
        assert ("Warning", Reason.PrometheusUnreachable.value) in {
            (t, r) for t, r, _ in _reasons_since(live, ns, since)
        }
        wait_until(
            lambda: _replicas(live, ns) == (1, 1),
            PROM_RECOVERY_INTERVALS * INTERVAL_S + 10,
            "the scale-down once Prometheus is back",
        )
        recovered = (time.monotonic() - back_at) / INTERVAL_S
        print(f"Prometheus back: scaled down after {recovered:.1f} intervals")
        assert recovered <= PROM_RECOVERY_INTERVALS, recovered
        assert op.alive()
    _never_over(watch)
    assert not _errors(_log_since(op, mark)), _errors(_log_since(op, mark))
    _end(live, ns)


# TargetNotFound is an API failure, retried with exponential backoff (interval x
# 2^failures): a target missing for ~3 intervals leaves the loop waiting at most 8 s
# (4 intervals) when it comes back, and the next tick plans.
TARGET_GONE_S = 3 * INTERVAL_S
TARGET_RECOVERY_INTERVALS = 5


def test_target_deleted_and_recreated_holds_then_resumes(live: Live) -> None:
    """Decode deleted at the peak: TargetNotFound (AbleToScale False naming it, a
    Warning event), prefill untouched; recreated with 1 replica: the plan grows it back
    to 2 within TARGET_RECOVERY_INTERVALS, never above the budget."""
    op = live.replica(0)
    ns = _start(live, "target", PEAK)
    live.cluster.apply(_fault_policy(live, "target"))
    with BudgetWatch(live.cluster, ns) as watch:
        _at_peak(live, ns)
        since, mark = _now_iso(), len(op.log())
        writes_before = _writes(op, ns)
        live.cluster.kubectl("delete", "deploy", "decode", "-n", ns, "--wait=false")
        gone_at = time.monotonic()

        def not_found() -> bool:
            cond = _condition(_status(live.cluster, ns), "AbleToScale")
            return cond.get("reason") == Reason.TargetNotFound.value

        wait_until(not_found, 3 * INTERVAL_S, "TargetNotFound")
        cond = _condition(_status(live.cluster, ns), "AbleToScale")
        assert cond["status"] == "False" and "decode" in cond["message"], cond
        time.sleep(max(0.0, TARGET_GONE_S - (time.monotonic() - gone_at)))
        assert _writes(op, ns) == writes_before, "a write while the target was missing"
        assert _replicas(live, ns)[0] == 4
        warned = [m for t, r, m in _reasons_since(live, ns, since) if r == "TargetNotFound"]
        assert warned and "decode" in warned[0], _reasons_since(live, ns, since)
        live.cluster.apply(_deployment("decode", ns, 1, 1))
        back = time.monotonic()
        wait_until(
            lambda: _replicas(live, ns) == (4, 2),
            TARGET_RECOVERY_INTERVALS * INTERVAL_S + 10,
            "decode grown back after the recreation",
        )
        took = (time.monotonic() - back) / INTERVAL_S
        print(f"target recreated: grown back after {took:.1f} intervals")
        assert took <= TARGET_RECOVERY_INTERVALS, took
        wait_until(
            lambda: _condition(_status(live.cluster, ns), "AbleToScale").get("status") == "True",
            3 * INTERVAL_S,
            "AbleToScale True again",
        )
    _never_over(watch)
    assert op.alive()
    assert not _errors(_log_since(op, mark)), _errors(_log_since(op, mark))
    _end(live, ns)


# The over-budget shrink is written by the next tick (no window, no step limit).
OVER_BUDGET_WRITE_INTERVALS = 2


def test_hand_scaled_above_budget_is_brought_back_before_anything_grows(live: Live) -> None:
    """At the peak (4 + 2 = budget 6) decode is scaled to 5 by hand: the operator shrinks
    it back within OVER_BUDGET_WRITE_INTERVALS, an OverBudget Warning names
    Deployment/decode, and nothing grows until the GPUs held are within the budget."""
    op = live.replica(0)
    ns = _start(live, "hand", PEAK)
    live.cluster.apply(_fault_policy(live, "hand"))
    with BudgetWatch(live.cluster, ns) as watch:
        _at_peak(live, ns)
        since, mark = _now_iso(), len(op.log())
        scaled = time.monotonic()
        live.cluster.kubectl("scale", "deploy/decode", "-n", ns, "--replicas=5")
        wait_until(
            lambda: _replicas(live, ns)[1] == 2,
            OVER_BUDGET_WRITE_INTERVALS * INTERVAL_S + 5,
            "the hand scale undone",
        )
        undone = (time.monotonic() - scaled) / INTERVAL_S
        back = watch.wait(lambda s: s.held <= BUDGET and s.t > scaled + 0.1, 30, "within budget")
        time.sleep(3 * INTERVAL_S)
    print(f"hand scale undone after {undone:.1f} intervals")
    assert undone <= OVER_BUDGET_WRITE_INTERVALS, undone
    assert watch.over_budget(scaled), "the hand scale was never observed above the budget"
    ours = [
        g for g in watch.grows if g.t > scaled and not (g.deployment == "decode" and g.after == 5)
    ]
    assert not [g for g in ours if g.held > BUDGET], ours
    _never_over(watch, until=scaled)
    _never_over(watch, since=back.t)
    over = [m for t, r, m in _reasons_since(live, ns, since) if r == Reason.OverBudget.value]
    assert over, _reasons_since(live, ns, since)
    assert "Deployment/decode" in over[0] and "over" in over[0], over[0]
    assert not _errors(_log_since(op, mark)), _errors(_log_since(op, mark))
    _end(live, ns)


def test_budget_lowered_mid_run_shrinks_at_once(live: Live) -> None:
    """At the peak the budget goes from 6 to 3: the next tick shrinks within 3 GPUs
    (OverBudget Warning, WithinBudget False until the pods are gone, then True),
    nothing grows while over, and no state above 3 is seen once the shrink has landed."""
    op = live.replica(0)
    ns = _start(live, "cut", PEAK)
    live.cluster.apply(_fault_policy(live, "cut"))
    with BudgetWatch(live.cluster, ns) as watch:
        _at_peak(live, ns)
        since, mark = _now_iso(), len(op.log())
        cut = time.monotonic()
        live.cluster.kubectl(
            "patch", "gp", "chat", "-n", ns, "--type=merge", "-p", '{"spec":{"gpuBudget":3}}'
        )
        wait_until(
            lambda: sum(_replicas(live, ns)) <= 3,
            OVER_BUDGET_WRITE_INTERVALS * INTERVAL_S + 5,
            "the shrink to the new budget",
        )
        written = (time.monotonic() - cut) / INTERVAL_S
        back = watch.wait(lambda s: s.budget == 3 and s.held <= 3, 30, "within the new budget")
        wait_until(
            lambda: _condition(_status(live.cluster, ns), "WithinBudget").get("status") == "True",
            3 * INTERVAL_S,
            "WithinBudget True",
        )
        time.sleep(3 * INTERVAL_S)
    print(f"budget cut: shrink written after {written:.1f} intervals")
    assert written <= OVER_BUDGET_WRITE_INTERVALS, written
    assert not watch.grows_while_over(), watch.grows_while_over()
    _never_over(watch, since=back.t)
    _never_over(watch, until=cut)
    assert ("Warning", Reason.OverBudget.value) in {
        (t, r) for t, r, _ in _reasons_since(live, ns, since)
    }
    assert not _errors(_log_since(op, mark)), _errors(_log_since(op, mark))
    _end(live, ns)


REBALANCE_BUDGET = 5
HOLD = "goodput.test/hold"  # a finalizer: the pods removed by a shrink stay terminating
# After the terminating pods are gone: the next tick grows (its read sees them gone).
GROW_AFTER_RELEASE_INTERVALS = 2


def _held_deployment(name: str, ns: str, replicas: int) -> dict[str, Any]:
    dep = _deployment(name, ns, replicas, 1)
    dep["spec"]["template"]["metadata"]["finalizers"] = [HOLD]
    return dep


def _release(live: Live, ns: str) -> int:
    """Remove the test's finalizer from every terminating pod; how many."""
    out = live.cluster.kubectl("get", "pods", "-n", ns, "-o", "json").stdout
    n = 0
    for p in json.loads(out)["items"]:
        if p["metadata"].get("deletionTimestamp") and HOLD in p["metadata"].get("finalizers", []):
            live.cluster.kubectl(
                "patch", "pod", p["metadata"]["name"], "-n", ns, "--type=json",
                "-p", '[{"op":"remove","path":"/metadata/finalizers"}]',
            )  # fmt: skip
            n += 1
    return n


def test_operator_killed_between_shrink_and_grow_resumes_within_budget(live: Live) -> None:
    """A rebalance with the budget full (1 + 4 -> 4 + 1, budget 5): decode's shrink is
    written, its pods stay terminating (a finalizer), prefill's grow waits
    (WaitingForScaleDown). The operator is SIGKILLed there and started again: from the
    cluster's state it waits still (nothing grows while the pods hold their GPUs), and
    once they are gone grows prefill within GROW_AFTER_RELEASE_INTERVALS. The watcher
    sees no state above the budget, before, during or after the kill."""
    op = live.replica(0)
    ns = live.namespaces["kill"]
    live.fleet("kill", PROMPTS)
    live.cluster.apply(_deployment("prefill", ns, 1, 1))
    live.cluster.apply(_held_deployment("decode", ns, 4))
    sel = f'vllm:request_success_total{{job="{JOB}",scenario="kill",pool="decode"}}'
    wait_until(lambda: len(live.prometheus.query(sel)) == 1, 30, "the kill fleet's series")
    time.sleep(4)
    try:
        with BudgetWatch(live.cluster, ns) as watch:
            watch.wait(lambda s: s.held == 5, 30, "1 + 4 pods")
            live.cluster.apply(_fault_policy(live, "kill", budget=REBALANCE_BUDGET))
            wait_until(
                lambda: _decision(live, ns).get("reason") == Reason.WaitingForScaleDown.value,
                30,
                "the shrink written, the grow waiting",
            )
            assert _replicas(live, ns) == (1, 1), _replicas(live, ns)
            assert watch.last().terminating == 3
            op.kill()
            killed = time.monotonic()
            time.sleep(2 * INTERVAL_S)
            op = live.replica(0)
            restarted = time.monotonic()
            wait_until(
                lambda: (
                    _decision(live, ns).get("reason") == Reason.WaitingForScaleDown.value
                    and _status(live.cluster, ns)["lastDecision"]["time"] > _iso(restarted)
                ),
                30,
                "the restarted operator's first decision",
            )
            resumed = (time.monotonic() - restarted) / INTERVAL_S
            time.sleep(3 * INTERVAL_S)  # it keeps waiting while the pods are there
            assert _replicas(live, ns) == (1, 1), _replicas(live, ns)
            st = _status(live.cluster, ns)
            limited = _condition(st, "ScalingLimited")
            assert limited.get("reason") == "WaitingForScaleDown", limited
            assert _release(live, ns) == 3
            released = time.monotonic()
            # The plan may change as the fresh planner learns (a restart loses its
            # forecast and corrections): prefill grows, how far is the plan's business.
            wait_until(
                lambda: _replicas(live, ns)[0] > 1,
                GROW_AFTER_RELEASE_INTERVALS * INTERVAL_S + 5,
                "prefill grown once decode's pods are gone",
            )
            grew = (time.monotonic() - released) / INTERVAL_S
            time.sleep(3 * INTERVAL_S)
        print(
            f"restarted {restarted - killed:.1f} s after the kill; it decided after "
            f"{resumed:.1f} intervals; grew {grew:.1f} intervals after the release"
        )
        assert grew <= GROW_AFTER_RELEASE_INTERVALS, grew
        _never_over(watch)
        early = [g for g in watch.grows if g.deployment == "prefill" and g.t < released]
        assert not early, early
        assert not _errors(op.log()), _errors(op.log())
    finally:
        _release(live, ns)
        _end(live, ns)


def _iso(monotonic_t: float) -> str:
    wall = time.time() - (time.monotonic() - monotonic_t)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall))


# After the old process has exited; then its start-up. GOODPUT_API_OUTAGE_SECONDS sets
# a longer one (an upgrade of the control plane takes minutes). At 100 s this test FAILS
# today: kopf retries a request 8 times (settings.networking.error_backoffs, ~54 s), then
# its peering keep-alive escalates ("Multidimensional multitasker has failed"), kopf
# stops, its cleanup halts every policy loop and the process exits about 15 s later.
# With error_backoffs an endless iterable (capped backoff) the 100 s outage passes: the
# shrink is written 4.2 intervals after /readyz.
API_DOWN_S = float(os.environ.get("GOODPUT_API_OUTAGE_SECONDS", 4 * INTERVAL_S))
# After /readyz: kopf's watches reconnect (its backoff is short), the peering is
# readable again (cached PEERING_CACHE_S), and a failed tick's backoff is at most
# interval x 2^2 after a 4-interval outage; a spec change wakes the loop at once.
API_RECOVERY_INTERVALS = 5


def test_apiserver_restarted_mid_run_watches_and_writes_recover(live: Live) -> None:
    """kube-apiserver down for 4 intervals (and its start-up) at the peak, then
    back on the same port and etcd. The operator lives through it (no exit); while it
    lasts the loop cannot read its peering, so it stands by and writes nothing; once
    the server is back its policy watch delivers a budget cut (which only a working
    watch can: the loop reads the spec from kopf's events) and the shrink is written
    and the status patched, within API_RECOVERY_INTERVALS."""
    op = live.replica(0)
    ns = _start(live, "api", PEAK)
    live.cluster.apply(_fault_policy(live, "api"))
    with BudgetWatch(live.cluster, ns) as watch:
        _at_peak(live, ns)
        mark = len(op.log())
        down = live.cluster.restart_apiserver(down_s=API_DOWN_S)
        back = time.monotonic()
        assert op.alive(), op.log()[-3000:]
        live.cluster.kubectl(
            "patch", "gp", "chat", "-n", ns, "--type=merge", "-p", '{"spec":{"gpuBudget":3}}'
        )

        def shrunk() -> bool:
            op.assert_alive()  # an exit says so at once, with the log's tail
            return sum(_replicas(live, ns)) <= 3

        wait_until(shrunk, API_RECOVERY_INTERVALS * INTERVAL_S + 10, "the shrink after the restart")
        shrunk = (time.monotonic() - back) / INTERVAL_S
        wait_until(
            lambda: _status(live.cluster, ns).get("gpuBudget") == 3,
            API_RECOVERY_INTERVALS * INTERVAL_S,
            "the status written with the new budget",
        )
        status_s = (time.monotonic() - back) / INTERVAL_S
        time.sleep(2 * INTERVAL_S)
    print(
        f"apiserver down {down:.1f} s; shrink written {shrunk:.1f}, status "
        f"{status_s:.1f} intervals after /readyz; watch gaps {watch.gaps}"
    )
    assert watch.gaps, "the watcher never saw the API server go"
    assert shrunk <= API_RECOVERY_INTERVALS and status_s <= API_RECOVERY_INTERVALS
    _never_over(watch, until=back)
    assert not watch.grows_while_over()
    assert op.alive()
    after = _log_since(op, mark)
    # While it lasts: the loop cannot read its peering, so it stands by (StandingBy,
    # goodput_standby 1) and writes nothing; then it acts again.
    blind = after.find(f"policy {ns}/chat: standing by: cannot read peering")
    assert blind >= 0, after[-3000:]
    assert after.find(f"policy {ns}/chat: active", blind) > blind, after[-3000:]
    # The outage's failures are logged; none once the server has been back a while.
    late = [
        ln for ln in _errors(after) if ln[:23] > _stamp(back + API_RECOVERY_INTERVALS * INTERVAL_S)
    ]
    assert not late, late
    nodes = live.cluster.kubectl("get", "nodes", "-o", "json").stdout
    for n in json.loads(nodes)["items"]:
        ready = [c for c in n["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True", n["metadata"]["name"]
    _end(live, ns)


def _stamp(monotonic_t: float) -> str:
    """The operator log's time stamp format (local time, milliseconds after a comma)."""
    wall = time.time() - (time.monotonic() - monotonic_t)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(wall)) + f",{int(wall % 1 * 1000):03d}"


# The killed replica's keep-alive counts for LIFETIME_S; then the standby resumes and
# ticks at once (test_peering.py measures the same bound on a blind policy).
TAKEOVER_MAX_S = LIFETIME_S + 3 * INTERVAL_S
LOOP_GOES_ON_INTERVALS = 4


def test_active_replica_killed_mid_peak_the_standby_takes_over(live: Live) -> None:
    """Two replicas with the chart's peering at the peak: replica 0 acts, replica 1
    stands by (no decision, no write). Replica 0 is SIGKILLed: replica 1 acts within
    TAKEOVER_MAX_S, and the loop goes on from the cluster's state: when the load goes,
    replica 1 scales down within LOOP_GOES_ON_INTERVALS. Never above the budget."""
    r0 = live.replica(0)
    ns = _start(live, "peer", PEAK)
    live.cluster.apply(_fault_policy(live, "peer"))
    with BudgetWatch(live.cluster, ns) as watch:
        _at_peak(live, ns)
        r1 = live.replica(1)
        wait_until(lambda: "this replica stands by" in r1.log(), 30, "replica 1 standing by")
        time.sleep(2 * INTERVAL_S)
        assert r1.metric("goodput_decisions_total", namespace=ns) == 0
        decided_by_r0 = r0.metric("goodput_decisions_total", namespace=ns)
        assert decided_by_r0 > 0
        r0.kill()
        killed = time.monotonic()
        wait_until(
            lambda: r1.metric("goodput_decisions_total", namespace=ns) > 0,
            TAKEOVER_MAX_S + 10,
            "replica 1's first decision",
        )
        took = time.monotonic() - killed
        wait_until(lambda: r1.metric("goodput_operator_active") == 1.0, 10, "replica 1 active")
        assert _replicas(live, ns) == (4, 2)  # it resumed from the cluster's state
        live.load("peer", QUIET)
        quiet = time.monotonic()
        wait_until(
            lambda: _replicas(live, ns) == (1, 1),
            LOOP_GOES_ON_INTERVALS * INTERVAL_S + 10,
            "replica 1 scaling down",
        )
        went_on = (time.monotonic() - quiet) / INTERVAL_S
        assert r1.metric("goodput_scale_writes_total", namespace=ns) >= 2
    print(f"takeover after SIGKILL {took:.1f} s; scale-down by the standby {went_on:.1f} intervals")
    assert took <= TAKEOVER_MAX_S, took
    assert went_on <= LOOP_GOES_ON_INTERVALS, went_on
    _never_over(watch)
    assert r1.alive() and not _errors(r1.log()), _errors(r1.log())
    _end(live, ns)
    r1.stop()
