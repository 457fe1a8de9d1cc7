"""JSONL files: the one reader, a resumable Bytewax source over it, a truncate-on-resume sink.

Source: each file is one partition, read line by line in binary (plain or
`.gz`), emitting one `Lines` item per batch: the raw line bytes, and each
line's position `path:LINE` (the dead-letter source label, 1-based) made
only when asked for; decoding happens later in the flow. A partition's
snapshot is `(byte_offset, lines_read)` of the next line to read, so Bytewax
recovery resumes exactly after the last emitted line. For gzip the offset
counts decompressed bytes: seeking there re-decompresses from the start of
the file, which costs time on resume only, never correctness.

Sink: one partition per file, like Bytewax's `FileSink`: on resume the file
is truncated back to the byte offset of its last snapshot, so the items of
the interrupted epoch are written again but not duplicated.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from .lines import (
    FilePosition,
    Item,
    JsonlReader,
    Lines,
    dumps_line,
    payloads_in,
    records_in,
)

__all__ = [
    "FilePosition",
    "Item",
    "JsonlFileSink",
    "JsonlFileSource",
    "JsonlReader",
    "Lines",
    "dumps_line",
    "payloads_in",
    "records_in",
]


class _JsonlPartition(StatefulSourcePartition[Item, FilePosition]):
    """One file as a Bytewax partition: `batch_size` lines per call."""

    def __init__(
        self, path: Path, label: str, batch_size: int, resume: FilePosition | None, ends: bool
    ):
        self._reader = JsonlReader(path, label, resume)
        self._batch_size = batch_size
        self._label = label
        self._ended = not ends  # without end markers the end is just StopIteration

    def next_batch(self) -> list[Item]:
        """One `Lines`; at the end of the file one `(label, None)` if the source has
        `end_markers`, so the stamp step knows this partition no longer holds the watermark
        back."""
        batch = self._reader.read(self._batch_size)
        if batch is None:
            if self._ended:
                raise StopIteration
            self._ended = True
            return [(self._label, None)]
        return [batch]

    def snapshot(self) -> FilePosition:
        return self._reader.position

    def close(self) -> None:
        self._reader.close()


class JsonlFileSource(FixedPartitionedSource[Item, FilePosition]):
    """Several JSONL files (plain or gzip), one partition each, resumable by byte offset.

    Missing files are an error at construction, so `keymoment run` can say
    so in one line instead of silently reading nothing.
    """

    def __init__(self, paths: str | Path | Sequence[str | Path], batch_size: int = 1000):
        if isinstance(paths, str | Path):
            paths = [paths]
        self._paths = [Path(p) for p in paths]
        missing = [str(p) for p in self._paths if not p.is_file()]
        if missing:
            raise ValueError(f"input file not found: {', '.join(missing)}")
        if len(set(map(str, self._paths))) != len(self._paths):
            raise ValueError("the same input file is listed twice")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.batch_size = batch_size
        # Set by the flow when it reads several partitions (flows/partitions.py).
        self.end_markers = False

    @property
    def paths(self) -> list[Path]:
        return list(self._paths)

    def list_parts(self) -> list[str]:
        return [str(p) for p in self._paths]

    def build_part(
        self, step_id: str, for_part: str, resume_state: FilePosition | None
    ) -> _JsonlPartition:
        return _JsonlPartition(
            Path(for_part), for_part, self.batch_size, resume_state, self.end_markers
        )


class _JsonlSinkPartition(StatefulSinkPartition[dict | bytes, int]):
    def __init__(self, path: Path, resume_offset: int | None, fsync: bool):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "ab")  # noqa: SIM115 - closed in close()
        size = self._file.seek(0, os.SEEK_END)
        self._file.truncate(min(resume_offset or 0, size))  # never pad a shorter file with NULs
        self._file.seek(0, os.SEEK_END)
        self._fsync = fsync

    def write_batch(self, values: Iterable[dict | bytes]) -> None:
        """Dicts become lines; bytes are lines already (`flows.outputs.output_each`)."""
        self._file.write(b"".join(v if type(v) is bytes else dumps_line(v) for v in values))
        self._file.flush()
        if self._fsync:
            os.fsync(self._file.fileno())

    def snapshot(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        self._file.close()


class JsonlFileSink(FixedPartitionedSink[dict | bytes, int]):
    """Dict records to one JSONL file; a fresh run truncates it, a resumed run rewinds it.

    An item may also be bytes: JSONL lines serialised already, several records in one
    item (`keymoment.flows.outputs.output_each`).

    A Bytewax `FixedPartitionedSink` takes `(key, record)` pairs: use
    `keymoment.connectors.sinks.output`, which adds the key. Each batch is
    flushed to the OS (survives `kill -9`); `fsync=True` also survives a
    machine crash at the cost of a disk sync per batch.
    """

    def __init__(self, path: str | Path, fsync: bool = False):
        self.path = Path(path)
        self.fsync = fsync

    def list_parts(self) -> list[str]:
        return [str(self.path)]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> _JsonlSinkPartition:
        return _JsonlSinkPartition(Path(for_part), resume_state, self.fsync)
