"""`goodput run`: the operator process (kopf), with its own /metrics endpoint.

Replicas coordinate through kopf peering (docs/operator.md, "Replicas, peering and
failover"): every process keeps its entry (priority, lifetime, last seen) alive in a
peering object, and only the live replica with the highest priority acts; the others
stand by. Running without peering happens only when asked for (``--standalone``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import signal
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

from prometheus_client import Gauge, start_http_server

from goodput.reasons import Reason

log = logging.getLogger("goodput.operator.peering")

# The chart's peering object (values.yaml peering.name); `goodput run` uses the same
# name by default, so a process started by hand joins the chart's replicas.
DEFAULT_PEERING = "goodput-operator"
# Seconds a replica's keep-alive counts. kopf renews it every lifetime - 5..10 s (at
# least every second); a killed active replica is taken over at most this long after
# its last keep-alive, one that exits cleanly at once (it withdraws its entry).
DEFAULT_PEERING_LIFETIME_S = 30
# --priority-from-pod-name: replica N of the StatefulSet gets PRIORITY_BASE - N, so
# replica 0 acts and the next live ordinal takes over when it goes.
PRIORITY_BASE = 1000
# After SIGTERM, how long kopf may take to withdraw from the peering and close its
# watches before the process exits without it (the chart gives the pod 30 s).
SHUTDOWN_GRACE_S = 10.0
# Threads for blocking client calls (see operate()): I/O-bound, so many per core.
IO_THREADS = 64

ACTIVE = Gauge(
    "goodput_operator_active",
    "1 while this process acts on policies; 0 while it stands by for a live peer with "
    "a higher priority (or cannot read its peering object).",
)


def _on_signal(sig: signal.Signals, stop: asyncio.Event, halt: Callable[[], None]) -> None:
    if stop.is_set():
        return
    log.info("signal %s: the policy loops stop now, then kopf", sig.name)
    halt()
    stop.set()


def priority_from_pod_name(name: str) -> int:
    """PRIORITY_BASE minus the StatefulSet ordinal at the end of the pod name."""
    m = re.fullmatch(r".+-(\d+)", name)
    if m is None:
        raise ValueError(f"pod name {name!r} does not end in a StatefulSet ordinal (-N)")
    ordinal = int(m.group(1))
    if ordinal >= PRIORITY_BASE:
        raise ValueError(f"ordinal {ordinal} of {name!r} is not below {PRIORITY_BASE}")
    return PRIORITY_BASE - ordinal


def _where(name: str, scope: str) -> str:
    return f"KopfPeering {scope}/{name}" if scope else f"ClusterKopfPeering {name}"


def _check_peering_exists(name: str, scope: str) -> str | None:
    """Why the peering object cannot be read, or None. kopf never creates it, and with
    a peering name it stays paused (silently) until the object and its CRD exist."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    from goodput.operator.handlers import api_client

    api = client.CustomObjectsApi(api_client())
    try:
        if scope:
            api.get_namespaced_custom_object(
                "kopf.dev", "v1", scope, "kopfpeerings", name, _request_timeout=10
            )
        else:
            api.get_cluster_custom_object(
                "kopf.dev", "v1", "clusterkopfpeerings", name, _request_timeout=10
            )
    except ApiException as err:
        if err.status == 404:
            return (
                f"{_where(name, scope)} does not exist (or the kopf.dev peering CRDs are not "
                "installed): kopf stays paused until it does. The chart creates it; by hand: "
                "kubectl apply the chart's crds/kopf-peering.yaml and the object, or run "
                "with --standalone"
            )
        return f"cannot read {_where(name, scope)}: HTTP {err.status} {err.reason}"
    return None


async def report_standing(name: str, scopes: list[str], interval: float) -> None:
    """Says in the log, and in goodput_operator_active, whether this process acts.

    kopf pauses and resumes its own watches but says so only when a running operator
    sees a higher-priority peer appear, not when a standby starts behind an active
    peer, and not at all when the peering object is missing. The per-policy loops
    apply the peering rule themselves (``handlers.PEERS``, one log line per policy and
    ``goodput_standby``); this is the same view once per process, with or without
    policies."""
    from goodput.operator import handlers

    for scope in scopes:
        problem = await asyncio.to_thread(_check_peering_exists, name, scope)
        if problem is not None:
            log.error("%s", problem, extra={"peering": name})
    active: bool | None = None
    ACTIVE.set(0)
    while True:
        stands = [await handlers.PEERS.standing(scope or "") for scope in scopes]
        now_active = all(s.active for s in stands)
        if now_active != active:
            why = next((s.why for s in stands if not s.active), stands[0].why)
            where = ", ".join(_where(name, s) for s in scopes)
            fields: dict[str, Any] = {
                "peering": name,
                "identity": handlers.RUN.identity,
                "priority": handlers.RUN.priority,
            }
            if now_active:
                log.info("this replica acts (%s): %s", where, why, extra=fields)
            else:
                log.info(
                    "this replica stands by (%s): %s",
                    where,
                    why,
                    extra={**fields, "reason": Reason.StandingBy.value},
                )
            active = now_active
            ACTIVE.set(1 if active else 0)
        await asyncio.sleep(interval)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="goodput run", description=__doc__)
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n", "--namespace", action="append", default=[], help="watch this namespace (repeatable)"
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=8080,
        help="port of the operator's own /metrics (0: off)",
    )
    parser.add_argument("--metrics-address", default="0.0.0.0")
    parser.add_argument(
        "--liveness",
        default="http://0.0.0.0:8081/healthz",
        help="kopf liveness endpoint URL ('' to disable)",
    )
    peering = parser.add_mutually_exclusive_group()
    peering.add_argument(
        "--peering",
        default=DEFAULT_PEERING,
        metavar="NAME",
        help="kopf peering object: a ClusterKopfPeering with -A, a KopfPeering in each -n "
        f"namespace (default {DEFAULT_PEERING!r}, the chart's)",
    )
    peering.add_argument(
        "--standalone",
        action="store_true",
        help="no peering: this process acts even when another operator does too",
    )
    priority = parser.add_mutually_exclusive_group()
    priority.add_argument(
        "--priority",
        type=int,
        default=0,
        help="peering priority; the live replica with the highest one acts",
    )
    priority.add_argument(
        "--priority-from-pod-name",
        action="store_true",
        help=f"priority {PRIORITY_BASE} - N for StatefulSet pod NAME-N (POD_ID, else hostname)",
    )
    parser.add_argument(
        "--peering-lifetime",
        type=int,
        default=DEFAULT_PEERING_LIFETIME_S,
        metavar="SECONDS",
        help="how long a keep-alive counts: the takeover time when a replica is killed",
    )
    parser.add_argument(
        "--no-drain",
        action="store_true",
        help="do not mark the least busy pods (pod-deletion-cost) before a Deployment "
        "shrinks: its ReplicaSet then removes the newest pods, in-flight requests and all",
    )
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.peering_lifetime < 1:
        parser.error("--peering-lifetime must be at least 1 second")
    prio: int = args.priority
    if args.priority_from_pod_name:
        try:
            prio = priority_from_pod_name(os.environ.get("POD_ID") or socket.gethostname())
        except ValueError as exc:
            parser.error(str(exc))

    from goodput.operator import logs

    logs.configure(args.log_format, verbose=args.verbose)
    import kopf

    from goodput.operator import handlers  # registers the handlers

    if args.no_drain:
        from goodput.operator import reconcile

        reconcile.DRAIN_BY_DEFAULT = False
    clusterwide = args.all_namespaces or not args.namespace
    run = handlers.RUN
    run.priority = prio
    run.peering = None if args.standalone else args.peering
    run.clusterwide = clusterwide
    settings = kopf.OperatorSettings()
    settings.peering.lifetime = args.peering_lifetime
    if args.metrics_port:
        start_http_server(args.metrics_port, addr=args.metrics_address)
    if args.standalone:
        log.warning(
            "running WITHOUT peering (--standalone): this process acts even when another "
            "goodput operator watches the same policies; both would write the same scale "
            "and post the same events",
            extra={"identity": run.identity},
        )
        ACTIVE.set(1)
    else:
        log.info(
            "peering %s (%s): identity %s, priority %d, keep-alive lifetime %d s; the live "
            "replica with the highest priority acts, the others stand by",
            args.peering,
            "ClusterKopfPeering" if clusterwide else "KopfPeering in " + ", ".join(args.namespace),
            run.identity,
            prio,
            args.peering_lifetime,
        )

    async def operate() -> None:
        # Every blocking client call (Prometheus queries, the Kubernetes client) runs in
        # the default executor, which asyncio sizes min(32, CPUs + 4): 6 threads on two
        # cores served ~230 calls/s where 200 policies at a 15 s interval need ~610/s, and
        # ticks queued for 20-30 s (py-spy: 77% of samples waiting in that pool). The
        # calls wait on sockets, not CPU, so the pool is sized for I/O.
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="goodput-io")
        )
        reporter = None
        if run.peering is not None:
            reporter = asyncio.create_task(
                report_standing(
                    run.peering,
                    [""] if clusterwide else list(args.namespace),
                    interval=max(1.0, min(5.0, args.peering_lifetime / 4)),
                ),
                name="goodput peering reporter",
            )
        stop = asyncio.Event()
        # kopf cancels, on its way out, every task that did not exist before it: this
        # one (which waits for it) must be among those that did.
        before = asyncio.all_tasks()
        tasks = await kopf.spawn_tasks(
            settings=settings,
            # The loops compare peers with this identity: kopf must use the same.
            identity=cast(Any, run.identity),
            clusterwide=clusterwide,
            namespaces=args.namespace,
            standalone=args.standalone,
            # A name makes peering mandatory: kopf stays paused, never runs alone,
            # while the peering CRD or object is missing.
            peering_name=run.peering,
            priority=prio,
            liveness_endpoint=args.liveness or None,
            stop_flag=stop,
        )
        # kopf's own signal handlers (installed by spawn_tasks) only start its shutdown,
        # which waits for its root tasks without a deadline (a peering withdrawal that
        # the API server answers slowly holds it) while the policy loops keep ticking.
        # These replace them: the loops stop at once, and kopf gets SHUTDOWN_GRACE_S.
        main = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            main.add_signal_handler(sig, _on_signal, sig, stop, handlers.halt)
        kopf_run = asyncio.create_task(kopf.run_tasks(tasks, ignored=before), name="kopf")
        signalled = asyncio.create_task(stop.wait(), name="goodput stop")
        try:
            await asyncio.wait({kopf_run, signalled}, return_when=asyncio.FIRST_COMPLETED)
            if not kopf_run.done():
                done, _ = await asyncio.wait({kopf_run}, timeout=SHUTDOWN_GRACE_S)
                if not done:
                    log.warning(
                        "kopf did not stop within %.0f s of the signal; exiting without it "
                        "(the peering entry expires after its lifetime)",
                        SHUTDOWN_GRACE_S,
                    )
                    kopf_run.cancel()
                    await asyncio.wait({kopf_run}, timeout=2.0)
            if kopf_run.done() and not kopf_run.cancelled():
                kopf_run.result()  # kopf's own failure, if it had one
        finally:
            signalled.cancel()
            if reporter is not None:
                reporter.cancel()

    asyncio.run(operate())
    return 0
