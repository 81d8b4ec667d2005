"""The Kubernetes edge of the actuator: /scale reads and writes for any workload kind,
the pods that hold GPUs, other autoscalers on the same target, and (drain-aware
scale-down) the pods of a shrinking Deployment's ReplicaSet and the
``pod-deletion-cost`` patches the pure ``goodput.actuator.drain`` chose.

The kubernetes client is blocking, so every call runs in a worker thread
(``asyncio.to_thread``) and kopf's event loop never waits on the network.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from goodput.actuator.claims import Claim, claims_of
from goodput.actuator.drain import DELETION_COST, DrainChoice, Pod, Skip, choose, skipped
from goodput.api.spec import GROUP, PLURAL, VERSION, TargetRef
from goodput.reasons import Reason

GPU_RESOURCE = "nvidia.com/gpu"
REQUEST_TIMEOUT_S = 10  # every API call is bounded; the client has no default


class TargetError(Exception):
    """A target that cannot be scaled, in words a person can act on."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class WorkloadScale:
    spec_replicas: int
    status_replicas: int
    selector: str
    pods_present: int  # pods that exist and hold their GPUs (terminating included)
    pods_terminating: int  # of those, the ones being deleted (not counted by a ReplicaSet)
    pods_ready: int
    template_gpus: int | None  # nvidia.com/gpu limits of one replica's pod template


def _template_gpus(obj: dict[str, Any]) -> int | None:
    spec = obj.get("spec") or {}
    if isinstance(spec.get("leaderWorkerTemplate"), dict):
        return _leader_worker_gpus(spec["leaderWorkerTemplate"])
    return _pod_template_gpus(spec.get("template"))


def _leader_worker_gpus(lwt: dict[str, Any]) -> int | None:
    """One LeaderWorkerSet replica is a group of ``size`` pods (default 1): the leader,
    from ``leaderTemplate`` (``workerTemplate`` when unset, as the LWS controller does),
    and ``size - 1`` workers from ``workerTemplate``."""
    worker = _pod_template_gpus(lwt.get("workerTemplate"))
    leader_template = lwt.get("leaderTemplate")
    leader = worker if leader_template is None else _pod_template_gpus(leader_template)
    if worker is None or leader is None:
        return None
    return leader + (int(lwt.get("size") or 1) - 1) * worker


def _pod_template_gpus(template: Any) -> int | None:
    if not isinstance(template, dict):
        return None
    containers = (template.get("spec") or {}).get("containers") or []
    total = 0
    for c in containers:
        limit = ((c.get("resources") or {}).get("limits") or {}).get(GPU_RESOURCE)
        if limit is not None:
            total += int(str(limit))
    return total


def _pod_holds_gpus(pod: Any) -> bool:
    return pod.status is None or pod.status.phase not in ("Succeeded", "Failed")


def _terminating(pod: Any) -> bool:
    return pod.metadata is not None and pod.metadata.deletion_timestamp is not None


def _pod_ready(pod: Any) -> bool:
    if pod.metadata.deletion_timestamp is not None or pod.status is None:
        return False
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


class DrainUnavailable(Exception):
    """The pods of a target cannot be ranked for a scale-down (``skip`` says why)."""

    def __init__(self, skip: Skip, message: str) -> None:
        super().__init__(message)
        self.skip = skip
        self.message = message


def _replica_set_of(pod: Any) -> str | None:
    for ref in (pod.metadata.owner_references or []) if pod.metadata else []:
        if ref.kind == "ReplicaSet" and ref.controller:
            return str(ref.name)
    return None


def _drain_pod(pod: Any) -> Pod:
    """A pod as the ReplicaSet ranks it: ready = scheduled, Running and Ready."""
    phase = pod.status.phase if pod.status is not None else None
    scheduled = bool(pod.spec is not None and pod.spec.node_name)
    annotations = (pod.metadata.annotations or {}) if pod.metadata else {}
    return Pod(
        name=str(pod.metadata.name),
        ready=scheduled and phase == "Running" and _pod_ready(pod),
        terminating=_terminating(pod),
        finished=phase in ("Succeeded", "Failed"),
        cost=annotations.get(DELETION_COST),
    )


def pods_of_replica_set(ref: TargetRef, items: list[Any]) -> list[Pod]:
    """The active pods of a Deployment's one ReplicaSet, from its selector's pods.

    The deletion cost orders pods inside one ReplicaSet only; during a rollout (active
    pods of several ReplicaSets) the Deployment controller splits a scale-down between
    them in proportion, so which pods go cannot be steered: refused."""
    if ref.kind != "Deployment" or ref.api_version != "apps/v1":
        why = {
            "StatefulSet": "a StatefulSet removes its highest ordinals whatever their load",
            "LeaderWorkerSet": "a LeaderWorkerSet removes its highest-index groups whatever "
            "their load",
        }.get(ref.kind, f"{ref.kind} is not a Deployment: its controller's choice is unknown")
        raise DrainUnavailable(Skip.Unsupported, f"{why}; nothing marked")
    by_rs: dict[str, list[Pod]] = {}
    for item in items:
        pod = _drain_pod(item)
        if pod.active:
            by_rs.setdefault(_replica_set_of(item) or "", []).append(pod)
    if len(by_rs) > 1:
        names = ", ".join(sorted(n or "(none)" for n in by_rs))
        raise DrainUnavailable(
            Skip.SeveralReplicaSets,
            f"active pods of several ReplicaSets ({names}): a rollout is under way and the "
            "Deployment controller splits the scale-down between them; nothing marked",
        )
    return next(iter(by_rs.values()), [])


class KubeScaleClient:
    """Reads and writes the /scale subresource of any kind, through API discovery."""

    def __init__(self, api_client: Any) -> None:
        self._api_client = api_client
        self._dynamic: Any = None
        self._lock = threading.Lock()

    def _dyn(self) -> Any:
        from kubernetes.dynamic import DynamicClient

        with self._lock:
            if self._dynamic is None:
                # A discovery cache of this process's own: the library's default file
                # is shared by every client of the same server, and a reader racing
                # another process's write logs "load cache error" and starts over.
                cache = Path(tempfile.mkdtemp(prefix="goodput-discovery-")) / "cache.json"
                self._dynamic = DynamicClient(self._api_client, cache_file=str(cache))  # type: ignore[no-untyped-call]
            return self._dynamic

    def _resource(self, ref: TargetRef) -> Any:
        return self._dyn().resources.get(api_version=ref.api_version, kind=ref.kind)

    def _scale_resource(self, ref: TargetRef, namespace: str) -> Any:
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        where = f"{ref.kind}/{ref.name} in namespace {namespace}"
        try:
            resource = self._resource(ref)
        except ResourceNotFoundError:
            raise TargetError(
                Reason.TargetNotFound,
                f"cannot scale {where}: the API server serves no kind {ref.kind} in"
                f" {ref.api_version} (is its CRD installed?); nothing changed",
            ) from None
        scale = resource.subresources.get("scale")
        if scale is None:
            raise TargetError(
                Reason.ScaleFailed,
                f"cannot scale {where}: {ref.kind} has no scale subresource; point targetRef"
                " at a Deployment, StatefulSet or another kind with /scale; nothing changed",
            )
        return resource, scale

    def _read(self, ref: TargetRef, namespace: str) -> WorkloadScale:
        from kubernetes import client
        from kubernetes.dynamic.exceptions import ForbiddenError, NotFoundError

        resource, scale_res = self._scale_resource(ref, namespace)
        where = f"{ref.kind}/{ref.name} in namespace {namespace}"
        try:
            obj = resource.get(
                name=ref.name, namespace=namespace, _request_timeout=REQUEST_TIMEOUT_S
            ).to_dict()
            scale = scale_res.get(
                name=ref.name, namespace=namespace, _request_timeout=REQUEST_TIMEOUT_S
            ).to_dict()
        except NotFoundError:
            raise TargetError(
                Reason.TargetNotFound, f"{where} not found; nothing changed"
            ) from None
        except ForbiddenError as err:
            raise TargetError(
                Reason.ScaleFailed,
                f"cannot read {where}/scale: forbidden ({_message(err)}); grant the"
                " operator get on its scale subresource; nothing changed",
            ) from None
        selector = (scale.get("status") or {}).get("selector") or ""
        pods = (
            client.CoreV1Api(self._api_client)
            .list_namespaced_pod(
                namespace, label_selector=selector, _request_timeout=REQUEST_TIMEOUT_S
            )
            .items
            if selector
            else []
        )
        return WorkloadScale(
            spec_replicas=int((scale.get("spec") or {}).get("replicas") or 0),
            status_replicas=int((scale.get("status") or {}).get("replicas") or 0),
            selector=selector,
            pods_present=sum(1 for p in pods if _pod_holds_gpus(p)),
            pods_terminating=sum(1 for p in pods if _pod_holds_gpus(p) and _terminating(p)),
            pods_ready=sum(1 for p in pods if _pod_ready(p)),
            template_gpus=_template_gpus(obj),
        )

    def _write(self, ref: TargetRef, namespace: str, replicas: int) -> None:
        _, scale = self._scale_resource(ref, namespace)
        scale.patch(
            body={"spec": {"replicas": replicas}},
            name=ref.name,
            namespace=namespace,
            content_type="application/merge-patch+json",
            _request_timeout=REQUEST_TIMEOUT_S,
        )

    def _autoscalers(self, ref: TargetRef, namespace: str) -> list[str]:
        from kubernetes import client

        hpas = client.AutoscalingV2Api(self._api_client).list_namespaced_horizontal_pod_autoscaler(
            namespace, _request_timeout=REQUEST_TIMEOUT_S
        )
        return [
            f"HorizontalPodAutoscaler/{h.metadata.name if h.metadata else '?'}"
            for h in hpas.items
            if h.spec.scale_target_ref.kind == ref.kind and h.spec.scale_target_ref.name == ref.name
        ]

    def _claims(self, namespace: str) -> list[Claim]:
        from kubernetes import client

        listed: Any = client.CustomObjectsApi(self._api_client).list_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, _request_timeout=REQUEST_TIMEOUT_S
        )
        return claims_of(listed.get("items") or [])

    async def claims(self, namespace: str) -> list[Claim]:
        """Every GoodputPolicy in the namespace and the targets it names."""
        return await asyncio.to_thread(self._claims, namespace)

    async def read(self, ref: TargetRef, namespace: str) -> WorkloadScale:
        return await asyncio.to_thread(self._read, ref, namespace)

    async def write(self, ref: TargetRef, namespace: str, replicas: int) -> None:
        await asyncio.to_thread(self._write, ref, namespace, replicas)

    async def other_autoscalers(self, ref: TargetRef, namespace: str) -> list[str]:
        """HPAs (KEDA's included: it drives an HPA) that scale the same target."""
        return await asyncio.to_thread(self._autoscalers, ref, namespace)

    # ---- drain-aware scale-down -----------------------------------------------------

    def _drain_pods(self, ref: TargetRef, namespace: str) -> list[Pod]:
        from kubernetes import client

        if ref.kind != "Deployment":
            return pods_of_replica_set(ref, [])  # raises Unsupported
        _, scale_res = self._scale_resource(ref, namespace)
        scale = scale_res.get(
            name=ref.name, namespace=namespace, _request_timeout=REQUEST_TIMEOUT_S
        ).to_dict()
        selector = (scale.get("status") or {}).get("selector") or ""
        if not selector:
            raise DrainUnavailable(Skip.ReadFailed, "the scale subresource has no selector")
        items = (
            client.CoreV1Api(self._api_client)
            .list_namespaced_pod(
                namespace, label_selector=selector, _request_timeout=REQUEST_TIMEOUT_S
            )
            .items
        )
        return pods_of_replica_set(ref, items)

    def _mark_pods(self, namespace: str, marks: dict[str, int]) -> dict[str, str]:
        from kubernetes import client

        core = client.CoreV1Api(self._api_client)
        failed: dict[str, str] = {}
        for name, cost in sorted(marks.items()):
            try:
                core.patch_namespaced_pod(
                    name,
                    namespace,
                    {"metadata": {"annotations": {DELETION_COST: str(cost)}}},
                    _request_timeout=REQUEST_TIMEOUT_S,
                )
            except Exception as err:  # reported, never raised: the scale-down goes on
                failed[name] = api_error(err)
        return failed

    def _drain_before_scale_down(
        self,
        ref: TargetRef,
        namespace: str,
        running: Mapping[str, float] | None,
        to_replicas: int,
    ) -> tuple[DrainChoice, dict[str, str]]:
        try:
            pods = self._drain_pods(ref, namespace)
        except DrainUnavailable as err:
            return skipped(err.skip, err.message), {}
        except Exception as err:  # reported, never raised: the scale-down goes on
            return skipped(Skip.ReadFailed, f"pods not read: {api_error(err)}"), {}
        choice = choose(pods, running, to_replicas)
        return choice, self._mark_pods(namespace, choice.marks) if choice.marks else {}

    async def drain_before_scale_down(
        self,
        ref: TargetRef,
        namespace: str,
        running: Mapping[str, float] | None,
        to_replicas: int,
    ) -> tuple[DrainChoice, dict[str, str]]:
        """Before ``ref`` shrinks to ``to_replicas``: read its ReplicaSet's pods, let
        :func:`goodput.actuator.drain.choose` pick the least busy (``running``: requests
        running per pod, ``None`` when unknown), and patch their ``pod-deletion-cost``.
        Returns the choice and the refused patches (pod -> the API server's words).
        Never raises: a failure is in the choice's ``skip`` or in the refusals."""
        return await asyncio.to_thread(
            self._drain_before_scale_down, ref, namespace, running, to_replicas
        )


def _message(err: Any) -> str:
    """The API server's message from a dynamic-client error."""
    summary = getattr(err, "summary", None)
    if callable(summary):
        return str(summary())
    return str(getattr(err, "reason", err))


def api_error(err: BaseException) -> str:
    """The API server's own words (status, reason, message), not a Python repr."""
    status = getattr(err, "status", None)
    reason = getattr(err, "reason", None)
    body = getattr(err, "body", None)
    detail = ""
    if isinstance(body, (str, bytes)):
        try:
            detail = str(json.loads(body).get("message", ""))
        except (ValueError, AttributeError):
            detail = ""
    if status:
        return f"{status} {reason or ''}".strip() + (f": {detail}" if detail else "")
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    return (text.splitlines()[0] if text else type(err).__name__)[:300]
