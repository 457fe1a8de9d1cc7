"""Suppression from Redis sets in live mode: an operator's SADD/SREM applies to the next batch."""

from __future__ import annotations

from keymoment.policy import build_policy
from keymoment.state.redis_caps import RedisCapStore
from keymoment.state.redis_lists import RedisListStore
from tests.unit.test_policy_support import (
    T0,
    campaign,
    candidate,
    fixed_clock,
    profile,
    profiles,
    rules_file,
)


def test_redis_sets_suppress_without_restart_alongside_files(redis_server, tmp_path):
    """SADD to km-lists:list:blacklist suppresses at once, SREM releases; the file still counts."""
    dnc = tmp_path / "dnc.txt"
    dnc.write_text("FILE1\n")
    rules = rules_file(
        [campaign("a", lists=["blacklist"]), campaign("b")],
        lists={"do_not_contact": dnc, "blacklist": dnc},
    )
    store = RedisCapStore(redis_server.url, prefix="km-lists", lists=True)
    policy = build_policy(rules, store=store, clock=fixed_clock)
    operator = RedisListStore(redis_server.url, prefix="km-lists")
    profs = profiles(profile("R1"), profile("FILE1"))

    def outcome(rule: str, camp: str, customer: str, n: int) -> tuple[str, str | None]:
        d = policy.decide([candidate(rule, camp, customer, event_id=f"E{n}")], profs, T0)[0]
        return d.outcome, d.reason

    operator.add("blacklist", ["R1"])
    assert outcome("r-a", "a", "R1", 1) == ("suppressed", "blacklist")
    assert outcome("r-b", "b", "R1", 2) == ("sent", "admitted")  # b does not name the list
    operator.add("do_not_contact", ["R1"])
    assert outcome("r-b", "b", "R1", 3) == ("suppressed", "do_not_contact")
    operator.remove("do_not_contact", ["R1"])
    operator.remove("blacklist", ["R1"])
    assert outcome("r-a", "a", "R1", 4) == ("sent", "admitted")
    assert outcome("r-b", "b", "FILE1", 5) == ("suppressed", "do_not_contact")
    operator.close()
    store.close()


def test_unreachable_list_store_parks_instead_of_contacting(fresh_redis):
    """If suppression cannot be read, the candidate waits rather than risk contacting."""
    rules = rules_file([campaign("a")])
    store = RedisCapStore(fresh_redis.url, timeout=0.2, lists=True)
    policy = build_policy(rules, store=store, clock=fixed_clock, retry_interval=0)
    fresh_redis.kill()
    assert policy.decide([candidate("r-a", "a", "R1")], profiles(profile("R1")), T0) == []
    assert policy.pending == 1 and policy.counters["lists_connection_errors"] == 1
    fresh_redis.start()
    out = policy.retry_pending(T0)
    assert [(d.outcome, d.reason) for d in out] == [("sent", "admitted")]


def test_redis_sets_are_read_only_when_the_store_says_lists(redis_server):
    """Without `lists=True` Redis sets are not read, and the store then refuses to work
    beside one of the rules file's list names: an ignored do-not-contact set fails closed."""
    rules = rules_file([campaign("a")])
    store = RedisCapStore(redis_server.url, prefix="km-nolists")
    policy = build_policy(rules, store=store, clock=fixed_clock)
    assert not policy.suppression.remote
    out = policy.decide([candidate("r-a", "a", "N1")], profiles(profile("N1")), T0)
    assert [(d.outcome, d.reason) for d in out] == [("sent", "admitted")]  # no such set: fine
    operator = RedisListStore(redis_server.url, prefix="km-nolists2")
    operator.add("do_not_contact", ["N1"])
    store2 = RedisCapStore(redis_server.url, prefix="km-nolists2")
    policy2 = build_policy(rules, store=store2, clock=fixed_clock, retry_interval=0)
    assert policy2.decide([candidate("r-a", "a", "N1")], profiles(profile("N1")), T0) == []
    assert policy2.pending == 1 and policy2.counters["store_unread_lists"] == 1
    operator.remove("do_not_contact", ["N1"])  # the set is gone (SREM of the last member)
    out = policy2.retry_pending(T0)
    assert [(d.outcome, d.reason) for d in out] == [("sent", "admitted")]
    operator.close()
    store.close()
