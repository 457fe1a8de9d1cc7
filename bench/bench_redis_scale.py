"""The contact history's Redis cost per reservation: one server and a Redis Cluster, batched.

    python bench/bench_redis_scale.py [--reservations 20000] [--repeat 3]

For docs/scaling.md: how many reservations per second one Redis core can
take, and what batching buys. The reservations are the policy's own
(`bench_policy.reservations_for`: the planner's cap checks for two rules,
2 channel options x 2-3 caps each), sent through the project's
`RedisCapStore` (one `reserve.lua` EVALSHA per reservation, pipelined per
call) to

- a private redis-server (tests/support/servers.py `RedisServer`), and
- a three-primary Redis Cluster (`RedisClusterServers`, `cluster=True`:
  each pipeline split by node), the same binaries,

one at a time and in calls of 10, 100 and 500. Printed per case: wall
time per reservation (the client's view: the round trip included), the
client's CPU per reservation (redis-py packing and parsing, in this
process), and the servers' CPU per reservation (user + system of every
redis-server process, from /proc via psutil): the last is what sizes a
Redis deployment, since one primary is one core. Also the servers' memory
per reservation held (`used_memory` growth / reservations that succeeded).
Best of `--repeat`, each on a fresh key prefix.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
from bench_policy import reservations_for  # noqa: E402

from keymoment.state.redis_caps import RedisCapStore  # noqa: E402
from tests.support.servers import RedisClusterServers, RedisServer  # noqa: E402

BATCHES = (1, 10, 100, 500)


def server_cpu(pids: list[int]) -> float:
    return sum(sum(psutil.Process(pid).cpu_times()[:2]) for pid in pids)


def used_memory(store: RedisCapStore, cluster: bool) -> int:
    if cluster:  # asked of every primary, redis-py's cluster client answers per node
        info = store.client.info("memory", target_nodes=store.client.PRIMARIES)
        return sum(int(node["used_memory"]) for node in info.values())
    return int(store.client.info("memory")["used_memory"])


def measure(
    make: Callable[[str], RedisCapStore], pids: list[int], reservations: list, batch: int, tag: str
) -> dict[str, float]:
    """One pass over all reservations in calls of `batch`, on a fresh prefix."""
    store = make(tag)
    store.check()
    chunks = [reservations[i : i + batch] for i in range(0, len(reservations), batch)]
    cluster = store.cluster
    memory = used_memory(store, cluster)
    cpu, server, wall = time.process_time(), server_cpu(pids), time.perf_counter()
    results = [result for chunk in chunks for result in store.reserve_many(chunk)]
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    server = server_cpu(pids) - server
    held = sum(1 for r in results if r.reserved) or 1
    n = len(reservations)
    grown = used_memory(store, cluster) - memory
    store.close()
    return {"wall": wall / n, "client": cpu / n, "server": server / n, "bytes": grown / held}


def best(runs: list[dict[str, float]]) -> dict[str, float]:
    return min(runs, key=lambda r: r["wall"])


def bench(name: str, make: Callable[[str], RedisCapStore], pids: list[int], args) -> None:  # noqa: ANN001
    reservations = reservations_for(args.reservations)
    for batch in BATCHES:
        runs = [
            measure(make, pids, reservations, batch, f"b{os.getpid()}-{batch}-{i}")
            for i in range(args.repeat)
        ]
        r = best(runs)
        print(
            f"  {name:<22} calls of {batch:>3}: {r['wall'] * 1e6:7.1f} us wall "
            f"({1 / r['wall']:>8,.0f}/s), client CPU {r['client'] * 1e6:6.1f} us, "
            f"server CPU {r['server'] * 1e6:6.1f} us ({1 / max(r['server'], 1e-9):>8,.0f}/s "
            f"per server core), {r['bytes']:,.0f} B held per reservation",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reservations", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(
        f"Redis cap store, {args.reservations:,} reservations per case, best of {args.repeat} "
        f"(load {'/'.join(f'{x:.1f}' for x in os.getloadavg())})"
    )
    single = RedisServer().start()
    cluster = RedisClusterServers().start()
    try:
        bench(
            "one redis-server",
            lambda tag: RedisCapStore(single.url, prefix=tag, timeout=5.0),
            [single.proc.pid],  # type: ignore[union-attr]
            args,
        )
        bench(
            "cluster, 3 primaries",
            lambda tag: RedisCapStore(cluster.url, prefix=tag, timeout=5.0, cluster=True),
            [s.proc.pid for s in cluster.servers],  # type: ignore[union-attr]
            args,
        )
    finally:
        single.stop()
        cluster.stop()
    print(f"(load {'/'.join(f'{x:.1f}' for x in os.getloadavg())} at the end)")


if __name__ == "__main__":
    main()
