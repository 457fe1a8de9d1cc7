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
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from itertools import repeat
from typing import Any, NamedTuple, cast
from zlib import crc32

from keymoment.connectors.files import Item, Lines, records_in
from keymoment.connectors.wire import DeadLetter, decode, decode_many
from keymoment.triggers.events import Event

from .partitions import FAR, part_id, partition_of
from .placement import shard_keys
from .rises import pack, unpack

Clock = Callable[[], datetime]
_NEVER = datetime.min.replace(tzinfo=UTC)  # before every event time (years 1900..9000)
_ALWAYS = datetime.max.replace(tzinfo=UTC)  # no `until`: after every event time
_new = tuple.__new__  # builds an `OwnEvent` without the NamedTuple's Python-level __new__


class OwnEvent(NamedTuple):
    """One accepted event, as a shard receives it."""

    pos: int  # index in the batch: where it stands among the watermark rises
    event: Event
    source: str  # a file's or a Kafka partition's label (then `line` is set), or a position
    raw: bytes  # the payload, decoded again on the far side of a process boundary
    line: int = -1  # the file line (`Lines`): the position is `source:line`, made when needed

    @property
    def position(self) -> str:
        """`file:line` or `topic:partition:offset`, for dead letters."""
        return position(self.source, self.line)


def position(source: str, line: int) -> str:
    """A dead letter's position: `source:line` for a file line, else the source's own label."""
    return source if line < 0 else f"{source}:{line}"


class Accepted(NamedTuple):
    """A batch's accepted events in order, as columns of one entry each: no tuple per event.

    A file batch without a reject is its decoded list, its label repeated, its
    line numbers and its lines as they were read.
    """

    events: Sequence[Event]
    sources: Sequence[str]  # a file's label or a message's source
    lines: Sequence[int]  # a file line's number, or -1 for a message
    raws: Sequence[bytes]  # the payloads


class Batch(NamedTuple):
    """What one shard gets per input batch (every shard gets one, for the watermark).

    Own events travel decoded within a process. Between processes Bytewax
    pickles the batch: then each event travels as its raw payload and is
    decoded again on arrival (`_rebuild`), in the shard's process, which is
    several times cheaper than pickling a pydantic model and spreads the
    decoding over the processes. The rises travel packed (`flows.rises`): as
    lists of datetimes they cost more than the events.
    """

    rise_pos: list[int]  # batch positions where the watermark rose, ascending
    rise_wm: list[datetime]  # the watermark from that position on, ascending
    events: list[OwnEvent]  # this shard's events, in batch order
    last_at: datetime | None  # newest occurred_at of the batch's accepted events
    dead_letters: list[dict]  # decode rejects (shard 0 only), passed through to the output
    lines: int  # input records in the batch (shard 0 only), for the live view
    rise_part: Sequence[int] = ()  # partitioned: the partition (`part_id`) of each rise
    balances: bool = True  # the stamp step kept `balance_after`: decode again the same way

    def __reduce__(self) -> tuple[Any, tuple]:
        raw = [(e.pos, e.source, e.line, e.raw) for e in self.events]
        packed = pack(self.rise_pos, self.rise_wm)
        parts = array("q", self.rise_part).tobytes() if self.rise_part else b""
        return (
            _rebuild,
            (*packed, raw, self.last_at, self.dead_letters, self.lines, parts, self.balances),
        )


def _rebuild(
    packed_pos: bytes,
    packed_wm: bytes,
    raw: list[tuple[int, str, int, bytes]],
    last_at: datetime | None,
    dead_letters: list[dict],
    lines: int,
    packed_parts: bytes = b"",
    balances: bool = True,
) -> Batch:
    """Decode again what the stamp step accepted (no clock check: it passed once already),
    with or without `balance_after` as the stamp step decoded it."""
    rise_pos, rise_wm = unpack(packed_pos, packed_wm)
    parts = array("q")
    parts.frombytes(packed_parts)
    events = []
    for pos, source, line, payload in raw:
        event = decode(payload, source, balances=balances)
        assert not isinstance(event, DeadLetter), "accepted once, so accepted again"
        events.append(OwnEvent(pos, event, source, payload, line))
    rise_parts = parts.tolist()
    return Batch(rise_pos, rise_wm, events, last_at, dead_letters, lines, rise_parts, balances)  # type: ignore[arg-type]  # LazyWatermarks is a read-only list of datetimes


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
        return Accepted(cast(list[Event], decoded), [label] * len(raws), numbers, raws)
    events, kept, payloads = [], [], []
    for i, event in enumerate(decoded):
        if isinstance(event, DeadLetter):
            record = event.record()
            record["source"] = lines.position(i)
            dead.append(record)
        else:
            events.append(event)
            kept.append(numbers[i])
            payloads.append(raws[i])
    return Accepted(events, [label] * len(events), kept, payloads)


def joined(parts: Sequence[Accepted]) -> Accepted:
    """Several runs of accepted events as one, in order."""
    if len(parts) == 1:
        return parts[0]
    events: list[Event] = []
    sources: list[str] = []
    lines: list[int] = []
    raws: list[bytes] = []
    for part in parts:
        events += part.events
        sources += part.sources
        lines += part.lines
        raws += part.raws
    return Accepted(events, sources, lines, raws)


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
        events, sources, payloads = [], [], []
        for (source, payload), event in zip(messages, decoded, strict=True):
            if isinstance(event, DeadLetter):
                dead.append(event.record())
            else:
                events.append(event)
                sources.append(source)
                payloads.append(payload)
        return Accepted(events, sources, [-1] * len(events), payloads)

    def stamp(self, accepted: Accepted, dead: list[dict], lines: int) -> list[Batch]:
        """Decoded events in stream order -> one `Batch` per shard, in shard order.

        Hot loop (one pass per event, kept in one piece on purpose): the
        watermark rises exactly when an event is newer than every one before
        it (`at - lateness > wm` is `at > newest`), so the loop compares
        times and subtracts the lateness only at a rise.
        """
        wm: datetime | None = getattr(self._local, "wm", None)
        newest = _NEVER if wm is None else wm + self.lateness
        own: list[list[OwnEvent]] = [[] for _ in range(self.count)]
        rise_pos: list[int] = []
        rise_wm: list[datetime] = []
        last_at = _NEVER
        lateness, count, until = self.lateness, self.count, self.until or _ALWAYS
        single = own[0].append if count == 1 else None
        place, skipped = self.placement, 0
        for i, (event, source, line, raw) in enumerate(zip(*accepted, strict=True)):
            at = event.occurred_at
            if at > until:
                skipped += 1
                continue
            if at > newest:
                newest = last_at = at
                rise_pos.append(i)
                rise_wm.append(at - lateness)
            elif at > last_at:
                last_at = at
            if single is not None:
                single(_new(OwnEvent, (i, event, source, raw, line)))
            else:
                key = event.customer_id if place is None else place(event.customer_id)
                own[crc32(key.encode()) % count].append(
                    _new(OwnEvent, (i, event, source, raw, line))
                )
        self.after_until += skipped
        self._local.wm = rise_wm[-1] if rise_wm else wm
        return self._per_shard(
            rise_pos, rise_wm, own, None if last_at is _NEVER else last_at, dead, lines
        )

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
        own: list[list[OwnEvent]] = [[] for _ in range(self.count)]
        rise_pos: list[int] = []
        rise_wm: list[datetime] = []
        rise_part: list[int] = []
        last_at, wall = None, self.monotonic()
        lateness, count, until = self.lateness, self.count, self.until
        i = -1
        for i, (event, source, line, raw) in enumerate(zip(*accepted, strict=True)):  # noqa: B007
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
            own[shard_of(event.customer_id, count)].append(OwnEvent(i, event, source, raw, line))
            if last_at is None or at > last_at:
                last_at = at
        for part in [*ended, *self._idle(marks, heard, wall)]:
            marks[part] = FAR
            rise_pos.append(i + 1)
            rise_wm.append(FAR)
            rise_part.append(part_id(part))
        return self._per_shard(rise_pos, rise_wm, own, last_at, dead, lines, rise_part)

    def _per_shard(
        self,
        rise_pos: list[int],
        rise_wm: list[datetime],
        own: list[list[OwnEvent]],
        last_at: datetime | None,
        dead: list[dict],
        lines: int,
        rise_part: Sequence[int] = (),
    ) -> list[Batch]:
        """One `Batch` per shard, all with the batch's rises; shard 0's carries the rejects
        and the count of input records."""
        keeps = self.balances
        return [
            Batch(
                rise_pos,
                rise_wm,
                own[s],
                last_at,
                dead if s == 0 else [],
                lines if s == 0 else 0,
                rise_part,
                keeps,
            )  # fmt: skip
            for s in range(self.count)
        ]

    def _idle(self, marks: dict[str, datetime], heard: dict[str, float], wall: float) -> list[str]:
        """Partitions silent for `idle_timeout` seconds that still hold time back."""
        if self.idle_timeout is None:
            return []
        limit = wall - self.idle_timeout
        return [p for p, at in heard.items() if at < limit and marks.get(p) is not FAR]
