"""An outage changes only the outcomes that need a cap slot (issue 8, section 1).

The same candidate stream is decided twice by the policy over a real Redis: once
fault-free, once with the server SIGKILLed (then restarted) and SIGSTOPped (then
continued) part-way. Candidate by candidate, every outcome that needs no store
(`control`, `suppressed`, `arbitration_lost`, `no_channel`, `expired` by ttl or
max_delay) is identical; only would-be-reserved ones (`sent`, `capped`) may
become `expired / cap_store_unavailable`. Time is injected: the engine clock is
an argument and the policy's monotonic clock (its backoff) is a counter.
"""

from __future__ import annotations

import signal
from datetime import timedelta
from pathlib import Path

from keymoment.policy import build_policy
from keymoment.policy.decision import Decision
from keymoment.state.redis_caps import RedisCapStore
from tests.support.servers import RedisServer
from tests.unit.test_policy_support import (
    T0,
    campaign,
    candidate,
    fixed_clock,
    profile,
    profiles,
    rules_file,
)

NEEDS_NO_STORE = {"control", "suppressed", "arbitration_lost", "no_channel"}
STEP = timedelta(minutes=10)
BATCHES = 72  # 12:00 to 24:00 UTC


def outage_rules(tmp: Path):  # type: ignore[no-untyped-def]
    (tmp / "dnc.txt").write_text("C3\n")
    (tmp / "black.txt").write_text("C5\nC11\n")
    return rules_file(
        [
            campaign("a", ttl="2h", holdout=0.3, priority=10, lists=["black"]),
            campaign("b", ttl="2h", priority=5),
            campaign("q", ttl="2h", max_delay="1h", channels=["call_center", "sms"]),
        ],
        rules=[("r-a", "a"), ("r-b", "b"), ("r-q", "q")],
        caps=[{"id": "daily", "scope": "customer", "limit": 2, "window": "day"}],
        channels={
            "call_center": {"send_hours": "13:00-17:00"},
            "sms": {"send_hours": "12:00-20:00"},
        },
        lists={"do_not_contact": tmp / "dnc.txt", "black": tmp / "black.txt"},
    )


def customer_profiles():  # type: ignore[no-untyped-def]
    """C0..C19: C7 has no reference data, C8 consents to nothing, C9 only to sms."""
    items = [profile(f"C{i}") for i in range(20) if i not in (7, 8, 9)]
    items += [profile("C8", consent=()), profile("C9", consent=("sms",))]
    return profiles(*(p for p in items))


def batch(n: int):  # type: ignore[no-untyped-def]
    """An event where a and b compete, a timer candidate of q, and one stale candidate."""
    at = T0 + n * STEP
    one, two = f"C{n % 20}", f"C{(3 * n + 1) % 20}"
    return at, [
        candidate("r-a", "a", one, at, event_id=f"E{n}"),
        candidate("r-b", "b", one, at, event_id=f"E{n}"),
        candidate("r-q", "q", two, at, timer=True),
        candidate("r-b", "b", f"C{(n + 5) % 20}", at - timedelta(hours=3), event_id=f"S{n}"),
    ]


class Ticks:
    """The policy's monotonic clock: one second per batch, so its backoff is deterministic."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def decide_all(server: RedisServer, tmp: Path, prefix: str, fault=None) -> dict[str, Decision]:  # type: ignore[no-untyped-def]
    ticks = Ticks()
    store = RedisCapStore(server.url, prefix=prefix, timeout=0.2)
    policy = build_policy(outage_rules(tmp), store=store, clock=fixed_clock, monotonic=ticks)
    profs, out = customer_profiles(), []
    for n in range(BATCHES):
        if fault:
            fault(n, server)
        ticks.now += 1.0
        at, cands = batch(n)
        out += policy.retry_pending(at) + policy.decide(cands, profs, at)
    ticks.now += 10.0
    out += policy.retry_pending(T0 + BATCHES * STEP + timedelta(hours=3))
    assert policy.pending == 0
    decided = {d.offer_id: d for d in out}
    assert len(decided) == len(out)  # each candidate decided once
    return decided


def kill_then_pause(n: int, server: RedisServer) -> None:
    """SIGKILL at batch 12, restart at 30; SIGSTOP at 45, SIGCONT at 52."""
    assert server.proc is not None
    if n == 12:
        server.kill()
    elif n == 30:
        server.start()
    elif n == 45:
        server.proc.send_signal(signal.SIGSTOP)
    elif n == 52:
        server.proc.send_signal(signal.SIGCONT)


def test_outcomes_that_need_no_slot_survive_kill_and_pause(redis_server, fresh_redis, tmp_path):
    """Candidate by candidate: only sent/capped ones may turn into expired/cap_store_unavailable."""
    reference = decide_all(redis_server, tmp_path, "ref")
    outage = decide_all(fresh_redis, tmp_path, "outage", kill_then_pause)
    assert set(outage) == set(reference)
    changed = 0
    for offer_id, want in reference.items():
        got = outage[offer_id]
        same = (got.outcome, got.reason, got.channel, got.send_at)
        if want.outcome in NEEDS_NO_STORE or want.outcome == "expired":
            assert same == (want.outcome, want.reason, want.channel, want.send_at), offer_id
        elif (got.outcome, got.reason) == ("expired", "cap_store_unavailable"):
            changed += 1
        else:
            assert got.outcome in ("sent", "capped"), (offer_id, got.outcome, got.reason)
    by_outcome = {o: sum(d.outcome == o for d in reference.values()) for o in NEEDS_NO_STORE}
    assert all(by_outcome.values()), by_outcome  # every protected outcome occurs
    reasons = {(d.outcome, d.reason) for d in reference.values()}
    assert {("expired", "ttl"), ("expired", "max_delay"), ("capped", "daily")} <= reasons
    assert changed >= 10  # the outage really cost would-be-sent offers
