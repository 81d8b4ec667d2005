"""``goodput`` in the variant twin through the operator's own tick
(goodput.operator.reconcile.Reconciler), the driver ``GOODPUT_DRIVER = "operator-tick"``
of goodput.sim.variant_controllers selects.

What the tick gets, as in a cluster:

- a ``ScaleClient`` over every variant's simulated cluster (:class:`FleetScaleClient`):
  each pool's targetRef is found in the cluster of the variant that declares it; every
  write is followed by the fleet's budget check (goodput.sim.variants.FleetAccount);
- a ``RouteClient`` over one in-memory HTTPRoute (:class:`SimRoute`): one rule whose
  backendRefs are the variants' ``backendRef``s, weights from the even start; the tick
  reads it, checks it and sends its JSON patch (``test`` of resourceVersion, weight
  replaces, the owner annotation), applied here; the twin's router then splits the next
  arrivals by the route's weights, so the split the gateway would serve is the one the
  operator wrote;
- its source factory returns each variant's in-process source
  (goodput.sim.observe.InProcessSource over that variant's exporter);
- its status, serialized as the kopf loop writes it, is the next tick's raw status.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Mapping
from typing import Any

from goodput.actuator.claims import Claim
from goodput.actuator.kube import TargetError, WorkloadScale
from goodput.actuator.route import BackendKey, RouteError, RoutePatch, read_weights
from goodput.api.spec import GoodputPolicySpec, TargetRef
from goodput.observation import Observation
from goodput.operator.reconcile import PolicyRef, Reconciler
from goodput.plan import Allocation
from goodput.reasons import Reason
from goodput.sim.cluster import NAMESPACE
from goodput.sim.observe import InProcessSource
from goodput.sim.variants import VariantDecision, VariantFleet, VariantScenario

POLICY = "goodput"


class FleetScaleClient:
    """The operator's ``ScaleClient`` over every variant's SimCluster (module doc)."""

    def __init__(self, fleet: VariantFleet) -> None:
        self.fleet = fleet
        self.by_ref: dict[tuple[str, str], tuple[str, str]] = {}
        for v, cl in fleet.clusters.items():
            for key, t in cl.targets.items():
                self.by_ref[(t.ref.kind, t.ref.name)] = (v, key)

    def _find(self, ref: TargetRef, namespace: str) -> tuple[str, str]:
        found = self.by_ref.get((ref.kind, ref.name))
        if found is None or namespace != NAMESPACE:
            raise TargetError(
                Reason.TargetNotFound,
                f"{ref.kind}/{ref.name} in namespace {namespace} not found; nothing changed",
            )
        return found

    async def read(self, ref: TargetRef, namespace: str) -> WorkloadScale:
        v, key = self._find(ref, namespace)
        return self.fleet.clusters[v].scale(key)

    async def write(self, ref: TargetRef, namespace: str, replicas: int) -> None:
        v, key = self._find(ref, namespace)
        if replicas < 0:
            raise ValueError(f"422 Unprocessable Entity: spec.replicas {replicas} < 0")
        self.fleet.clusters[v].set_replicas(key, replicas)
        self.fleet.account.sample(self.fleet.gpus_held())

    async def other_autoscalers(self, ref: TargetRef, namespace: str) -> list[str]:
        return []

    async def claims(self, namespace: str) -> list[Claim]:
        return []


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def apply_json_patch(obj: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 ``test``, ``replace``, ``add`` and ``remove`` on a copy (what the patches
    of goodput.actuator.route use); a failed test raises ``RouteError`` (409)."""
    out = copy.deepcopy(obj)
    for op in ops:
        parts = [_unescape(p) for p in str(op["path"]).split("/")[1:]]
        parent: Any = out
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent.setdefault(p, {})
        last = parts[-1]
        kind = op["op"]
        if kind == "test":
            have = parent[int(last)] if isinstance(parent, list) else parent.get(last)
            if have != op.get("value"):
                raise RouteError(Reason.RouteRefused, f"test failed at {op['path']}", 409)
        elif kind in ("replace", "add"):
            if isinstance(parent, list):
                if last == "-":
                    parent.append(op["value"])
                elif kind == "add":
                    parent.insert(int(last), op["value"])
                else:
                    parent[int(last)] = op["value"]
            else:
                parent[last] = op["value"]
        elif kind == "remove":
            if isinstance(parent, list):
                del parent[int(last)]
            else:
                parent.pop(last, None)
        else:
            raise ValueError(f"unsupported JSON patch op {kind!r}")
    return out


class SimRoute:
    """The ``RouteClient`` over one in-memory HTTPRoute (module doc)."""

    def __init__(self, vsc: VariantScenario, weights: Mapping[str, int]) -> None:
        ref = vsc.spec.traffic_split.http_route_ref
        self.name = ref.name if ref is not None else "variants"
        self.keys: dict[str, BackendKey] = {}
        backends = []
        for v in vsc.spec.variants:
            b = v.backend_ref
            if b is None:
                raise ValueError(f"variant {v.name}: the operator-tick driver needs backendRefs")
            self.keys[v.name] = BackendKey(name=b.name, group=b.group, kind=b.kind.value)
            backends.append(
                {"group": b.group, "kind": b.kind.value, "name": b.name, "weight": weights[v.name]}
            )
        self.version = 1
        self.obj: dict[str, Any] = {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {
                "name": self.name,
                "namespace": NAMESPACE,
                "resourceVersion": str(self.version),
                "annotations": {},
            },
            "spec": {"rules": [{"backendRefs": backends}]},
        }
        self.patches = 0

    async def get(self, namespace: str, name: str) -> dict[str, Any]:
        if namespace != NAMESPACE or name != self.name:
            raise RouteError(Reason.RouteNotFound, f"HTTPRoute {namespace}/{name} not found", 404)
        return copy.deepcopy(self.obj)

    async def apply(self, namespace: str, name: str, patch: RoutePatch) -> Any:
        if not patch.changed:
            return None
        self.obj = apply_json_patch(self.obj, [dict(op) for op in patch.ops])
        self.version += 1
        self.obj["metadata"]["resourceVersion"] = str(self.version)
        self.patches += 1
        return None

    def weights(self) -> dict[str, int]:
        """The route's weights per variant, as the gateway would split by them."""
        read = read_weights(self.obj, list(self.keys.values()))
        if not hasattr(read, "weights"):
            raise RuntimeError(f"the simulated route became unreadable: {read}")
        return {v: int(read.weights[k]) for v, k in self.keys.items()}  # type: ignore[union-attr]


class OperatorVariantsLoop:
    """``goodput`` through the operator's own tick (module doc). ``bind`` is called by
    goodput.sim.variants.run_variants once the fleet exists; the observations it passes
    to ``decide`` are not used: the tick reads its own sources."""

    observes = True
    own_sources = True

    def __init__(self, vsc: VariantScenario) -> None:
        self.name = "goodput"
        self.label = "the operator's own tick (Reconciler) on the simulated fleet and route"
        self.vsc = vsc
        self.raw_spec = vsc.spec.model_dump(mode="json", by_alias=True, exclude_none=True)
        self.raw_status: dict[str, Any] = {}
        self.now = 0.0
        self.outcomes: list[tuple[float, Any]] = []
        self.route: SimRoute | None = None
        self.reconciler: Reconciler | None = None
        self.runner: asyncio.Runner | None = None

    def bind(self, fleet: VariantFleet, weights: Mapping[str, int]) -> None:
        self.route = SimRoute(self.vsc, weights)
        sources = {v: fleet.sources[v] for v in fleet.sources}
        owner = {
            (p.target_ref.kind, p.target_ref.name): v.name
            for v in self.vsc.spec.variants
            for p in v.pools
        }

        async def factory(spec: GoodputPolicySpec, namespace: str) -> InProcessSource:
            del namespace
            p = spec.pools[0]
            return sources[owner[(p.target_ref.kind, p.target_ref.name)]]

        self.reconciler = Reconciler(
            FleetScaleClient(fleet), factory, clock=lambda: self.now, router=self.route
        )
        self.runner = asyncio.Runner()

    def decide(
        self,
        observations: Mapping[str, Observation],
        current: Mapping[str, Allocation],
        weights: Mapping[str, int],
        now: float,
    ) -> VariantDecision:
        assert self.reconciler is not None and self.runner is not None and self.route
        self.now = now
        out = self.runner.run(
            self.reconciler.tick(
                PolicyRef(NAMESPACE, POLICY, None), 1, self.raw_spec, self.raw_status
            )
        )
        self.raw_status = out.status.model_dump(mode="json", by_alias=True, exclude_none=True)
        self.outcomes.append((now, out))
        d = out.status.last_decision
        note = f"{d.reason}: {d.message}" if d is not None else ""
        return VariantDecision(weights=self.route.weights(), note=note)

    def close(self) -> None:
        if self.reconciler is not None:
            self.reconciler.close()
        if self.runner is not None:
            self.runner.close()
