"""The seeded synthetic stream (`keymoment.connectors.generator`) as a paced Bytewax source.

Emits `(position, payload)` like every source: position `generator:N`
(N = 1-based sequence number), payload the wire JSON bytes. The stream is a
pure function of the seed, so the partition snapshot is just the number of
events emitted: a resumed run rebuilds the generator and skips that many
(which costs generation time on resume, about 10 us per skipped event,
never correctness).

Pacing: with `rate` > 0 the source emits on a fixed schedule of `rate`
events/s measured from the start of this execution (open loop: a slow
flow does not slow the schedule down, it falls behind, which is what a
latency benchmark must see); `rate=0` emits as fast as the flow pulls.

Live mode (`live=True`, the default when a rate is set) restamps
`occurred_at` with the wall clock at emission, so event time is creation
time and event-to-offer latency can be measured from it; the generator's
own timeline is then only an ordering. A live stream is unbounded unless
`count` is set: after the generator's `days` run out it starts again with
event ids suffixed `.1`, `.2`, ... so that no repeat is taken for a
duplicate. A replay stream (`live=False`) is the generator's timeline
itself and ends with it (or at `count`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import count as counter
from itertools import islice
from typing import Any

import orjson
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from keymoment.connectors.generator import Generator

Item = tuple[str, bytes]
TICK = 0.002  # seconds between paced batches: well below any latency we report
MAX_NAP = 0.25  # never sleep longer: a sleeping partition holds back every epoch


def _live_cycles(make: GeneratorFactory) -> Iterator[dict]:
    for cycle in counter():
        for record in make().iter_events():
            if cycle:
                record["event_id"] = f"{record['event_id']}.{cycle}"
            yield record


class GeneratorFactory:
    """Builds the same seeded `Generator` on every worker and every resume (plain, picklable)."""

    def __init__(self, seed: int, customers: int, days: int, noise: float, start_at: datetime):
        self.seed, self.customers, self.days = seed, customers, days
        self.noise, self.start_at = noise, start_at

    def __call__(self) -> Generator:
        return Generator(
            seed=self.seed,
            customers=self.customers,
            start_at=self.start_at,
            days=self.days,
            noise=self.noise,
        )


class _GeneratorPartition(StatefulSourcePartition[Item, int]):
    def __init__(
        self,
        make: GeneratorFactory,
        live: bool,
        rate: float,
        limit: int | None,
        batch_size: int,
        emitted: int,
    ):
        stream = _live_cycles(make) if live else make().iter_bytes()
        self._it = islice(stream, emitted, limit)
        self._live, self._rate, self._batch = live, rate, batch_size
        self._emitted = self._start_count = emitted
        self._start = time.monotonic()

    def next_batch(self) -> list[Item]:
        want = self._batch
        if self._rate > 0:
            due = int((time.monotonic() - self._start) * self._rate)
            want = min(want, due - (self._emitted - self._start_count))
        # dicts on the live path (restamped below), encoded bytes otherwise
        payloads: list[Any] = list(islice(self._it, max(want, 0)))
        if want > 0 and not payloads:
            raise StopIteration
        if self._live and payloads:
            payloads = _restamp(payloads)
        first = self._emitted + 1
        self._emitted += len(payloads)
        return [(f"generator:{first + i}", p) for i, p in enumerate(payloads)]

    def next_awake(self) -> datetime | None:
        if self._rate <= 0:
            return None
        next_due = self._start + (self._emitted - self._start_count + 1) / self._rate
        wait = next_due - time.monotonic()
        if wait <= 0:
            return None  # behind schedule: catch up at once
        return datetime.now(UTC) + timedelta(seconds=min(max(wait, TICK), MAX_NAP))

    def snapshot(self) -> int:
        return self._emitted


def _restamp(records: list) -> list[bytes]:
    """Event time = creation time: one wall-clock stamp per batch (batches are ~2 ms apart)."""
    now = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    out = []
    for record in records:
        record["occurred_at"] = now
        out.append(orjson.dumps(record))
    return out


class GeneratorSource(FixedPartitionedSource[Item, int]):
    """One partition of seeded synthetic events at `rate` events/s (0: as fast as pulled)."""

    def __init__(
        self,
        seed: int = 7,
        customers: int = 1000,
        rate: float = 0.0,
        count: int | None = None,
        live: bool | None = None,
        days: int = 240,
        noise: float = 0.0,
        batch_size: int = 1000,
        start_at: datetime = datetime(2026, 1, 1, tzinfo=UTC),
    ):
        if customers < 1 or days < 1 or rate < 0 or batch_size < 1:
            raise ValueError("generator needs customers >= 1, days >= 1, rate >= 0, batch >= 1")
        if count is not None and count < 0:
            raise ValueError("generator count must be >= 0")
        self.factory = GeneratorFactory(seed, customers, days, noise, start_at)
        self.rate, self.count, self.batch_size = rate, count, batch_size
        self.live = rate > 0 if live is None else live

    def profiles(self) -> Iterator[dict]:
        """The reference data of the generated customers (CustomerProfile wire dicts)."""
        return self.factory().profiles()

    def list_parts(self) -> list[str]:
        return ["generator"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None):
        return _GeneratorPartition(
            self.factory, self.live, self.rate, self.count, self.batch_size, resume_state or 0
        )
