"""kopf's peering rule as the policy loops apply it, and the chart's priorities."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from goodput.operator.main import PRIORITY_BASE, priority_from_pod_name
from goodput.operator.peering import Peer, peers_of, standing

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
ALIVE = NOW + timedelta(seconds=5)
DEAD = NOW - timedelta(seconds=1)


def test_a_live_higher_priority_peer_means_stand_by() -> None:
    s = standing([Peer("a-0", 1000, ALIVE), Peer("a-1", 999, ALIVE)], "a-1", 999, NOW)
    assert not s.active and "a-0" in s.why


def test_a_dead_higher_priority_peer_is_ignored_and_no_wait_is_needed() -> None:
    s = standing([Peer("a-0", 1000, DEAD), Peer("a-1", 999, ALIVE)], "a-1", 999, NOW)
    assert s.active and s.lower == ()


def test_the_highest_acts_and_knows_who_may_still_be_acting() -> None:
    s = standing([Peer("a-0", 1000, ALIVE), Peer("a-1", 999, ALIVE)], "a-0", 1000, NOW)
    assert s.active and s.lower == ("a-1",)


def test_equal_priorities_all_stand_by_as_kopf_does() -> None:
    s = standing([Peer("x", 0, ALIVE), Peer("y", 0, ALIVE)], "x", 0, NOW)
    assert not s.active and "same priority" in s.why


def test_peers_from_a_kopf_peering_status() -> None:
    raw = {
        "a-0": {"priority": 1000, "lastseen": "2026-12-01T11:59:58+00:00", "lifetime": 10},
        "junk": "not a peer",
    }
    (peer,) = peers_of(raw)
    assert peer == Peer("a-0", 1000, datetime(2026, 12, 1, 12, 0, 8, tzinfo=UTC))


def test_priority_from_statefulset_ordinal() -> None:
    assert priority_from_pod_name("goodput-operator-0") == PRIORITY_BASE
    assert priority_from_pod_name("goodput-operator-3") == PRIORITY_BASE - 3
    with pytest.raises(ValueError, match="ordinal"):
        priority_from_pod_name("laptop")
