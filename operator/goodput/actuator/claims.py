"""One writer per target: which GoodputPolicy owns a workload that several name.

The oldest policy (by ``metadata.creationTimestamp``, then by name, so the answer is
the same in every operator replica) keeps the target; a later one holds with
``ConflictingController`` naming the owner. A policy being deleted claims nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from goodput.api.spec import TargetRef


@dataclass(frozen=True)
class Claim:
    name: str
    created: datetime | None
    targets: frozenset[tuple[str, str]]  # (kind, name)


def first_claimant(claims: Iterable[Claim], ref: TargetRef) -> Claim | None:
    key = (ref.kind, ref.name)
    mine = [c for c in claims if key in c.targets]
    if not mine:
        return None
    return min(mine, key=lambda c: (c.created or datetime.max.replace(tzinfo=None), c.name))


def claim_of(obj: Mapping[str, Any]) -> Claim | None:
    """A claim from a raw GoodputPolicy object as the API server lists it; None for
    one being deleted. Tolerant: a malformed spec claims what it can name."""
    meta = obj.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return None
    spec = obj.get("spec") or {}
    refs: list[Any] = [p.get("targetRef") for p in spec.get("pools") or [] if isinstance(p, dict)]
    tiers = (spec.get("kvCache") or {}).get("tiers") or []
    refs += [t.get("targetRef") for t in tiers if isinstance(t, dict)]
    targets = frozenset(
        (str(r.get("kind", "Deployment")), str(r["name"]))
        for r in refs
        if isinstance(r, dict) and "name" in r
    )
    created = meta.get("creationTimestamp")
    when = None
    if isinstance(created, datetime):
        when = created
    elif isinstance(created, str):
        when = datetime.fromisoformat(created.replace("Z", "+00:00"))
    if when is not None and when.tzinfo is not None:
        when = when.replace(tzinfo=None)  # compared among themselves only, all UTC
    return Claim(str(meta.get("name", "")), when, targets)


def claims_of(objs: Sequence[Mapping[str, Any]]) -> list[Claim]:
    return [c for c in (claim_of(o) for o in objs) if c is not None]
