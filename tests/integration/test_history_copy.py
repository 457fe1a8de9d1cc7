"""The read-only copy of a live cap store (`backtest --history`) on real Redis and a real Cluster.

The property: reservations split anywhere between a Redis store and the memory
copy of it decide exactly what the Redis store alone decides, key by key. And the
copy sends the server read commands only (its `INFO commandstats`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keymoment.state import CapStore, CapStoreUnavailable, Check, Reservation, cap_key
from keymoment.state.history_copy import GET, ZRANGE, _read, _scored, copy_history
from keymoment.state.redis_caps import RedisCapStore
from tests.contract.test_cap_store_contract import H, calendar, one, rolling
from tests.support.servers import RedisClusterServers

CUSTOMERS = ["C1", "C2", "a{b}c"]  # one id with braces: its keys hash by a digest
LEAD = "lead:{rm:R1}:rm_task"  # one RM's capacity, shared by every customer
READS = {"time", "scan", "zrange", "get", "pttl", "smembers", "hello", "ping", "info"}


def checks(customer: str, kinds: list[tuple[str, int]], slot: int) -> tuple[Check, ...]:
    made = []
    for kind, limit in kinds:
        if kind == "rolling":
            made.append(rolling(cap_key(customer, "week"), limit, 0, slot, "week"))
        elif kind == "calendar":
            made.append(calendar(cap_key(customer, "day"), limit, 0, slot, "day"))
        else:
            made.append(calendar(LEAD, limit, 0, slot, "capacity:rm_task"))
    return tuple(made)


def reservations(kinds: list[str]) -> st.SearchStrategy[list[Reservation]]:
    """Up to 25 reservations of three customers over 40 hours, each with some of `kinds`."""
    one_of = st.tuples(
        st.sampled_from(CUSTOMERS),
        st.integers(0, 5),  # offer number: a repeat is a replay of that offer
        st.integers(0, 40),  # slot hour
        st.lists(
            st.tuples(st.sampled_from(kinds), st.integers(0, 3)),
            max_size=3,
            unique_by=lambda c: c[0],
        ),
    )
    return st.lists(one_of, min_size=1, max_size=25).map(
        lambda items: [
            one(f"{c}-o{n}", h * H, *checks(c, ks, h * H), customer=c) for c, n, h, ks in items
        ]
    )


def keys_of(batch: list[Reservation]) -> set[str]:
    return {check.key for r in batch for o in r.options for check in o.checks}


def continue_on_both(source: RedisCapStore, batch: list[Reservation], split: int) -> None:
    """The first `split` on Redis, then the rest on Redis and on the copy: the same answers."""
    first = [source.reserve(r) for r in batch[:split]]
    copy = copy_history(source).store()
    for r, answer in zip(batch[:split], first, strict=True):
        if answer.reserved:  # the offer record was copied: asking again replays the answer
            again = copy.reserve(r)
            assert (again.index, again.tag, again.replayed) == (answer.index, answer.tag, True)
    both: list[CapStore] = [source, copy]
    answers = [[store.reserve(r) for r in batch[split:]] for store in both]
    assert answers[0] == answers[1]
    for key in keys_of(batch):
        assert source.slots(key) == copy.slots(key), key


@pytest.fixture(scope="module")
def store_on(redis_server) -> Iterator[RedisCapStore]:  # type: ignore[no-untyped-def]
    store = RedisCapStore(redis_server.url, prefix="unused", timeout=2.0)
    yield store
    store.close()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=reservations(["rolling", "calendar", "lead"]), data=st.data())
def test_a_copy_decides_what_the_live_store_decides(store_on: RedisCapStore, batch, data) -> None:
    split = data.draw(st.integers(0, len(batch)))
    source = RedisCapStore(store_on.url, prefix=f"h{uuid.uuid4().hex[:10]}", timeout=2.0)
    try:
        continue_on_both(source, batch, split)
    finally:
        source.close()


def test_the_copy_only_reads(redis_server) -> None:  # type: ignore[no-untyped-def]
    """TIME, SCAN, ZRANGE, GET, PTTL, SMEMBERS: nothing that writes, not even the marker."""
    source = RedisCapStore(redis_server.url, prefix=f"h{uuid.uuid4().hex[:10]}", lists=True)
    batch = [
        one(f"o{i}", i * H, *checks(c, [("rolling", 2), ("lead", 20)], i * H), customer=c)
        for i, c in enumerate(f"C{i % 4}" for i in range(30))
    ]
    sent = sum(source.reserve(r).reserved for r in batch)
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.sadd(f"{source.prefix}:list:do_not_contact", "C1")
    client.config_resetstat()
    copy = copy_history(source, ["do_not_contact", "vip"])
    used = {name.removeprefix("cmdstat_") for name in client.info("commandstats")}
    assert used - {"config"} <= READS, used - READS  # CONFIG: the RESETSTAT above
    held = {key: source.slots(key) for key in keys_of(batch)}
    assert 0 < sent < len(batch)  # some refused by the caps: only the others are recorded
    assert (copy.offers, copy.keys) == (sent, len(held))
    assert copy.slots == sum(len(slots) for slots in held.values())
    assert copy.lists == {"do_not_contact": frozenset({"C1"}), "vip": frozenset()}
    source.close()


@pytest.mark.parametrize("protocol", [2, 3])
def test_the_raw_reads_give_redis_pys_own_replies(redis_server, protocol: int) -> None:  # type: ignore[no-untyped-def]
    """The copy writes its ZRANGE, GET and PTTL as RESP itself (`_pipelined`): on either
    protocol (redis-py 5 speaks RESP2, 8 RESP3) it reads what redis-py's own calls read,
    for a key with non-ASCII characters, one with braces and an expiring one."""
    prefix = f"h{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(redis_server.url, decode_responses=True, protocol=protocol)
    zsets = {f"{prefix}:cap:{{Zoë}}:week:": {"o1": 1_767_225_600_123, "o2": 2},
             f"{prefix}:cap:{{a{{b}}c}}:day:": {"o3": 9_007_199_254_740_991}}  # fmt: skip
    for name, members in zsets.items():
        client.zadd(name, members)
    client.pexpire(next(iter(zsets)), 600_000)
    client.set(f"{prefix}:offer:{{Zoë}}:o1", "0|app_push|1767225600123.000")
    got = dict(_read(client, f"{prefix}:cap:*", "zset", ZRANGE))
    assert {n: _scored(reply) for n, (reply, _) in got.items()} == {
        n: [(int(s), m) for m, s in client.zrange(n, 0, -1, withscores=True)] for n in zsets
    }
    ttls = [got[n][1] for n in zsets]
    assert 590_000 < ttls[0] <= 600_000 and ttls[1] == -1  # the first expires, the other not
    offers = dict(_read(client, f"{prefix}:offer:*", "string", GET))
    assert offers == {f"{prefix}:offer:{{Zoë}}:o1": ("0|app_push|1767225600123.000", -1)}
    client.close()


def test_suppression_sets_need_lists_1(redis_server) -> None:  # type: ignore[no-untyped-def]
    """A server holding a list set the URL does not read is refused, as the live store is."""
    source = RedisCapStore(redis_server.url, prefix=f"h{uuid.uuid4().hex[:10]}")
    redis.Redis.from_url(redis_server.url).sadd(f"{source.prefix}:list:vip", "C9")
    with pytest.raises(CapStoreUnavailable, match="lists=1"):
        copy_history(source, ["do_not_contact", "vip"])
    assert copy_history(source, ["do_not_contact"]).lists == {}  # a set of another list
    source.close()


def test_a_prefix_is_copied_alone(redis_server) -> None:  # type: ignore[no-untyped-def]
    """Another prefix that starts the same (and glob characters in one) is not read."""
    url = redis_server.url
    base = f"h{uuid.uuid4().hex[:8]}"
    mine, theirs = RedisCapStore(url, prefix=f"{base}*"), RedisCapStore(url, prefix=f"{base}*x")
    theirs.reserve(one("o-theirs", 0, *checks("C1", [("rolling", 5)], 0), customer="C1"))
    mine.reserve(one("o-mine", 0, *checks("C1", [("rolling", 5)], 0), customer="C1"))
    copy = copy_history(mine)
    assert (copy.offers, copy.keys) == (1, 1)
    assert copy.store().slots("cap:{C1}:week:") == [("o-mine", 0)]


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterServers]:
    servers = RedisClusterServers().start()
    yield servers
    servers.stop()


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=reservations(["rolling", "calendar"]), data=st.data())  # lead keys: cross-slot
def test_a_copy_of_a_cluster_decides_what_the_cluster_decides(
    cluster: RedisClusterServers, batch, data
) -> None:
    """Keys on every node are found (SCAN per primary) and read through the Cluster client."""
    split = data.draw(st.integers(0, len(batch)))
    prefix = f"h{uuid.uuid4().hex[:10]}"
    source = RedisCapStore(cluster.url, prefix=prefix, timeout=2.0, cluster=True)
    try:
        continue_on_both(source, batch, split)
    finally:
        source.close()
