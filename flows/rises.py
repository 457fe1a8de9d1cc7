"""A batch's watermark rises, packed for the trip to another process.

Every shard gets every batch's watermark rises (`flows.stamp`), so with two
processes half the shards receive them across the process boundary: about
one rise per event (events are mostly in time order), pickled once per
remote shard. As plain lists that cost about 1 ms per 1,000-rise message
(24 kB; measured), some 4 us per event with 8 shards on 2 processes. Packed,
the rises are two int64 arrays (batch positions, watermark in microseconds
since 1970), encoded once per batch whatever the number of remote shards,
and decoded lazily: a shard reads only the few watermarks its bisect probes
and its own events need, so `LazyWatermarks` converts an entry to a
`datetime` on access.

Within a process nothing is packed: messages keep their plain lists. A batch
sent to several shards of another process arrives there once per shard;
`unpack_shared` gives each copy the same lists (per worker thread), as the
shards of the stamping process share theirs, so the work that follows is
done once per batch and process (`flows.partitions`).
"""

from __future__ import annotations

import threading
from array import array
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import overload

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_US = timedelta(microseconds=1)

_cache = threading.local()  # the last batch packed by this worker thread


def pack(rise_pos: list[int], rise_wm: list[datetime]) -> tuple[bytes, bytes]:
    """Both lists as int64 bytes; packed once per batch, shared by its messages."""
    last = getattr(_cache, "last", None)
    if last is not None and last[0] is rise_wm:
        return last[1]
    packed = (
        array("q", rise_pos).tobytes(),
        array("q", [(wm - EPOCH) // ONE_US for wm in rise_wm]).tobytes(),
    )
    _cache.last = (rise_wm, packed)  # holds the list: its id cannot be reused meanwhile
    return packed


def unpack(pos: bytes, wm: bytes) -> tuple[list[int], LazyWatermarks]:
    positions, micros = array("q"), array("q")
    positions.frombytes(pos)
    micros.frombytes(wm)
    return positions.tolist(), LazyWatermarks(micros)


Unpacked = tuple[list[int], "LazyWatermarks", list[int]]
KEPT = 8  # batches remembered per worker thread by `unpack_shared`
_unpacked = threading.local()


def unpack_shared(pos: bytes, wm: bytes, parts: bytes) -> Unpacked:
    """`unpack` and each rise's partition (`part_id`s), the same objects for every copy of
    one batch this worker thread rebuilds (module docstring). Read-only, like the lists
    a batch carries within its process."""
    kept: dict[tuple[bytes, bytes, bytes], Unpacked] = _unpacked.__dict__.setdefault("kept", {})
    key = (pos, wm, parts)
    found = kept.get(key)
    if found is None:
        partitions = array("q")
        partitions.frombytes(parts)
        found = (*unpack(pos, wm), partitions.tolist())
        if len(kept) >= KEPT:
            del kept[next(iter(kept))]
        kept[key] = found
    return found


class LazyWatermarks(Sequence[datetime]):
    """Watermarks as microseconds, a UTC `datetime` on access (bisect reads only a few)."""

    __slots__ = ("_micros",)

    def __init__(self, micros: array) -> None:
        self._micros = micros

    def __len__(self) -> int:
        return len(self._micros)

    def __iter__(self) -> Iterator[datetime]:
        """Every watermark, converted in C (`Sequence`'s own `__iter__` calls `__getitem__`
        per item); what a walk over all the rises reads (`flows.partitions`)."""
        return map(EPOCH.__add__, map(ONE_US.__mul__, self._micros))

    @overload
    def __getitem__(self, index: int) -> datetime: ...

    @overload
    def __getitem__(self, index: slice) -> list[datetime]: ...

    def __getitem__(self, index: int | slice) -> datetime | list[datetime]:
        if isinstance(index, slice):
            return [EPOCH + ONE_US * us for us in self._micros[index]]
        return EPOCH + ONE_US * self._micros[index]
