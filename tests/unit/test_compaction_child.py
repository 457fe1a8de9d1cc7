"""Compaction in a child process (state/compaction.py, flows/snapshots.Chain with `background`).

The chain goes on naming the old files while the child merges; once the
child exited 0 the next snapshot names its base and the parts written since,
and a shard restored from that record holds the same customers. A child that
fails is one line on stderr and the merge is done in the flow instead. The
child on its own: a missing segment is one line and exit status 2, and no
output file. After a switch that re-reads every state, a forked child writes
the base: one that fails is one line and the chain forks again; its class
table is adopted only when it is one numbering with the chain's.
"""

from __future__ import annotations

import math
import pickle
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
from test_snapshot_chain import customers, new_shard, world

from keymoment.flows import snapshots
from keymoment.flows.snapshots import Chain, Forked
from keymoment.state.segments import SegmentStore


def background_chain(root: Path) -> Chain:
    store = SegmentStore(root, fsync=False)
    return Chain(store, keep_seconds=math.inf, compact_ratio=0.01, background=True)


def run_until_merge(chain: Chain) -> tuple[object, list[str]]:
    """Snapshots until a merge starts; the shard and the chain's names at that moment."""
    w = world()
    shard = new_shard(w, w["until"])  # the switch never comes: one engine throughout
    for batch in w["batches"]:
        shard.process(batch)
        chain.snapshot(shard)
        if chain.merge is not None:
            return shard, list(chain.names)
    raise AssertionError("no compaction became due")


def test_a_finished_merge_is_adopted_and_restores_the_same_state(tmp_path: Path) -> None:
    chain = background_chain(tmp_path)
    shard, before = run_until_merge(chain)
    merged = chain.merge.name
    assert merged not in chain.names  # the records name the old files meanwhile
    chain.settle()
    assert chain.names == [merged] and chain.merge is None  # it covered all of `before`
    record, _ = chain.snapshot(shard)  # one more part on top of the merged base
    chain.settle()  # the merge that part made due: one at a time per process, and tests share it
    names = pickle.loads(record)["chain"]
    assert names[0] == merged and len(names) == 2
    again = new_shard(world(), world()["until"])
    background_chain(tmp_path).restore(again, pickle.loads(record))
    assert customers(again) == customers(shard)


def test_a_failed_merge_is_one_line_and_compacts_in_the_flow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fail = [sys.executable, "-c", "import sys; print('disk on fire', file=sys.stderr); sys.exit(2)"]
    monkeypatch.setattr(snapshots, "COMPACTOR", fail)
    chain = background_chain(tmp_path)
    shard, _ = run_until_merge(chain)
    chain.merge.process.wait()
    chain.snapshot(shard)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["keymoment: background compaction failed (disk on fire); compacting in the flow"]
    assert len(chain.names) == 1 and chain.names[0].endswith(".base")


def test_the_child_alone_refuses_a_missing_segment(tmp_path: Path) -> None:
    store = SegmentStore(tmp_path, fsync=False)
    out = store.reserve("base")
    argv = [*snapshots.COMPACTOR, str(tmp_path), out, f"{store.execution}/00000099.base"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "is missing" in done.stderr
    assert not (tmp_path / out).exists()


def switched_chain(root: Path, blocked: bool = False) -> tuple[object, Chain]:
    """A background chain whose shard met switches that re-read every state: the epoch's
    segment is a switch segment and a child was forked to write the new base (`blocked`:
    a directory where its temporary file would go, so that it fails)."""
    w = world()
    chain = Chain(SegmentStore(root, fsync=False), keep_seconds=math.inf, background=True)
    shard = new_shard(w, w["until"], w["until"], w["until"])  # v8, v9, v10 only at the end
    shard.process(w["batches"][0])
    chain.snapshot(shard)
    if blocked:  # the name the fork will write: after the switch segment's
        (root / f"{chain.store.execution}/{chain.store._seq + 2:08d}.base.tmp").mkdir()
    shard.finish(w["until"])  # the three switches, then the end of input
    chain.snapshot(shard)
    assert chain.names[-1].endswith(".switch") and isinstance(chain.merge.process, Forked)
    return shard, chain


def test_a_failed_fork_is_one_line_and_forks_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shard, chain = switched_chain(tmp_path, blocked=True)
    chain.merge.process.wait()
    for blocker in tmp_path.glob("*/*.tmp"):
        blocker.rmdir()
    chain.snapshot(shard)
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert err.startswith("keymoment: background compaction failed (IsADirectoryError")
    assert err.endswith("; trying again")
    assert isinstance(chain.merge.process, Forked)  # forked again in the same snapshot
    chain.settle()
    assert chain.names[0].endswith(".base") and not any(n.endswith(".switch") for n in chain.names)
    again = new_shard(world())
    chain.restore(again, pickle.loads(chain.snapshot(shard)[0]))
    assert customers(again) == customers(shard)


def test_a_forked_base_is_adopted_only_in_one_numbering(tmp_path: Path) -> None:
    _, chain = switched_chain(tmp_path)
    chain.settle(adopt=False)
    mine = chain.classes.tags()
    assert chain._renumbered(msgspec.msgpack.encode(mine[:-1]))  # the child met fewer classes
    assert chain.classes.tags() == mine
    longer = [*mine, "keymoment.triggers.state:RuleState"]
    assert chain._renumbered(msgspec.msgpack.encode(longer))  # the chain numbers on from it
    assert chain.classes.tags() == longer
    clash = [*mine[:-1], "keymoment.triggers.state:Slotted"]
    assert not chain._renumbered(msgspec.msgpack.encode(clash))


def test_a_fork_that_cannot_start_writes_the_base_in_the_flow_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No memory or process slot for a child: one line, the base from memory in the
    shard's call (the pause, once), and a chain that restores the same state."""

    def no_fork() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(snapshots.os, "fork", no_fork)
    w = world()
    chain = Chain(SegmentStore(tmp_path, fsync=False), keep_seconds=math.inf, background=True)
    shard = new_shard(w, w["until"], w["until"], w["until"])
    shard.process(w["batches"][0])
    chain.snapshot(shard)
    shard.finish(w["until"])
    record, _ = chain.snapshot(shard)
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert err.startswith("keymoment: cannot fork (")
    assert err.endswith("; writing the base in the flow")
    assert chain.merge is None and len(chain.names) == 1 and chain.names[0].endswith(".base")
    again = new_shard(world())
    chain.restore(again, pickle.loads(record))
    assert customers(again) == customers(shard)
