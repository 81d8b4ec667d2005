"""The small interfaces between the pure core and its edges, so one planner drives
the operator, the `goodput plan` command and the digital twin alike."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Protocol

from goodput.actuator.route import BackendKey, RouteOwner, RouteUpdate, RouteWeights
from goodput.observation import Observation
from goodput.plan import Allocation, Plan


class Autoscaler(Protocol):
    """Anything that turns an observation into a plan: the goodput planner and every
    baseline in the benchmark. Implementations keep their own state between calls."""

    name: str

    def decide(self, observation: Observation, current: Allocation, now: float) -> Plan: ...


class ObservationSource(Protocol):
    """Where observations come from: Prometheus in the operator, the twin in simulation."""

    async def observe(self, now: float) -> Observation: ...


class ScaleTarget(Protocol):
    """Reads and writes replicas through the /scale subresource (the actuator's edge)."""

    async def get_replicas(self, kind: str, name: str) -> tuple[int, int]:
        """(spec.replicas, status.replicas) of the workload."""
        ...

    async def set_replicas(self, kind: str, name: str, replicas: int) -> None: ...


class TrafficRouter(Protocol):
    """Reads and writes one service's split of traffic between its variants: the
    weights of an HTTPRoute's backendRefs in the operator (``actuator.route_kube``), a
    weighted router in the twin. Weights are integers summing to 100, keyed by the
    variant's backendRef. Both raise ``actuator.route.RouteError`` (``RouteRefused`` /
    ``RouteNotFound``, and ``RouteConflict`` when the route moved since it was read), so
    a refusal reads the same in simulation as on a cluster."""

    async def read_weights(
        self, namespace: str, route: str, owned: Sequence[BackendKey]
    ) -> RouteWeights:
        """The owned backendRefs' current weights and shares of their rule's traffic."""
        ...

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
        """Give each owned backendRef its weight, touching nothing else, or raise."""
        ...
