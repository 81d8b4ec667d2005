"""The small interfaces between the pure core and its edges, so one planner drives
the operator, the `goodput plan` command and the digital twin alike."""

from __future__ import annotations

from typing import Protocol

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
