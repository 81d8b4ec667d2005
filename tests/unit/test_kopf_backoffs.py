"""kopf's retry delays for API errors never run out (goodput.operator.handlers)."""

from __future__ import annotations

import itertools
from collections.abc import Sized

from goodput.operator.handlers import EndlessBackoffs


def test_the_delays_start_short_then_repeat_for_as_long_as_needed() -> None:
    delays = list(itertools.islice(EndlessBackoffs(), 300))
    assert delays[:6] == [1.0, 1.0, 2.0, 3.0, 5.0, 8.0]
    assert set(delays[6:]) == {EndlessBackoffs.STEADY_S}
    # An outage of any length is waited out: 300 attempts span more than 15 minutes.
    assert sum(delays) > 15 * 60


def test_every_request_gets_its_own_sequence() -> None:
    """kopf iterates the setting afresh for each request (itertools.chain over it): an
    iterator would be used up by the first outage, and later requests would not retry."""
    b = EndlessBackoffs()
    first = list(itertools.islice(b, 8))
    again = list(itertools.islice(b, 8))
    assert first == again
    assert not isinstance(b, Sized)  # kopf then logs attempts without a total
