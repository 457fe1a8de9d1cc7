"""Decode, stamp the watermark, split by shard: the single-stream step before the shards.

The live flow must decide exactly what the backtest decides on the event
clock, although its customers are spread over shards that each run their own
`Engine`. One watermark moves with every event of the stream; it is computed
here, in the one place that still sees every event in order (the worker
reading the source partition, or the backtest's merged input), and every
shard receives each batch's *watermark rises*: the positions in the batch
where the watermark rose and its value from there on. A shard replays those
rises between its own events, so its timers fire at the same positions, with
the same clock, whatever the number of shards (see `flows.shard`). The
backtest is this with one shard (`flows.replay`).

With several source partitions (`partitioned=True`) each rise belongs to one
partition and carries that partition's own watermark; the shards take the
minimum over all partitions (`flows.partitions`), so the result does not
depend on how partitions interleave. A source signals the end of a
partition with `(partition label, None)`; `idle_timeout` (wall seconds)
marks a silent partition idle, so it does not hold time back.

No Bytewax here: `flows.dataflow` uses a `Stamper` as its `flat_map_batch`
mapper.
"""

from __future__ import annotations

import threading
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from itertools import repeat
from operator import attrgetter
from typing import Any, NamedTuple, TypeVar, cast, overload
from zlib import crc32

from keymoment.connectors.lines import Item, Lines, records_in
from keymoment.connectors.wire import DeadLetter, decode_many
from keymoment.triggers.events import Event

from .handover import Packed, pack_events, unpack_events
from .partitions import FAR, part_id, partition_of
from .placement import shard_keys
from .rises import pack, unpack_shared

Clock = Callable[[], datetime]
T = TypeVar("T")
_NEVER = datetime.min.replace(tzinfo=UTC)  # before every event time (years 1900..9000)
_ALWAYS = datetime.max.replace(tzinfo=UTC)  # no `until`: after every event time
_AT = attrgetter("occurred_at")


def position(source: str, line: int) -> str:
    """A dead letter's position: `source:line` for a file line, else the source's own label."""
    return source if line < 0 else f"{source}:{line}"


class Accepted(NamedTuple):
    """Accepted events in order, as columns of one entry each: no object per event.

    A file batch without a reject is its decoded list, its label repeated and
    its line numbers; a shard that gets every event of its batch gets these
    very columns. The payloads are not kept: a shard in another process gets
    the decoded events (`flows.handover`), not the text to decode again.
    """

    events: Sequence[Event]
    sources: Sequence[str]  # a file's or a Kafka partition's label, or a message's position
    lines: Sequence[int]  # a file line's number (the position is `source:line`), or -1

    def picked(self, indices: Sequence[int]) -> Accepted:
        """The events at `indices` (ascending), copied in C; the other columns as views.

        A shard reads its events; their sources and lines only for a duplicate's
        dead letter or to cross to another process, so copying those columns for
        every shard (1.3k instructions per event with eight shards, when there were
        three) bought nothing.
        """
        if len(indices) == len(self.events):  # every one of them
            return self
        events, sources, lines = self
        return Accepted(
            list(map(events.__getitem__, indices)), Picked(sources, indices), Picked(lines, indices)
        )

    def part(self, start: int, stop: int | None = None) -> Accepted:
        """The events from index `start` to `stop`."""
        cut = slice(start, stop)
        return Accepted(self.events[cut], self.sources[cut], self.lines[cut])


NO_EVENTS = Accepted((), (), ())


class Picked(Sequence[T]):
    """`column[indices[j]]` for each `j`: a shard's view of a batch column, read rarely."""

    __slots__ = ("column", "indices")

    def __init__(self, column: Sequence[T], indices: Sequence[int]) -> None:
        self.column, self.indices = column, indices

    @overload
    def __getitem__(self, j: int) -> T: ...
    @overload
    def __getitem__(self, j: slice) -> Picked[T]: ...
    def __getitem__(self, j: int | slice) -> T | Picked[T]:
        if isinstance(j, slice):
            return Picked(self.column, self.indices[j])
        return self.column[self.indices[j]]

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[T]:
        """In C: `list(picked)` for the trip to another process (`Batch.__reduce__`)."""
        return map(self.column.__getitem__, self.indices)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)


class Batch(NamedTuple):
    """What one shard gets per input batch (every shard gets one, for the watermark).

    Own events travel decoded within a process. Between processes Bytewax
    pickles the batch: then the events travel packed as MessagePack of their
    structs (`flows.handover`), not as their payloads to decode again, and so
    do the rises (`flows.rises`): as lists of datetimes they cost more than
    the events.
    """

    rise_pos: list[int]  # batch positions where the watermark rose, ascending
    rise_wm: list[datetime]  # the watermark from that position on, ascending
    positions: Sequence[int]  # the batch positions of this shard's events, ascending
    own: Accepted  # this shard's events, in the same order
    last_at: datetime | None  # newest occurred_at of the batch's accepted events
    dead_letters: list[dict]  # decode rejects (shard 0 only), passed through to the output
    lines: int  # input records in the batch (shard 0 only), for the live view
    rise_part: Sequence[int] = ()  # partitioned: the partition (`part_id`) of each rise

    def where(self, j: int) -> str:
        """The dead-letter position of this shard's `j`-th event."""
        return position(self.own.sources[j], self.own.lines[j])

    def __reduce__(self) -> tuple[Any, tuple]:
        own = self.own
        packed = pack(self.rise_pos, self.rise_wm)
        parts = array("q", self.rise_part).tobytes() if self.rise_part else b""
        where = (list(self.positions), list(own.sources), list(own.lines))
        args = (*packed, where, pack_events(own.events), self.last_at, self.dead_letters)
        return _rebuild, (*args, self.lines, parts)


def _rebuild(
    packed_pos: bytes,
    packed_wm: bytes,
    where: tuple[list[int], list[str], list[int]],
    events: Packed,
    last_at: datetime | None,
    dead_letters: list[dict],
    lines: int,
    packed_parts: bytes,
) -> Batch:
    """The batch as the stamp step made it, its events unpacked (`flows.handover`)."""
    rise_pos, rise_wm, parts = unpack_shared(packed_pos, packed_wm, packed_parts)
    positions, sources, numbers = where
    own = Accepted(unpack_events(events), sources, numbers)
    wm: list[datetime] = rise_wm  # type: ignore[assignment]  # LazyWatermarks: a read-only list
    return Batch(rise_pos, wm, positions, own, last_at, dead_letters, lines, parts)


def accepted_lines(
    lines: Lines,
    dead: list[dict],
    now: datetime | None = None,
    max_future: timedelta = timedelta(minutes=5),
    balances: bool = True,
) -> Accepted:
    """A file batch's accepted events, its rejects to `dead`.

    The lines decode in one `decode_many` call with the file's label as
    their source, and a reject's record then gets its line's position: the
    only position string made. A batch without a reject (nearly every one,
    checked in C) is passed on as it is.
    """
    label, raws = lines.label, lines.lines
    numbers = lines.numbers or range(lines.first, lines.first + len(raws))
    pairs = zip(repeat(label), raws)
    decoded = decode_many(pairs, now=now, max_future=max_future, balances=balances)
    if not any(map(isinstance, decoded, repeat(DeadLetter))):  # no reject: no Python loop
        return Accepted(cast(list[Event], decoded), [label] * len(raws), numbers)
    events, kept = [], []
    for i, event in enumerate(decoded):
        if isinstance(event, DeadLetter):
            record = event.record()
            record["source"] = lines.position(i)
            dead.append(record)
        else:
            events.append(event)
            kept.append(numbers[i])
    return Accepted(events, [label] * len(events), kept)


def joined(parts: Sequence[Accepted]) -> Accepted:
    """Several runs of accepted events as one, in order."""
    if len(parts) == 1:
        return parts[0]
    events: list[Event] = []
    sources: list[str] = []
    lines: list[int] = []
    for part in parts:
        events += part.events
        sources += part.sources
        lines += part.lines
    return Accepted(events, sources, lines)


def _without(positions: range, skipped: list[int]) -> list[int]:
    """`positions` without the `skipped` ones (ascending)."""
    if not skipped:
        return list(positions)
    gone = set(skipped)
    return [p for p in positions if p not in gone]


def shard_of(customer_id: str, count: int) -> int:
    """Stable across processes and restarts (unlike `hash()`): recovery depends on it.

    `Stamper.stamp` inlines it in its hot loop.
    """
    return crc32(customer_id.encode()) % count


class Stamper:
    """Raw input batches -> one `Batch` per shard; the running watermark per worker thread.

    `clock` is the wall clock for the `clock_skew` check (None on the event
    clock: a replay trusts the times of its input). Bytewax shares one mapper
    object between the worker threads of a process, so the running watermark
    lives in a thread-local. It is not part of any snapshot: after a resume it
    restarts low, and shards ignore watermarks below the one their restored
    engine already has, which is exactly the watermark at the snapshot (every
    shard saw every rise before it).
    """

    def __init__(
        self,
        shards: int,
        lateness: timedelta,
        max_future: timedelta,
        until: datetime | None = None,
        clock: Clock | None = None,
        placement: Callable[[str], str] | None = None,
        balances: bool = True,
        partitioned: bool = False,
        idle_timeout: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """`placement` maps a customer to the key its shard is chosen by (flows/owners.py).
        `balances=False`: events keep no `balance_after` (a fixed rule set that reads none;
        the live flow keeps them, since a rules reload may add a balance milestone)."""
        self.count = shards
        self.placement = placement
        self.balances = balances
        self.partitioned, self.idle_timeout, self.monotonic = partitioned, idle_timeout, monotonic
        self.keys = shard_keys(shards)
        self.lateness, self.max_future, self.until = lateness, max_future, until
        self.clock = clock
        self.after_until = 0  # events skipped for being later than `until` (this process)
        self._local = threading.local()

    def __call__(self, batch: Sequence[Item]) -> list[tuple[str, Batch]]:
        """The `flat_map_batch` mapper: decode, then stamp; every shard key gets a batch."""
        now = self.clock() if self.clock is not None else None
        dead: list[dict] = []
        ended: list[str] = []  # partitions whose end this batch carries
        records = records_in(batch)
        accepted = self._decoded(batch, now, dead, ended)
        if self.partitioned:
            stamped = self.stamp_parts(accepted, dead, records, ended)
        else:
            stamped = self.stamp(accepted, dead, records)
        return list(zip(self.keys, stamped, strict=True))

    def _decoded(
        self, batch: Sequence[Item], now: datetime | None, dead: list[dict], ended: list[str]
    ) -> Accepted:
        """The accepted events of a raw batch (file reads, Kafka messages, ends) in order;
        rejects go to `dead`, the ends of partitions (`(label, None)`) to `ended`.

        Runs of messages decode in one `decode_many` call each, as a file's lines do.
        """
        max_future, balances = self.max_future, self.balances
        if len(batch) == 1 and isinstance(batch[0], Lines):  # one file read
            return accepted_lines(batch[0], dead, now, max_future, balances)
        parts: list[Accepted] = []
        messages: list[tuple[str, bytes]] = []
        for item in batch:
            if isinstance(item, Lines):
                parts.append(self._messages(messages, now, dead))
                messages = []
                parts.append(accepted_lines(item, dead, now, max_future, balances))
            elif item[1] is None:
                ended.append(item[0])
            else:
                messages.append(item)  # type: ignore[arg-type]  # mypy cannot narrow by item[1]
        parts.append(self._messages(messages, now, dead))
        return joined(parts)

    def _messages(
        self, messages: list[tuple[str, bytes]], now: datetime | None, dead: list[dict]
    ) -> Accepted:
        """Messages `(source, payload)` decoded in one call; rejects to `dead`."""
        decoded = decode_many(messages, now=now, max_future=self.max_future, balances=self.balances)
        events, sources = [], []
        for (source, _), event in zip(messages, decoded, strict=True):
            if isinstance(event, DeadLetter):
                dead.append(event.record())
            else:
                events.append(event)
                sources.append(source)
        return Accepted(events, sources, [-1] * len(events))

    def stamp(self, accepted: Accepted, dead: list[dict], lines: int) -> list[Batch]:
        """Decoded events in stream order -> one `Batch` per shard, in shard order.

        Hot loop (one pass per event, kept in one piece on purpose): the
        watermark rises exactly when an event is newer than every one before
        it (`at - lateness > wm` is `at > newest`), so the loop compares
        times and subtracts the lateness only at a rise. Only an event newer
        than `newest` can be past `until` (`newest` never is), and the newest
        time of a batch with a rise is its last rise's, so the other events
        cost one comparison. One shard takes every position: nothing to route.
        """
        events = accepted.events
        wm: datetime | None = getattr(self._local, "wm", None)
        newest = _NEVER if wm is None else wm + self.lateness
        own: list[list[int]] = [[] for _ in range(self.count)]  # each shard's positions
        rise_pos: list[int] = []
        rise_wm: list[datetime] = []
        skipped: list[int] = []
        lateness, count, until = self.lateness, self.count, self.until or _ALWAYS
        place = self.placement
        for i, event in enumerate(events):
            at = event.occurred_at
            if at > newest:
                if at > until:
                    skipped.append(i)
                    continue
                newest = at
                rise_pos.append(i)
                rise_wm.append(at - lateness)
            if count > 1:
                key = event.customer_id if place is None else place(event.customer_id)
                own[crc32(key.encode()) % count].append(i)
        if count == 1:
            own[0] = _without(range(len(events)), skipped)
        self.after_until += len(skipped)
        self._local.wm = rise_wm[-1] if rise_wm else wm
        last = newest if rise_pos else max(filter(until.__ge__, map(_AT, events)), default=None)
        return self._per_shard(rise_pos, rise_wm, accepted, own, last, dead, lines)

    def stamp_parts(
        self,
        accepted: Accepted,
        dead: list[dict],
        lines: int,
        ended: Sequence[str] = (),
    ) -> list[Batch]:
        """`stamp` with one watermark per partition: each rise names its partition."""
        marks: dict[str, datetime] = self._local.__dict__.setdefault("marks", {})
        heard: dict[str, float] = self._local.__dict__.setdefault("heard", {})
        own: list[list[int]] = [[] for _ in range(self.count)]  # each shard's positions
        rise_pos: list[int] = []
        rise_wm: list[datetime] = []
        rise_part: list[int] = []
        last_at, wall = None, self.monotonic()
        lateness, count, until = self.lateness, self.count, self.until
        i = -1
        for i, (event, source, line) in enumerate(zip(*accepted[:3], strict=True)):  # noqa: B007
            at = event.occurred_at
            if until is not None and at > until:
                self.after_until += 1
                continue
            part = source if line >= 0 else partition_of(source)  # a file line: its file
            heard[part] = wall
            mark = marks.get(part)
            if mark is None or at - lateness > mark or mark is FAR:
                marks[part] = at - lateness
                rise_pos.append(i)
                rise_wm.append(at - lateness)
                rise_part.append(part_id(part))
            own[shard_of(event.customer_id, count)].append(i)
            if last_at is None or at > last_at:
                last_at = at
        for part in [*ended, *self._idle(marks, heard, wall)]:
            marks[part] = FAR
            rise_pos.append(i + 1)
            rise_wm.append(FAR)
            rise_part.append(part_id(part))
        return self._per_shard(rise_pos, rise_wm, accepted, own, last_at, dead, lines, rise_part)

    def _per_shard(
        self,
        rise_pos: list[int],
        rise_wm: list[datetime],
        accepted: Accepted,
        own: list[list[int]],
        last_at: datetime | None,
        dead: list[dict],
        lines: int,
        rise_part: Sequence[int] = (),
    ) -> list[Batch]:
        """One `Batch` per shard, all with the batch's rises; shard 0's carries the rejects
        and the count of input records."""
        return [
            Batch(
                rise_pos,
                rise_wm,
                own[s],
                accepted.picked(own[s]),
                last_at,
                dead if s == 0 else [],
                lines if s == 0 else 0,
                rise_part,
            )  # fmt: skip
            for s in range(self.count)
        ]

    def _idle(self, marks: dict[str, datetime], heard: dict[str, float], wall: float) -> list[str]:
        """Partitions silent for `idle_timeout` seconds that still hold time back."""
        if self.idle_timeout is None:
            return []
        limit = wall - self.idle_timeout
        return [p for p, at in heard.items() if at < limit and marks.get(p) is not FAR]
