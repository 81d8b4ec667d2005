"""Which operator replica acts: kopf's peering rule, applied to the policy loops.

kopf pauses its own watch streams when a live peer with a higher priority exists (or
one with the same priority: then every replica pauses and warns), but it knows nothing
of tasks it did not start. The per-policy loops are such tasks (so that deleting a
policy never waits on an operator finalizer), so they apply the same rule to the same
peering object themselves, every tick. The rule mirrors kopf's
``kopf/_core/engines/peering.py:process_peering_event``: peers whose
``lastseen + lifetime`` has passed are dead; self is excluded by identity.

This is not lease-based leader election: there is no fencing token. During a network
partition a replica that cannot reach the API server cannot write either (every write
goes through the API server), and a replica that can reach it sees the others'
heartbeats age out after their lifetime and takes over.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any


@dataclass(frozen=True)
class Peer:
    identity: str
    priority: int
    deadline: datetime | None  # lastseen + lifetime; None: unknown, treated as alive


@dataclass(frozen=True)
class Standing:
    active: bool
    why: str  # who this replica stands by for, or why it acts
    # Live peers with a lower priority: one of them may have been acting until now and
    # has not yet seen this replica, so a replica taking over from them waits a moment.
    lower: tuple[str, ...] = ()


def peers_of(status: Mapping[str, Any]) -> list[Peer]:
    """Peers from a KopfPeering object's status (``{id: {priority, lastseen, lifetime}}``)."""
    out = []
    for ident, info in status.items():
        if not isinstance(info, Mapping):
            continue
        seen = info.get("lastseen")
        deadline = None
        if isinstance(seen, str):
            try:
                when = datetime.fromisoformat(seen.replace("Z", "+00:00"))
                deadline = when + timedelta(seconds=int(info.get("lifetime", 60)))
            except ValueError:
                deadline = None
        out.append(Peer(str(ident), int(info.get("priority", 0)), deadline))
    return out


def standing(peers: list[Peer], identity: str, priority: int, now: datetime) -> Standing:
    live = [p for p in peers if p.identity != identity and (p.deadline is None or p.deadline > now)]
    higher = sorted(p.identity for p in live if p.priority > priority)
    if higher:
        return Standing(False, f"standing by for higher-priority peer(s) {', '.join(higher)}")
    same = sorted(p.identity for p in live if p.priority == priority)
    if same:
        return Standing(
            False,
            f"standing by: peer(s) {', '.join(same)} have the same priority {priority};"
            " give replicas distinct priorities",
        )
    lower = tuple(sorted(p.identity for p in live if p.priority < priority))
    return Standing(True, "active: no live peer with a higher or equal priority", lower)
