"""The in-memory cap store's changes (`whole`, `changes`, `apply`): what an incremental
snapshot chain keeps of it (flows/snapshots.py).

Property: a store driven by random reservations on a moving clock (keys that expire,
are dropped when read, swept every few reservations, and offers retried), asked for
its changes at random points, is rebuilt exactly by `apply` of its `whole()` and then
each `changes()` in order, each through the snapshot codec: the replica's `snapshot()`
equals the store's at every point, and the replica then answers the next reservations
as the store does.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keymoment.state import Check, MemoryCapStore, Option, Reservation, memory_caps
from keymoment.state import snapshot_codec as codec

HOUR = 3_600_000
CUSTOMERS = ["a", "b", "c"]


def reservation(
    customer: str, offer: int, now_ms: int, keep_hours: int, month_keep: int = 100
) -> Reservation:
    """Two channels; each with a rolling cap of 2 a day on the customer and a calendar cap
    of 3 (one key for both channels); the keys outlive the slot by the hours given."""
    options = []
    for channel in ("push", "sms"):
        checks = (
            Check("daily", f"cap:{{{customer}}}:{channel}:day", "rolling", 2, 24 * HOUR,
                  keep_ms=keep_hours * HOUR, prune_before_ms=now_ms - 24 * HOUR),
            Check("month", f"cap:{{{customer}}}:month", "calendar", 3, start_ms=0,
                  end_ms=10**12, keep_ms=month_keep * HOUR),
        )  # fmt: skip
        options.append(Option(f"{channel}|{now_ms}", now_ms, checks))
    return Reservation(f"o{customer}{offer}", customer, now_ms, tuple(options), 6 * HOUR)


def coded(changes: object) -> list:
    """Through the snapshot codec, as a segment holds them (and no object shared)."""
    return codec.decode(codec.encode(changes, codec.Classes()))


steps = st.lists(
    st.tuples(
        st.sampled_from(CUSTOMERS),
        st.integers(0, 5),  # offer number: repeats retry an offer
        st.sampled_from([0, 1, 5, 13, 30]),  # hours the clock moves first
        st.sampled_from([1, 12, 40]),  # hours a day key outlives its slot
        st.sampled_from([1, 12, 100]),  # hours the month key does
        st.booleans(),  # take the changes after this step
    ),
    max_size=60,
)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps, st.integers(0, 10))
def test_whole_then_changes_rebuild_the_store(monkeypatch_sweep, plan, base_at):
    store, replica, now = MemoryCapStore(), MemoryCapStore(), 0
    for i, (customer, offer, hours, keep, month_keep, take) in enumerate(plan):
        if i == base_at:
            replica.apply(*coded(store.whole()))
            assert replica.snapshot() == store.snapshot()
        now += hours * HOUR
        store.reserve(reservation(customer, offer, now, keep, month_keep))
        if take and i >= base_at:
            replica.apply(*coded(store.changes()))
            assert replica.snapshot() == store.snapshot()
    if len(plan) > base_at:
        replica.apply(*coded(store.changes()))
        assert replica.snapshot() == store.snapshot()
        for customer in CUSTOMERS:  # and it goes on as the store does
            now += HOUR
            asked = reservation(customer, 9, now, 12)
            assert replica.reserve(asked) == store.reserve(asked)


@pytest.fixture(name="monkeypatch_sweep")
def _sweep_often(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sweep every 3 reservations, so the property meets sweeps that drop what expired."""
    monkeypatch.setattr(memory_caps, "SWEEP_EVERY", 3)


def test_a_key_dropped_when_read_is_a_change():
    """Day keys expired and dropped while a full month cap refuses: nothing is taken, and
    the dropped keys are changes all the same."""
    store, replica = MemoryCapStore(), MemoryCapStore()
    replica.apply(*coded(store.whole()))
    for offer in (1, 2, 3):  # push, push, then sms: the month key holds 3
        assert store.reserve(reservation("a", offer, 0, 1)).index is not None
    replica.apply(*coded(store.changes()))
    assert store.reserve(reservation("a", 4, 2 * HOUR, 1)).index is None  # the month is full
    assert len(store.snapshot()["keys"]) == 1  # only the month key is left
    replica.apply(*coded(store.changes()))
    assert replica.snapshot() == store.snapshot()


def test_changes_before_whole_is_a_programming_error():
    with pytest.raises(RuntimeError, match="before whole"):
        MemoryCapStore().changes()


def test_a_store_nobody_asked_keeps_no_names():
    """A backtest's store never calls `whole`: reservations keep nothing for it."""
    store = MemoryCapStore()
    store.reserve(reservation("a", 1, HOUR, 12))
    assert store._changed is None
