"""The order of /scale writes that keeps GPUs held within the budget at every moment.

GPUs are held by every pod that exists, including pods still terminating, and will be
held by every replica already asked for. A terminating pod is not counted by its
ReplicaSet: asking for one more replica while two pods terminate makes a new pod beside
them. So a target holds ``(max(spec replicas, live pods) + terminating pods) x
gpusPerReplica``, live pods being those not yet being deleted. Shrinks are written at once;
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
    pods_terminating: int = 0  # of pods_present, those being deleted

    @property
    def live_pods(self) -> int:
        return self.pods_present - self.pods_terminating

    @property
    def gpus_held(self) -> int:
        replicas = max(self.spec_replicas, self.live_pods) + self.pods_terminating
        return replicas * self.gpus_per_replica

    def asking(self, replicas: int) -> TargetState:
        """The state right after /scale is set to ``replicas``: live pods above it
        start terminating (and keep their GPUs until they are gone)."""
        stopping = max(0, self.live_pods - replicas)
        return TargetState(
            replicas, self.pods_present, self.gpus_per_replica, self.pods_terminating + stopping
        )


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
            after[key] = t.asking(want)
    deferred: dict[str, int] = {}
    for key in sorted(desired):
        want, t = desired[key], after[key]
        if want <= t.spec_replicas:
            continue
        others = gpus_held(after) - t.gpus_held
        room = budget - others
        per = t.gpus_per_replica
        # Each replica asked for beyond the live pods is a new pod beside the terminating.
        base = t.pods_terminating * per
        fits = want if per == 0 else min(want, max(room - base, 0) // per)
        # Pods already present count; asking for fewer than them is not a grow.
        fits = max(fits, t.spec_replicas)
        if fits > t.spec_replicas:
            writes[key] = fits
            after[key] = t.asking(fits)
        if fits < want:
            deferred[key] = want
    return Writes(writes, deferred, gpus_held(after))


def shrink_to_budget(
    targets: Mapping[str, TargetState], mins: Mapping[str, int], budget: int
) -> dict[str, int]:
    """Spec replicas that fit ``budget`` when there is no plan to say what matters
    most: every target shrinks in proportion (keeping the split it had, the least
    disruptive guess), never below its minimum; replicas the rounding freed go back in
    key order while they fit. Targets already within budget are returned unchanged.

    GPUs of pods still terminating are not counted: they go by themselves, and the
    caller's budget-safe order keeps anything from growing until they have."""
    asked = {k: t.spec_replicas for k, t in targets.items()}
    per = {k: t.gpus_per_replica for k, t in targets.items()}

    def total(r: Mapping[str, int]) -> int:
        return sum(r[k] * per[k] for k in r)

    if total(asked) <= budget:
        return asked
    scale = budget / max(total(asked), 1)
    out = {k: min(n, max(mins.get(k, 0), int(n * scale))) for k, n in asked.items()}
    while total(out) > budget:
        spare = [k for k in sorted(out) if out[k] > mins.get(k, 0) and per[k] > 0]
        if not spare:
            break  # the minimums alone exceed the budget: the caller reports it
        biggest = max(spare, key=lambda k: (out[k] - mins.get(k, 0)) * per[k])
        out[biggest] -= 1
    for k in sorted(out, key=lambda k: (-(asked[k] - out[k]) * per[k], k)):
        while out[k] < asked[k] and total(out) + per[k] <= budget:
            out[k] += 1
    return out
