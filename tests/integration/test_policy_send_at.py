"""`send_at` keeps full precision and is never before `triggered_at` (issue 8, section 3).

The cap store counts slots in whole milliseconds; the decision log and the offer
must still say the exact microsecond the offer may go, first time and on a replay.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keymoment.policy import build_policy
from keymoment.state import MemoryCapStore
from keymoment.state.redis_caps import RedisCapStore
from tests.unit.test_policy_support import (
    T0,
    campaign,
    candidate,
    fixed_clock,
    profile,
    profiles,
    rules_file,
)

RULES = rules_file(
    [campaign("a", channels=["sms", "app_push"])],
    caps=[{"id": "daily", "scope": "customer", "limit": 5, "window": "day"}],
    channels={"sms": {"send_hours": "08:00-21:00"}},
)


@settings(max_examples=200, deadline=None)
@given(
    us=st.integers(0, 999_999),
    lag_us=st.integers(0, 3_600_000_000),
    hour=st.integers(0, 23),
)
def test_send_at_is_never_before_triggered_at(us, lag_us, hour):
    """Any sub-ms triggered_at, any decision lag, deferred or not: send_at >= triggered_at."""
    policy = build_policy(RULES, store=MemoryCapStore(), clock=fixed_clock, lists=[])
    at = T0.replace(hour=hour, microsecond=us)
    c = candidate("r-a", "a", "P1", at)
    clock_at = at + timedelta(microseconds=lag_us)
    (d,) = policy.decide([c], profiles(profile("P1")), clock_at)
    assert d.outcome == "sent" and d.send_at is not None
    assert d.send_at >= c.triggered_at and d.send_at >= clock_at
    if d.reason == "admitted":  # not deferred: it may go the moment it was decided
        assert d.send_at == max(c.triggered_at, clock_at)
    offer = d.offer()  # what the gateway reads says the same, to the microsecond
    assert datetime.fromisoformat(offer["send_at"]) == d.send_at >= c.triggered_at


@pytest.fixture(params=["memory", "redis"])
def store(request, redis_server):  # type: ignore[no-untyped-def]
    if request.param == "memory":
        return MemoryCapStore()
    return RedisCapStore(redis_server.url, prefix=f"sendat-{id(request)}")


def test_a_replayed_reservation_says_the_same_exact_send_at(store):
    """A second decision of one offer (already_reserved) has the first send_at, to the us."""
    at = T0.replace(microsecond=123_999)
    c = candidate("r-a", "a", "P2", at)
    first = build_policy(RULES, store=store, clock=fixed_clock, lists=[])
    again = build_policy(RULES, store=store, clock=fixed_clock, lists=[])
    (one,) = first.decide([c], profiles(profile("P2")), at)
    (two,) = again.decide([c], profiles(profile("P2")), at + timedelta(minutes=1))
    assert (one.reason, two.reason) == ("admitted", "already_reserved")
    assert one.send_at == two.send_at == at
    assert one.log_record()["send_at"] == "2026-03-02T12:00:00.123999Z"
