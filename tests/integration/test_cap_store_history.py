"""A cap-store Redis that restarts empty is noticed, and nothing is sent (issue 8, section 3).

Real redis-server processes without persistence: killing and restarting one
is exactly "a Redis that restarts empty". Before the marker, the policy sent
offers again as if nobody had been contacted.
"""

from __future__ import annotations

import logging
import pickle

import pytest
import redis

from keymoment.connectors.urls import cap_store_from_url
from keymoment.policy import build_policy
from keymoment.state.history import HistoryLost
from keymoment.state.redis_caps import RedisCapStore
from tests.support.servers import RedisClusterServers
from tests.unit.test_policy_support import (
    T0,
    campaign,
    candidate,
    fixed_clock,
    profile,
    profiles,
    rules_file,
)

CAPS = [{"id": "daily", "scope": "customer", "limit": 1, "window": "day"}]
RULES = rules_file([campaign("a")], caps=CAPS)
PROFS = profiles(profile("H1"))


def policy_over(store: RedisCapStore):  # type: ignore[no-untyped-def]
    return build_policy(RULES, store=store, clock=fixed_clock, lists=[], retry_interval=0)


def outcome(policy, n: int) -> list[tuple[str, str | None]]:  # type: ignore[no-untyped-def]
    out = policy.decide([candidate("r-a", "a", "H1", event_id=f"E{n}")], PROFS, T0)
    return [(d.outcome, d.reason) for d in out]


def test_a_redis_restarted_empty_fails_closed_with_a_clear_error(fresh_redis, caplog):
    """Sent, capped; Redis restarts empty; the next candidate waits instead of being sent."""
    store = cap_store_from_url(fresh_redis.url + "?timeout=0.3")
    policy = policy_over(store)  # type: ignore[arg-type]
    assert outcome(policy, 1) == [("sent", "admitted")]
    assert outcome(policy, 2) == [("capped", "daily")]
    fresh_redis.kill()
    fresh_redis.start()
    with caplog.at_level(logging.ERROR, logger="keymoment.state.history"):
        assert outcome(policy, 3) == []  # the connection error; parked
        assert outcome(policy, 4) == []  # the marker is gone: parked, not sent
    assert policy.pending == 2 and policy.counters["store_history_lost"] >= 1
    assert "lost its contact history" in caplog.text and "allow_empty=1" in caplog.text
    with pytest.raises(HistoryLost, match="lost its contact history"):
        store.history.verify()  # type: ignore[union-attr]


def test_allow_empty_starts_a_new_history_and_others_still_fail_closed(fresh_redis):
    """With ?allow_empty=1 the store starts anew; a process not told so keeps failing closed."""
    told = policy_over(cap_store_from_url(fresh_redis.url + "?allow_empty=1"))  # type: ignore[arg-type]
    other = policy_over(cap_store_from_url(fresh_redis.url + "?prefix=km"))  # type: ignore[arg-type]
    assert outcome(told, 1) == [("sent", "admitted")]
    assert outcome(other, 2) == [("capped", "daily")]  # one history, shared
    fresh_redis.kill()
    fresh_redis.start()
    got = outcome(told, 3) + outcome(told, 4)  # E3 waits out a connection error, or not
    assert sorted(got) == [("capped", "daily"), ("sent", "admitted")]  # a new history
    assert told.counters["store_history_resets"] == 1
    assert outcome(other, 5) == [] and outcome(other, 6) == []
    assert other.counters["store_history_lost"] >= 1


def test_a_dropped_connection_to_a_server_that_kept_its_data_is_not_a_loss(fresh_redis):
    """CLIENT KILL breaks the connection, the data stays: the marker matches, sending goes on."""
    policy = policy_over(RedisCapStore(fresh_redis.url))
    assert outcome(policy, 1) == [("sent", "admitted")]
    admin = redis.Redis.from_url(fresh_redis.url)
    admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    results = outcome(policy, 2) + outcome(policy, 3)
    assert results[-1] == ("capped", "daily")
    assert policy.counters["store_history_lost"] == 0 and policy.pending == 0
    admin.close()


def test_a_process_resumed_from_its_snapshot_notices_the_empty_store(fresh_redis):
    """The history token travels in the policy snapshot (Bytewax recovery)."""
    first = policy_over(RedisCapStore(fresh_redis.url))
    assert outcome(first, 1) == [("sent", "admitted")]
    snap = pickle.loads(pickle.dumps(first.snapshot()))
    fresh_redis.kill()
    fresh_redis.start()
    resumed = policy_over(RedisCapStore(fresh_redis.url))
    resumed.restore(snap)
    assert outcome(resumed, 2) == []
    assert resumed.counters["store_history_lost"] == 1
    fresh = policy_over(RedisCapStore(fresh_redis.url, prefix="km"))
    assert outcome(fresh, 3) == [("sent", "admitted")]  # no snapshot: accepted as found


def test_on_a_cluster_a_node_that_restarts_empty_is_noticed():
    """One marker per primary: any node restarted empty (same slots, no data) fails closed."""
    cluster = RedisClusterServers().start()
    try:
        store = cap_store_from_url(cluster.url + "?cluster=1&timeout=0.5")
        policy = policy_over(store)  # type: ignore[arg-type]
        assert outcome(policy, 1) == [("sent", "admitted")]
        assert len(store.history.keys()) == 3  # type: ignore[union-attr]
        victim = cluster.servers[1]  # not the node the client was given
        victim.kill()
        victim.start(cluster=True)  # its nodes.conf brings it back with its slots, empty
        cluster.wait_ok()
        for n in range(2, 6):  # a connection error or a refused reservation, never a send
            assert outcome(policy, n) == []
        assert policy.counters["store_history_lost"] >= 1
    finally:
        cluster.stop()
