"""Incremental recovery snapshots of a shard: Bytewax keeps a chain of names, segments keep state.

Bytewax stores whatever `ShardLogic.snapshot()` returns, every epoch, for
every shard it touched (all of them: every shard sees every batch), so a
whole-shard snapshot costs a pickle of every customer per epoch. Here each
epoch writes one segment (state/segments.py) holding only the customers
changed since the previous snapshot (`triggers.snapshots.changes`), and
Bytewax stores a record of a few hundred bytes: the chain of segment names,
a base and the parts after it, that rebuilds the state of that epoch.

- **Any epoch.** Segments are never rewritten and every name is new, so the
  record of any epoch Bytewax resumes from (the newest committed one, or an
  older one kept for `--backup-interval`) names exactly the files that make
  its state. Parts written for epochs Bytewax later discards are named by no
  record it resumes from: they never reach a restore, and cleanup removes them.
- **Compaction.** When the parts of the chain add up to more than
  `compact_ratio` times its base (or there are `max_parts` of them), the
  chain's files are merged into a new base (`codec.merge`: the states stay
  the bytes they were written as, none is decoded) and the chain starts
  again from it, with the parts written since. In the flow (`background`)
  the merge runs in a child process (state/compaction.py), one at a time
  per process: it costs about 1.8 CPU s per million customers, which would
  otherwise stall the shard. The chain adopts the new base at the first
  snapshot after the child exited 0; until then the records name the old
  files, which stay valid. A child that fails is one line on stderr and
  the merge is done in the flow instead. After a rule-set switch (a new
  engine) and on the first snapshot of a fresh run the base is written
  from memory.
- **Cleanup.** A segment stays while a chain written in the last
  `keep_seconds` (the backup interval plus a few epochs) or one of the
  last `KEEP_CHAINS` chains names it; segments of earlier executions stay
  until this one has run `keep_seconds`, then only the ones its chains name.
- **What a segment holds**: the changed customers' states and the watermark,
  encoded by state/snapshot_codec.py, and the rest of the shard's snapshot
  (`Shard.snapshot()` without the engine: last event time, the policy's
  in-memory cap store and parked candidates, the rules versions) pickled
  whole, as before: small unless the cap store is in memory.
- **Restore** reads the chain, applies base and parts (`snapshots.restore`,
  which rebuilds the timer heap from the states) and continues the chain.
"""

from __future__ import annotations

import gc
import os
import pickle
import sqlite3
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from keymoment.state import snapshot_codec as codec
from keymoment.state.segments import SegmentError, SegmentStore
from keymoment.triggers import snapshots
from keymoment.triggers.engine import SNAPSHOT_VERSION as ENGINE_VERSION
from keymoment.triggers.engine import Engine

from .shard import Shard

RECORD_VERSION = 1
_T = TypeVar("_T")
KEEP_CHAINS = 4
COMPACTOR = [sys.executable, "-m", "keymoment.state.compaction"]


@dataclass
class Merge:
    """A compaction in a child process: it writes segment `name` from the chain's first
    `covered` names."""

    process: subprocess.Popen[bytes]
    name: str
    covered: int


# The merges this process started: one running at a time, as each holds a whole base in memory.
_started: list[Merge] = []


class Chain:
    """One shard's incremental snapshots into one `SegmentStore` (module docstring)."""

    def __init__(
        self,
        store: SegmentStore,
        keep_seconds: float,
        compact_ratio: float = 1.0,
        max_parts: int = 1000,
        clock: Callable[[], float] = time.monotonic,
        background: bool = False,
    ) -> None:
        self.store, self.keep, self.clock = store, keep_seconds, clock
        self.compact_ratio, self.max_parts = compact_ratio, max_parts
        self.background = background  # compactions in a child process (module docstring)
        self.merge: Merge | None = None
        self.names: list[str] = []  # base, then parts
        self.base_size, self.part_sizes = 0, list[int]()
        self.engine: Engine | None = None  # the engine the chain describes
        self.started = clock()
        self.recent: deque[tuple[float, tuple[str, ...]]] = deque()
        self.classes = codec.Classes()  # one numbering for the chain: merge joins raw states

    def snapshot(self, shard: Shard) -> tuple[bytes, int]:
        """This epoch's record for Bytewax and the size of the segment written."""
        if shard.engine is not self.engine:
            self.settle(adopt=False)  # a merge of the old engine's chain is of no use now
            size = self._write_base(shard)
        else:
            size = self._write_part(shard)
            self._adopt_merge()
            if self.merge is None and self._compact_due():
                self.begin_compaction()
        self._collect()
        record = {"v": RECORD_VERSION, "incremental": True, "chain": list(self.names)}
        return pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL), size

    def _compact_due(self) -> bool:
        parts, size = len(self.part_sizes), sum(self.part_sizes)
        return parts >= self.max_parts or size > self.compact_ratio * self.base_size

    def _write_base(self, shard: Shard) -> int:
        """Every customer, from memory: a new engine (a fresh run, a switch) has no chain yet."""
        engine = shard.engine
        engine.dirty = set()  # parts count from this base
        payload = _segment(engine.watermark, engine.customers, shard, self.classes)
        self.names = [self.store.write("base", payload)]
        self.base_size, self.part_sizes, self.engine = len(payload), [], engine
        return len(payload)

    def _write_part(self, shard: Shard) -> int:
        part = snapshots.changes(shard.engine)
        payload = _segment(part["watermark"], part["customers"], shard, self.classes)
        self.names.append(self.store.write("part", payload))
        self.part_sizes.append(len(payload))
        return len(payload)

    def compact(self) -> None:
        """The chain's files merged into a new base (`codec.merge`: no state is decoded, so
        it costs a fraction of a base written from memory); the chain starts again there."""
        payload = codec.merge([self.store.read(name) for name in self.names])
        self.names = [self.store.write("base", payload)]
        self.base_size, self.part_sizes = len(payload), []

    def begin_compaction(self) -> None:
        """`compact()`, or with `background` a merge started in a child process (docstring)."""
        if not self.background:
            self.compact()
            return
        _started[:] = [m for m in _started if m.process.poll() is None]
        if _started:
            return  # another shard's merge is running: this one waits an epoch or more
        name = self.store.reserve("base")
        argv = [*COMPACTOR, str(self.store.root), name, *self.names]
        argv += [] if self.store.fsync else ["--no-fsync"]
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.merge = Merge(process, name, len(self.names))
        _started.append(self.merge)

    def _adopt_merge(self) -> None:
        """The finished merge's base in place of the names it covers (a failed one: in the flow)."""
        merge = self.merge
        if merge is None or merge.process.poll() is None:
            return
        error = merge.process.stderr.read() if merge.process.stderr else b""
        self._forget_merge()
        if merge.process.returncode != 0:
            line = error.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
            print(f"keymoment: background compaction failed ({line[0]}); compacting in the flow",
                  file=sys.stderr)  # fmt: skip
            self.compact()
            return
        self.names = [merge.name, *self.names[merge.covered :]]
        self.base_size = self.store.size([merge.name])
        self.part_sizes = self.part_sizes[merge.covered - 1 :]

    def settle(self, adopt: bool = True) -> None:
        """Wait for a running merge; adopt its base, or (`adopt=False`) delete it."""
        merge = self.merge
        if merge is None:
            return
        merge.process.wait()
        if adopt:
            self._adopt_merge()
        else:
            self._forget_merge()
            self.store.delete([merge.name])

    def _forget_merge(self) -> None:
        if self.merge is not None and self.merge.process.stderr is not None:
            self.merge.process.stderr.close()
        self.merge = None

    def _collect(self) -> None:
        """Delete the segments no record Bytewax may still resume from names."""
        now = self.clock()
        self.recent.append((now, tuple(self.names)))
        while len(self.recent) > KEEP_CHAINS and self.recent[0][0] < now - self.keep:
            self.recent.popleft()
        live = {name for _, chain in self.recent for name in chain}
        if self.merge is not None:  # the child's file, and its temporary one, are not dead
            live |= {self.merge.name, self.merge.name + ".tmp"}
        earlier_too = now - self.started >= self.keep
        dead = [
            n for n in self.store.names() if n not in live and (earlier_too or self.store.own(n))
        ]
        self.store.delete(dead)

    def restore(self, shard: Shard, record: dict[str, Any]) -> None:
        """The state of the record's epoch into `shard`; later snapshots continue its chain.

        The cyclic GC stays off meanwhile (decoding allocates millions of objects and
        each collection would rescan them all: 1.38 s against about 0.9 s at 100k
        customers), and what was restored is frozen after, as flows/collect.py does.
        """
        if record.get("v") != RECORD_VERSION or not record.get("chain"):
            raise codec.CodecError(f"unknown incremental snapshot record {record.get('v')!r}")
        names: list[str] = record["chain"]
        tags = without_gc(lambda: self._restore(shard, names))
        gc.freeze()
        self.classes = codec.Classes(tags)
        self.names, self.engine = list(names), shard.engine
        self.store.adopt(names)
        self.base_size = self.store.size(names[:1])
        self.part_sizes = [self.store.size([name]) for name in names[1:]]

    def _restore(self, shard: Shard, names: list[str]) -> list[str]:
        """Returns the class table of the chain's last segment, to number on from."""
        read = [self._read(name) for name in names]
        (base, _), parts, tags = read[0], [segment for segment, _ in read[1:]], read[-1][1]
        engine_base = {"v": ENGINE_VERSION, "watermark": base["watermark"], "heap": []}
        engine_base["evictions"] = {}
        engine_base["customers"] = base["customers"]
        rest = unpickled((parts[-1] if parts else base)["rest"])
        shard.restore({**rest, "engine": engine_base})
        snapshots.restore(shard.engine, engine_base, [_engine_part(p) for p in parts])
        return tags

    def _read(self, name: str) -> tuple[dict[str, Any], list[str]]:
        data, tags = codec.decode_table(self.store.read(name))
        if type(data) is not dict or not {"watermark", "customers", "rest"} <= data.keys():
            raise codec.CodecError(f"snapshot segment {self.store.root / name} is not ours")
        return data, tags


def without_gc(run: Callable[[], _T]) -> _T:
    """`run()` with the cyclic GC off (it is on again after, if it was on before)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return run()
    finally:
        if enabled:
            gc.enable()


def _engine_part(segment: dict[str, Any]) -> dict[str, Any]:
    """A segment as `triggers.snapshots.restore` takes a part."""
    customers, watermark = segment["customers"], segment["watermark"]
    return {"v": ENGINE_VERSION, "part": True, "watermark": watermark, "customers": customers}


def _segment(
    watermark: Any, customers: dict[str, Any], shard: Shard, classes: codec.Classes
) -> bytes:
    rest = shard.snapshot()
    del rest["engine"]
    segment = {"watermark": watermark, "customers": customers, "rest": pickle.dumps(rest, 5)}
    return codec.encode(segment, classes)


def unpickled(data: bytes) -> Any:
    """A snapshot's pickled part; one whose classes do not load here is a `CodecError` line.

    The policy's part of a shard snapshot (parked candidates, the in-memory cap
    store) is pickled whole, so a build whose classes changed shape (for
    example `Candidate` from a dataclass to a msgspec struct) cannot read a
    store an older build wrote: say so, not what pickle says.
    """
    try:
        return pickle.loads(data)
    except (pickle.UnpicklingError, AttributeError, ImportError, TypeError, EOFError) as exc:
        raise codec.CodecError(
            "it was written by another keymoment build and its classes do not load here "
            f"({type(exc).__name__}: {exc}); resume it with that build, or start this one "
            "on a new recovery directory"
        ) from None


def resume(shard: Shard, data: bytes, chain: Chain | None) -> None:
    """Restore `shard` from what `ShardLogic.snapshot()` returned: a chain record or a whole shard.

    A missing or corrupt segment is one line on stderr and exit status 2: Bytewax would
    otherwise wrap it in a traceback per worker.
    """
    try:
        snap = unpickled(data)
        if isinstance(snap, dict) and snap.get("incremental"):
            if chain is None:
                raise SegmentError(
                    "the recovery state holds incremental snapshots but the flow has no "
                    "snapshot directory (`snapshot_dir`; `keymoment run --recovery` sets it)"
                )
            chain.restore(shard, snap)
        else:
            shard.restore(snap)
    except (SegmentError, codec.CodecError) as exc:
        print(f"keymoment: cannot resume from the recovery snapshot: {exc}", file=sys.stderr)
        sys.stderr.flush()
        os._exit(2)


def named_segments(recovery: Path) -> set[str]:
    """Every segment name a chain record in the Bytewax recovery databases of `recovery` names.

    Bytewax keeps a row per step, key and epoch it may still resume from (the
    backup interval's worth); a chain record is the pickled dict `Chain.snapshot`
    returns, inside Bytewax's own pickle. Raises SegmentError (one line) when
    `recovery` has no databases or one cannot be read.
    """
    databases = sorted(recovery.glob("part-*.sqlite3"))
    if not databases:
        raise SegmentError(f"{recovery} is not a recovery directory (no part-*.sqlite3)")
    named: set[str] = set()
    for path in databases:
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
                rows = db.execute("SELECT ser_change FROM snaps WHERE ser_change IS NOT NULL")
                named |= {n for (blob,) in rows for n in _chain_names(blob)}
        except sqlite3.Error as exc:
            raise SegmentError(f"cannot read recovery database {path}: {exc}") from None
    return named


def _chain_names(blob: bytes) -> list[str]:
    """The names a chain record holds; none for any other step's state."""
    state = pickle.loads(blob)
    if not isinstance(state, bytes):
        return []
    try:
        record = pickle.loads(state)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError):
        return []  # another step's bytes
    if isinstance(record, dict) and record.get("incremental"):
        return list(record.get("chain", ()))
    return []
