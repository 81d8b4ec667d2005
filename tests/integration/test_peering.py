"""Two operator replicas with the chart's peering: exactly one writes, the other stands
by and takes over (issue 10: two processes used to write the same scale 0.2 s apart and
post duplicate events).

Both are `goodput run` processes with the chart's arguments, as pods 0 and 1 of its
StatefulSet (POD_ID, so `--priority-from-pod-name` gives 1000 and 999), authenticated
as the chart's ServiceAccount with the chart's RBAC and KopfPeering. The policy is
blind (no series) with gpuBudget 2, and the test scales a target above the budget by
hand: whichever replica acts brings it back at once (OverBudget), so every write is
caused by the test and counted on each replica's own /metrics
(goodput_scale_writes_total).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

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
from tests.harness.prometheus import PrometheusServer
from tests.integration.test_operator import _deployment, _policy, _replicas

pytestmark = pytest.mark.integration

RELEASE_NS = "goodput-peering"
LIFETIME_S = 10  # the chart's peering.lifetime for this test (default 30)
INTERVAL_S = 2  # the policy's behavior.interval
# A killed replica's last keep-alive counts for LIFETIME_S; then the standby's kopf
# resumes and lists the policies, and its loop ticks at once.
KILL_TAKEOVER_MAX_S = LIFETIME_S + 3 * INTERVAL_S
# A replica stopped with SIGTERM withdraws its entry on the way out.
STOP_TAKEOVER_MAX_S = 3 * INTERVAL_S


def _writes(op: OperatorProcess, ns: str) -> float:
    return op.metric("goodput_scale_writes_total", namespace=ns)


def _decisions(op: OperatorProcess, ns: str) -> float:
    return op.metric("goodput_decisions_total", namespace=ns)


def _over_budget_and_back(cluster: LocalCluster, ns: str, timeout: float) -> float:
    """Scale decode above the budget by hand; seconds until a replica shrinks it."""
    cluster.kubectl("scale", "deploy/decode", "-n", ns, "--replicas=3")
    t0 = time.monotonic()
    wait_until(lambda: _replicas(cluster, ns, "decode") == 1, timeout, "the shrink to budget")
    return time.monotonic() - t0


def test_one_replica_writes_and_the_standby_takes_over(
    cluster: LocalCluster,
    prometheus: PrometheusServer,
    helm_bin: Path,
    tmp_path: Path,
) -> None:
    """Takeover after SIGKILL of the active replica within KILL_TAKEOVER_MAX_S (16 s
    with a 10 s keep-alive lifetime), after SIGTERM within STOP_TAKEOVER_MAX_S (6 s);
    a returning replica 0 pre-empts replica 1, which stands by again."""
    ns = cluster.create_namespace("peer")
    release = f"peer{int(time.time() * 1000) % 100000}"
    docs = render(
        helm_bin,
        release,
        RELEASE_NS,
        f"watchNamespaces={{{ns}}}",
        f"peering.name={release}",
        f"peering.lifetime={LIFETIME_S}",
        "replicaCount=2",
    )
    assert of_kind(docs, "PodDisruptionBudget"), "two replicas ship a PodDisruptionBudget"
    (sa_doc,) = of_kind(docs, "ServiceAccount")
    sa = sa_doc["metadata"]["name"]
    apply_parts(cluster, docs, *RBAC_KINDS, *PEERING_KINDS)
    kubeconfig = cluster.service_account_kubeconfig(RELEASE_NS, sa, tmp_path / "kubeconfig")
    args = [
        a
        for a in container_args(docs)[1:]  # after "run"
        if not a.startswith(("--metrics-port", "--liveness"))
    ]
    assert "--priority-from-pod-name" in args and f"--peering={release}" in args

    def replica(ordinal: int, run: int = 0) -> OperatorProcess:
        return OperatorProcess(
            tmp_path, f"replica{ordinal}-{run}", args, kubeconfig, env={"POD_ID": f"{sa}-{ordinal}"}
        )

    cluster.apply(_deployment("prefill", ns, 1, 1))
    cluster.apply(_deployment("decode", ns, 1, 1))
    policy = _policy(ns, prometheus.url, "no-such-job", "Enforce")
    policy["spec"]["gpuBudget"] = 2
    cluster.apply(policy)

    r0 = replica(0)
    r1: OperatorProcess | None = None
    try:
        wait_until(lambda: r0.metric("goodput_operator_active") == 1.0, 30, "replica 0 active")
        r1 = replica(1)
        wait_until(lambda: "this replica stands by" in r1.log(), 30, "replica 1 standing by")
        assert r1.metric("goodput_operator_active") == 0.0

        # Replica 0 acts; replica 1 does nothing at all, over several writes and ticks.
        for _ in range(2):
            _over_budget_and_back(cluster, ns, 20)
        time.sleep(2 * INTERVAL_S)
        assert _writes(r0, ns) >= 2
        assert _writes(r1, ns) == 0 and _decisions(r1, ns) == 0
        assert " scale " not in r1.log()

        # Replica 0 is killed (a crash, a lost node): replica 1 takes over.
        r0_writes = _writes(r0, ns)
        r0.kill()
        took = _over_budget_and_back(cluster, ns, KILL_TAKEOVER_MAX_S + 10)
        print(f"takeover after SIGKILL: {took:.1f} s (lifetime {LIFETIME_S} s)")
        assert took <= KILL_TAKEOVER_MAX_S, took
        assert _writes(r1, ns) >= 1
        wait_until(lambda: r1.metric("goodput_operator_active") == 1.0, 10, "replica 1 active")
        assert "this replica acts" in r1.log()
        assert r0_writes >= 2

        # Replica 0 comes back (same pod name, same identity): it acts, 1 stands by.
        r0 = replica(0, run=1)
        back = time.monotonic()
        wait_until(lambda: r1.metric("goodput_operator_active") == 0.0, 15, "replica 1 standby")
        print(f"replica 1 stood by {time.monotonic() - back:.1f} s after replica 0 restarted")
        wait_until(lambda: r0.metric("goodput_operator_active") == 1.0, 15, "replica 0 active")
        time.sleep(INTERVAL_S)
        r1_writes = _writes(r1, ns)
        _over_budget_and_back(cluster, ns, 20)
        time.sleep(INTERVAL_S)
        assert _writes(r0, ns) >= 1
        assert _writes(r1, ns) == r1_writes

        # Replica 0 is stopped (a rollout, a drain): replica 1 takes over at once.
        assert r0.stop() in (0, -15)
        took = _over_budget_and_back(cluster, ns, STOP_TAKEOVER_MAX_S + 10)
        print(f"takeover after SIGTERM: {took:.1f} s")
        assert took <= STOP_TAKEOVER_MAX_S, took
        assert _writes(r1, ns) == r1_writes + 1
        # It stood by while replica 0 wrote: its own planner memory is stale, so it
        # takes the one replica 0 left in status.
        assert f"policy {ns}/chat: taking over; planner memory from status" in r1.log()
    finally:
        for op in (r0, r1):
            if op is not None:
                op.stop()
        delete_parts(cluster, docs, *PEERING_KINDS, *RBAC_KINDS)
    for op in (r0, r1):
        if op is not None:
            bad = [ln for ln in op.log().splitlines() if " ERROR " in ln or "Traceback" in ln]
            assert not bad, f"{op.name}:\n" + "\n".join(bad)
