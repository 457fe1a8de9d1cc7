"""Several OS processes deciding offers for the same customers against one real Redis."""

from __future__ import annotations

import multiprocessing
import random
import time
from collections import defaultdict
from datetime import timedelta

from keymoment.policy import build_policy
from keymoment.policy.planning import to_ms
from keymoment.state import cap_key
from keymoment.state.redis_caps import RedisCapStore
from tests.unit.test_policy_support import T0, campaign, candidate, fixed_clock, profile, rules_file

H = 3_600_000
CAPS = [
    {"id": "hourly", "scope": "customer", "limit": 2, "window": "1h"},
    {"id": "daily", "scope": "customer", "limit": 5, "window": "day"},
    {"id": "sms-3h", "scope": "customer_channel", "channel": "sms", "limit": 1, "window": "3h"},
]
LIMITS = {"hourly": (2, H), "sms-3h": (1, 3 * H)}
CUSTOMERS = [f"C{i}" for i in range(8)]
PROCESSES, PER_PROCESS = 4, 150


def rules():  # type: ignore[no-untyped-def]
    return rules_file([campaign("a", channels=["sms", "app_push"], ttl="48h")], caps=CAPS)


def worker(args: tuple[str, str, int, float]) -> list[tuple[str, str, str | None, int | None, str]]:
    """One process: its own store and policy; candidates in batches of 10, shuffled times.

    All processes start deciding at the same wall-clock instant, so they overlap.
    """
    url, prefix, seed, start_at = args
    rng = random.Random(seed)
    store = RedisCapStore(url, prefix=prefix, timeout=5.0)
    policy = build_policy(rules(), store=store, clock=fixed_clock)
    profs = {c: profile(c) for c in CUSTOMERS}
    cands = [
        candidate(
            "r-a",
            "a",
            rng.choice(CUSTOMERS),
            T0 + timedelta(minutes=rng.randrange(600)),
            event_id=f"p{seed}-{i}",
        )
        for i in range(PER_PROCESS)
    ]
    store.client.ping()
    time.sleep(max(start_at - time.time(), 0))
    out = []
    for start in range(0, len(cands), 10):
        batch = cands[start : start + 10]
        for d in policy.decide(batch, profs, max(c.triggered_at for c in batch)):
            send = to_ms(d.send_at) if d.send_at else None
            out.append((d.offer_id, d.candidate.customer_id, d.channel, send, d.outcome))
    store.close()
    return out


def most_in_window(times: list[int], window: int) -> int:
    times = sorted(times)
    return max((sum(t <= u < t + window for u in times) for t in times), default=0)


def test_no_cap_is_exceeded_by_concurrent_processes(redis_server):
    """4 processes x 150 candidates: Redis and the outputs agree and no cap is exceeded."""
    prefix = "race"
    with multiprocessing.get_context("spawn").Pool(PROCESSES) as pool:
        start_at = time.time() + 5
        results = pool.map(
            worker, [(redis_server.url, prefix, seed, start_at) for seed in range(PROCESSES)]
        )
    decisions = [d for part in results for d in part]
    sent = [d for d in decisions if d[4] == "sent"]
    assert len(decisions) == PROCESSES * PER_PROCESS
    assert 0 < len(sent) < len(decisions)  # the caps did bite, and offers did go out
    store = RedisCapStore(redis_server.url, prefix=prefix)
    for customer in CUSTOMERS:
        mine = [d for d in sent if d[1] == customer]
        held = {
            cap: store.slots(cap_key(customer, cap, scope))
            for cap, scope in [("hourly", ""), ("daily", ""), ("sms-3h", "sms")]
        }
        assert sorted(o for o, _ in held["hourly"]) == sorted(d[0] for d in mine)
        assert sorted(o for o, _ in held["sms-3h"]) == sorted(d[0] for d in mine if d[2] == "sms")
        for times in ([d[3] for d in mine], [t for _, t in held["hourly"]]):
            assert most_in_window(times, H) <= 2
            per_day = defaultdict(int)
            for t in times:
                per_day[t // (24 * H)] += 1
            assert max(per_day.values(), default=0) <= 5
        sms = [d[3] for d in mine if d[2] == "sms"]
        assert most_in_window(sms, 3 * H) <= 1
    store.close()
