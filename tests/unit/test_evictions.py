"""Eviction checks waiting by the hour (triggers/evictions.py) evict exactly when the heap did.

Property: after every event and every watermark move, the engine holds exactly
the customers whose newest event (since they were last evicted) plus the
horizon is after the watermark, and the candidates do not depend on how long
an "hour" of waiting checks is: one microsecond (every check a heap entry of
its own at once, as before the hours existed), an hour, or a thousand days.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st
from test_triggers_support import app, at, ruleset

from keymoment.triggers import evictions
from keymoment.triggers.candidate import Candidate
from keymoment.triggers.engine import Engine

RULES = ruleset(
    {"rule_id": "dorm", "trigger": "dormancy", "inactive": "2d"},
    {
        "rule_id": "wealth",
        "trigger": "window_threshold",
        "filter": {"type": "app", "action": "page_view", "product": "wealth"},
        "window": "6h",
        "value": 2,
    },
)

# (customer, minutes after the previous step, page view or login, advance only)
steps = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        st.integers(0, 4 * 24 * 60),
        st.booleans(),
        st.booleans(),
    ),
    max_size=40,
)


def replay(plan: list[tuple[str, int, bool, bool]], hour: timedelta) -> list[Candidate]:
    """The candidates of `plan`, checking what the engine holds after every step."""
    engine, last, now, out = Engine(RULES), {}, at(0), []
    with mock.patch.object(evictions, "HOUR", hour):
        for n, (customer, minutes, viewed, only_advance) in enumerate(plan):
            now += timedelta(minutes=minutes)
            if only_advance:
                out += engine.advance(now)
            else:
                kind = ("page_view", "wealth") if viewed else ("login", None)
                out += engine.feed(app(f"e{n}", now, *kind, customer=customer)).candidates
                last[customer] = now
            assert set(engine.customers) == held(last, engine.horizon, engine.watermark)
    return out


def held(last: dict[str, datetime], horizon: timedelta, watermark: datetime | None) -> set[str]:
    """Forget (in `last` too) the customers whose horizon the watermark reached."""
    for customer in [c for c, t in last.items() if watermark and t + horizon <= watermark]:
        del last[customer]
    return set(last)


@settings(max_examples=150, deadline=None)
@given(steps)
def test_eviction_is_exact_whatever_the_hour(plan):
    base = replay(plan, timedelta(microseconds=1))
    assert replay(plan, timedelta(hours=1)) == base
    assert replay(plan, timedelta(days=1000)) == base


def test_a_far_check_is_no_heap_entry_until_its_hour():
    """A new customer costs a list slot, not a heap entry: the heap holds one marker per hour."""
    engine = Engine(RULES)
    for n in range(50):
        engine.feed(app(f"e{n}", at(0, seconds=n), customer=f"c{n}"))
    assert engine.pending_timers() == 50 + 1  # the dormancy timers and one marker
    engine.advance(at(2))  # the hour of the checks began; none is due yet
    assert len(engine._evictions) == 0 and len(engine.customers) == 50
    assert engine.pending_timers() == 49 + 50  # c0's dormancy fired; the checks entered the heap
