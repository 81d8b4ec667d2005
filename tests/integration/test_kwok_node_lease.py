"""KWOK nodes stay Ready, and their pods Ready, because KWOK renews a Lease per node
as a kubelet does (issue 14: without leases every fake node went NotReady about a
minute in, and every pod unready with it)."""

from __future__ import annotations

import datetime
import os
import threading
import time
from typing import Any

import pytest

from tests.harness.cluster import (
    NODE_LEASE_DURATION_S,
    NODE_MONITOR_GRACE_PERIOD_S,
    NODE_MONITOR_PERIOD_S,
    LocalCluster,
)
from tests.harness.process import wait_until

pytestmark = pytest.mark.integration

# Default: the grace period, three monitor periods and a margin (46 s). For the soak
# run of issue 14: GOODPUT_KWOK_SOAK_SECONDS=600.
SOAK_S = float(
    os.environ.get(
        "GOODPUT_KWOK_SOAK_SECONDS", NODE_MONITOR_GRACE_PERIOD_S + 3 * NODE_MONITOR_PERIOD_S + 10
    )
)
SAMPLE_S = 2.0


def _ready(conditions: list[Any] | None) -> Any:
    return next((c for c in conditions or [] if c.type == "Ready"), None)


def _age(ts: datetime.datetime | None) -> float:
    assert ts is not None
    return (datetime.datetime.now(datetime.UTC) - ts).total_seconds()


_NODE_DOWN_TAINTS = {"node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready"}


class ReadyWatch:
    """Watches Nodes, or the Pods of one namespace, and records every state in which
    one is not Ready or (nodes) carries a not-ready/unreachable taint: a flap that
    heals between two samples is caught too (KWOK re-initializes a node the node
    lifecycle controller marked Unknown within a second or two)."""

    def __init__(self, list_fn: Any, **kwargs: Any) -> None:
        self.list_fn, self.kwargs = list_fn, kwargs
        self.bad: list[str] = []
        self.events = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from kubernetes import watch

        while not self._stop.is_set():
            w = watch.Watch()
            for ev in w.stream(self.list_fn, timeout_seconds=5, **self.kwargs):
                obj = ev["object"]
                self.events += 1
                cond = _ready(obj.status.conditions if obj.status else None)
                taints = {t.key for t in (getattr(obj.spec, "taints", None) or [])}
                if cond is None or cond.status != "True" or taints & _NODE_DOWN_TAINTS:
                    self.bad.append(
                        f"{time.strftime('%H:%M:%S')} {obj.kind or ''} {obj.metadata.name}:"
                        f" Ready={cond.status if cond else None} taints={sorted(taints)}"
                    )
                if self._stop.is_set():
                    w.stop()

    def __enter__(self) -> ReadyWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@pytest.mark.timeout(SOAK_S + 240)  # the suite's 600 s would cut the 10-minute run
def test_nodes_and_pods_stay_ready_past_the_node_monitor_grace_period(
    cluster: LocalCluster,
) -> None:
    """For GOODPUT_KWOK_SOAK_SECONDS (default 46 s: the controller-manager's
    --node-monitor-grace-period of 30 s, three 2 s monitor periods and 10 s; 600 for
    the 10-minute run issue 14 asks for), watched throughout: every KWOK node stays
    Ready with no not-ready/unreachable taint, a pod on a KWOK node stays Ready, and
    (sampled every 2 s) each node's Lease in kube-node-lease was renewed within the
    lease duration (20 s; KWOK renews every 5 s). While KWOK's heartbeat stage has
    not yet refreshed the node status (first after 10 min), the status heartbeat is
    unchanged and older than the grace period by the end: the lease, not a status
    update, kept the nodes Ready."""
    from kubernetes import client

    api = cluster.api_client()
    core = client.CoreV1Api(api)
    coord = client.CoordinationV1Api(api)
    ns = cluster.create_namespace("lease")
    core.create_namespaced_pod(
        ns,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "sleeper"},
            "spec": {
                "nodeSelector": {"type": "kwok"},
                "containers": [{"name": "c", "image": "busybox"}],
            },
        },
    )

    def pod_ready() -> bool:
        pod = core.read_namespaced_pod("sleeper", ns)
        cond = _ready(pod.status.conditions)
        return cond is not None and cond.status == "True"

    wait_until(pod_ready, 60, "the pod Ready")
    nodes = [n.metadata.name for n in core.list_node(label_selector="type=kwok").items]
    assert len(nodes) == cluster.nodes
    node_heartbeats = {
        n: _ready(core.read_node(n).status.conditions).last_heartbeat_time for n in nodes
    }

    started = time.monotonic()
    samples = 0
    with (
        ReadyWatch(core.list_node, label_selector="type=kwok") as node_watch,
        ReadyWatch(core.list_namespaced_pod, namespace=ns) as pod_watch,
    ):
        while time.monotonic() - started < SOAK_S:
            for name in nodes:
                lease = coord.read_namespaced_lease(name, "kube-node-lease")
                assert lease.spec.lease_duration_seconds == NODE_LEASE_DURATION_S
                renewed = _age(lease.spec.renew_time)
                assert renewed < NODE_LEASE_DURATION_S, (
                    f"{name}'s lease renewed {renewed:.0f} s ago"
                )
            assert not node_watch.bad, node_watch.bad
            assert not pod_watch.bad, pod_watch.bad
            samples += 1
            time.sleep(SAMPLE_S)
    assert not node_watch.bad, node_watch.bad
    assert not pod_watch.bad, pod_watch.bad
    assert node_watch.events >= cluster.nodes and pod_watch.events >= 1
    assert samples >= SOAK_S / (SAMPLE_S + 5)
    # KWOK's heartbeat stage refreshes node status first after 10 min (then every
    # 10-20 min): before that, only the Lease told the node lifecycle controller that
    # the nodes are alive, for longer than the grace period.
    for name in nodes:
        node = core.read_node(name)
        heartbeat = _ready(node.status.conditions).last_heartbeat_time
        if _age(node.metadata.creation_timestamp) < 600:
            # No status update at all: the node was never re-initialized either.
            assert heartbeat == node_heartbeats[name], (name, heartbeat)
            assert _age(heartbeat) > NODE_MONITOR_GRACE_PERIOD_S, (name, heartbeat)
