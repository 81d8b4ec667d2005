"""kopf wiring: start-up settings, and one control loop per GoodputPolicy.

The loops are asyncio tasks started and stopped from a ``@kopf.on.event`` handler
rather than ``@kopf.daemon``: kopf puts a finalizer on every object that has a daemon
or a timer, so with the operator down (or uninstalled) ``kubectl delete gp`` and
namespace deletion would hang. Nothing has to be undone when a policy goes, so no
finalizer is needed: a DELETED event stops its loop, and a loop whose policy is gone
(its status write answers 404) stops itself.

kopf pauses its own watches for a higher-priority peer but does not know these tasks,
so each loop applies kopf's peering rule itself (``goodput.operator.peering``) and
stands by while another replica is active.

Each tick: ``Reconciler.tick`` (observe, plan, decide, write), then the status is
written whole (a JSON patch replacing ``/status``, so nothing from an older decision
survives), then the events, metrics and one structured log line. Failures back off
exponentially up to ``MAX_BACKOFF_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf

from goodput.actuator.behavior import tier_key
from goodput.actuator.kube import REQUEST_TIMEOUT_S, KubeScaleClient
from goodput.actuator.route_kube import KubeTrafficRouter
from goodput.api.spec import GROUP, PLURAL, VERSION, GoodputPolicySpec, parse_duration
from goodput.metrics.client import PrometheusClient
from goodput.metrics.source import FailureMemory, PrometheusObservationSource
from goodput.observation import Observation
from goodput.operator import telemetry
from goodput.operator.peering import Standing, peers_of, standing
from goodput.operator.reconcile import Outcome, PolicyRef, Reconciler
from goodput.operator.secrets import prometheus_credentials

log = logging.getLogger("goodput.operator")
FALLBACK_INTERVAL_S = 15.0
TICK_TIMEOUT_S = 60.0  # a stuck tick is abandoned and retried, never silently hung
MAX_BACKOFF_S = 120.0
PEERING_CACHE_S = 2.0
_api_client: Any = None


@dataclass
class RunConfig:
    """How this process was started (set by ``goodput run`` before kopf starts)."""

    identity: str = field(default_factory=lambda: os.environ.get("POD_ID") or _own_id())
    priority: int = 0
    peering: str | None = None  # None: standalone, this replica always acts
    clusterwide: bool = True


def _own_id() -> str:
    import socket

    return f"{socket.gethostname()}-{os.getpid()}"


RUN = RunConfig()


def api_client() -> Any:
    """One kubernetes ApiClient for the process, built from the same login as kopf."""
    global _api_client
    if _api_client is None:
        from kubernetes import client, config

        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
        except config.ConfigException:
            # The path is read now: the library's default is frozen at import time.
            config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))  # type: ignore[no-untyped-call]
        _api_client = client.ApiClient()
    return _api_client


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In-cluster service account, else $KUBECONFIG read at login time."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


class EndlessBackoffs:
    """kopf's delays between retries of a failed API request: its default's first
    steps, then every ``EndlessBackoffs.STEADY_S`` for as long as the API server is
    away. kopf's default gives up after 8 retries (~54 s); a watch or the peering
    keep-alive that gives up stops the whole operator, so an API server outage longer
    than a minute became a crash loop (tests/integration/test_faults.py, 100 s outage).
    Iterable, not an iterator: kopf iterates it afresh for every request; unsized, so
    kopf counts attempts without a total."""

    FIRST = (1.0, 1.0, 2.0, 3.0, 5.0, 8.0)
    STEADY_S = 5.0

    def __iter__(self) -> Iterator[float]:
        yield from self.FIRST
        while True:
            yield self.STEADY_S


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    global _halted
    _halted = False  # a kopf run after an earlier one in this process (tests) starts loops
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{GROUP}/finalizer"  # removed from older objects
    settings.networking.request_timeout = 30
    settings.networking.connect_timeout = 10
    settings.networking.error_backoffs = EndlessBackoffs()
    settings.watching.server_timeout = 120
    settings.watching.client_timeout = 150
    # Events are posted explicitly, one per write or change of decision; kopf's own
    # log lines become events only when something is wrong.
    settings.posting.level = logging.WARNING


class PolicyPrometheus:
    """One policy's ObservationSource: re-reads the auth Secret every tick, so a rotated
    token is used at once, and rebuilds the client (closing the old one) only when the
    credentials change."""

    def __init__(
        self, spec: GoodputPolicySpec, namespace: str, failures: FailureMemory | None = None
    ) -> None:
        self.spec = spec
        self.namespace = namespace
        # Outlives this source: a spec change or rotated token rebuilds it, and a rate
        # window over an earlier outage must still be seen as partial.
        self.failures = failures or FailureMemory()
        self._creds: tuple[str | None, str | None] | None = None
        self._client: PrometheusClient | None = None
        self._source: PrometheusObservationSource | None = None

    async def observe(self, now: float) -> Observation:
        creds = await prometheus_credentials(api_client(), self.namespace, self.spec.metrics.auth)
        if self._source is None or creds != self._creds:
            self.close()
            token, ca_file = creds
            self._client = PrometheusClient.for_policy(
                self.spec.metrics, bearer_token=token, ca_file=ca_file
            )
            self._source = PrometheusObservationSource(
                self.spec, self._client, failures=self.failures
            )
            self._creds = creds
        return await self._source.observe(now)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = self._source = None


def _sources(failures: FailureMemory) -> Any:
    """One policy's source factory; every source it builds shares ``failures``."""

    async def build(spec: GoodputPolicySpec, namespace: str) -> PolicyPrometheus:
        return PolicyPrometheus(spec, namespace, failures)

    return build


def _interval(spec: dict[str, Any]) -> float:
    try:
        return max(1.0, parse_duration(spec.get("behavior", {}).get("interval", "15s")))
    except (ValueError, AttributeError):
        return FALLBACK_INTERVAL_S


class PolicyGone(Exception):
    """The policy was deleted while its loop ran."""


async def _write_status(namespace: str, name: str, status: dict[str, Any]) -> None:
    """Replace /status whole: a merge patch would keep fields the decision no longer has."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api = client.CustomObjectsApi(api_client())
    try:
        await asyncio.to_thread(
            api.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            [{"op": "add", "path": "/status", "value": status}],
            _request_timeout=REQUEST_TIMEOUT_S,
            _content_type="application/json-patch+json",
        )
    except ApiException as err:
        if err.status == 404:
            raise PolicyGone(name) from None
        raise


class PeeringView:
    """The peering object's peers, read at most every ``PEERING_CACHE_S`` per scope."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[float, Standing]] = {}

    async def standing(self, namespace: str) -> Standing:
        if RUN.peering is None:
            return Standing(True, "standalone: no peering")
        scope = "" if RUN.clusterwide else namespace
        hit = self._cache.get(scope)
        if hit is not None and time.monotonic() - hit[0] < PEERING_CACHE_S:
            return hit[1]
        try:
            raw = await asyncio.to_thread(self._read, scope)
            result = standing(peers_of(raw), RUN.identity, RUN.priority, datetime.now(UTC))
        except Exception as err:  # cannot see the peers: acting could double-write
            why = f"{getattr(err, 'status', '')} {getattr(err, 'reason', '')}".strip()
            result = Standing(
                False,
                f"standing by: cannot read peering {RUN.peering}: {why or type(err).__name__}",
            )
        self._cache[scope] = (time.monotonic(), result)
        return result

    def _read(self, scope: str) -> dict[str, Any]:
        from kubernetes import client

        api = client.CustomObjectsApi(api_client())
        name = RUN.peering or ""
        obj: Any
        if scope:
            obj = api.get_namespaced_custom_object(
                "kopf.dev", "v1", scope, "kopfpeerings", name,
                _request_timeout=REQUEST_TIMEOUT_S,
            )  # fmt: skip
        else:
            obj = api.get_cluster_custom_object(
                "kopf.dev", "v1", "clusterkopfpeerings", name,
                _request_timeout=REQUEST_TIMEOUT_S,
            )  # fmt: skip
        return dict(obj.get("status") or {})


PEERS = PeeringView()


def _publish(namespace: str, name: str, out: Outcome, tick_s: float) -> None:
    labels = {"namespace": namespace, "policy": name}
    telemetry.DECISIONS.labels(reason=out.reason.value, **labels).inc()
    st = out.status
    if st.gpus_allocated is not None:
        telemetry.GPUS_HELD.labels(**labels).set(st.gpus_allocated)
    if st.gpu_budget is not None:
        telemetry.GPU_BUDGET.labels(**labels).set(st.gpu_budget)
    for p in st.pools:
        telemetry.DESIRED_REPLICAS.labels(target=p.role, **labels).set(p.desired_replicas)
        telemetry.CURRENT_REPLICAS.labels(target=p.role, **labels).set(p.current_replicas)
    for tier in st.tiers:
        telemetry.DESIRED_REPLICAS.labels(target=tier_key(tier.name), **labels).set(
            tier.desired_replicas
        )
        telemetry.CURRENT_REPLICAS.labels(target=tier_key(tier.name), **labels).set(
            tier.current_replicas
        )
    if st.goodput is not None:
        if st.goodput.predicted_tokens_per_second is not None:
            telemetry.PREDICTED_GOODPUT.labels(**labels).set(st.goodput.predicted_tokens_per_second)
        if st.goodput.observed_tokens_per_second is not None:
            telemetry.OBSERVED_GOODPUT.labels(**labels).set(st.goodput.observed_tokens_per_second)
    # SLO attainment against its target (the chart's dashboard and alerts): the target
    # from the spec this loop ticks with; observed and predicted are removed while unknown.
    loop = LOOPS.get((namespace, name))
    target = ((loop.body.get("spec") or {}).get("slo") or {}).get("attainment") if loop else None
    if isinstance(target, int | float) and not isinstance(target, bool):
        telemetry.SLO_ATTAINMENT_TARGET.labels(**labels).set(float(target))
    g = st.goodput
    telemetry.set_or_remove(
        telemetry.OBSERVED_ATTAINMENT, g.observed_attainment if g else None, namespace, name
    )
    telemetry.set_or_remove(
        telemetry.PREDICTED_ATTAINMENT, g.predicted_attainment if g else None, namespace, name
    )
    for c in st.conditions:
        for s in ("True", "False", "Unknown"):
            telemetry.CONDITION.labels(type=c.type.value, status=s, **labels).set(
                1.0 if c.status.value == s else 0.0
            )
    decision = st.last_decision
    # Each target's write counters exist (at 0) from the tick that first sees it, so a
    # later refusal is an increase that rate()/increase() and the chart's alert see.
    for key in [p.role for p in st.pools] + [tier_key(t.name) for t in st.tiers]:
        for direction in ("up", "down"):
            for result in ("ok", "refused"):
                telemetry.SCALE_WRITES.labels(
                    target=key, direction=direction, result=result, **labels
                )
    for r in out.writes:
        w = r.write
        direction = "up" if w.up else "down"
        result = "ok" if r.ok else "refused"
        telemetry.SCALE_WRITES.labels(
            target=w.key, direction=direction, result=result, **labels
        ).inc()
        log.info(
            "scale %s %s %d -> %d %s",
            w.target,
            direction,
            w.from_replicas,
            w.to_replicas,
            result,
            extra={
                "namespace": namespace,
                "policy": name,
                "target": w.target,
                "key": w.key,
                "from": w.from_replicas,
                "to": w.to_replicas,
                "result": result,
                "error": r.error,
            },
        )
    log.log(
        logging.WARNING if out.failed else logging.INFO,
        "decision %s: %s",
        out.reason.value,
        decision.message if decision else "",
        extra={
            "namespace": namespace,
            "policy": name,
            "reason": out.reason.value,
            "limit": decision.binding_constraint.value if decision else None,
            "limit_pool": decision.binding_pool if decision else None,
            "gpus_held": st.gpus_allocated,
            "gpu_budget": st.gpu_budget,
            "tick_seconds": round(tick_s, 4),
        },
    )


@dataclass
class _Loop:
    body: kopf.Body
    task: asyncio.Task[None] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)


LOOPS: dict[tuple[str, str], _Loop] = {}
_halted = False


def halt() -> None:
    """Stop every policy loop now and start no new one: called at SIGTERM, before kopf
    begins its own (unbounded) shutdown, so a replica on its way out writes nothing
    while its standby takes over."""
    global _halted
    _halted = True
    for loop in LOOPS.values():
        if loop.task is not None:
            loop.task.cancel()


@kopf.on.event(GROUP, VERSION, PLURAL)
async def policy_event(
    type: str | None, body: kopf.Body, name: str, namespace: str | None, **_: Any
) -> None:
    """Keep one loop per live policy: start it on first sight (also when the operator
    starts and lists what exists), wake it when the spec changes, stop it on delete."""
    if _halted:
        return
    key = (namespace or "default", name)
    loop = LOOPS.get(key)
    if type == "DELETED" or body.get("metadata", {}).get("deletionTimestamp"):
        if loop is not None and loop.task is not None:
            loop.task.cancel()
        LOOPS.pop(key, None)
        return
    if loop is None or loop.task is None or loop.task.done():
        loop = _Loop(body=body)
        LOOPS[key] = loop
        loop.task = asyncio.create_task(_run(key, loop), name=f"goodput {key[0]}/{key[1]}")
        return
    old_gen = loop.body.get("metadata", {}).get("generation")
    loop.body = body
    if body.get("metadata", {}).get("generation") != old_gen:
        loop.wake.set()  # a spec change (e.g. the budget cut) is acted on now


@kopf.on.cleanup()
async def stop_loops(**_: Any) -> None:
    halt()
    await asyncio.gather(*(lp.task for lp in LOOPS.values() if lp.task), return_exceptions=True)
    LOOPS.clear()


# With more loops than this, each waits a fixed phase of its interval before its first
# tick (``_stagger``).
STAGGER_MIN_POLICIES = 10


async def _stagger(namespace: str, name: str, loop: _Loop) -> None:
    """Spread the ticks of many policies over the interval. Loops started together (the
    operator's start-up list, a restart) tick together forever: at 60 policies every
    tick fired ~2,600 Prometheus queries at once and the p95 tick took 4 s where the
    median took 0.5 s. A phase fixed by the policy's name (crc32, so the same after a
    restart) spreads them; a spec change ends the wait at once. Few policies (tests,
    small fleets) start at once, as before."""
    if len(LOOPS) <= STAGGER_MIN_POLICIES:
        return
    interval = _interval(dict(loop.body.get("spec") or {}))
    phase = (zlib.crc32(f"{namespace}/{name}".encode()) % 1000) / 1000.0 * interval
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(loop.wake.wait(), phase)


async def _run(key: tuple[str, str], loop: _Loop) -> None:
    namespace, name = key
    reconciler = Reconciler(
        KubeScaleClient(api_client()),
        _sources(FailureMemory()),
        router=KubeTrafficRouter(api_client()),
    )
    failures = 0
    was_active: bool | None = None
    try:
        await _stagger(namespace, name, loop)
        while True:
            body = loop.body
            spec = dict(body.get("spec") or {})
            interval = _interval(spec)
            stand = await PEERS.standing(namespace)
            telemetry.STANDBY.labels(namespace=namespace, policy=name).set(
                0.0 if stand.active else 1.0
            )
            if stand.active and not was_active and stand.lower:
                # Taking over from a live lower-priority replica (this one just started
                # or came back): let it see this one in the peering object (its cache,
                # then its next tick) before either writes. A dead peer needs no wait.
                await asyncio.sleep(interval + PEERING_CACHE_S + 0.5)
                stand = await PEERS.standing(namespace)
            if stand.active != was_active:
                if not stand.active:
                    telemetry.forget_policy(namespace, name, keep_standby=True)
                elif was_active is False:
                    # Taking over after standing by: the planner memory this process
                    # kept is older than the status the other replica wrote since, so
                    # the next tick rebuilds the planner from status.plannerState.
                    reconciler.close()
                    log.info(
                        "policy %s/%s: taking over; planner memory from status.plannerState",
                        namespace,
                        name,
                        extra={"namespace": namespace, "policy": name},
                    )
                log.info(
                    "policy %s/%s: %s",
                    namespace,
                    name,
                    stand.why,
                    extra={"namespace": namespace, "policy": name, "active": stand.active},
                )
                was_active = stand.active
            if stand.active:
                failures = await _tick(reconciler, namespace, name, body, failures)
            delay = interval if failures == 0 else min(MAX_BACKOFF_S, interval * 2**failures)
            loop.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(loop.wake.wait(), delay)
    except PolicyGone:
        log.info("policy %s/%s is gone; its loop stops", namespace, name)
    finally:
        reconciler.close()
        if LOOPS.get(key) is loop:
            LOOPS.pop(key, None)
            telemetry.forget_policy(namespace, name)


async def _tick(
    reconciler: Reconciler, namespace: str, name: str, body: kopf.Body, failures: int
) -> int:
    """One tick; returns the consecutive failure count (0 after a clean tick)."""
    started = time.monotonic()
    meta = body.get("metadata", {})
    created = meta.get("creationTimestamp")
    policy = PolicyRef(
        namespace,
        name,
        datetime.fromisoformat(created.replace("Z", "+00:00")) if created else None,
    )
    try:
        out = await asyncio.wait_for(
            reconciler.tick(
                policy,
                int(meta.get("generation") or 0),
                dict(body.get("spec") or {}),
                dict(body.get("status") or {}),
            ),
            TICK_TIMEOUT_S,
        )
        # The writes happened whatever becomes of the status patch: count them and post
        # their events first, so a slow or refused status write cannot hide them.
        _publish(namespace, name, out, time.monotonic() - started)
        for ev in out.events:
            kopf.event(body, type=ev.type, reason=ev.reason.value, message=ev.message)
        payload = out.status.model_dump(mode="json", by_alias=True, exclude_none=True)
        await _write_status(namespace, name, payload)
        return failures + 1 if out.failed else 0
    except PolicyGone:
        raise
    except Exception:  # keep the loop alive; the next tick retries after a backoff
        log.exception(
            "tick of %s/%s failed", namespace, name, extra={"namespace": namespace, "policy": name}
        )
        return failures + 1
    finally:
        telemetry.TICK_SECONDS.labels(namespace=namespace, policy=name).observe(
            time.monotonic() - started
        )
