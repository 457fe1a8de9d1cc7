"""Incremental against full engine snapshots, and restore time, at 1,000,000 customers.

    python bench/bench_snapshot.py                      # 1M customers, 1% changed per epoch
    python bench/bench_snapshot.py --customers 200000 --changed 0.05

Builds an engine holding `--customers` customers under bench/four_rules.yaml
(each: a login, a card payment and an incoming transfer, so dormancy,
reactivation and the deposit history all hold state), then runs `--epochs`
epochs in which `--changed` of the customers get one event each. Per epoch,
in the same run: the incremental part (`triggers.snapshots.changes`, then
pickled, as the flow would store it) against the full snapshot pickled
(`Engine.snapshot()`, first and last epoch only), CPU time, best of the
epochs, and sizes. Then
restore: the full snapshot unpickled, and base + all parts unpickled and
applied (`snapshots.restore`, which also rebuilds the heap). Goal (issue 13):
a snapshot under 100 ms at 1M customers with 1% changed.
"""

from __future__ import annotations

import argparse
import gc
import pickle
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import baseline_plain  # noqa: E402 - the sibling script: the rules file

from keymoment.config import load_rules  # noqa: E402
from keymoment.triggers import snapshots  # noqa: E402
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--changed", type=float, default=0.01)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    engine = Engine(load_rules(baseline_plain.RULES))
    built = time.process_time()
    for i in range(args.customers):
        at = T0 + timedelta(seconds=i * 86_400 * 30 // args.customers)
        for event in events_for(i, at, "b"):
            engine.feed(event)
        if i % 65_536 == 0:
            gc.collect(1)
            gc.freeze()
    print(f"{len(engine.customers):,} customers held, built in {time.process_time() - built:.1f} "
          f"CPU s; {engine.pending_timers():,} heap entries")  # fmt: skip
    _, base = cpu(lambda: pickle.dumps(engine.snapshot(), protocol=pickle.HIGHEST_PROTOCOL))
    snapshots.changes(engine)
    rng, parts, best_part, best_full = random.Random(1), [], float("inf"), float("inf")
    now = T0 + timedelta(days=31)
    for epoch in range(args.epochs):
        for i in rng.sample(range(args.customers), int(args.customers * args.changed)):
            for event in events_for(i, now, f"e{epoch}-"):
                engine.feed(event)
        now += timedelta(seconds=5)
        t_part, part = cpu(lambda: pickle.dumps(snapshots.changes(engine), protocol=5))
        if epoch == 0 or epoch == args.epochs - 1:  # the full one costs seconds: twice is enough
            t_full, full = cpu(lambda: pickle.dumps(engine.snapshot(), protocol=5))
        parts.append(part)
        best_part, best_full = min(best_part, t_part), min(best_full, t_full)
        print(f"  epoch {epoch}: part {t_part * 1000:7.1f} ms {len(part) / 2**20:6.2f} MiB | "
              f"full {t_full * 1000:7.1f} ms {len(full) / 2**20:7.1f} MiB")  # fmt: skip
    print(f"best of {args.epochs}: incremental {best_part * 1000:.1f} ms, full "
          f"{best_full * 1000:.0f} ms (x{best_full / best_part:.0f}), CPU")  # fmt: skip
    t_restore_full, _ = cpu(lambda: Engine(engine.ruleset).restore(pickle.loads(full)))
    fresh = Engine(engine.ruleset)
    t_restore_parts, _ = cpu(
        lambda: snapshots.restore(fresh, pickle.loads(base), (pickle.loads(p) for p in parts))
    )
    same = len(fresh.customers) == len(engine.customers)
    print(f"restore: full snapshot {t_restore_full:.2f} CPU s; base + {len(parts)} parts, heap "
          f"rebuilt {t_restore_parts:.2f} CPU s (same customers: {same})")  # fmt: skip


if __name__ == "__main__":
    main()
