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
  the merge is done in the flow instead.
- **Rule-set switches** (flows/versioning.py) keep the chain. A switch that
  hands every state over as it is (a threshold, a `mode`: `switch.keeps_state`)
  changes nothing a part would not hold. One that re-reads every state (a
  timer length, a removed or reshaped rule) makes the epoch's segment a
  `switch` segment: the changed customers, as any part, and the versions
  switched through; a restore replays those switches on the states before it
  (`triggers.snapshots.restore`), which is exact because every customer not
  in the part held, at the switch, what the earlier segments hold. Its files
  cannot be merged, so in the flow a child forked at that snapshot writes the
  new base from the shard's memory as it was then (copy on write, like Redis's
  BGSAVE; `_fork_base`) and the chain adopts it like a merge's. A base from
  memory in the shard's own call (about 4-5 CPU s per million customers) is
  left for the first snapshot of a fresh run, which holds only the customers
  the run has met, every one of them changed since it began: a part's cost.
- **Cleanup.** A segment stays while a chain written in the last
  `keep_seconds` (the backup interval plus a few epochs) or one of the
  last `KEEP_CHAINS` chains names it; segments of earlier executions stay
  until this one has run `keep_seconds`, then only the ones its chains name.
- **What a segment holds**: the changed customers' states and the watermark,
  encoded by state/snapshot_codec.py; the in-memory cap store's keys and offer
  records written or dropped since the last segment (`MemoryCapStore.changes`,
  all of them in a base; empty with a Redis store, which keeps its own), which
  the codec's `merge` joins like the states; and the rest of the shard's
  snapshot (`Shard.snapshot()` without the engine and the cap store: last event
  time, parked candidates and leads, the rules versions) pickled whole, small.
  A chain written before the cap store's changes were kept holds the whole
  store in each segment's rest: it restores from that, and the next snapshot
  writes a base.
- **Restore** reads the chain, applies base and parts (`snapshots.restore`,
  which replays the switches a switch segment names and rebuilds the timer
  heap from the states) and continues the chain.
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
from itertools import pairwise
from pathlib import Path
from typing import IO, Any, TypeVar

import msgspec

from keymoment.rollout.diff import diff
from keymoment.rollout.versions import RulesVersion
from keymoment.state import snapshot_codec as codec
from keymoment.state.memory_caps import MemoryCapStore
from keymoment.state.segments import SegmentError, SegmentStore
from keymoment.triggers import snapshots
from keymoment.triggers.engine import SNAPSHOT_VERSION as ENGINE_VERSION
from keymoment.triggers.engine import Engine
from keymoment.triggers.ruleset import RuleSet
from keymoment.triggers.switch import keeps_state

from .shard import Shard

RECORD_VERSION = 1
_T = TypeVar("_T")
KEEP_CHAINS = 4
COMPACTOR = [sys.executable, "-m", "keymoment.state.compaction"]


class Forked:
    """A child forked to write a base from this process's memory, polled as a `Popen` is.

    Its pipe (`stderr`) carries the child's class table when it exits 0 (it may have
    numbered a class the chain had not met yet), else the error line.
    """

    def __init__(self, pid: int, pipe: IO[bytes]) -> None:
        self.pid, self.stderr = pid, pipe
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode


@dataclass
class Merge:
    """A compaction in a child process: it writes segment `name` from the chain's first
    `covered` names (a merge of their files), or from memory (`Forked`)."""

    process: subprocess.Popen[bytes] | Forked
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
        self.version: RulesVersion | None = None  # the rules it runs, when the shard has versions
        self.started = clock()
        self.recent: deque[tuple[float, tuple[str, ...]]] = deque()
        self.classes = codec.Classes()  # one numbering for the chain: merge joins raw states

    def snapshot(self, shard: Shard) -> tuple[bytes, int]:
        """This epoch's record for Bytewax and the size of the segment written."""
        switched = shard.versions.taken() if shard.versions is not None else []
        if shard.engine is self.engine:
            size = self._write_part(shard)
        elif self.engine is not None and self.version is not None and switched:
            size = self._write_switch(shard, [self.version, *switched])
        else:  # a fresh run, or a shard restored from a whole-shard snapshot
            self.settle(adopt=False)  # a merge of another engine's chain is of no use now
            size = self._write_base(shard)
        self.engine = shard.engine
        self.version = shard.versions.current if shard.versions is not None else None
        self._adopt_merge()
        if self.merge is None and self._compact_due():
            self.begin_compaction(shard)
        self._collect()
        record = {"v": RECORD_VERSION, "incremental": True, "chain": list(self.names)}
        return pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL), size

    def _compact_due(self) -> bool:
        """Parts outgrowing the base, or (in the flow) a switch segment to rebase at once."""
        if self.background and self._switched():
            return True
        parts, size = len(self.part_sizes), sum(self.part_sizes)
        return parts >= self.max_parts or size > self.compact_ratio * self.base_size

    def _switched(self) -> bool:
        """A switch that re-read the states lies in the chain: its files cannot be merged."""
        return any(name.endswith(".switch") for name in self.names)

    def _write_base(self, shard: Shard) -> int:
        """Every customer, from memory: a fresh engine, or a rebase done in the flow."""
        engine = shard.engine
        engine.settle_all()  # a deferred switch's rest, in the call: a fallback's pause
        engine.dirty = set()  # parts count from this base
        payload = _segment(engine.watermark, engine.customers, shard, self.classes, whole=True)
        self.names = [self.store.write("base", payload)]
        self.base_size, self.part_sizes = len(payload), []
        return len(payload)

    def _write_part(self, shard: Shard, kind: str = "part", **extra: Any) -> int:
        part = snapshots.changes(shard.engine)
        payload = _segment(part["watermark"], part["customers"], shard, self.classes, **extra)
        self.names.append(self.store.write(kind, payload))
        self.part_sizes.append(len(payload))
        return len(payload)

    def _write_switch(self, shard: Shard, versions: list[RulesVersion]) -> int:
        """The changed customers and the switches through `versions` since the last segment.

        A switch that hands every state over as it is (a threshold, a `mode`) needs
        nothing more than a part. Otherwise a `switch` segment names the versions, and
        a restore replays the switches on the states before it (triggers/snapshots.py):
        exact, and no base from memory in the shard's call.
        """
        if all(keeps_state(*step) for step in _steps(versions)):
            return self._write_part(shard)
        return self._write_part(shard, "switch", versions=[v.plain() for v in versions])

    def compact(self, shard: Shard) -> None:
        """A new base, in the flow: the chain's files merged, or after a switch segment,
        whose states the files do not hold, the base from memory."""
        if self._switched():
            self._write_base(shard)
        else:
            self._merge_files()

    def _merge_files(self) -> None:
        """`codec.merge`: no state is decoded, so it costs a fraction of a base from memory."""
        payload = codec.merge([self.store.read(name) for name in self.names])
        self.names = [self.store.write("base", payload)]
        self.base_size, self.part_sizes = len(payload), []

    def begin_compaction(self, shard: Shard) -> None:
        """`compact()`, or with `background` the same in a child process (module docstring):
        a merge of the files, or after a switch a child forked to write memory's base."""
        if not self.background:
            self.compact(shard)
            return
        _started[:] = [m for m in _started if m.process.poll() is None]
        if _started:
            return  # another shard's merge is running: this one waits an epoch or more
        name = self.store.reserve("base")
        if self._switched():
            try:
                process: subprocess.Popen[bytes] | Forked = _fork_base(shard, self, name)
            except OSError as exc:  # no memory or process slot for a child: the pause, once
                print(f"keymoment: cannot fork ({exc}); writing the base in the flow",
                      file=sys.stderr)  # fmt: skip
                self._write_base(shard)
                return
        else:
            argv = [*COMPACTOR, str(self.store.root), name, *self.names]
            argv += [] if self.store.fsync else ["--no-fsync"]
            process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.merge = Merge(process, name, len(self.names))
        _started.append(self.merge)

    def _adopt_merge(self) -> None:
        """The finished child's base in place of the names it covers. A failed merge is
        done in the flow; a failed or clashing fork is tried again at the next epoch."""
        merge = self.merge
        if merge is None or merge.process.poll() is None:
            return
        output = merge.process.stderr.read() if merge.process.stderr else b""
        self._forget_merge()
        if merge.process.returncode != 0:
            line = output.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
            then = "trying again" if self._switched() else "compacting in the flow"
            print(f"keymoment: background compaction failed ({line[0]}); {then}", file=sys.stderr)
            if not self._switched():
                self._merge_files()
            return
        if isinstance(merge.process, Forked) and not self._renumbered(output):
            self.store.delete([merge.name])  # its numbering clashes: the next epoch forks again
            return
        self.names = [merge.name, *self.names[merge.covered :]]
        self.base_size = self.store.size([merge.name])
        self.part_sizes = self.part_sizes[merge.covered - 1 :]

    def _renumbered(self, output: bytes) -> bool:
        """Whether a forked base's class table is one numbering with the chain's (each a
        prefix of the other); the chain numbers on from the longer one."""
        forked: list[str] = msgspec.msgpack.decode(output)
        mine = self.classes.tags()
        shorter, longer = sorted((forked, mine), key=len)
        if longer[: len(shorter)] != shorter:
            return False
        if longer is forked:
            self.classes = codec.Classes(forked)
        return True

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
        tags, current = without_gc(lambda: self._restore(shard, names))
        gc.freeze()
        self.classes = codec.Classes(tags)
        # a chain of an earlier build (the cap store whole in each segment): a base next
        self.names, self.engine = list(names), shard.engine if current else None
        if shard.versions is not None:  # the switches from here on are recorded (`taken`)
            self.version = shard.versions.current
            shard.versions.taken()
        self.store.adopt(names)
        self.base_size = self.store.size(names[:1])
        self.part_sizes = [self.store.size([name]) for name in names[1:]]

    def _restore(self, shard: Shard, names: list[str]) -> tuple[list[str], bool]:
        """Returns the chain's class table (its longest, `codec.merge`), to number on from,
        and whether its segments hold the cap store's changes (else each one's rest holds
        the whole store, as an earlier build wrote them)."""
        read = [self._read(name) for name in names]
        (base, _), parts = read[0], [segment for segment, _ in read[1:]]
        tags = max((table for _, table in read), key=len)
        engine_base = {"v": ENGINE_VERSION, "watermark": base["watermark"], "heap": []}
        engine_base["evictions"] = {}
        engine_base["customers"] = base["customers"]
        rest = unpickled((parts[-1] if parts else base)["rest"])
        shard.restore({**rest, "engine": engine_base})
        snapshots.restore(shard.engine, engine_base, [_engine_part(p) for p in parts])
        current = all("cap_keys" in segment for segment, _ in read)
        store = memory_store(shard)
        if current and store is not None:
            store.restore({"keys": {}, "offers": {}})
            for segment, _ in read:
                store.apply(segment["cap_keys"], segment["cap_offers"])
            store.keep_changes()
        return tags, current

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
    """A segment as `triggers.snapshots.restore` takes a part (a switch segment's with the
    switches it names, each as `switched` took it)."""
    customers, watermark = segment["customers"], segment["watermark"]
    part = {"v": ENGINE_VERSION, "part": True, "watermark": watermark, "customers": customers}
    if "versions" in segment:
        part["switches"] = _steps([RulesVersion.from_plain(v) for v in segment["versions"]])
    return part


Step = tuple[RuleSet, RuleSet, dict[int, int], bool]  # `switched`'s old and new rules, carry, reset


def _steps(versions: list[RulesVersion]) -> list[Step]:
    """Each switch along `versions`, as `Shard` made it: old and new rules, carry, salary reset."""
    steps: list[Step] = []
    for old, new in pairwise(versions):
        change = diff(old.rules, new.rules)
        steps.append((old.rules, new.rules, dict(change.carry), change.reset_salary))
    return steps


def memory_store(shard: Shard) -> MemoryCapStore | None:
    """The shard's in-memory cap store, whose changes its segments hold; None for Redis."""
    store = getattr(shard.policy, "store", None)
    return store if isinstance(store, MemoryCapStore) else None


def _segment(
    watermark: Any,
    customers: dict[str, Any],
    shard: Shard,
    classes: codec.Classes,
    whole: bool = False,
    **extra: Any,
) -> bytes:
    """A segment: `customers` (the changed, or all), the cap store's changes since the last
    segment (`whole`: all of it, and changes kept from now on), and the rest pickled."""
    rest = shard.snapshot(store=False)
    del rest["engine"]
    store = memory_store(shard)
    keys, offers = ({}, {}) if store is None else store.whole() if whole else store.changes()
    segment = {"watermark": watermark, "customers": customers, "rest": pickle.dumps(rest, 5)}
    segment |= {"cap_keys": keys, "cap_offers": offers}
    return codec.encode({**segment, **extra}, classes)


def _fork_base(shard: Shard, chain: Chain, name: str) -> Forked:
    """A child, forked now, that writes segment `name`: the shard's state at this instant.

    Like Redis's BGSAVE: the child sees the parent's memory as it was at the fork
    (copy on write), so the shard goes on at once and the encoding (about 4 CPU s per
    million customers) runs on another core. The child runs only this thread's Python
    (the runtime's other threads do not exist in it), touches no lock they may hold
    (glibc resets malloc's at fork; no import, print or logging here), writes its
    file whole or not at all, and leaves by `os._exit`: no atexit handler, no buffer
    of the parent flushed twice. Its GC stays off: a collection would touch, and so
    copy, every page of the heap.
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        status = 2
        try:
            os.close(read)
            gc.disable()
            engine = shard.engine
            engine.settle_all()  # the customers a deferred switch has not reshaped yet
            payload = _segment(engine.watermark, engine.customers, shard, chain.classes, whole=True)
            chain.store.write_as(name, payload)
            os.write(write, msgspec.msgpack.encode(chain.classes.tags()))
            status = 0
        except BaseException as exc:  # noqa: BLE001 - one line for the parent, then out
            os.write(write, f"{type(exc).__name__}: {exc}".encode(errors="replace"))
        finally:
            os._exit(status)
    os.close(write)
    return Forked(pid, os.fdopen(read, "rb"))


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
