"""Snapshot segments: one file per base or part, in one directory per shard and execution.

The flow's incremental snapshots (flows/snapshots.py) keep what changed in an
epoch here and hand Bytewax only the names of the segments that make up the
state (its chain). A segment is written once under a name never used before
(`TOKEN/SEQ.base|part|switch`: a directory per store, named by a token unique to
the process and store, and a sequence number) and never changed, so a record
of any epoch Bytewax keeps names files that still hold what they held then.
Bytewax's builder is not told its shard key, so the token, not the key,
names the directory; a store restored from an earlier chain adopts the
directories its names live in, and cleans them up with its own.

File layout: `KMSEG1`, a CRC-32 of the payload (4 bytes, big endian), the
payload's length (8 bytes), the payload. Written to a temporary name, flushed
and fsynced, then renamed: a crash leaves either the whole segment or none
(and a temporary file that the next cleanup removes). A missing, truncated or
corrupt segment raises `SegmentError` with one line naming the file.
"""

from __future__ import annotations

import os
import re
import secrets
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

MAGIC = b"KMSEG1"
HEADER = len(MAGIC) + 4 + 8
NAME = re.compile(r"[0-9a-f]+-[0-9]+-[0-9a-f]+/[0-9]{8}\.(base|part|switch)")
EXECUTION = re.compile(r"[0-9a-f]+-[0-9]+-[0-9a-f]+")  # a store's directory: its token


class SegmentError(Exception):
    """A segment that cannot be read: one line for the operator, naming the file."""


class SegmentStore:
    """The segment files of one shard in this execution (module docstring)."""

    def __init__(self, root: str | Path, fsync: bool = True) -> None:
        self.root = Path(root)
        self.fsync = fsync
        # One token per process and store: names of a later execution never collide.
        self.execution = f"{time.time_ns():x}-{os.getpid()}-{secrets.token_hex(3)}"
        self.directory = self.root / self.execution
        self.adopted: set[str] = set()
        self._seq = 0

    def write(self, kind: str, payload: bytes) -> str:
        """A new segment ("base", "part" or "switch") holding `payload`; returns its name."""
        name = self.reserve(kind)
        self.write_as(name, payload)
        return name

    def reserve(self, kind: str) -> str:
        """A new segment name, for a segment another process writes (`write_as`)."""
        if self._seq == 0:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise SegmentError(f"cannot use snapshot directory {self.root}: {exc}") from None
        self._seq += 1
        return f"{self.execution}/{self._seq:08d}.{kind}"

    def write_as(self, name: str, payload: bytes) -> None:
        """Write segment `name` (from `reserve`): whole or not at all (module docstring)."""
        path = self.root / name
        tmp = path.with_name(path.name + ".tmp")
        header = MAGIC + zlib.crc32(payload).to_bytes(4, "big") + len(payload).to_bytes(8, "big")
        with open(tmp, "wb") as f:
            f.write(header)
            f.write(payload)
            if self.fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)

    def read(self, name: str) -> bytes:
        """The payload of segment `name`, checked; SegmentError when missing or corrupt."""
        if not NAME.fullmatch(name):
            raise SegmentError(f"not a snapshot segment name: {name!r}")
        path = self.root / name
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise SegmentError(f"snapshot segment {path} is missing") from None
        except OSError as exc:
            raise SegmentError(f"cannot read snapshot segment {path}: {exc.strerror}") from None
        if len(data) < HEADER or not data.startswith(MAGIC):
            raise SegmentError(f"snapshot segment {path} is not a segment (bad header)")
        crc = int.from_bytes(data[len(MAGIC) : len(MAGIC) + 4], "big")
        size = int.from_bytes(data[len(MAGIC) + 4 : HEADER], "big")
        payload = data[HEADER:]
        if len(payload) != size:
            raise SegmentError(f"snapshot segment {path} is truncated ({len(payload)} of {size} B)")
        if zlib.crc32(payload) != crc:
            raise SegmentError(f"snapshot segment {path} is corrupt (checksum mismatch)")
        return payload

    def adopt(self, names: Iterable[str]) -> None:
        """Directories of an earlier chain this store continues: cleaned up with its own."""
        self.adopted |= {name.split("/", 1)[0] for name in names} - {self.execution}

    def names(self) -> list[str]:
        """Every file in this store's and the adopted directories, as `DIR/FILE`."""
        found = []
        for sub in (self.execution, *sorted(self.adopted)):
            directory = self.root / sub
            if directory.is_dir():
                found += [f"{sub}/{p.name}" for p in sorted(directory.iterdir())]
        return found

    def delete(self, names: Iterable[str]) -> None:
        """Remove these files, then adopted directories left empty."""
        for name in names:
            (self.root / name).unlink(missing_ok=True)
        for sub in list(self.adopted):
            directory = self.root / sub
            if directory.is_dir() and not any(directory.iterdir()):
                directory.rmdir()
                self.adopted.discard(sub)

    def own(self, name: str) -> bool:
        """Written by this store, not by an earlier execution."""
        return name.startswith(self.execution + "/")

    def size(self, names: Iterable[str]) -> int:
        return sum((self.root / name).stat().st_size for name in names)


@dataclass
class Unreferenced:
    """What a sweep found (`unreferenced`): files no record names, directories left empty."""

    files: list[Path] = field(default_factory=list)
    directories: list[Path] = field(default_factory=list)  # every file in them is unreferenced
    size: int = 0  # bytes in `files`
    kept: int = 0  # files a record names, or too young to judge

    def delete(self) -> None:
        for path in self.files:
            path.unlink(missing_ok=True)
        for directory in self.directories:
            if directory.is_dir() and not any(directory.iterdir()):
                directory.rmdir()


def unreferenced(root: Path, named: set[str], min_age: float, now: float) -> Unreferenced:
    """The segment files under `root` no snapshot record names (`named`), older than `min_age` s.

    A running chain cleans its own directory; what it cannot clean is a
    directory of an execution that crashed before a later one adopted it (a
    crash twice before compaction) and the files such executions left. Any
    file no record names can never be read by a restore; `min_age` keeps what a
    running flow wrote since its last committed epoch (named at the next one).
    Only directories named like a store's token are looked at.
    """
    found = Unreferenced()
    for directory in sorted(p for p in root.iterdir() if EXECUTION.fullmatch(p.name)):
        files = sorted(p for p in directory.iterdir() if p.is_file())
        dead = [
            p
            for p in files
            if f"{directory.name}/{p.name}" not in named and p.stat().st_mtime < now - min_age
        ]
        found.files += dead
        found.size += sum(p.stat().st_size for p in dead)
        found.kept += len(files) - len(dead)
        if len(dead) == len(files) and directory.stat().st_mtime < now - min_age:
            found.directories.append(directory)
    return found
