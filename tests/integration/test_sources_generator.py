"""The seeded generator as a Bytewax source: same stream as the generator, paced, resumable."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import bytewax.operators as op
import orjson
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main

from keymoment.connectors.generator import Generator
from keymoment.connectors.synthetic import GeneratorSource
from keymoment.connectors.wire import decode


def _collect(source: GeneratorSource) -> list[tuple[str, bytes]]:
    got: list[tuple[str, bytes]] = []
    flow = Dataflow("gen")
    op.output("out", op.input("in", flow, source), TestingSink(got))
    run_main(flow)
    return got


def test_replay_emits_exactly_the_generator_stream_with_positions() -> None:
    """Unpaced, the source emits the generator's bytes in order as `generator:N`."""
    got = _collect(GeneratorSource(seed=3, customers=40, days=60, batch_size=64))
    expected = list(Generator(seed=3, customers=40, days=60).iter_bytes())
    assert len(expected) > 100
    assert got == [(f"generator:{i + 1}", p) for i, p in enumerate(expected)]


def test_resume_from_snapshot_continues_the_same_sequence() -> None:
    """A partition rebuilt from a snapshot continues where the first one stopped."""
    source = GeneratorSource(seed=5, customers=30, days=60, batch_size=50)
    first = source.build_part("in", "generator", None)
    head = first.next_batch() + first.next_batch()
    rest = source.build_part("in", "generator", first.snapshot()).next_batch()
    expected = list(Generator(seed=5, customers=30, days=60).iter_bytes(limit=150))
    assert [p for _, p in head + rest] == expected
    assert rest[0][0] == "generator:101"


def test_paced_live_stream_keeps_the_rate_and_stamps_creation_time() -> None:
    """At 2000 events/s, 1000 events take at least ~0.5 s and carry the wall clock as event time."""
    started_at = datetime.now(UTC)
    t0 = time.monotonic()
    got = _collect(GeneratorSource(seed=1, customers=100, rate=2000, count=1000))
    elapsed = time.monotonic() - t0
    assert len(got) == 1000 and elapsed >= 0.45
    events = [decode(p, pos) for pos, p in got]
    times = [e.occurred_at for e in events]
    assert started_at - timedelta(seconds=1) <= min(times) and max(times) <= datetime.now(UTC)
    assert times == sorted(times)


def test_live_stream_outlasts_the_generator_days_without_repeating_ids() -> None:
    """Past the end of the generated days a live stream starts over with suffixed event ids."""
    one_cycle = sum(1 for _ in Generator(seed=2, customers=10, days=30).iter_events())
    got = _collect(
        GeneratorSource(seed=2, customers=10, days=30, live=True, count=one_cycle * 2 + 5)
    )
    ids = [orjson.loads(p)["event_id"] for _, p in got]
    assert len(ids) == len(set(ids)) == one_cycle * 2 + 5
    assert ids[one_cycle].endswith(".1") and ids[-1].endswith(".2")
