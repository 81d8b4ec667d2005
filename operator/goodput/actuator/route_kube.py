"""The Kubernetes edge of the traffic split: reads an HTTPRoute and sends the JSON
patch that ``route`` computed, with the API server's refusals mapped to ``RouteError``.

Why a JSON patch rather than a merge patch or an update: ``spec.rules`` and each
rule's ``backendRefs`` are atomic lists in the Gateway API CRD, so a merge patch or an
apply would have to resend every rule whole, and a rule edited by someone else in the
meantime would be overwritten. A JSON patch names only the weight fields by index, and
its leading ``test`` of ``metadata.resourceVersion`` makes the API server refuse it
when the route moved since the read (the indices might no longer point at our
backendRefs).

The kubernetes client is blocking, so every call runs in a worker thread
(``asyncio.to_thread``), as in ``kube``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from goodput.actuator.kube import REQUEST_TIMEOUT_S, api_error
from goodput.actuator.route import (
    GROUP,
    PLURAL,
    VERSION,
    BackendKey,
    JsonPatchOp,
    RouteConflict,
    RouteError,
    RouteOwner,
    RoutePatch,
    RouteRefusal,
    RouteUpdate,
    RouteWeights,
    plan_weights,
    read_weights,
    release_ops,
)
from goodput.reasons import Reason

JSON_PATCH = "application/json-patch+json"


class KubeTrafficRouter:
    """Reads and writes the traffic split on HTTPRoutes (``gateway.networking.k8s.io/v1``)
    through the API server. Satisfies ``goodput.ports.TrafficRouter``."""

    def __init__(self, api_client: Any) -> None:
        self._api_client = api_client

    def _custom(self) -> Any:
        from kubernetes import client

        return client.CustomObjectsApi(self._api_client)

    # -- blocking halves ------------------------------------------------------------------
    def _get(self, namespace: str, name: str) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        try:
            obj: dict[str, Any] = self._custom().get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, _request_timeout=REQUEST_TIMEOUT_S
            )
        except ApiException as err:
            raise _read_error(err, namespace, name) from None
        return obj

    def _patch(self, namespace: str, name: str, ops: Sequence[JsonPatchOp]) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        try:
            obj: dict[str, Any] = self._custom().patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                list(ops),
                _content_type=JSON_PATCH,
                _request_timeout=REQUEST_TIMEOUT_S,
            )
        except ApiException as err:
            raise self._write_error(err, namespace, name, ops) from None
        return obj

    def _write_error(
        self, err: Any, namespace: str, name: str, ops: Sequence[JsonPatchOp]
    ) -> RouteError:
        where = f"HTTPRoute {namespace}/{name}"
        status = int(getattr(err, "status", 0) or 0)
        words = api_error(err)
        if status == 404:
            return RouteError(
                Reason.RouteNotFound, f"{where} is gone ({words}); nothing changed", status
            )
        if status == 403:
            return RouteError(
                Reason.RouteRefused,
                f"cannot patch {where}: {words}; grant the operator patch on"
                f" {PLURAL}.{GROUP}; nothing changed",
                status,
            )
        tested = next(
            (
                op.get("value")
                for op in ops
                if op.get("op") == "test" and op.get("path") == "/metadata/resourceVersion"
            ),
            None,
        )
        if status in (409, 422) and tested is not None and self._moved(namespace, name, tested):
            # A failed test op is a 422 like any invalid patch; the route's own
            # resourceVersion tells a concurrent edit from a refused value.
            return RouteConflict(
                Reason.RouteRefused,
                f"{where} changed since it was read (resourceVersion {tested} is stale):"
                f" someone else edits it too ({words}); nothing changed",
                status,
            )
        return RouteError(
            Reason.RouteRefused, f"the API server refused the patch of {where}: {words}", status
        )

    def _moved(self, namespace: str, name: str, tested: Any) -> bool:
        try:
            now = self._get(namespace, name)
        except RouteError:
            return True  # gone or unreadable: certainly not the route we read
        return str((now.get("metadata") or {}).get("resourceVersion")) != str(tested)

    def _set(
        self,
        namespace: str,
        name: str,
        owner: RouteOwner,
        owned: Sequence[BackendKey],
        weights: Mapping[BackendKey, int],
        live_owners: Collection[str] | None,
    ) -> RouteUpdate:
        route = self._get(namespace, name)
        planned = plan_weights(route, owner, owned, weights, live_owners=live_owners)
        if isinstance(planned, RouteRefusal):
            raise RouteError.of(planned)
        if not planned.changed:
            return RouteUpdate(planned.before, planned.before, written=False)
        after = self._patch(namespace, name, planned.ops)
        return RouteUpdate(
            before=planned.before,
            after=_weights_of(after, owned),
            written=True,
            took_over_from=planned.took_over_from,
        )

    def _release(self, namespace: str, name: str, owner: RouteOwner) -> bool:
        try:
            route = self._get(namespace, name)
        except RouteError as err:
            if err.reason is Reason.RouteNotFound:
                return False
            raise
        ops = release_ops(route, owner)
        if not ops:
            return False
        self._patch(namespace, name, ops)
        return True

    # -- the async interface ----------------------------------------------------------------
    async def get(self, namespace: str, name: str) -> dict[str, Any]:
        """The HTTPRoute as the API server has it (RouteError RouteNotFound if absent)."""
        return await asyncio.to_thread(self._get, namespace, name)

    async def read_weights(
        self, namespace: str, route: str, owned: Sequence[BackendKey]
    ) -> RouteWeights:
        obj = await self.get(namespace, route)
        return _weights_of(obj, owned)

    async def set_weights(
        self,
        namespace: str,
        route: str,
        owner: RouteOwner,
        owned: Sequence[BackendKey],
        weights: Mapping[BackendKey, int],
        *,
        live_owners: Collection[str] | None = None,
    ) -> RouteUpdate:
        """Read the route, plan the patch, send it. Raises RouteError for a refusal
        (ours or the API server's) and RouteConflict when the route moved in between;
        never retries: a route that keeps moving is someone else's to say."""
        return await asyncio.to_thread(
            self._set, namespace, route, owner, owned, weights, live_owners
        )

    async def patch(self, namespace: str, name: str, ops: Sequence[JsonPatchOp]) -> dict[str, Any]:
        """Send a JSON patch as it is (e.g. one from ``plan_weights`` on a route read
        earlier); returns the patched route."""
        return await asyncio.to_thread(self._patch, namespace, name, ops)

    async def release(self, namespace: str, name: str, owner: RouteOwner) -> bool:
        """Remove ``owner``'s annotation from the route (the policy is going away);
        False when there was nothing to release."""
        return await asyncio.to_thread(self._release, namespace, name, owner)

    async def apply(self, namespace: str, name: str, patch: RoutePatch) -> RouteUpdate:
        """Send a planned patch; for a caller that planned on a route it read itself."""
        if not patch.changed:
            return RouteUpdate(patch.before, patch.before, written=False)
        after = await self.patch(namespace, name, patch.ops)
        owned = list(patch.weights)
        return RouteUpdate(
            patch.before, _weights_of(after, owned), True, took_over_from=patch.took_over_from
        )


def _weights_of(obj: Mapping[str, Any], owned: Sequence[BackendKey]) -> RouteWeights:
    read = read_weights(obj, owned)
    if isinstance(read, RouteRefusal):
        raise RouteError.of(read)
    return read


def _read_error(err: Any, namespace: str, name: str) -> RouteError:
    where = f"HTTPRoute {namespace}/{name}"
    status = int(getattr(err, "status", 0) or 0)
    words = api_error(err)
    if status == 404:
        if _details_kind(err) == PLURAL:
            return RouteError(Reason.RouteNotFound, f"{where} not found; nothing changed", status)
        # No details: the resource itself is not served.
        return RouteError(
            Reason.RouteNotFound,
            f"the API server serves no HTTPRoute in {GROUP}/{VERSION} ({words}; are the"
            " Gateway API CRDs installed?); nothing changed",
            status,
        )
    if status == 403:
        return RouteError(
            Reason.RouteRefused,
            f"cannot read {where}: {words}; grant the operator get on {PLURAL}.{GROUP};"
            " nothing changed",
            status,
        )
    return RouteError(Reason.RouteRefused, f"cannot read {where}: {words}", status)


def _details_kind(err: Any) -> str | None:
    body = getattr(err, "body", None)
    if not isinstance(body, (str, bytes)):
        return None
    try:
        details = json.loads(body).get("details") or {}
    except (ValueError, AttributeError):
        return None
    kind = details.get("kind") if isinstance(details, dict) else None
    return str(kind) if kind else None


if TYPE_CHECKING:  # mypy checks that the edge satisfies the port
    from goodput.ports import TrafficRouter

    _router: TrafficRouter = KubeTrafficRouter(None)
