"""How long `backtest --history` takes to copy a live contact history, on one server and a Cluster.

    python bench/bench_history_copy.py [--reservations 100000] [--repeat 3]

The history is the policy's own reservations (`bench_policy.reservations_for`:
a customer per four reservations, 2 channel options x 2-3 caps each), written
through `RedisCapStore` in calls of 500 to a private redis-server and to a
three-primary Redis Cluster (tests/support/servers.py), as a live flow would.
Then `copy_history` (state/history_copy.py) reads it back `--repeat` times;
printed per store, best of the repeats: wall seconds, the client's CPU (redis-py
parsing and the memory store's build, in this process), the servers' CPU (every
redis-server process, from /proc), and the rate in keys read (cap and offer keys) per
wall second. Beside it,
the time the same reservations took to write, as the yardstick of the same run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
from bench_policy import reservations_for  # noqa: E402
from bench_redis_scale import server_cpu  # noqa: E402

from keymoment.state.history_copy import copy_history  # noqa: E402
from keymoment.state.redis_caps import RedisCapStore  # noqa: E402
from tests.support.servers import RedisClusterServers, RedisServer  # noqa: E402


def bench(
    name: str, store: RedisCapStore, pids: list[int], reservations: list, repeat: int
) -> None:
    wall = time.perf_counter()
    for i in range(0, len(reservations), 500):
        store.reserve_many(reservations[i : i + 500])
    written = time.perf_counter() - wall
    runs = []
    for _ in range(repeat):
        cpu, server, wall = time.process_time(), server_cpu(pids), time.perf_counter()
        copy = copy_history(store)
        copy.store()
        runs.append(
            (time.perf_counter() - wall, time.process_time() - cpu, server_cpu(pids) - server)
        )
    wall, cpu, server = min(runs)
    print(
        f"  {name:<22} {copy.offers:>9,} offer records, {copy.keys:>9,} keys "
        f"({copy.slots:,} slots): copy {wall:6.2f} s wall "
        f"({(copy.keys + copy.offers) / wall:>7,.0f} keys read/s), "
        f"client CPU {cpu:6.2f} s, server CPU {server:6.2f} s; writing them took "
        f"{written:6.2f} s",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reservations", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(
        f"copy of a contact history, {args.reservations:,} reservations "
        f"({args.reservations // 4:,} customers), best of {args.repeat} "
        f"(load {'/'.join(f'{x:.1f}' for x in os.getloadavg())})"
    )
    reservations = reservations_for(args.reservations)
    single, cluster = RedisServer().start(), RedisClusterServers().start()
    try:
        bench(
            "one redis-server",
            RedisCapStore(single.url, prefix="live", timeout=5.0),
            [single.proc.pid],  # type: ignore[union-attr]
            reservations,
            args.repeat,
        )
        bench(
            "cluster, 3 primaries",
            RedisCapStore(cluster.url, prefix="live", timeout=5.0, cluster=True),
            [s.proc.pid for s in cluster.servers],  # type: ignore[union-attr]
            reservations,
            args.repeat,
        )
    finally:
        single.stop()
        cluster.stop()
    print(f"(load {'/'.join(f'{x:.1f}' for x in os.getloadavg())} at the end)")


if __name__ == "__main__":
    main()
