"""The order of /scale writes that keeps GPUs held within the budget at every moment.

GPUs are held by every pod that exists, including pods still terminating, and will be
held by every replica already asked for. So a target holds
``max(spec replicas, pods present) x gpusPerReplica``. Shrinks are written at once;
a grow is written only when it fits beside everything still held, so a rebalance
is "shrink, wait for the pods to go, then grow" (DESIGN section 5).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class TargetState:
    spec_replicas: int  # what the /scale subresource asks for now
    pods_present: int  # pods of the target that exist, terminating ones included
    gpus_per_replica: int

    @property
    def gpus_held(self) -> int:
        return max(self.spec_replicas, self.pods_present) * self.gpus_per_replica


@dataclass(frozen=True)
class Writes:
    replicas: dict[str, int]  # the /scale writes to issue now
    deferred: dict[str, int]  # grows that must wait for GPUs to be released
    gpus_held_after: int  # upper bound of GPUs held once the writes land


def gpus_held(targets: Mapping[str, TargetState]) -> int:
    return sum(t.gpus_held for t in targets.values())


def budget_safe_writes(
    targets: Mapping[str, TargetState], desired: Mapping[str, int], budget: int
) -> Writes:
    """Shrinks now; grows (in key order, for determinism) only as far as they fit."""
    writes: dict[str, int] = {}
    after = dict(targets)
    for key, want in desired.items():
        t = targets[key]
        if want < t.spec_replicas:
            writes[key] = want
            after[key] = TargetState(want, t.pods_present, t.gpus_per_replica)
    deferred: dict[str, int] = {}
    for key in sorted(desired):
        want, t = desired[key], after[key]
        if want <= t.spec_replicas:
            continue
        others = gpus_held(after) - t.gpus_held
        room = budget - others
        per = t.gpus_per_replica
        fits = want if per == 0 else min(want, max(room, 0) // per)
        # Pods already present count; asking for fewer than them is not a grow.
        fits = max(fits, t.spec_replicas)
        if fits > t.spec_replicas:
            writes[key] = fits
            after[key] = TargetState(fits, t.pods_present, t.gpus_per_replica)
        if fits < want:
            deferred[key] = want
    return Writes(writes, deferred, gpus_held(after))
