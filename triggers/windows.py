"""Sorted time series of one rule and customer, pruned as they slide (large_deposit, windows).

Both triggers keep `times` (sorted) with `values` beside them and look at
the window `(at - width, at]` of each new entry. Entries at or before the
newest time minus `width` can never be in a window again and are dropped.
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import datetime, timedelta
from typing import Any


def slide(
    times: list[datetime], values: list[Any], at: datetime, width: timedelta
) -> tuple[int, int]:
    """Prune for a new entry at `at`: `(first, pos)`, where `times[first:pos]` are the earlier
    entries in its window and `pos` is where it goes (after any at the same time).

    Input is mostly in time order, so that case comes first: `at` is the
    newest time, everything left after pruning is inside its window and it
    goes last (one subtraction, and no search unless something aged out).
    A late entry prunes relative to the newest time and searches.
    """
    if not times or at >= times[-1]:  # in time order
        cutoff = at - width
        if times and times[0] <= cutoff:
            drop = bisect_right(times, cutoff)
            del times[:drop], values[:drop]
        return 0, len(times)
    drop = bisect_right(times, times[-1] - width)
    if drop:
        del times[:drop], values[:drop]
    return bisect_right(times, at - width), bisect_right(times, at)
