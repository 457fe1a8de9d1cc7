"""The watermark over several input partitions: the minimum of each partition's own.

With one stream (a file, the backtest's merged input) the watermark is the
newest `occurred_at` so far minus `allowed_lateness`. With several partitions
(several files, several Kafka partitions, read by any number of workers and
processes) that rule would make the watermark depend on how the partitions
interleave. The rule here is Flink's: each partition has its own watermark
(its newest event minus the lateness), and the watermark of the flow is the
minimum over all partitions, never moving back. Nothing is due before every
partition has spoken.

A partition that ended (end of file) or that has been idle for
`--idle-timeout` seconds of wall time stops holding time back: its mark
becomes `FAR` until it produces again, and then starts from its new event
(which may be late, as in Flink).

`flows.stamp` emits per-partition rises (`rise_part` names the partition of
each, as a stable 63-bit digest of its label, the same in every process);
each shard turns them into the flow's rises with a `PartitionClock`. Then,
when each customer's events come from one partition in time order, what the
shards decide does not depend on partitions, processes or batch sizes: the
engine fires a customer's own due timers before its next event
(`Engine.lagging`), and on the event clock every candidate is decided at its
`triggered_at` (`flows.shard`). tests/unit/test_partitions.py checks this
against the backtest of the merged stream.

Every shard keeps its own `PartitionClock` (shards may see the batches of
several workers in different orders) and every shard gets every batch, so
with S shards in a process each batch's rises would be walked S times. The
shards of one process usually hold the same marks when a batch reaches them,
so `rises` remembers its last few answers per worker thread, by batch (the
same rise list object: the stamp step's, or one rebuilt per process for a
batch from another process, `flows.stamp`) and by the marks it started from;
a shard in that state takes the answer and the marks it ends in without the
walk. A shard in another state walks as before, so the answers are the same.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from datetime import UTC, datetime

FAR = datetime(9999, 1, 1, tzinfo=UTC)  # the mark of a partition that holds nothing back
# How many batches' answers a worker thread keeps (`PartitionClock.rises`): more than the
# batches a shard can be behind the other shards of its process in the usual order.
KEPT = 8

_answers = threading.local()  # per worker thread: recent answers of `PartitionClock.rises`


def partition_of(source: str) -> str:
    """`events.jsonl:17` -> `events.jsonl`; `topic:3:1042` -> `topic:3`."""
    return source.rpartition(":")[0] or source


def part_id(partition: str) -> int:
    """A stable id for a partition label, the same in every process (not `hash()`)."""
    found = _part_ids.get(partition)
    if found is None:
        digest = hashlib.blake2b(partition.encode(), digest_size=8).digest()
        found = int.from_bytes(digest) >> 1
        if len(_part_ids) < 65536:  # labels are partitions and files: few, but not trusted
            _part_ids[partition] = found
    return found


_part_ids: dict[str, int] = {}


class PartitionClock:
    """A shard's view of every partition's mark; `rises` gives the flow's own rises."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.marks: dict[int, datetime] = {}
        self.watermark: datetime | None = None

    def rises(
        self, rise_pos: Sequence[int], rise_wm: Sequence[datetime], rise_part: Sequence[int]
    ) -> tuple[list[int], list[datetime]]:
        """Per-partition rises of one batch -> the positions where the minimum rose, ascending.

        The lists returned may be shared with other shards of the process (module
        docstring): read them, never change them.
        """
        kept: list[Answer] = _answers.__dict__.setdefault("kept", [])
        for answer in kept:
            if (
                answer.batch is rise_part
                and answer.start_wm == self.watermark
                and answer.partitions == self.partitions
                and answer.start == self.marks
            ):
                self.marks, self.watermark = dict(answer.end), answer.end_wm
                return answer.out_pos, answer.out_wm
        start, start_wm = dict(self.marks), self.watermark
        out_pos, out_wm = self._walk(rise_pos, rise_wm, rise_part)
        if len(kept) >= KEPT:
            del kept[0]
        end, end_wm = dict(self.marks), self.watermark
        kept.append(Answer(rise_part, self.partitions, start, start_wm, out_pos, out_wm, end,
                           end_wm))  # fmt: skip
        return out_pos, out_wm

    def _walk(
        self, rise_pos: Sequence[int], rise_wm: Sequence[datetime], rise_part: Sequence[int]
    ) -> tuple[list[int], list[datetime]]:
        out_pos: list[int] = []
        out_wm: list[datetime] = []
        marks, current = self.marks, self.watermark
        for pos, wm, part in zip(rise_pos, rise_wm, rise_part, strict=True):
            old = marks.get(part)
            marks[part] = wm
            if len(marks) < self.partitions or (old is not None and current is not None
                                                and old > current):  # fmt: skip
                continue  # not everybody spoke yet, or this partition was not the minimum
            low = min(marks.values())
            if low < FAR and (current is None or low > current):  # all ended: finish() decides
                current = low
                out_pos.append(pos)
                out_wm.append(low)
        self.watermark = current
        return out_pos, out_wm


class Answer:
    """One walk of `PartitionClock.rises`: the batch (its rise list, held so that its id is
    not reused), the clock's partition count, the marks it started from and ended in, and
    the flow's rises it found."""

    __slots__ = ("batch", "partitions", "start", "start_wm", "out_pos", "out_wm", "end", "end_wm")

    def __init__(
        self,
        batch: Sequence[int],
        partitions: int,
        start: dict[int, datetime],
        start_wm: datetime | None,
        out_pos: list[int],
        out_wm: list[datetime],
        end: dict[int, datetime],
        end_wm: datetime | None,
    ) -> None:
        self.batch, self.partitions, self.start, self.start_wm = batch, partitions, start, start_wm
        self.out_pos, self.out_wm, self.end, self.end_wm = out_pos, out_wm, end, end_wm
