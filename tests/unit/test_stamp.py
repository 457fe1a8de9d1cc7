"""`Stamper.stamp` equals the plain loop it stands for: rises, routing, `until`, the end time.

The stamp step's loop is written for speed (the `until` test only at a rise,
the batch's newest time taken from its last rise, one shard not routed); this
reference is the rule as docs/dataflow.md states it, one event at a time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from hypothesis import given
from hypothesis import strategies as st

from keymoment.flows.stamp import NO_EVENTS, Accepted, Stamper, shard_of

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LATENESS = timedelta(seconds=3)


def reference(batches: list[list], shards: int, until: datetime | None) -> list[tuple]:
    """Per batch: the rises, each shard's positions, the newest kept time; and the skips."""
    newest, out, skipped = None, [], 0
    for events in batches:
        rises, own, last = [], [[] for _ in range(shards)], None
        for i, event in enumerate(events):
            at = event.occurred_at
            if until is not None and at > until:
                skipped += 1
                continue
            if newest is None or at > newest:
                newest = at
                rises.append((i, at - LATENESS))
            last = at if last is None or at > last else last
            own[shard_of(event.customer_id, shards)].append(i)
        out.append((rises, own, last))
    return [*out, skipped]


def stamped(batches: list[list], shards: int, until: datetime | None) -> list[tuple]:
    stamper = Stamper(shards, LATENESS, timedelta(minutes=5), until)
    out: list = []
    for events in batches:
        n = len(events)
        accepted = Accepted(events, ["f"] * n, list(range(n))) if n else NO_EVENTS
        per_shard = stamper.stamp(accepted, [], n)
        first = per_shard[0]
        for batch in per_shard:
            assert list(batch.own.events) == [events[p] for p in batch.positions]
            assert list(batch.own.lines) == list(batch.positions)  # the views pick the same
        rises = list(zip(first.rise_pos, first.rise_wm, strict=True))
        out.append((rises, [list(b.positions) for b in per_shard], first.last_at))
    return [*out, stamper.after_until]


event = st.builds(
    lambda second, customer: SimpleNamespace(
        occurred_at=T0 + timedelta(seconds=second), customer_id=f"c{customer}"
    ),
    st.integers(0, 40),
    st.integers(0, 30),
)


@given(
    batches=st.lists(st.lists(event, max_size=30), max_size=6),
    shards=st.integers(1, 5),
    until=st.none() | st.integers(0, 45).map(lambda s: T0 + timedelta(seconds=s)),
)
def test_the_stamp_loop_is_the_plain_rule(batches: list, shards: int, until: datetime | None):
    assert stamped(batches, shards, until) == reference(batches, shards, until)
