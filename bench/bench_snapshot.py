"""The flow's incremental snapshots against whole-shard ones, and restore, at 1,000,000 customers.

    python bench/bench_snapshot.py                      # 1M customers, 1% changed per epoch
    python bench/bench_snapshot.py --customers 200000 --changed 0.05

Builds a shard (flows/shard.Shard: engine and policy) holding `--customers`
customers under bench/four_rules.yaml (each: a login, a card payment and an
incoming transfer, so dormancy, reactivation and the deposit history all hold
state), `--reserved` of them with an offer reserved in the policy's in-memory cap
store (the default store of a single process: four keys and an offer record
each, as the planner makes them), then runs `--epochs` epochs in which `--changed`
of the customers get one event each and one more reservation (none with
`--reserved 0`, the case measured before the fourteenth session). Per epoch,
same run, CPU time:

- **incremental**: `flows.snapshots.Chain.snapshot`, what the flow runs each
  epoch: the changed customers encoded (state/snapshot_codec.py, msgpack),
  written as a segment file (fsync on) and the chain record pickled; the cap
  store's keys and offers changed in the epoch go in the segment too;
- the in-memory cap store whole, pickled, as each segment's rest held it before
  the fourteenth session (first and last epoch);
- the same part encoded with pickle (the encoding before), to compare codecs;
- **baseline**: the whole shard pickled (`Shard.snapshot()`, what the flow
  handed Bytewax before), first and last epoch only (it costs seconds).

First a base from memory (every customer: what a fresh run writes), after
the epochs a compaction (the chain's files merged into a new base, as when
the parts outgrow the base), then two live rules switches as the shard meets
them (`Shard.finish` at W): a thresholds-only one and one that re-reads every
state (dormancy 90d -> 60d), each followed by the epoch's snapshot, which is
the shard's pause after a switch (CPU and wall); with a background chain a
switch that re-read the states writes a switch segment and forks a child to
write the new base (its CPU, and the memory it copied, printed when it is
adopted), and an epoch of events runs while the child works. At the end
restore: the whole-shard pickle unpickled (baseline) against the chain read
back (base + parts, heap rebuilt), and the chain as a kill -9 right after the
switch leaves it (the switch replayed), CPU time and RSS growth of each, each
in a fresh process so that freed memory of one does not hide the other's
growth. Goal (issue 13): a snapshot under 100 ms at 1M customers with 1%
changed. Runs on an older checkout too (`PYTHONPATH=DIR`), for a before/after.
"""

from __future__ import annotations

import argparse
import functools
import gc
import inspect
import math
import os
import pickle
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import baseline_plain  # noqa: E402 - the sibling script: the rules file

from keymoment.flows import snapshots  # noqa: E402
from keymoment.flows.shard import Shard  # noqa: E402
from keymoment.flows.snapshots import Chain  # noqa: E402
from keymoment.flows.versioning import Versions  # noqa: E402
from keymoment.policy import build_policy  # noqa: E402
from keymoment.rollout.versions import RulesVersion, Switch  # noqa: E402
from keymoment.state import Check, Option, Reservation  # noqa: E402
from keymoment.state.segments import SegmentStore  # noqa: E402
from keymoment.triggers.engine import Engine  # noqa: E402
from keymoment.triggers.events import AppEvent, TransactionEvent  # noqa: E402

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def events_for(i: int, at: datetime, tag: str) -> list:
    cid = f"C{i:08d}"
    return [
        AppEvent(event_id=f"{tag}l{i}", customer_id=cid, occurred_at=at, action="login"),
        TransactionEvent(event_id=f"{tag}c{i}", customer_id=cid, occurred_at=at, account_id="A",
                         direction="debit", amount=1250, kind="card_payment"),
        TransactionEvent(event_id=f"{tag}t{i}", customer_id=cid, occurred_at=at, account_id="A",
                         direction="credit", amount=250000, kind="transfer_in"),
    ]  # fmt: skip


def reservation(i: int, tag: str, at: datetime) -> Reservation:
    """An offer to customer `i` on app push, checked as the planner checks one: a daily
    and a weekly cap on the customer, one on the channel, one on the campaign."""
    now_ms = int(at.timestamp() * 1000)
    head, day = f"cap:{{C{i:08d}}}", 86_400_000
    checks = (
        Check("daily", f"{head}:all:day", "rolling", 2, day, keep_ms=day),
        Check("weekly", f"{head}:all:week", "rolling", 5, 7 * day, keep_ms=7 * day),
        Check("push", f"{head}:ch:app_push", "rolling", 3, 7 * day, keep_ms=7 * day),
        Check("camp", f"{head}:camp:deposit_thanks", "rolling", 1, 30 * day, keep_ms=30 * day),
    )
    option = Option(f"app_push|{now_ms}.000", now_ms, checks)
    return Reservation(f"{tag}-C{i:08d}-deposit_thanks", f"C{i:08d}", now_ms, (option,), 30 * day)


def reserve(shard: Shard, i: int, tag: str, at: datetime) -> None:
    shard.policy.store.reserve(reservation(i, tag, at))  # type: ignore[attr-defined]


def cpu(run) -> tuple[float, object]:  # noqa: ANN001
    gc.collect()
    started = time.process_time()
    out = run()
    return time.process_time() - started, out


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rules_versions(folder: Path) -> list[RulesVersion]:
    """bench/four_rules.yaml, then a thresholds-only edit, then dormancy 90d -> 60d."""
    text = baseline_plain.RULES.read_text()
    edits = [("version: 1", "version: 1"), ("version: 1", "version: 2"),
             ("inactive: 90d}", "inactive: 60d}")]  # fmt: skip
    out = []
    for n, (old, new) in enumerate(edits):
        text = text.replace(old, new, 1)
        if n == 1:
            text = text.replace("min_amount: 50000", "min_amount: 60000", 1)
        path = folder / f"v{n + 1}.yaml"
        path.write_text(text.replace("version: 2", f"version: {n + 1}", 1))
        out.append(RulesVersion.read(str(path)))
    return out


def built(customers: int, versions: list[RulesVersion], reserved: float) -> Shard:
    rules = versions[0].rules
    engine = Engine(rules)
    shard = Shard(engine, build_policy(rules), {}, None, Versions(versions[0]))
    started, every = time.process_time(), round(1 / reserved) if reserved else 0
    for i in range(customers):
        at = T0 + timedelta(seconds=i * 86_400 * 30 // customers)
        for event in events_for(i, at, "b"):
            engine.feed(event)
        if every and i % every == 0:
            reserve(shard, i, "b", at)
        if i % 65_536 == 0:
            gc.collect(1)
            gc.freeze()
    held = len(shard.policy.store)  # type: ignore[attr-defined]
    print(f"{len(engine.customers):,} customers held, built in {time.process_time() - started:.1f} "
          f"CPU s; {engine.pending_timers():,} heap entries; cap store: {held:,} keys and "
          f"offer records")  # fmt: skip
    return shard


def epochs(
    shard: Shard, chain: Chain, args: argparse.Namespace
) -> tuple[bytes, bytes, list[float]]:
    """Each epoch: the chain's snapshot, the part pickled instead, the whole shard (twice)."""
    rng, now, parts, record = random.Random(1), T0 + timedelta(days=31), [], b""
    full, t_full, t_store, store_size = b"", math.nan, math.nan, 0
    for epoch in range(args.epochs):
        for i in rng.sample(range(args.customers), int(args.customers * args.changed)):
            for event in events_for(i, now, f"e{epoch}-"):
                shard.engine.feed(event)
            if args.reserved:  # --reserved 0: no cap store at all, the earlier sessions' case
                reserve(shard, i, f"e{epoch}", now)
        now += timedelta(seconds=5)
        dirty = {c: shard.engine.customers.get(c) for c in shard.engine.dirty}
        t_pickle, pickled = cpu(lambda: pickle.dumps(dirty, protocol=5))  # noqa: B023 - run now
        t_part, (record, size) = cpu(lambda: chain.snapshot(shard))
        if epoch == 0 or epoch == args.epochs - 1:  # the whole shard costs seconds: twice is enough
            t_full, full = cpu(lambda: pickle.dumps(shard.snapshot(), protocol=5))
            t_store, whole = cpu(lambda: pickle.dumps(shard.policy.snapshot(), protocol=5))
            store_size = len(whole)  # type: ignore[arg-type]
        parts.append(t_part)
        print(f"  epoch {epoch}: {len(dirty):,} changed | incremental {t_part * 1000:6.1f} ms "
              f"{size / 2**20:5.2f} MiB (record {len(record)} B) | same part pickled "
              f"{t_pickle * 1000:6.1f} ms {len(pickled) / 2**20:5.2f} MiB | cap store whole "
              f"{t_store * 1000:6.1f} ms {store_size / 2**20:5.2f} MiB | whole shard "
              f"{t_full * 1000:7.0f} ms {len(full) / 2**20:6.1f} MiB")  # fmt: skip
    return record, full, parts + [t_full]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--changed", type=float, default=0.01)
    parser.add_argument(
        "--reserved", type=float, default=0.1, help="customers with a reserved offer at the start"
    )
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--dir", help="segment directory (default: a temporary one)")
    parser.add_argument("--restore", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.restore:
        return restored(args.restore[0], Path(args.restore[1]))
    root = Path(args.dir or tempfile.mkdtemp(prefix="km-bench-segments-"))
    versions = rules_versions(root)
    shard = built(args.customers, versions, args.reserved)
    chain = Chain(SegmentStore(root), keep_seconds=math.inf)
    t_base, (record, base_size) = cpu(lambda: chain.snapshot(shard))  # the first: a base
    print(f"base from memory (every customer): {t_base:.2f} CPU s, "
          f"{base_size / 2**20:.1f} MiB")  # fmt: skip
    record, full, times = epochs(shard, chain, args)
    best_part, t_full = min(times[:-1]), times[-1]
    print(f"best of {args.epochs}: incremental {best_part * 1000:.1f} ms, whole shard "
          f"{t_full * 1000:.0f} ms (x{t_full / best_part:.0f}), CPU")  # fmt: skip
    parts, names = len(chain.names) - 1, list(chain.names)
    t_merge, _ = cpu(on_shard(chain.compact, shard))
    print(f"compaction: base + {parts} parts merged from the files into a new base "
          f"{t_merge:.2f} CPU s (the base from memory: {t_base:.2f} s)")  # fmt: skip
    in_child(chain, names, shard)
    switched = switches(shard, chain, versions, args)
    restore(chain, record, full, switched)


def on_shard(method, shard: Shard):  # noqa: ANN001, ANN201
    """`method`, given the shard when it takes one (the sixth session's); a checkout before
    it compacted without."""
    takes = "shard" in inspect.signature(method).parameters
    return functools.partial(method, shard) if takes else method


def in_child(chain: Chain, names: list[str], shard: Shard) -> None:
    """The same merge as the flow runs it: in a child process, the shard's CPU apart."""
    import resource

    chain.names, chain.background = names, True
    t_start, _ = cpu(on_shard(chain.begin_compaction, shard))
    assert chain.merge is not None
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    chain.merge.process.wait()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    t_child = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    t_adopt, _ = cpu(chain.settle)
    print(f"compaction in a child process (the flow's way): the shard's own CPU "
          f"{(t_start + t_adopt) * 1000:.1f} ms to start and adopt it; the child's "
          f"{t_child:.2f} CPU s")  # fmt: skip


def switches(
    shard: Shard, chain: Chain, versions: list[RulesVersion], args: argparse.Namespace
) -> bytes:
    """Two switches, each met by the shard and followed by the epoch's snapshot (the pause);
    returns the record of the snapshot right after the second, as a kill -9 would leave it."""
    chain.background, forks = True, timed_forks()  # as in the flow
    at = shard.engine.watermark + timedelta(seconds=1)
    record = b""
    for label, version in (("thresholds-only", versions[1]), ("dormancy 90d -> 60d", versions[2])):
        assert shard.versions is not None
        shard.versions.schedule(Switch(at, version), shard.engine.watermark)
        w, (c, _) = time.perf_counter(), cpu(lambda: shard.finish(at))  # noqa: B023 - run now
        w_switch, c_switch = time.perf_counter() - w, c
        w, done = time.perf_counter(), len(forks)
        t_snap, (record, size) = cpu(lambda: chain.snapshot(shard))
        w_snap = time.perf_counter() - w
        segment = chain.names[-1].rsplit(".", 1)[-1]
        fork = "".join(f"; of which the fork {c * 1e3:.1f} ms CPU {w * 1e3:.1f} ms wall"
                       for c, w in forks[-1:] if len(forks) > done)  # fmt: skip
        print(f"switch, {label}: the switch {c_switch:.2f} CPU s {w_switch:.2f} s wall; the "
              f"snapshot after it {t_snap * 1000:.1f} ms CPU {w_snap * 1000:.1f} ms wall "
              f"({segment} segment, {size / 2**20:.1f} MiB{fork})")  # fmt: skip
        at += timedelta(seconds=1)
    child_at_work(shard, chain, args)
    return record


def child_at_work(shard: Shard, chain: Chain, args: argparse.Namespace) -> None:
    """An epoch of events while the forked child writes the base, then its adoption, then
    the same epoch again with no child (the parent's cost of copy on write)."""
    import resource

    merge = getattr(chain, "merge", None)
    if merge is None:
        print("  (no child: this checkout wrote the base in the shard's call)")
        return
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started, rng, copied = time.perf_counter(), random.Random(2), 0
    c_with = epoch_of_events(shard, rng, args, "w-")
    t_part, _ = cpu(lambda: chain.snapshot(shard))
    while merge.process.poll() is None:
        copied = max(copied, private_dirty(merge.process.pid))
        time.sleep(0.05)
    waited = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    t_child = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    t_adopt, _ = cpu(lambda: chain.snapshot(shard))
    c_without = epoch_of_events(shard, rng, args, "x-")
    print(f"  meanwhile: an epoch of events {c_with:.2f} CPU s (with no child: {c_without:.2f} "
          f"s), a part {t_part * 1000:.1f} ms; the child's base {t_child:.2f} CPU s "
          f"({waited:.1f} s wall from the fork's epoch), it copied at least "
          f"{copied / 2**20:.0f} MiB of the shard's memory; the next snapshot adopts it "
          f"({t_adopt * 1000:.1f} ms): {len(chain.names)} segments")  # fmt: skip


def epoch_of_events(shard: Shard, rng: random.Random, args: argparse.Namespace, tag: str) -> float:
    """CPU seconds of one event each for `--changed` of the customers."""
    now = shard.engine.watermark + timedelta(seconds=5)
    started = time.process_time()
    for i in rng.sample(range(args.customers), int(args.customers * args.changed)):
        for event in events_for(i, now, tag):
            shard.engine.feed(event)
    return time.process_time() - started


def timed_forks() -> list[tuple[float, float]]:
    """(CPU, wall) seconds of each `flows.snapshots._fork_base` call from now on: the fork
    itself, within the snapshot's figures (a checkout without it never calls it)."""
    calls: list[tuple[float, float]] = []
    fork = getattr(snapshots, "_fork_base", None)
    if fork is None:
        return calls

    def timed(*args):  # noqa: ANN002, ANN202
        c, w = time.process_time(), time.perf_counter()
        out = fork(*args)
        calls.append((time.process_time() - c, time.perf_counter() - w))
        return out

    snapshots._fork_base = timed
    return calls


def private_dirty(pid: int) -> int:
    """The memory a forked child has copied so far (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
    except OSError:
        return 0
    return int(fields.get("Private_Dirty", "0 kB").split()[0]) * 1024


def restore(chain: Chain, record: bytes, full: bytes, switched: bytes) -> None:
    """Whole-shard unpickle against the chain read back, each in a fresh process (RSS)."""
    root = chain.store.root
    cases = [("whole", "whole shard", full),
             ("chain", "chain of {} segments, heap rebuilt", record),
             ("chain", "chain right after the switch, {} segments", switched)]  # fmt: skip
    for n, (kind, what, data) in enumerate(cases):
        path = root / f"restore-{n}.pickle"
        path.write_bytes(data)
        done = subprocess.run(
            [sys.executable, __file__, "--restore", kind, str(path)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        seconds, grown, customers = done.stdout.split()
        names = pickle.loads(data)["chain"] if kind == "chain" else []
        print(f"restore ({what.format(len(names))}, fresh process): {float(seconds):.2f} CPU s, "
              f"RSS +{int(grown) / 2**20:.0f} MiB, {int(customers):,} customers")  # fmt: skip


def restored(kind: str, path: Path) -> None:
    """In a fresh process: one restore, printing CPU seconds, RSS growth and customers."""
    rules = rules_versions(path.parent)[0].rules
    shard = Shard(Engine(rules), build_policy(rules), {})
    before = rss()
    if kind == "whole":
        seconds, _ = cpu(lambda: shard.restore(pickle.loads(path.read_bytes())))
    else:
        reader = Chain(SegmentStore(path.parent), keep_seconds=math.inf)
        seconds, _ = cpu(lambda: reader.restore(shard, pickle.loads(path.read_bytes())))
    print(seconds, rss() - before, len(shard.engine.customers))


if __name__ == "__main__":
    main()
