"""The sliding-window admission rule against a brute force over all intervals."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from keymoment.state import Check, MemoryCapStore, Option, Reservation, rolling_admits


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


@given(
    st.lists(st.integers(0, 60), max_size=12),
    st.integers(0, 60),
    st.integers(1, 20),
    st.integers(0, 4),
)
def test_memory_store_rolling_check_equals_brute_force(existing, slot, window, limit):
    """The memory store's bisect-and-slice over its sorted key decides like every interval."""
    store = MemoryCapStore()
    for i, at in enumerate(existing):  # limit 99: every existing slot is taken
        store.reserve(_one(f"o{i}", at, window, 99))
    admitted = store.reserve(_one("new", slot, window, limit)).reserved
    assert admitted == brute_force(existing, slot, window, limit)
    assert [at for _, at in store.slots("k")] == sorted(existing + [slot] * admitted)


def _one(offer_id: str, slot: int, window: int, limit: int) -> Reservation:
    check = Check("cap", "k", "rolling", limit, window_ms=window, keep_ms=10_000)
    return Reservation(offer_id, "C1", 0, (Option(f"x|{slot}", slot, (check,)),), keep_ms=10_000)
