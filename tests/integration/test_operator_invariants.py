"""The operator's promises in states that ordinary operations produce, on the real API
server: the budget wins over everything (a cut, a hand scale, minimums the pod template
reveals), one writer per target, deletion never waits for the operator, a refused write
is visible, and the status always equals the current decision."""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from kopf.testing import KopfRunner

from goodput.reasons import Reason
from tests.harness.cluster import LocalCluster
from tests.harness.process import wait_until
from tests.harness.prometheus import PrometheusServer, start_prometheus
from tests.integration.conftest import HEAVY
from tests.integration.exporters import ExporterHub, ServingExporter
from tests.integration.test_operator import (
    _condition,
    _deployment,
    _events,
    _policy,
    _replicas,
    _status,
)

pytestmark = pytest.mark.integration


class HeldLog:
    """Every sample of the GPUs held in a namespace (pods that exist, terminating ones
    included), with its time, so a test can check any window after an event."""

    def __init__(self, cluster: LocalCluster, ns: str) -> None:
        from kubernetes import client

        self.core = client.CoreV1Api(cluster.api_client())
        self.ns = ns
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            held = 0
            for p in self.core.list_namespaced_pod(self.ns).items:
                if p.status and p.status.phase in ("Succeeded", "Failed"):
                    continue
                for c in p.spec.containers:
                    held += int((c.resources.limits or {}).get("nvidia.com/gpu", "0"))
            self.samples.append((time.monotonic(), held))
            time.sleep(0.1)

    def after(self, t: float) -> list[int]:
        return [h for when, h in self.samples if when >= t]

    def __enter__(self) -> HeldLog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _ns_with(cluster: LocalCluster, prefix: str, p: int, d: int, gpus: int = 1) -> str:
    ns = cluster.create_namespace(prefix)
    cluster.apply(_deployment("prefill", ns, p, gpus))
    cluster.apply(_deployment("decode", ns, d, gpus))
    return ns


def _blind_policy(ns: str, prom_url: str, budget: int) -> dict[str, Any]:
    """Selectors that match no series: every tick holds for missing metrics."""
    policy = _policy(ns, prom_url, "no-such-job", "Enforce")
    policy["spec"]["gpuBudget"] = budget
    return policy


def _patch_spec(cluster: LocalCluster, ns: str, name: str, spec: dict[str, Any]) -> float:
    cluster.kubectl("patch", "gp", name, "-n", ns, "--type=merge", "-p", json.dumps({"spec": spec}))
    return time.monotonic()


def _reasons(cluster: LocalCluster, ns: str) -> list[tuple[str, str]]:
    return [(e["type"], e["reason"]) for e in _events(cluster, ns)]


def test_budget_cut_while_blind_shrinks_at_once_and_says_so(
    cluster: LocalCluster, prometheus: PrometheusServer, operator: None
) -> None:
    ns = _ns_with(cluster, "cut", 3, 3)
    cluster.apply(_blind_policy(ns, prometheus.url, budget=6))
    wait_until(
        lambda: _condition(_status(cluster, ns), "MetricsAvailable").get("status") == "False",
        60,
        "the blind hold",
    )
    with HeldLog(cluster, ns) as held:
        cut = _patch_spec(cluster, ns, "chat", {"gpuBudget": 2})
        wait_until(
            lambda: _replicas(cluster, ns, "prefill") + _replicas(cluster, ns, "decode") <= 2,
            20,
            "the shrink to the new budget",
        )
        written = time.monotonic() - cut
        wait_until(lambda: held.samples[-1][1] <= 2, 30, "the removed pods to terminate")
        settled = time.monotonic()
        time.sleep(5)
    # Two-second interval: the shrink lands within a tick or two, not a window later.
    assert written < 8, written
    assert max(held.after(settled)) <= 2
    assert _replicas(cluster, ns, "prefill") == 1 and _replicas(cluster, ns, "decode") == 1
    assert ("Warning", Reason.OverBudget.value) in _reasons(cluster, ns)
    st = _status(cluster, ns)
    assert _condition(st, "WithinBudget")["status"] == "True"
    assert st["lastDecision"]["reason"] == Reason.MetricsMissing.value


def test_hand_scaled_above_budget_is_brought_back_before_anything_grows(
    cluster: LocalCluster,
    prometheus: PrometheusServer,
    operator: None,
    heavy_exporter: tuple[ServingExporter, str],
) -> None:
    _, job = heavy_exporter
    ns = _ns_with(cluster, "hand", 1, 1)
    time.sleep(4)
    cluster.apply(_policy(ns, prometheus.url, job, "Enforce"))
    wait_until(
        lambda: _replicas(cluster, ns, "prefill") + _replicas(cluster, ns, "decode") > 2,
        60,
        "the first scale-up",
    )
    wait_until(
        lambda: _condition(_status(cluster, ns), "WithinBudget").get("status") == "True",
        30,
        "within budget",
    )
    with HeldLog(cluster, ns) as held:
        cluster.kubectl("scale", "deploy/decode", "-n", ns, "--replicas=9")
        scaled = time.monotonic()

        def back() -> bool:
            return _replicas(cluster, ns, "prefill") + _replicas(cluster, ns, "decode") <= 6

        wait_until(back, 20, "the hand scale undone")
        undone = time.monotonic() - scaled
        wait_until(lambda: held.samples[-1][1] <= 6, 30, "the extra pods to terminate")
        settled = time.monotonic()
        time.sleep(5)
    assert undone < 8, undone
    assert max(held.after(settled)) <= 6
    over = [e for e in _events(cluster, ns) if e["reason"] == Reason.OverBudget.value]
    assert over and over[0]["type"] == "Warning"
    assert "Deployment/decode" in over[0]["message"] and "over" in over[0]["message"]


def test_minimums_above_a_budget_only_the_template_reveals(
    cluster: LocalCluster, prometheus: PrometheusServer, operator: None
) -> None:
    ns = _ns_with(cluster, "mins", 1, 1, gpus=4)  # 1 + 1 replicas x 4 GPUs = 8 > 6
    policy = _blind_policy(ns, prometheus.url, budget=6)
    for pool in policy["spec"]["pools"]:
        pool.pop("gpusPerReplica", None)
    cluster.apply(policy)
    wait_until(
        lambda: (
            _condition(_status(cluster, ns), "Ready").get("reason")
            == Reason.MinimumsExceedBudget.value
        ),
        60,
        "MinimumsExceedBudget",
    )
    st = _status(cluster, ns)
    assert _condition(st, "Ready")["status"] == "False"
    assert "raise gpuBudget or lower minReplicas" in _condition(st, "Ready")["message"]
    assert ("Warning", Reason.MinimumsExceedBudget.value) in _reasons(cluster, ns)
    time.sleep(5)
    assert _replicas(cluster, ns, "prefill") == 1 and _replicas(cluster, ns, "decode") == 1


def test_second_policy_on_a_target_holds_and_the_target_does_not_flap(
    cluster: LocalCluster, prometheus: PrometheusServer, operator: None
) -> None:
    ns = _ns_with(cluster, "two", 2, 2)
    first = _blind_policy(ns, prometheus.url, budget=4)
    cluster.apply(first)
    wait_until(lambda: bool(_status(cluster, ns).get("lastDecision")), 60, "the first policy")
    time.sleep(1.1)  # creationTimestamp has second resolution
    second = _blind_policy(ns, prometheus.url, budget=2)  # would shrink to 1/1 if it acted
    second["metadata"]["name"] = "late"
    cluster.apply(second)

    def late() -> dict[str, Any]:
        out = cluster.kubectl("get", "gp", "late", "-n", ns, "-o", "json").stdout
        status: dict[str, Any] = json.loads(out).get("status") or {}
        return status

    wait_until(
        lambda: (
            _condition(late(), "AbleToScale").get("reason") == Reason.ConflictingController.value
        ),
        60,
        "ConflictingController on the later policy",
    )
    assert "GoodputPolicy chat" in _condition(late(), "AbleToScale")["message"]
    seen = set()
    for _ in range(20):
        seen.add((_replicas(cluster, ns, "prefill"), _replicas(cluster, ns, "decode")))
        time.sleep(0.5)
    assert seen == {(2, 2)}, seen
    assert _condition(_status(cluster, ns), "AbleToScale")["status"] == "True"


def test_a_target_without_scale_is_scale_failed_with_an_event_naming_it(
    cluster: LocalCluster, prometheus: PrometheusServer, operator: None
) -> None:
    ns = _ns_with(cluster, "cm", 1, 1)
    cluster.apply(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "p-config", "namespace": ns}}
    )
    policy = _blind_policy(ns, prometheus.url, budget=6)
    policy["spec"]["pools"][0]["targetRef"] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "p-config",
    }
    policy["spec"]["pools"][0]["gpusPerReplica"] = 1
    cluster.apply(policy)
    wait_until(
        lambda: (
            _condition(_status(cluster, ns), "AbleToScale").get("reason")
            == Reason.ScaleFailed.value
        ),
        60,
        "ScaleFailed",
    )
    msg = _condition(_status(cluster, ns), "AbleToScale")["message"]
    assert "ConfigMap/p-config" in msg and "no scale subresource" in msg, msg
    warn = [e for e in _events(cluster, ns) if e["reason"] == Reason.ScaleFailed.value]
    assert warn and warn[0]["type"] == "Warning" and "ConfigMap/p-config" in warn[0]["message"]
    described = cluster.kubectl("describe", "gp", "chat", "-n", ns).stdout
    assert "ScaleFailed" in described and "no scale subresource" in described
    table = cluster.kubectl("get", "gp", "-n", ns).stdout
    assert "REASON" in table and "ScaleFailed" in table, table


def test_status_after_a_hold_keeps_nothing_of_the_old_plan(
    cluster: LocalCluster,
    prometheus: PrometheusServer,
    operator: None,
    heavy_exporter: tuple[ServingExporter, str],
) -> None:
    _, job = heavy_exporter
    ns = _ns_with(cluster, "whole", 1, 1)
    time.sleep(4)
    cluster.apply(_policy(ns, prometheus.url, job, "Recommend"))
    wait_until(
        lambda: _status(cluster, ns).get("goodput", {}).get("predictedTokensPerSecond") is not None,
        60,
        "a plan",
    )
    assert "predictedAttainment" in _status(cluster, ns)["goodput"]
    selectors = {r: f'job="nothing-{r}"' for r in ("prefill", "decode")}
    _patch_spec(cluster, ns, "chat", {"metrics": {"selectors": selectors}})
    wait_until(
        lambda: _status(cluster, ns).get("lastDecision", {}).get("hold") is True,
        60,
        "the hold",
    )
    st = _status(cluster, ns)
    assert "predictedTokensPerSecond" not in st.get("goodput", {}), st.get("goodput")
    assert "runnerUp" not in st["lastDecision"], st["lastDecision"]
    assert st["lastDecision"]["bindingConstraint"] == "None"
    described = cluster.kubectl("describe", "gp", "chat", "-n", ns).stdout
    assert "MetricsMissing" in described


@pytest.fixture
def quiet_operator(
    cluster: LocalCluster, crd: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[KopfRunner]:
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    import goodput.operator.handlers as handlers

    handlers._api_client = None
    runner = KopfRunner(["run", "-A", "--standalone", "-m", handlers.__name__], timeout=60)
    yield runner


def test_deletion_never_waits_for_the_operator(
    cluster: LocalCluster, prometheus: PrometheusServer, quiet_operator: KopfRunner
) -> None:
    ns = _ns_with(cluster, "del", 1, 1)
    cluster.apply(_blind_policy(ns, prometheus.url, budget=6))
    with quiet_operator:
        wait_until(lambda: bool(_status(cluster, ns).get("lastDecision")), 60, "a first tick")
        meta = json.loads(cluster.kubectl("get", "gp", "chat", "-n", ns, "-o", "json").stdout)
        assert not meta["metadata"].get("finalizers"), meta["metadata"]
        second = _blind_policy(ns, prometheus.url, budget=6)
        second["metadata"]["name"] = "other"
        cluster.apply(second)
        wait_until(
            lambda: (
                "status"
                in json.loads(cluster.kubectl("get", "gp", "other", "-n", ns, "-o", "json").stdout)
            ),
            60,
            "the second policy's first tick",
        )
    # The operator is stopped: deletion completes anyway.
    started = time.monotonic()
    cluster.kubectl("delete", "gp", "chat", "-n", ns, "--timeout=20s")
    cluster.kubectl("delete", "namespace", ns, "--timeout=60s", timeout=90)
    assert time.monotonic() - started < 60
    gone = cluster.kubectl("get", "namespace", ns, check=False)
    assert gone.returncode != 0


def test_no_decision_from_a_rate_whose_window_overlaps_a_prometheus_outage(
    cluster: LocalCluster, operator: None, tmp_path: Path
) -> None:
    """Prometheus down for longer than the window while the operator runs (Enforce),
    then back with its data: blind ticks hold (PrometheusUnreachable), and after it is
    back every tick holds with MetricsPartial until its window starts after the first
    sample back; no plan is made from a window over the outage and nothing is written."""
    window = 8.0
    # The two minutes: GOODPUT_OUTAGE_SECONDS=120 (the short default shows the
    # same rule: the outage is longer than the window either way).
    outage_s = float(os.environ.get("GOODPUT_OUTAGE_SECONDS", window + 6))
    private = start_prometheus(tmp_path / "prom")
    hub = ExporterHub().start()
    try:
        hub.add(ServingExporter("vllm", "op", pools={"prefill": HEAVY, "decode": HEAVY}))
        private.add_target("gap", hub.target)
        ns = _ns_with(cluster, "gap", 1, 1)
        policy = _policy(ns, private.url, "gap", "Enforce")
        policy["spec"]["metrics"]["window"] = f"{window:.0f}s"
        policy["spec"]["gpuBudget"] = 2  # 1 + 1 already holds it: a plan writes nothing
        time.sleep(window + 1)
        cluster.apply(policy)
        wait_until(
            lambda: _condition(_status(cluster, ns), "MetricsAvailable").get("status") == "True",
            60,
            "fresh metrics",
        )
        decisions: dict[str, tuple[str, bool]] = {}
        stop = threading.Event()

        def record() -> None:
            while not stop.is_set():
                d = _status(cluster, ns).get("lastDecision") or {}
                if "time" in d:
                    decisions[d["time"]] = (d["reason"], d["hold"])
                time.sleep(0.3)

        recorder = threading.Thread(target=record, daemon=True)
        recorder.start()
        private.restart(down_s=outage_s)
        wait_until(
            lambda: any(
                not hold and _ts(t) > time.time() - 3 for t, (_, hold) in decisions.items()
            ),
            60,
            "plans again after the outage",
        )
        time.sleep(2 * window)
        stop.set()
        recorder.join(timeout=5)
        (series,) = private.query('vllm:request_success_total{job="gap",pool="decode"}[5m]')
        stamps = [float(t) for t, _ in series["values"]]
        gone, back = max(itertools.pairwise(stamps), key=lambda p: p[1] - p[0])
        assert back - gone > window
        after = {_ts(t): r for t, r in decisions.items() if _ts(t) > gone}
        reasons = {r for r, _ in after.values()}
        assert Reason.PrometheusUnreachable.value in reasons, after
        assert Reason.MetricsPartial.value in reasons, after
        for when, (reason, hold) in after.items():
            # A tick within two scrape intervals of the last sample saw no gap yet (its
            # newest sample was fresh, its window whole); every later tick whose window
            # reaches into the outage must hold.
            if gone + 2.0 < when and when - window < back - 0.5:
                assert hold, (when - back, reason)
        assert _replicas(cluster, ns, "prefill") == 1 and _replicas(cluster, ns, "decode") == 1
    finally:
        hub.stop()
        private.stop()


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
