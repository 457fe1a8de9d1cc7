"""Cap decisions per second: memory store, Redis one at a time and batched, beside a Redis PING.

Run: `.venv/bin/python bench/bench_policy.py [--reservations 20000]`. It starts a
private redis-server on a free port (tests.support.servers.RedisServer), so the
PING round trip printed next to the Redis figures comes from the same run on the
same machine: a Redis figure near 1/PING means the round trip is the cost.
Also prints the whole policy's decisions/s (memory store) next to the
policy-off baseline (`FirstChannelPolicy`) on the same candidates.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from keymoment.config import RulesFile  # noqa: E402
from keymoment.policy import FirstChannelPolicy, build_policy  # noqa: E402
from keymoment.policy.planning import Planner, to_ms  # noqa: E402
from keymoment.state import MemoryCapStore  # noqa: E402
from keymoment.state.redis_caps import RedisCapStore  # noqa: E402
from keymoment.triggers.candidate import Candidate  # noqa: E402
from keymoment.triggers.events import CustomerProfile  # noqa: E402
from tests.support.servers import RedisServer  # noqa: E402

START = datetime(2026, 3, 2, tzinfo=UTC)
RULES = {
    "version": 1,
    "timezone": "Asia/Shanghai",
    "rules": [
        {"rule_id": "r1", "trigger": "dormancy", "campaign": "a"},
        {"rule_id": "r2", "trigger": "reactivation", "campaign": "b"},
    ],
    "campaigns": [
        {"campaign_id": "a", "offer_code": "A", "channels": ["app_push", "sms"], "holdout": 0.1},
        {
            "campaign_id": "b",
            "offer_code": "B",
            "channels": ["sms", "app_push"],
            "priority": 5,
            "holdout": 0.1,
        },
    ],
    "channels": {"sms": {"quiet_hours": "08:00-21:00"}},
    "caps": [
        {"id": "daily", "scope": "customer", "limit": 1, "window": "day"},
        {"id": "weekly", "scope": "customer", "limit": 3, "window": "7d"},
        {"id": "sms", "scope": "customer_channel", "channel": "sms", "limit": 2, "window": "7d"},
    ],
}


def candidates(n: int, customers: int, seed: int = 1) -> list[Candidate]:
    rng = random.Random(seed)
    out, at = [], START
    for i in range(n):
        at += timedelta(seconds=rng.randrange(1, 60))
        rule, camp = rng.choice([("r1", "a"), ("r2", "b")])
        out.append(Candidate(rule, "t", camp, f"C{rng.randrange(customers)}", at, f"E{i}"))
    return out


def profiles(customers: int) -> dict[str, CustomerProfile]:
    return {
        f"C{i}": CustomerProfile(customer_id=f"C{i}", consent={"sms": True, "app_push": True})
        for i in range(customers)
    }


def rate(label: str, count: int, seconds: float, note: str = "") -> None:
    each = seconds * 1e6 / count
    print(f"  {label:<44} {count / seconds:>12,.0f} /s   ({each:,.1f} us each) {note}")


def bench_stores(n: int, url: str) -> None:
    rules = RulesFile.model_validate(RULES)
    planner = Planner(rules)
    profs = profiles(n // 4)
    reservations = []
    for c in candidates(n, n // 4):
        plan = planner.plan(c, rules.campaign(c.campaign), profs[c.customer_id], c.triggered_at)
        reservations.append(plan.reservation)
    checks = sum(len(o.checks) for r in reservations for o in r.options) / len(reservations)
    print(
        f"cap reservations: {n:,} for {n // 4:,} customers, {checks:.1f} cap checks each "
        "(2 channel options x 2-3 caps)"
    )
    store = MemoryCapStore()
    t = time.perf_counter()
    for r in reservations:
        store.reserve(r)
    rate("memory store, one at a time", n, time.perf_counter() - t)
    for label, batch in [
        ("redis store, one at a time", 1),
        ("redis store, batches of 100", 100),
        ("redis store, batches of 500", 500),
    ]:
        rstore = RedisCapStore(url, prefix=f"bench{batch}", timeout=5.0)
        t = time.perf_counter()
        for start in range(0, n, batch):
            rstore.reserve_many(reservations[start : start + batch])
        rate(label, n, time.perf_counter() - t)
        rstore.close()


def bench_ping(url: str, count: int = 5000) -> None:
    client = RedisCapStore(url, timeout=5.0).client
    samples = []
    for _ in range(count):
        t = time.perf_counter()
        client.ping()
        samples.append(time.perf_counter() - t)
    samples.sort()
    median, p99 = statistics.median(samples), samples[int(count * 0.99)]
    print(
        f"  {'redis PING round trip (same run)':<44} median {median * 1e6:,.0f} us, "
        f"p99 {p99 * 1e6:,.0f} us  (=> at most {1 / median:,.0f} sequential calls/s)"
    )


def bench_policy(n: int) -> None:
    rules = RulesFile.model_validate(RULES)
    cands, profs = candidates(n, n // 4, seed=2), profiles(n // 4)
    print(f"whole policy (suppression, holdout, arbitration, quiet hours, caps): {n:,} candidates")
    for label, make in [
        ("policy off (FirstChannelPolicy baseline)", lambda: FirstChannelPolicy(rules)),
        ("policy on, memory store", lambda: build_policy(rules, lists=[])),
    ]:
        for size in (1, 100):
            policy = make()
            t = time.perf_counter()
            for start in range(0, n, size):
                batch = cands[start : start + size]
                policy.decide(batch, profs, batch[-1].triggered_at)
            rate(f"{label}, calls of {size}", n, time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reservations", type=int, default=20000)
    args = parser.parse_args()
    server = RedisServer().start()
    try:
        print(f"python {sys.version.split()[0]}, redis-server on 127.0.0.1:{server.port}")
        bench_ping(server.url)
        bench_stores(args.reservations, server.url)
        bench_ping(server.url)
        bench_policy(args.reservations)
    finally:
        server.stop()
    _ = to_ms  # re-exported for readers comparing slot times


if __name__ == "__main__":
    main()
