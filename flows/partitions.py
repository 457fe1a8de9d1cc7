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
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime

FAR = datetime(9999, 1, 1, tzinfo=UTC)  # the mark of a partition that holds nothing back


def partition_of(source: str) -> str:
    """`events.jsonl:17` -> `events.jsonl`; `topic:3:1042` -> `topic:3`."""
    return source.rpartition(":")[0] or source


def part_id(partition: str) -> int:
    """A stable id for a partition label, the same in every process (not `hash()`)."""
    return int.from_bytes(hashlib.blake2b(partition.encode(), digest_size=8).digest()) >> 1


class PartitionClock:
    """A shard's view of every partition's mark; `rises` gives the flow's own rises."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.marks: dict[int, datetime] = {}
        self.watermark: datetime | None = None

    def rises(
        self, rise_pos: Sequence[int], rise_wm: Sequence[datetime], rise_part: Sequence[int]
    ) -> tuple[list[int], list[datetime]]:
        """Per-partition rises of one batch -> the positions where the minimum rose, ascending."""
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
