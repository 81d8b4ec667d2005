"""kopf wiring: settings at start-up and one daemon per GoodputPolicy whose period
comes from the spec (a daemon with its own sleep, as kopf's docs advise for
spec-driven intervals). Handlers stay thin; the work is in ``reconcile``."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import kopf

from goodput.actuator.behavior import tier_key
from goodput.actuator.kube import REQUEST_TIMEOUT_S, KubeScaleClient
from goodput.api.spec import GROUP, PLURAL, VERSION, GoodputPolicySpec, parse_duration
from goodput.metrics.client import PrometheusClient
from goodput.metrics.source import PrometheusObservationSource
from goodput.observation import Observation
from goodput.operator import telemetry
from goodput.operator.reconcile import Outcome, Reconciler
from goodput.operator.secrets import prometheus_credentials

log = logging.getLogger("goodput.operator")
FALLBACK_INTERVAL_S = 15.0
TICK_TIMEOUT_S = 60.0  # a stuck tick is abandoned and retried, never silently hung
_api_client: Any = None


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


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.networking.request_timeout = 30
    settings.networking.connect_timeout = 10
    settings.watching.server_timeout = 120
    settings.watching.client_timeout = 150
    settings.posting.level = logging.INFO


class PolicyPrometheus:
    """One policy's ObservationSource: re-reads the auth Secret every tick, so a rotated
    token is used at once, and rebuilds the client (closing the old one) only when the
    credentials change."""

    def __init__(self, spec: GoodputPolicySpec, namespace: str) -> None:
        self.spec = spec
        self.namespace = namespace
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
            self._source = PrometheusObservationSource(self.spec, self._client)
            self._creds = creds
        return await self._source.observe(now)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = self._source = None


async def _source(spec: GoodputPolicySpec, namespace: str) -> PolicyPrometheus:
    return PolicyPrometheus(spec, namespace)


def _interval(spec: dict[str, Any]) -> float:
    try:
        return max(1.0, parse_duration(spec.get("behavior", {}).get("interval", "15s")))
    except (ValueError, AttributeError):
        return FALLBACK_INTERVAL_S


async def _write_status(namespace: str, name: str, status: dict[str, Any]) -> None:
    from kubernetes import client

    api = client.CustomObjectsApi(api_client())
    await asyncio.to_thread(
        api.patch_namespaced_custom_object_status,
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        name,
        {"status": status},
        _request_timeout=REQUEST_TIMEOUT_S,
    )


def _publish(namespace: str, name: str, out: Outcome) -> None:
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
    for c in st.conditions:
        for s in ("True", "False", "Unknown"):
            telemetry.CONDITION.labels(type=c.type.value, status=s, **labels).set(
                1.0 if c.status.value == s else 0.0
            )
    for target, replicas in out.writes.items():
        telemetry.SCALE_WRITES.labels(target=target, direction="set", **labels).inc()
        log.info("scaled", extra={"policy": name, "target": target, "replicas": replicas})


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=5.0)
async def control_loop(
    name: str,
    namespace: str | None,
    meta: kopf.Meta,
    spec: kopf.Spec,
    status: kopf.Status,
    body: kopf.Body,
    stopped: kopf.DaemonStopped,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    namespace = namespace or "default"  # GoodputPolicy is namespaced; kopf types allow None
    reconciler = Reconciler(KubeScaleClient(api_client()), _source)
    while not stopped:
        started = time.monotonic()
        try:
            out = await asyncio.wait_for(
                reconciler.tick(
                    namespace, int(meta.get("generation") or 0), dict(spec), dict(status)
                ),
                TICK_TIMEOUT_S,
            )
            payload = out.status.model_dump(mode="json", by_alias=True, exclude_none=True)
            await _write_status(namespace, name, payload)
            for ev in out.events:
                kopf.event(body, type=ev.type, reason=ev.reason.value, message=ev.message)
            _publish(namespace, name, out)
            logger.info(
                "decision reason=%s %s",
                out.reason.value,
                out.status.last_decision.message if out.status.last_decision else "",
            )
        except Exception:  # keep the loop alive; the next tick retries
            logger.exception("control-loop tick failed")
        finally:
            telemetry.TICK_SECONDS.labels(namespace=namespace, policy=name).observe(
                time.monotonic() - started
            )
        await stopped.wait(_interval(dict(spec)))
