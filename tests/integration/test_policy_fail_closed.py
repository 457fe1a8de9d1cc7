"""Fail closed: with Redis down, slow or restarted, nothing is sent without a reservation."""

from __future__ import annotations

import signal
from datetime import timedelta
from pathlib import Path

import orjson
import redis

from keymoment.policy import build_policy
from keymoment.state import cap_key
from keymoment.state.redis_caps import RedisCapStore
from tests.support.servers import free_port
from tests.unit.test_policy_support import (
    T0,
    campaign,
    candidate,
    fixed_clock,
    profile,
    profiles,
    rules_file,
)

EXAMPLE_RULES = Path(__file__).resolve().parents[2] / "examples" / "rules.yaml"
CAPS = [{"id": "daily", "scope": "customer", "limit": 2, "window": "day"}]


def policy_on(url: str, allow_empty: bool = False, **options):  # type: ignore[no-untyped-def]
    rules = rules_file([campaign("a", ttl="2h")], caps=CAPS)
    store = RedisCapStore(url, timeout=0.2, allow_empty=allow_empty)
    return build_policy(rules, store=store, clock=fixed_clock, lists=[], **options), store


def test_unreachable_redis_parks_then_expires_and_counts_errors():
    """No server: candidates wait (bounded), end expired/cap_store_unavailable, errors counted."""
    policy, _ = policy_on(f"redis://127.0.0.1:{free_port()}/0", max_pending=3, retry_interval=0)
    cands = [candidate("r-a", "a", f"C{i}") for i in range(5)]
    out = policy.decide(cands, profiles(*(profile(f"C{i}") for i in range(5))), T0)
    assert [(d.outcome, d.reason) for d in out] == [("expired", "pending_queue_full")] * 2
    assert policy.pending == 3
    assert policy.retry_pending(T0 + timedelta(hours=1)) == []
    late = policy.retry_pending(T0 + timedelta(hours=2, seconds=1))
    assert [(d.outcome, d.reason) for d in late] == [("expired", "cap_store_unavailable")] * 3
    counters = policy.counters
    assert policy.pending == 0 and counters["store_connection_errors"] >= 2
    assert counters["store_failures"] >= 2 and counters["expired_waiting"] == 3


def test_redis_killed_mid_run_and_restarted(fresh_redis):
    """Kill, keep deciding, restart: every candidate gets one outcome, every sent one a slot.

    The test server has no persistence, so it comes back empty: allow_empty says that is
    expected (test_cap_store_history.py shows the default, failing closed).
    """
    policy, store = policy_on(fresh_redis.url, allow_empty=True, retry_interval=0)
    customers = [f"C{i}" for i in range(6)]
    profs = profiles(*(profile(c) for c in customers))
    decisions, reserved = [], set()
    clock = T0

    def batch(n: int) -> list:  # type: ignore[type-arg]
        return [
            candidate("r-a", "a", customers[(n + i) % 6], clock, event_id=f"E{n}-{i}")
            for i in range(3)
        ]

    for n in range(4):  # Redis up
        decisions += policy.decide(batch(n), profs, clock)
    reserved |= {o for c in customers for o, _ in store.slots(cap_key(c, "daily", ""))}
    fresh_redis.kill()
    for n in range(4, 8):  # Redis down: everything parks
        clock += timedelta(minutes=30)
        decisions += policy.decide(batch(n), profs, clock)
    assert policy.pending == 12 and not [d for d in decisions if d.decided_at is None]
    fresh_redis.start()
    clock += timedelta(minutes=31)  # the first down batch is now 2h01m old: it has expired
    decisions += policy.retry_pending(clock)
    decisions += policy.decide(batch(8), profs, clock)
    reserved |= {o for c in customers for o, _ in store.slots(cap_key(c, "daily", ""))}

    assert policy.pending == 0
    assert sorted(d.candidate.event_id for d in decisions) == sorted(
        f"E{n}-{i}" for n in range(9) for i in range(3)
    )
    sent = [d for d in decisions if d.outcome == "sent"]
    assert sent and {d.offer_id for d in sent} <= reserved
    waited = [d for d in decisions if d.candidate.event_id.startswith("E4-")]
    assert {(d.outcome, d.reason) for d in waited} == {("expired", "cap_store_unavailable")}
    assert policy.counters["store_connection_errors"] >= 1
    assert store.counters["script_loads"] == 2  # NOSCRIPT after the restart reloaded it


def test_a_slow_redis_times_out_and_the_retry_takes_one_slot(redis_server):
    """A reservation that times out is parked; its retry does not take a second slot."""
    policy, store = policy_on(redis_server.url, retry_interval=0)
    store.prefix = "slow"
    c = candidate("r-a", "a", "S1")
    pauser = redis.Redis.from_url(redis_server.url)
    store.client.ping()
    pauser.execute_command("CLIENT", "PAUSE", 60_000, "WRITE")  # scripts wait until UNPAUSE
    assert policy.decide([c], profiles(profile("S1")), T0) == []
    assert policy.counters["store_timeouts"] == 1 and policy.pending == 1
    pauser.execute_command("CLIENT", "UNPAUSE")  # the pause ends (Redis 6.2+), no sleeping
    out = policy.retry_pending(T0 + timedelta(minutes=1))
    assert [(d.outcome, d.offer_id) for d in out] == [("sent", c.offer_id)]
    assert [o for o, _ in store.slots(cap_key("S1", "daily", ""))] == [c.offer_id]
    assert policy.pending == 0
    pauser.close()


def test_a_redis_that_refuses_writes_counts_as_unavailable(fresh_redis):
    """A READONLY reply (a replica after a failover) parks the candidate; it is sent later."""
    policy, store = policy_on(fresh_redis.url, retry_interval=0)
    admin = redis.Redis.from_url(fresh_redis.url)
    admin.replicaof("127.0.0.1", free_port())  # a replica of nobody: reads work, writes fail
    c = candidate("r-a", "a", "M1")
    assert policy.decide([c], profiles(profile("M1")), T0) == []
    assert policy.pending == 1 and policy.counters["store_errors"] == 1
    admin.replicaof("no", "one")
    out = policy.retry_pending(T0)
    assert [(d.outcome, d.reason) for d in out] == [("sent", "admitted")]
    admin.close()


def test_parked_candidates_survive_a_snapshot_and_restore(redis_server):
    """Work parked while Redis was down is carried by snapshot() into a restarted process."""
    import pickle

    down, _ = policy_on(f"redis://127.0.0.1:{free_port()}/0", retry_interval=0)
    c = candidate("r-a", "a", "P1")
    assert down.decide([c], profiles(profile("P1")), T0) == []
    snap = pickle.loads(pickle.dumps(down.snapshot()))
    up, store = policy_on(redis_server.url, retry_interval=0)
    store.prefix = "snap"
    up.restore(snap)
    assert up.pending == 1
    assert [(d.outcome, d.offer_id) for d in up.retry_pending(T0)] == [("sent", c.offer_id)]


def test_parked_batches_are_retried_in_one_round_trip_per_step_with_the_same_outcomes(
    fresh_redis,
):
    """Parked decide calls go back together (one pipeline), deciding as one-by-one would.

    Every call is screened while the store is down (the losers of arbitration are decided
    at once); only the winners' reservations park. The retry is one round trip, not four.
    """
    rules = rules_file(
        [campaign("a", ttl="2h"), campaign("b", ttl="2h", priority=5)],
        rules=[("r-a", "a"), ("r-b", "b")],
        caps=CAPS,
    )
    profs = profiles(*(profile(f"C{i}") for i in range(3)))
    batches = [
        [
            candidate(rule, rule[-1], f"C{(n + i) % 3}", T0, event_id=f"E{n}-{i}")
            for rule in ("r-a", "r-b")
            for i in range(2)
        ]
        for n in range(4)
    ]
    reference = build_policy(
        rules, store=RedisCapStore(fresh_redis.url, prefix="ref"), clock=fixed_clock, lists=[]
    )
    expected = [d for batch in batches for d in reference.decide(batch, profs, T0)]

    store = RedisCapStore(fresh_redis.url, prefix="parked", timeout=0.2)
    policy = build_policy(rules, store=store, clock=fixed_clock, lists=[], retry_interval=0)
    fresh_redis.kill()
    out = [d for batch in batches for d in policy.decide(batch, profs, T0)]
    assert {d.outcome for d in out} == {"arbitration_lost"} and policy.pending == 8
    fresh_redis.start()
    trips = store.counters["round_trips"]
    out += policy.retry_pending(T0)
    assert store.counters["round_trips"] - trips == 1 and policy.pending == 0
    assert sorted((d.offer_id, d.outcome, d.reason, d.channel) for d in out) == sorted(
        (d.offer_id, d.outcome, d.reason, d.channel) for d in expected
    )
    assert {d.outcome for d in out} == {"sent", "capped", "arbitration_lost"}


class FakeTime:
    """The policy's monotonic clock and its sleep: sleeping only moves the clock (and hooks)."""

    def __init__(self, on_sleep=None) -> None:  # type: ignore[no-untyped-def]
        self.now, self.slept, self.on_sleep = 0.0, 0, on_sleep

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += 1
        if self.on_sleep:
            self.on_sleep(self.slept)


def test_settle_at_end_of_input_leaves_no_candidate_undecided(fresh_redis):
    """A store that never comes back: settle() waits end_wait, then expires every parked one."""
    fake = FakeTime()
    policy, _ = policy_on(fresh_redis.url, monotonic=fake.monotonic, sleep=fake.sleep, end_wait=3)
    fresh_redis.kill()
    cands = [candidate("r-a", "a", f"C{i}", event_id=f"E{i}") for i in range(4)]
    assert policy.decide(cands, profiles(*(profile(f"C{i}") for i in range(4))), T0) == []
    out = policy.settle(T0)
    assert sorted(d.candidate.event_id for d in out) == ["E0", "E1", "E2", "E3"]
    assert {(d.outcome, d.reason) for d in out} == {("expired", "cap_store_unavailable")}
    assert policy.pending == 0 and policy.counters["expired_at_end"] == 4
    assert 3 <= fake.now < 4 and fake.slept >= 2  # it retried with backoff for end_wait seconds


def test_settle_sends_what_a_store_back_within_end_wait_can_take(fresh_redis):
    """Redis stopped at the end of input and continued during the wait: the candidates go out."""
    assert fresh_redis.proc is not None
    resume = lambda n: n == 2 and fresh_redis.proc.send_signal(signal.SIGCONT)  # noqa: E731
    fake = FakeTime(resume)
    policy, _ = policy_on(fresh_redis.url, monotonic=fake.monotonic, sleep=fake.sleep)
    fresh_redis.proc.send_signal(signal.SIGSTOP)
    c = candidate("r-a", "a", "W1")
    assert policy.decide([c], profiles(profile("W1")), T0) == []
    out = policy.settle(T0)
    assert [(d.outcome, d.offer_id) for d in out] == [("sent", c.offer_id)]
    assert policy.counters["expired_at_end"] == 0 and policy.counters["store_timeouts"] >= 1


def test_shards_of_one_process_share_one_end_of_input_wait(fresh_redis):
    """Eight shards facing a dead store wait end_wait once in all, not eight times."""
    from keymoment.policy.parking import EndWait

    fake, shared = FakeTime(), EndWait(3)
    fresh_redis.kill()
    policies = [
        policy_on(fresh_redis.url, monotonic=fake.monotonic, sleep=fake.sleep, end_wait=shared)[0]
        for _ in range(8)
    ]
    for n, policy in enumerate(policies):
        assert policy.decide([candidate("r-a", "a", f"C{n}")], profiles(profile(f"C{n}")), T0) == []
    out = [d for policy in policies for d in policy.settle(T0)]
    assert [(d.outcome, d.reason) for d in out] == [("expired", "cap_store_unavailable")] * 8
    assert 3 <= fake.now < 4


def test_a_wall_clock_shard_settles_parked_candidates_at_end_of_input(fresh_redis):
    """`finish` on the wall clock (a file source in a live run) leaves nothing parked."""
    from keymoment.flows.shard import Shard
    from keymoment.triggers.engine import Engine

    fake = FakeTime()
    policy, _ = policy_on(fresh_redis.url, monotonic=fake.monotonic, sleep=fake.sleep, end_wait=2)
    fresh_redis.kill()
    c = candidate("r-a", "a", "L1")
    assert policy.decide([c], profiles(profile("L1")), T0) == [] and policy.pending == 1
    shard = Shard(Engine(policy.rules), policy, profiles(profile("L1")), clock=lambda: T0)
    out = shard.finish(None)
    assert [(d.offer_id, d.outcome) for d in out.decisions] == [(c.offer_id, "expired")]
    assert policy.pending == 0


def test_run_end_wait_sets_how_long_the_end_of_input_waits_for_the_store(fresh_redis, tmp_path):
    """`keymoment run --end-wait S` on a store that answers PING but refuses every write (a
    replica of nobody): the candidates that need a slot end `expired / cap_store_unavailable`
    after S seconds of retries, not the default 10; `--end-wait 0` does not wait at all."""
    import subprocess
    import sys
    import time

    from keymoment.connectors.generator import Generator

    gen = Generator(seed=1, customers=2000, days=240, activity=0.3)
    events, customers = tmp_path / "events.jsonl", tmp_path / "customers.jsonl"
    events.write_bytes(b"\n".join(gen.iter_bytes(limit=600)) + b"\n")
    customers.write_bytes(b"".join(orjson.dumps(p) + b"\n" for p in gen.profiles()))
    admin = redis.Redis.from_url(fresh_redis.url)
    admin.replicaof("127.0.0.1", free_port())
    elapsed, outcomes = {}, {}
    for wait in ("0", "4"):
        log = tmp_path / f"decisions-{wait}.jsonl"
        started = time.monotonic()
        subprocess.run(
            [sys.executable, "-m", "keymoment", "run", "--rules", str(EXAMPLE_RULES),
             "--source", f"file:{events}", "--customers", f"file:{customers}",
             "--clock", "event", "--state", fresh_redis.url, "--end-wait", wait,
             "--decisions", f"file:{log}"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        elapsed[wait] = time.monotonic() - started
        records = [orjson.loads(line) for line in log.read_bytes().splitlines()]
        outcomes[wait] = {(r["outcome"], r["reason"]) for r in records}
    admin.close()
    assert elapsed["4"] >= 4 and elapsed["0"] < elapsed["4"] - 2
    for seen in outcomes.values():
        assert ("expired", "cap_store_unavailable") in seen
        assert not any(outcome == "sent" for outcome, _ in seen)
