"""Several OS processes handing leads to the same RMs against one real Redis: capacity holds."""

from __future__ import annotations

import multiprocessing
import random
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

from keymoment.policy import build_policy
from keymoment.state.redis_caps import RedisCapStore
from keymoment.triggers.events import CustomerProfile
from tests.unit.test_policy_support import campaign, candidate, fixed_clock, rules_file

MONDAY_10 = datetime(2026, 3, 2, 10, tzinfo=UTC)
LIMIT, RMS, PROCESSES, PER_PROCESS = 5, ["R1", "R2", "R3"], 4, 60


def rules():  # type: ignore[no-untyped-def]
    rm_task = {
        "human": True,
        "capacity": {"per": "rm", "limit": LIMIT, "window": "day"},
        "working_hours": "09:00-18:00",
    }
    return rules_file(
        [campaign("lead", channels=["rm_task"], ttl="4h", max_delay="4h")],
        channels={"rm_task": rm_task},
    )


def worker(args: tuple[str, str, int, float]) -> list[tuple[str, str | None, str, str | None]]:
    """One process, its own policy: leads for customers of three RMs, all inside one working day."""
    url, prefix, seed, start_at = args
    rng = random.Random(seed)
    store = RedisCapStore(url, prefix=prefix, timeout=5.0)
    policy = build_policy(rules(), store=store, clock=fixed_clock)
    out = []
    cands = []
    profs = {}
    for i in range(PER_PROCESS):
        cid = f"P{seed}-C{i}"
        profs[cid] = CustomerProfile(
            customer_id=cid, consent={"rm_task": True}, rm_id=rng.choice(RMS)
        )
        at = MONDAY_10 + timedelta(minutes=rng.randrange(300))
        cands.append(candidate("r-lead", "lead", cid, at))
    cands.sort(key=lambda c: c.triggered_at)
    store.client.ping()
    time.sleep(max(start_at - time.time(), 0))
    for c in cands:
        for d in policy.decide([c], profs, c.triggered_at):
            rm = profs[d.candidate.customer_id].rm_id
            day = d.send_at.date().isoformat() if d.send_at else None
            out.append((d.offer_id, rm, d.outcome, day))
    store.close()
    return out


def test_no_rm_gets_more_leads_than_its_capacity_under_concurrent_reservers(redis_server):
    """4 processes x 60 leads for 3 RMs with capacity 5: exactly 5 per RM are sent, Redis agrees."""
    prefix = "capacity-race"
    with multiprocessing.get_context("spawn").Pool(PROCESSES) as pool:
        start_at = time.time() + 5
        parts = pool.map(
            worker, [(redis_server.url, prefix, s, start_at) for s in range(PROCESSES)]
        )
    decisions = [d for part in parts for d in part]
    sent = [d for d in decisions if d[2] == "sent"]
    assert len(decisions) == PROCESSES * PER_PROCESS  # ttl 4h: nobody waits for another day
    assert Counter(d[1] for d in sent) == {rm: LIMIT for rm in RMS}
    assert Counter(d[2] for d in decisions)["capped"] == len(decisions) - LIMIT * len(RMS)
    store = RedisCapStore(redis_server.url, prefix=prefix)
    for rm in RMS:
        held = sorted(o for o, _ in store.slots(f"lead:{{rm:{rm}}}:rm_task"))
        assert held == sorted(d[0] for d in sent if d[1] == rm)
    store.close()
