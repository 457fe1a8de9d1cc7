"""`windows.slide` (large_deposit and window_threshold) equals the plain three steps it replaced.

Those steps, per new entry at `at`: drop what is at or before the newest time minus the
width, then `bisect_right` for the window's start and for where the entry goes. The
property runs in-order and late entries, ties and empty series; the triggers' own
brute-force tests (test_properties.py) feed in-order streams only, so this is what
covers the late branch [taking the in-order branch for every entry fails it].
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from test_triggers_support import at as t0_plus

from keymoment.triggers.windows import slide


def _plain(times: list[datetime], values: list[int], at: datetime, width: timedelta):
    newest = at if not times or at > times[-1] else times[-1]
    drop = bisect_right(times, newest - width)
    del times[:drop], values[:drop]
    return bisect_right(times, at - width), bisect_right(times, at)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.integers(0, 40), max_size=12),
    st.integers(0, 50),
    st.integers(1, 20),
)
def test_slide_equals_prune_then_search(minutes, at_minute, width_minutes):
    times = [t0_plus(minutes=m) for m in sorted(minutes)]
    values = list(range(len(times)))
    at, width = t0_plus(minutes=at_minute), timedelta(minutes=width_minutes)
    expected_times, expected_values = list(times), list(values)
    expected = _plain(expected_times, expected_values, at, width)
    assert slide(times, values, at, width) == expected
    assert (times, values) == (expected_times, expected_values)
