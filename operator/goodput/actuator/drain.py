"""Drain-aware scale-down, the pure half: which pods a shrinking ReplicaSet should
remove, and the ``controller.kubernetes.io/pod-deletion-cost`` annotations that make it
remove exactly those. No I/O; the reads and patches live in ``goodput.actuator.kube``.

Why: without the annotation a ReplicaSet that shrinks removes, among its ready running
pods, the most recently ready first, whatever they are serving, so a scale-down kills
in-flight requests. With it, pods with a lower cost go first (best effort, an int32;
https://kubernetes.io/docs/reference/labels-annotations-taints/#pod-deletion-cost).

The ReplicaSet ranks the pods to delete (``ActivePodsWithRanks`` in
kubernetes/kubernetes ``pkg/controller/controller_utils.go``) by, in order: not yet
scheduled, then pending/unknown before running, then not ready before ready, and only
then the deletion cost (lower first), colocation, time ready and age. Terminating and
finished pods are not counted at all. So:

- the pods that go first are the *not-ready* ones, whatever their cost; the choice
  is ranked the same way (not-ready first, then fewest running requests, then name,
  for determinism), and costs are written only to make the order among ready pods
  ours;
- the chosen ready pods get cost = their running requests and every other ready pod
  its running requests + 1: strictly above every chosen pod's (the others run at
  least as many), so ties at the boundary cannot let the ReplicaSet's own tie-break
  pick a busier pod, and the cost still reads as the load it was ranked by;
- only changed annotations are written (the docs discourage frequent updates), and
  only before a scale-down;
- a ready pod without a known load is never given one: if any ready pod of the
  ReplicaSet has no fresh per-pod figure the chosen set cannot be determined, and
  nothing is marked (:class:`Skip` says why). Missing data is not zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
INT32_MAX = 2**31 - 1


@dataclass(frozen=True)
class Pod:
    """One pod of the shrinking ReplicaSet, as the edge read it."""

    name: str
    ready: bool  # scheduled, phase Running and condition Ready True
    terminating: bool = False  # metadata.deletionTimestamp is set
    finished: bool = False  # phase Succeeded or Failed
    cost: str | None = None  # the current pod-deletion-cost annotation, verbatim

    @property
    def active(self) -> bool:
        """Counted by the ReplicaSet (its ``FilterActivePods``)."""
        return not self.terminating and not self.finished


class Skip(StrEnum):
    """Why a scale-down marks no pod."""

    NotShrinking = "NotShrinking"  # the write does not remove pods
    NoPerPodData = "NoPerPodData"  # no per-pod running requests for this pool at all
    LoadUnknown = "LoadUnknown"  # some ready pods have no fresh per-pod figure
    NotReadyGoFirst = "NotReadyGoFirst"  # at least k pods are not ready: they go anyway
    Unsupported = "Unsupported"  # not a Deployment (StatefulSet, LeaderWorkerSet, ...)
    SeveralReplicaSets = "SeveralReplicaSets"  # a rollout: the Deployment splits the shrink
    Disabled = "Disabled"  # the operator runs with --no-drain
    ReadFailed = "ReadFailed"  # the pods could not be listed


@dataclass(frozen=True)
class DrainChoice:
    """The pods expected to go (in the ReplicaSet's order) and the annotations to write.

    ``marks`` holds only annotations that change (pod -> cost); ``chosen`` the pods the
    ReplicaSet will remove with those costs; ``loads`` their running requests
    (``None`` for a not-ready pod without a figure). ``skip`` is set when nothing is
    marked, with ``why`` in words."""

    chosen: tuple[str, ...] = ()
    loads: dict[str, float | None] = field(default_factory=dict)
    marks: dict[str, int] = field(default_factory=dict)
    skip: Skip | None = None
    why: str = ""

    @property
    def marked(self) -> bool:
        return self.skip is None


def skipped(skip: Skip, why: str) -> DrainChoice:
    return DrainChoice(skip=skip, why=why)


def _cost(running: float) -> int:
    """A running-requests figure as an int32 deletion cost (rounded, clamped)."""
    return max(0, min(INT32_MAX - 1, round(running)))


def choose(
    pods: Sequence[Pod], running: Mapping[str, float] | None, to_replicas: int
) -> DrainChoice:
    """The pods a ReplicaSet shrinking to ``to_replicas`` should remove, least busy
    first, and the deletion costs that make it remove exactly those (module doc).

    ``running`` is requests running per pod name (``None``: no per-pod data at all)."""
    active = [p for p in pods if p.active]
    k = len(active) - to_replicas
    if k <= 0:
        return skipped(
            Skip.NotShrinking, f"{len(active)} active pods, {to_replicas} wanted: none go"
        )
    if running is None:
        return skipped(
            Skip.NoPerPodData,
            "no per-pod running requests for this pool (the engine's gauge by pod label "
            "is absent): the ReplicaSet picks the pods; nothing marked",
        )
    known = {n: v for n, v in running.items() if math.isfinite(v) and v >= 0}
    not_ready = [p for p in active if not p.ready]
    ready = [p for p in active if p.ready]
    if len(not_ready) >= k:
        names = sorted(p.name for p in not_ready)
        return skipped(
            Skip.NotReadyGoFirst,
            f"{len(not_ready)} pods not ready ({', '.join(names)}), {k} to go: the "
            "ReplicaSet removes not-ready pods first whatever their cost; nothing marked",
        )
    unknown = sorted(p.name for p in ready if p.name not in known)
    if unknown:
        return skipped(
            Skip.LoadUnknown,
            f"no fresh running-requests figure for ready pod(s) {', '.join(unknown)}: "
            "which pods go cannot be determined; nothing marked",
        )

    def load(p: Pod) -> float:
        return known.get(p.name, 0.0)

    not_ready.sort(key=lambda p: (known.get(p.name, 0.0), p.name))
    ready.sort(key=lambda p: (load(p), p.name))
    going_ready = ready[: k - len(not_ready)]
    staying = ready[k - len(not_ready) :]
    chosen = [*not_ready, *going_ready]
    want = {p.name: _cost(load(p)) for p in going_ready}
    want.update({p.name: _cost(load(p)) + 1 for p in staying})
    current = {p.name: p.cost for p in ready}
    marks = {n: c for n, c in want.items() if current.get(n) != str(c)}
    return DrainChoice(
        chosen=tuple(p.name for p in chosen),
        loads={p.name: known.get(p.name) for p in chosen},
        marks=marks,
    )


def summary(before: str, choice: DrainChoice, failed: Mapping[str, str]) -> tuple[bool, str]:
    """``(warn, message)`` of the ``DrainMarked`` event: which pods go first with their
    running requests, or why nothing was marked, and any refused patch (a warning:
    the scale-down went ahead without that pod's mark)."""
    if choice.skip is not None:
        warn = choice.skip is Skip.ReadFailed
        return warn, f"{before}: no pod marked ({choice.skip.value}): {choice.why}"
    pods = ", ".join(
        f"{n} ({'?' if choice.loads.get(n) is None else f'{choice.loads[n]:g}'} running)"
        for n in choice.chosen
    )
    written = len(choice.marks) - len(failed)
    message = (
        f"{before}: pods to go first {pods}; {written} pod-deletion-cost annotation(s) "
        f"written, {len(choice.marks) - written} refused"
    )
    if failed:
        refused = "; ".join(f"{n}: {e}" for n, e in sorted(failed.items()))
        message += f" ({refused}); the scale-down goes ahead"
    return bool(failed), message
