"""The flow's incremental snapshots against whole-shard ones, and restore, at 1,000,000 customers.

    python bench/bench_snapshot.py                      # 1M customers, 1% changed per epoch
    python bench/bench_snapshot.py --customers 200000 --changed 0.05

Builds a shard (flows/shard.Shard: engine and policy) holding `--customers`
customers under bench/four_rules.yaml (each: a login, a card payment and an
incoming transfer, so dormancy, reactivation and the deposit history all hold
state), then runs `--epochs` epochs in which `--changed` of the customers get
one event each. Per epoch, same run, CPU time:

- **incremental**: `flows.snapshots.Chain.snapshot`, what the flow runs each
  epoch: the changed customers encoded (state/snapshot_codec.py, msgpack),
  written as a segment file (fsync on) and the chain record pickled;
- the same part encoded with pickle (the encoding before), to compare codecs;
- **baseline**: the whole shard pickled (`Shard.snapshot()`, what the flow
  handed Bytewax before), first and last epoch only (it costs seconds).

First a base from memory (every customer: what a fresh run or a switch
writes), after the epochs a compaction (the chain's files merged into a new
base, as when the parts outgrow the base), at the end restore: the
whole-shard pickle unpickled (baseline) against the chain read back (base +
parts, heap rebuilt), CPU time and RSS growth of each, each in a fresh
process so that freed memory of one does not hide the other's growth. Goal
(issue 13): a snapshot under 100 ms at 1M customers with 1% changed.
"""

from __future__ import annotations

import argparse
import gc
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

from keymoment.config import load_rules  # noqa: E402
from keymoment.flows.shard import Shard  # noqa: E402
from keymoment.flows.snapshots import Chain  # noqa: E402
from keymoment.policy import build_policy  # noqa: E402
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


def cpu(run) -> tuple[float, object]:  # noqa: ANN001
    gc.collect()
    started = time.process_time()
    out = run()
    return time.process_time() - started, out


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def built(customers: int) -> Shard:
    rules = load_rules(baseline_plain.RULES)
    engine = Engine(rules)
    started = time.process_time()
    for i in range(customers):
        at = T0 + timedelta(seconds=i * 86_400 * 30 // customers)
        for event in events_for(i, at, "b"):
            engine.feed(event)
        if i % 65_536 == 0:
            gc.collect(1)
            gc.freeze()
    print(f"{len(engine.customers):,} customers held, built in {time.process_time() - started:.1f} "
          f"CPU s; {engine.pending_timers():,} heap entries")  # fmt: skip
    return Shard(engine, build_policy(rules), {})


def epochs(
    shard: Shard, chain: Chain, args: argparse.Namespace
) -> tuple[bytes, bytes, list[float]]:
    """Each epoch: the chain's snapshot, the part pickled instead, the whole shard (twice)."""
    rng, now, parts, record = random.Random(1), T0 + timedelta(days=31), [], b""
    full, t_full = b"", math.nan
    for epoch in range(args.epochs):
        for i in rng.sample(range(args.customers), int(args.customers * args.changed)):
            for event in events_for(i, now, f"e{epoch}-"):
                shard.engine.feed(event)
        now += timedelta(seconds=5)
        dirty = {c: shard.engine.customers.get(c) for c in shard.engine.dirty}
        t_pickle, pickled = cpu(lambda: pickle.dumps(dirty, protocol=5))  # noqa: B023 - run now
        t_part, (record, size) = cpu(lambda: chain.snapshot(shard))
        if epoch == 0 or epoch == args.epochs - 1:  # the whole shard costs seconds: twice is enough
            t_full, full = cpu(lambda: pickle.dumps(shard.snapshot(), protocol=5))
        parts.append(t_part)
        print(f"  epoch {epoch}: {len(dirty):,} changed | incremental {t_part * 1000:6.1f} ms "
              f"{size / 2**20:5.2f} MiB (record {len(record)} B) | same part pickled "
              f"{t_pickle * 1000:6.1f} ms {len(pickled) / 2**20:5.2f} MiB | whole shard "
              f"{t_full * 1000:7.0f} ms {len(full) / 2**20:6.1f} MiB")  # fmt: skip
    return record, full, parts + [t_full]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--changed", type=float, default=0.01)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--dir", help="segment directory (default: a temporary one)")
    parser.add_argument("--restore", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.restore:
        return restored(args.restore[0], Path(args.restore[1]))
    shard = built(args.customers)
    root = Path(args.dir or tempfile.mkdtemp(prefix="km-bench-segments-"))
    chain = Chain(SegmentStore(root), keep_seconds=math.inf)
    t_base, (record, base_size) = cpu(lambda: chain.snapshot(shard))  # the first: a base
    print(f"base from memory (every customer): {t_base:.2f} CPU s, "
          f"{base_size / 2**20:.1f} MiB")  # fmt: skip
    record, full, times = epochs(shard, chain, args)
    best_part, t_full = min(times[:-1]), times[-1]
    print(f"best of {args.epochs}: incremental {best_part * 1000:.1f} ms, whole shard "
          f"{t_full * 1000:.0f} ms (x{t_full / best_part:.0f}), CPU")  # fmt: skip
    parts, names = len(chain.names) - 1, list(chain.names)
    t_merge, _ = cpu(chain.compact)
    print(f"compaction: base + {parts} parts merged from the files into a new base "
          f"{t_merge:.2f} CPU s (the base from memory: {t_base:.2f} s)")  # fmt: skip
    in_child(chain, names)
    restore(chain, record, full)


def in_child(chain: Chain, names: list[str]) -> None:
    """The same merge as the flow runs it: in a child process, the shard's CPU apart."""
    import resource

    chain.names, chain.background = names, True
    t_start, _ = cpu(chain.begin_compaction)
    assert chain.merge is not None
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    chain.merge.process.wait()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    t_child = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    t_adopt, _ = cpu(chain.settle)
    print(f"compaction in a child process (the flow's way): the shard's own CPU "
          f"{(t_start + t_adopt) * 1000:.1f} ms to start and adopt it; the child's "
          f"{t_child:.2f} CPU s")  # fmt: skip


def restore(chain: Chain, record: bytes, full: bytes) -> None:
    """Whole-shard unpickle against the chain read back, each in a fresh process (RSS)."""
    whole, rec = chain.store.root / "whole-shard.pickle", chain.store.root / "record.pickle"
    whole.write_bytes(full)
    rec.write_bytes(record)
    names = pickle.loads(record)["chain"]
    for kind, path in (("whole", whole), ("chain", rec)):
        done = subprocess.run(
            [sys.executable, __file__, "--restore", kind, str(path)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        seconds, grown, customers = done.stdout.split()
        what = "whole shard" if kind == "whole" else f"chain of {len(names)} segments, heap rebuilt"
        print(f"restore ({what}, fresh process): {float(seconds):.2f} CPU s, RSS "
              f"+{int(grown) / 2**20:.0f} MiB, {int(customers):,} customers")  # fmt: skip


def restored(kind: str, path: Path) -> None:
    """In a fresh process: one restore, printing CPU seconds, RSS growth and customers."""
    rules = load_rules(baseline_plain.RULES)
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
