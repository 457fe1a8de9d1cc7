"""Decode, stamp the watermark, split by shard: the single-stream step before routing.

The live flow must decide exactly what the backtest decides on the event
clock, although its customers are spread over shards that each run their own
`Engine`. The backtest moves one watermark with every event; here the
watermark is computed in the one stream that still sees every event in
order (the worker reading the source partition), and every shard receives
each batch's *watermark steps*: the positions in the batch where the
watermark rose and its value there. A shard replays those steps between its
own events, so its timers fire at the same positions, with the same clock,
as in the backtest (see `flows.shard`).

With several source partitions, each worker stamps the partitions it reads
and shards advance to the highest watermark any of them reached: events of a
lagging partition then count as late (docs/dataflow.md).
"""

from __future__ import annotations

import threading
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from keymoment.connectors.wire import DeadLetter, decode

from .placement import shard_keys
from .settings import FlowSettings
from .steps import pack, unpack


class Message(NamedTuple):
    """What one shard gets per input batch (every shard gets one, for the watermark).

    Own events travel decoded within a process. Between processes Bytewax
    pickles the message: then each event travels as its raw payload and is
    decoded again on arrival (`_rebuild`), in the shard's process, which is
    several times cheaper than pickling a pydantic model and spreads the
    decoding over the processes. The watermark steps travel packed
    (`flows.steps`): as lists of datetimes they cost more than the events.
    """

    step_pos: list[int]  # batch positions where the watermark rose, ascending
    step_wm: list[datetime]  # the watermark from that position on, ascending
    events: list[tuple[int, Any, str, bytes]]  # own events: (batch pos, event, position, raw)
    last_at: datetime | None  # newest occurred_at of the batch's accepted events
    dead: list[dict]  # decode rejects (shard 0 only), passed through to the dead-letter output
    lines: int  # input records in the batch (shard 0 only), for the live view

    def __reduce__(self) -> tuple[Any, tuple]:
        raw = [(pos, position, payload) for pos, _, position, payload in self.events]
        steps = pack(self.step_pos, self.step_wm)
        return (_rebuild, (*steps, raw, self.last_at, self.dead, self.lines))


def _rebuild(packed_pos, packed_wm, raw, last_at, dead, lines) -> Message:  # noqa: ANN001
    """Decode again what the stamp step accepted (no clock check: it passed once already)."""
    step_pos, step_wm = unpack(packed_pos, packed_wm)
    events = [(pos, decode(payload, position), position, payload) for pos, position, payload in raw]
    return Message(step_pos, step_wm, events, last_at, dead, lines)  # type: ignore[arg-type]


def shard_of(customer_id: str, count: int) -> int:
    """Stable across processes and restarts (unlike `hash()`): recovery depends on it."""
    return zlib.crc32(customer_id.encode()) % count


class Stamper:
    """The `flat_map_batch` mapper: one call per input batch, state per worker thread.

    Bytewax shares one mapper object between the worker threads of a process,
    so the running watermark lives in a thread-local. It is not part of any
    snapshot: after a resume it restarts low, and shards ignore watermarks
    below the one their restored engine already has, which is exactly the
    watermark at the snapshot (every shard saw every step before it).
    """

    def __init__(self, settings: FlowSettings, lateness: timedelta, max_future: timedelta) -> None:
        self.count = settings.shards
        self.keys = shard_keys(settings.shards)
        self.wall = settings.clock == "wall"
        self.until = settings.until
        self.lateness, self.max_future = lateness, max_future
        self._local = threading.local()

    def __call__(self, batch: list[tuple[str, bytes]]) -> list[tuple[str, Message]]:
        wm = getattr(self._local, "wm", None)
        now = datetime.now(UTC) if self.wall else None
        own: list[list] = [[] for _ in range(self.count)]
        step_pos: list[int] = []
        step_wm: list[datetime] = []
        dead: list[dict] = []
        last_at = None
        lateness, count, until = self.lateness, self.count, self.until
        for i, (position, raw) in enumerate(batch):
            event = decode(raw, position, now=now, max_future=self.max_future)
            if isinstance(event, DeadLetter):
                dead.append(event.record())
                continue
            at = event.occurred_at
            if until is not None and at > until:
                continue
            if wm is None or at - lateness > wm:
                wm = at - lateness
                step_pos.append(i)
                step_wm.append(wm)
            own[zlib.crc32(event.customer_id.encode()) % count].append((i, event, position, raw))
            if last_at is None or at > last_at:
                last_at = at
        self._local.wm = wm
        return [
            (
                key,
                Message(
                    step_pos,
                    step_wm,
                    own[s],
                    last_at,
                    dead if s == 0 else [],
                    len(batch) if s == 0 else 0,
                ),
            )
            for s, key in enumerate(self.keys)
        ]
