"""The cap store on a real 3-node Redis Cluster, for any customer id (issue 8, section 3).

The cluster is three redis-server processes in cluster mode joined with
`redis-cli --cluster create`, all from the same binaries as the other tests.
Every key of one reservation must hash to one slot, or a Cluster refuses the
script (CROSSSLOT); ids holding `{` or `}` used to break that.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.crc import key_slot

from keymoment.connectors.urls import cap_store_from_url
from keymoment.policy import build_policy
from keymoment.policy.planning import Planner
from keymoment.state import cap_key
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

CAPS = [
    {"id": "daily", "scope": "customer", "limit": 1, "window": "day"},
    {"id": "sms-week", "scope": "customer_channel", "limit": 3, "window": "7d"},
    {"id": "per-rule", "scope": "customer_rule", "limit": 2, "window": "30d"},
]
RULES = rules_file([campaign("a", channels=["sms", "app_push"])], caps=CAPS)
AWKWARD = ["}", "{", "{}", "}{", "a{b}c", "{x", "x}", "#plain", "{#abc}", "plain-7"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterServers]:
    servers = RedisClusterServers().start()
    yield servers
    servers.stop()


def reservation_keys(customer_id: str) -> list[str]:
    """Every key one reservation of this customer touches, with the store's prefix."""
    c = candidate("r-a", "a", customer_id)
    plan = Planner(RULES).plan(c, RULES.campaigns[0], profile(customer_id), T0)
    assert plan.reservation is not None
    store = RedisCapStore("redis://127.0.0.1:1/0", prefix="km")
    keys, _ = store._arguments(plan.reservation)
    return keys


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=64) | st.sampled_from(AWKWARD))
def test_every_key_of_a_reservation_is_in_one_slot(customer_id):
    """For any customer id, the offer record and every cap key share one Cluster slot."""
    keys = reservation_keys(customer_id)
    assert len(keys) >= 4 and len({key_slot(k.encode()) for k in keys}) == 1


def test_distinct_ids_never_share_a_key():
    """A digest-tagged id and a plain id (even one that looks like a digest) keep apart."""
    ids = [*AWKWARD, "#" + "0" * 32, "plain"]
    assert len({cap_key(i, "daily") for i in ids}) == len(ids)


def test_the_policy_reserves_on_a_cluster_for_awkward_ids(cluster):
    """Brace ids are sent once, then capped, on a real cluster; no CROSSSLOT, no error."""
    store = cap_store_from_url(cluster.url + "?cluster=1&prefix=kmc&timeout=1")
    policy = build_policy(RULES, store=store, clock=fixed_clock, lists=[])
    profs = profiles(*(profile(i) for i in AWKWARD))
    first = policy.decide([candidate("r-a", "a", i, event_id="E1") for i in AWKWARD], profs, T0)
    again = policy.decide([candidate("r-a", "a", i, event_id="E2") for i in AWKWARD], profs, T0)
    assert [(d.outcome, d.reason) for d in first] == [("sent", "admitted")] * len(AWKWARD)
    assert [(d.outcome, d.reason) for d in again] == [("capped", "daily")] * len(AWKWARD)
    replay = policy.decide([first[0].candidate], profs, T0)
    assert [(d.outcome, d.reason) for d in replay] == [("sent", "already_reserved")]
    for d in first:
        assert [o for o, _ in store.slots(cap_key(d.candidate.customer_id, "daily"))] == [
            d.offer_id
        ]
    assert policy.counters["store_errors"] == 0


def test_customers_spread_over_all_three_nodes(cluster):
    """The tags really shard: 60 customers' keys land on every primary of the cluster."""
    store = cap_store_from_url(cluster.url + "?cluster=1&prefix=spread")
    policy = build_policy(RULES, store=store, clock=fixed_clock, lists=[])
    ids = [f"S{i}" for i in range(57)] + ["}", "{", "a{b}c"]
    out = policy.decide([candidate("r-a", "a", i) for i in ids], profiles(*map(profile, ids)), T0)
    assert {d.outcome for d in out} == {"sent"}
    counts = [int(s.cli("DBSIZE").strip() or 0) for s in cluster.servers]
    assert all(n > 0 for n in counts), counts


def test_redis_held_lists_work_on_a_cluster(cluster):
    """`?cluster=1&lists=1`: a set on the cluster suppresses, beside reservations on other nodes."""
    from keymoment.state.redis_lists import RedisListStore

    store = cap_store_from_url(cluster.url + "?cluster=1&lists=1&prefix=kml")
    operator = RedisListStore(cluster.url, prefix="kml", client=store.client)  # type: ignore[attr-defined]
    operator.add("do_not_contact", ["}", "L2"])
    policy = build_policy(RULES, store=store, clock=fixed_clock)
    ids = ["}", "L2", "L3", "{"]
    out = policy.decide([candidate("r-a", "a", i) for i in ids], profiles(*map(profile, ids)), T0)
    assert [(d.outcome, d.reason) for d in out] == [
        ("suppressed", "do_not_contact"),
        ("suppressed", "do_not_contact"),
        ("sent", "admitted"),
        ("sent", "admitted"),
    ]
    assert policy.counters["lists_errors"] == 0


def test_a_stale_slot_map_is_followed_not_failed(cluster):
    """Each node gets its own customers' reservations in one plain pipeline; when the client's
    slot map is stale (a failover, a resharding), the node answers MOVED and the batch goes
    again through the Cluster pipeline, which follows the redirect: same decisions, no error."""
    store = cap_store_from_url(cluster.url + "?cluster=1&prefix=stale")
    policy = build_policy(RULES, store=store, clock=fixed_clock, lists=[])
    ids = [f"M{i}" for i in range(30)]
    profs = profiles(*map(profile, ids))
    client = store.client  # type: ignore[attr-defined]
    owners = {}
    for i in ids[:10]:  # point these customers' slots at a node that does not own them
        key = f"stale:{cap_key(i, 'daily')}"
        owners[key] = client.get_node_from_key(key).name
        wrong = [n for n in client.get_primaries() if n.name != owners[key]][:1]
        client.nodes_manager.slots_cache[client.keyslot(key)] = wrong
    assert all(client.get_node_from_key(key).name != owner for key, owner in owners.items())
    out = policy.decide([candidate("r-a", "a", i, event_id="E1") for i in ids], profs, T0)
    assert [(d.outcome, d.reason) for d in out] == [("sent", "admitted")] * len(ids)
    assert all(client.get_node_from_key(key).name == owner for key, owner in owners.items())
    again = policy.decide([candidate("r-a", "a", i, event_id="E2") for i in ids], profs, T0)
    assert [(d.outcome, d.reason) for d in again] == [("capped", "daily")] * len(ids)
    assert policy.counters["store_errors"] == 0
