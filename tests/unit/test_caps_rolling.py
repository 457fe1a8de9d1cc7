"""The sliding-window admission rule against a brute force over all intervals."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from keymoment.state import rolling_admits


def brute_force(existing: list[int], slot: int, window: int, limit: int) -> bool:
    """Every half-open [x, x + window) containing the new slot, x on a 1-unit grid."""
    points = existing + [slot]
    return all(
        sum(x <= p < x + window for p in points) <= limit
        for x in range(slot - window + 1, slot + 1)
    )


@given(
    st.lists(st.integers(0, 60), max_size=12),
    st.integers(0, 60),
    st.integers(1, 20),
    st.integers(0, 4),
)
def test_rolling_admission_equals_brute_force(existing, slot, window, limit):
    """Out-of-order slots, duplicates and boundaries agree with a check of every interval."""
    assert rolling_admits(existing, slot, window, limit) == brute_force(
        existing, slot, window, limit
    )
