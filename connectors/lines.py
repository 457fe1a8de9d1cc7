"""JSONL lines: the one reader of event files and the one writer of a JSONL line, no Bytewax.

`JsonlReader` reads a file (plain or `.gz`) in batches of raw lines, each batch one
`Lines` item whose `path:LINE` positions (the dead-letter source labels, 1-based) are
made only when asked for; decoding happens later. The backtest reads with it directly,
and the Bytewax source in `connectors.files` wraps it. Kept apart from that source so
the commands that only read files (`backtest`, `compare`, `explain`) do not import
Bytewax, and with it asyncio and ssl: 50-100 ms of each command's start (measured with
`python -X importtime`).
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import IO, Any

import orjson

FilePosition = tuple[int, int]


class Lines:
    """One batch of one file's lines as a single source item; `path:LINE` made only when asked.

    A position string and a pair per line cost 0.6 CPU s per million lines
    (more than the file read itself), and nearly every line is accepted, so
    nothing ever reads its position: only dead letters and duplicates do
    (`position(i)`). One item per batch also crosses Bytewax once instead of
    once per line. Iterating gives the `(position, payload)` pairs.
    """

    __slots__ = ("label", "lines", "first", "numbers")

    def __init__(self, label: str, lines: list[bytes], first: int, numbers: list[int] | None):
        self.label = label  # the file's label: positions are `label:LINE`
        self.lines = lines  # the non-blank lines, without their line ending
        self.first = first  # the line number of lines[0] when none was skipped
        self.numbers = numbers  # each line's number when blank lines were skipped, else None

    def line_no(self, i: int) -> int:
        return self.first + i if self.numbers is None else self.numbers[i]

    def position(self, i: int) -> str:
        return f"{self.label}:{self.line_no(i)}"

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        return ((self.position(i), line) for i, line in enumerate(self.lines))

    def __len__(self) -> int:
        return len(self.lines)


Item = tuple[str, bytes | None] | Lines  # `(label, None)`: the end of a partition


def records_in(items: Iterable[Item]) -> int:
    """The input records of a source batch: a `Lines` holds many, an end marker none."""
    return sum(len(item) if isinstance(item, Lines) else item[1] is not None for item in items)


def payloads_in(items: Iterable[Item]) -> list[bytes]:
    """The payloads of a source batch's records, in order (an end marker has none)."""
    out: list[bytes] = []
    for item in items:
        if isinstance(item, Lines):
            out += item.lines
        elif item[1] is not None:
            out.append(item[1])
    return out


_ENDS = (b"\r\n",)  # what `read` strips off each line


def _open_read(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]  # GzipFile is an IO[bytes]
    return open(path, "rb")  # noqa: SIM115 - closed in close()


class JsonlReader:
    """Batches of `(path:LINE, payload)` from one JSONL file (plain or gzip), blank lines skipped.

    The one reader of event files: the Bytewax source partition below wraps
    it, and the backtest (`keymoment.flows.replay`) reads with it directly.
    `position` is `(byte_offset, lines_read)` of the next line to read.
    """

    def __init__(self, path: Path, label: str, resume: FilePosition | None = None):
        self._file = _open_read(path)
        self._label = label
        self._offset, self._line = resume if resume is not None else (0, 0)
        if self._offset:
            self._file.seek(self._offset)

    def read(self, count: int) -> Lines | None:
        """Up to `count` lines' worth of records; None at the end of the file."""
        lines = list(islice(self._file, count))  # the file's own line iterator, in C
        if not lines:
            return None
        first = self._line + 1
        self._line += len(lines)
        self._offset = self._file.tell()
        if not any(map(bytes.isspace, lines)):  # no blank line: every line kept, in C
            return Lines(
                self._label, list(map(bytes.rstrip, lines, _ENDS * len(lines))), first, None
            )
        kept = [line.rstrip(b"\r\n") for line in lines if not line.isspace()]
        numbers = [n for n, line in enumerate(lines, first) if not line.isspace()]
        return Lines(self._label, kept, first, numbers)

    @property
    def position(self) -> FilePosition:
        return (self._offset, self._line)

    def fraction(self, size: int) -> float:
        """How far through a file of `size` bytes (compressed files: an estimate)."""
        if self._file.closed:
            return 1.0
        raw = getattr(self._file, "fileobj", None)  # gzip: the compressed offset
        return min((raw.tell() if raw is not None else self._offset) / max(size, 1), 1.0)

    def close(self) -> None:
        self._file.close()


def dumps_line(record: Any) -> bytes:
    """One JSONL line; orjson writes datetimes as RFC 3339 and keeps non-str keys out."""
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS)
