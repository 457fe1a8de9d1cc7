"""The engine around the triggers: dedupe, the watermark, timer order, eviction, lateness,
snapshots (docs/semantics.md sections 1-3)."""

from __future__ import annotations

import pickle

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_triggers_support import app, at, brief, ruleset, run, tx

from keymoment.triggers.engine import Engine

DORM = {"rule_id": "dorm", "trigger": "dormancy"}
LOAN = {
    "rule_id": "loan",
    "trigger": "absence",
    "within": "30m",
    "start": {"type": "app", "action": "apply_start", "product": "loan"},
    "cancel": {"type": "app", "action": "apply_submit", "product": "loan"},
}
BIG = {"rule_id": "big", "trigger": "large_deposit"}
WEALTH = {
    "rule_id": "wealth",
    "trigger": "window_threshold",
    "filter": {"type": "app", "action": "page_view", "product": "wealth"},
    "window": "24h",
    "value": 3,
}


# -- dedupe --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("later", "duplicate"),
    [(at(hours=23, minutes=59), True), (at(hours=24), True), (at(hours=24, seconds=1), False)],
)
def test_repeat_of_an_event_id_within_24h_is_a_duplicate(later, duplicate):
    """Same customer, same id, |dt| <= dedupe_window: dropped; beyond it: a new event."""
    engine = Engine(ruleset(BIG))
    assert engine.feed(tx("x", at(0), "60000"), None).duplicate is False
    fed = engine.feed(tx("x", later, "60000"), None)
    assert fed.duplicate is duplicate
    assert [c.event_id for c in fed.candidates] == ([] if duplicate else ["x"])


def _kept(seen: object, last_seen_at: object) -> dict[object, object]:
    """`CustomerState.seen` in any of its shapes as {event id: occurred_at}."""
    if seen is None:
        return {}
    if isinstance(seen, str):
        return {seen: last_seen_at}
    if isinstance(seen, tuple):
        return {seen[0]: seen[1]}
    assert isinstance(seen, dict)
    return dict(seen)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b"]),
            st.sampled_from(["x", "y", "z"]),
            st.sampled_from([0, 1, 12, 23, 24, 25, 40]),
        ),
        max_size=40,
    )
)
def test_a_repeat_is_an_id_the_customer_sent_at_most_the_window_ago(steps):
    """In-order streams: a duplicate exactly when the same customer's same id was taken at
    most 24 h before, and the id memory holds exactly the ids taken at most 24 h before
    the customer's newest taken event (every shape of `CustomerState.seen`)."""
    engine = Engine(ruleset(BIG))
    window = engine.dedupe_window
    taken: dict[str, dict[str, object]] = {"a": {}, "b": {}}  # customer -> id -> last taken
    hours = 0
    for customer, event_id, step in steps:
        hours += step
        when = at(hours=hours)
        last = taken[customer].get(event_id)
        expected = last is not None and when - last <= window  # type: ignore[operator]
        fed = engine.feed(tx(event_id, when, "60000", customer=customer), None)
        assert fed.duplicate is expected
        if not expected:
            taken[customer][event_id] = when
        state = engine.customers.get(customer)
        if state is not None:
            newest = max(taken[customer].values())  # type: ignore[type-var]
            assert _kept(state.seen, state.last_seen_at) == {
                i: t
                for i, t in taken[customer].items()
                if newest - t <= window  # type: ignore[operator]
            }


def test_duplicate_is_per_customer():
    """The same event id for another customer is a different event."""
    engine = Engine(ruleset(BIG))
    first = engine.feed(tx("x", at(0), "60000", customer="a"), None)
    second = engine.feed(tx("x", at(0), "60000", customer="b"), None)
    assert (first.duplicate, second.duplicate) == (False, False)
    assert [c.customer_id for c in first.candidates + second.candidates] == ["a", "b"]


def test_duplicate_leaves_rule_state_untouched():
    """A dropped repeat neither counts in a window nor arms a timer."""
    events = [app("v", at(hours=h), "page_view", "wealth") for h in (0, 1, 2)]
    assert run(ruleset(WEALTH), events) == []


# -- timers and the watermark ----------------------------------------------------


def test_timers_fire_in_deadline_order_across_customers_before_the_event():
    """An event far ahead fires every due timer first, earliest deadline first."""
    events = [
        app("sb", at(minutes=5), "apply_start", "loan", customer="b"),
        app("sa", at(minutes=10), "apply_start", "loan", customer="a"),
        app("sc", at(minutes=1), "apply_start", "loan", customer="c"),
        app("late", at(hours=5), "apply_start", "loan", customer="d"),
    ]
    engine = Engine(ruleset(LOAN))
    fed = [engine.feed(e, None) for e in events]
    assert [(c.customer_id, c.triggered_at) for c in fed[3].candidates] == [
        ("c", at(minutes=31)),
        ("b", at(minutes=35)),
        ("a", at(minutes=40)),
    ]
    assert all(f.candidates == [] for f in fed[:3])


def test_timer_fires_once_however_far_the_watermark_moves():
    """Advancing repeatedly past a deadline produces the candidate once."""
    engine = Engine(ruleset(LOAN))
    engine.feed(app("s", at(0), "apply_start", "loan"), None)
    fired = [c for t in (at(minutes=30), at(minutes=31), at(2)) for c in engine.advance(t)]
    assert [c.event_id for c in fired] == ["s"]


def test_watermark_never_moves_back():
    """An earlier watermark is ignored; a timer does not fire again or early."""
    engine = Engine(ruleset(LOAN))
    engine.feed(app("s", at(1), "apply_start", "loan"), None)
    assert engine.advance(at(0)) == []
    assert engine.watermark == at(1)


def test_heap_does_not_grow_with_events_of_a_busy_customer():
    """Dormancy re-arms lazily: a thousand logins leave O(1) heap entries, not a thousand."""
    engine = Engine(ruleset(DORM))
    for i in range(1000):
        engine.feed(app(f"l{i}", at(minutes=i)), None)
    assert engine.pending_timers() <= 3


def test_next_deadline_tells_a_live_driver_when_to_wake():
    """next_deadline is the earliest armed deadline; None with no entries at all."""
    engine = Engine(ruleset(LOAN))
    assert engine.next_deadline() is None
    engine.feed(app("s", at(0), "apply_start", "loan"), None)
    assert engine.next_deadline() == at(minutes=30)


def test_timer_candidates_have_deadline_ids_and_offer_keys():
    """A timer's offer key is `arming event_id@deadline`, so offer ids are stable per deadline."""
    got = run(ruleset(LOAN), [app("s", at(0), "apply_start", "loan")], until=at(1))
    assert got[0].timer and got[0].offer_key == f"s@{at(minutes=30).isoformat()}"
    assert len(got[0].offer_id) == 32


def test_late_event_arming_a_timer_in_the_past_fires_it_in_the_same_call():
    """A timer a late event arms before the watermark fires at once, with its own deadline.

    Checked for each timer rule on its own: `evaluate` looks at the heap after an
    event only when an entry may be due (`Engine._due_now`), so a missed flag shows here.
    """
    engine = Engine(ruleset(DORM, LOAN))
    engine.feed(app("known", at(50), "logout"), None)  # c1 is kept until day 140
    engine.feed(app("ahead", at(95), "logout", customer="b"), None)  # the watermark: day 95
    fed = engine.feed(app("s", at(2), "apply_start", "loan"), None)  # 93 days late
    assert [(c.rule_id, c.triggered_at, c.event_id) for c in fed.candidates] == [
        ("loan", at(2, minutes=30), "s"),
        ("dorm", at(92), "s"),
    ]
    assert engine.advance(at(96)) == []


# -- eviction ------------------------------------------------------------------


def test_quiet_customer_with_nothing_pending_holds_no_state_after_the_horizon():
    """A window-only rule set forgets a customer once its 24h window (and dedupe) has passed."""
    engine = Engine(ruleset(WEALTH))
    engine.feed(app("v", at(0), "page_view", "wealth"), None)
    engine.advance(at(hours=23))
    assert "c1" in engine.customers
    engine.advance(at(hours=24, seconds=1))
    assert engine.customers == {}
    assert engine.pending_timers() == 0


def test_pending_timer_keeps_state_until_it_fired():
    """A dormancy customer is kept until day 90 (fires), then dropped after the horizon."""
    engine = Engine(ruleset(DORM))
    engine.feed(app("l", at(0)), None)
    assert engine.advance(at(89)) == [] and "c1" in engine.customers
    assert [c.event_id for c in engine.advance(at(90))] == ["l"]
    engine.advance(at(91))
    assert engine.customers == {}


def test_first_event_later_than_the_horizon_leaves_no_state_after_its_call():
    """A new customer whose event is older than the watermark minus the horizon is evicted
    before `feed` returns (its eviction check is due at once), not at the next watermark."""
    engine = Engine(ruleset(WEALTH))
    engine.feed(app("ahead", at(10), "logout", customer="b"), None)
    engine.feed(app("v", at(0), "page_view", "wealth"), None)  # 24h window: horizon about 1d
    assert "c1" not in engine.customers


def test_evicted_customer_starts_fresh():
    """After eviction the next event finds no history (a window starts over)."""
    events = [app(f"v{h}", at(hours=h), "page_view", "wealth") for h in (0, 1, 30, 31, 32)]
    assert [c.event_id for c in run(ruleset(WEALTH), events)] == ["v32"]


# -- allowed lateness ------------------------------------------------------------


def test_allowed_lateness_holds_timers_for_late_cancels():
    """With 1h lateness a cancel arriving after another customer's later event still counts."""
    events = [
        app("s", at(0), "apply_start", "loan"),
        app("other", at(minutes=45), customer="b"),
        app("x", at(minutes=29), "apply_submit", "loan"),
    ]
    assert [c.event_id for c in run(ruleset(LOAN), events, until=at(1))] == ["s"]
    late = ruleset(LOAN, engine={"allowed_lateness": "1h"})
    assert run(late, events, until=at(1)) == []


def test_allowed_lateness_fires_when_the_watermark_reaches_the_deadline():
    """Watermark = newest event minus lateness: the timer waits an extra hour of traffic."""
    engine = Engine(ruleset(LOAN, engine={"allowed_lateness": "1h"}))
    engine.feed(app("s", at(0), "apply_start", "loan"), None)
    assert engine.feed(app("o", at(minutes=89), customer="b"), None).candidates == []
    got = engine.feed(app("o2", at(minutes=90), customer="b"), None).candidates
    assert brief(got) == [("loan", at(minutes=30), "s", {"within": "30m"})]


def test_customers_own_event_past_a_deadline_fires_it_first_under_lateness():
    """Our choice (docs/engine.md): lateness never lets an event at/after a deadline cancel it."""
    events = [
        app("s", at(0), "apply_start", "loan"),
        app("x", at(minutes=30), "apply_submit", "loan"),
    ]
    late = ruleset(LOAN, engine={"allowed_lateness": "1h"})
    assert [c.event_id for c in run(late, events)] == ["s"]


def test_customer_past_the_horizon_is_new_whatever_the_lateness():
    """Without opened_at, a customer back after the horizon onboards again, lateness or not."""
    events = [tx("a", at(0), "1", balance="10"), tx("b", at(91), "1", balance="5000")]
    mile = {"rule_id": "mile", "trigger": "balance_milestone"}
    for lateness in ("0s", "2d"):
        got = run(ruleset(mile, engine={"allowed_lateness": lateness}), events)
        assert [c.event_id for c in got] == ["b"], lateness


# -- snapshots -----------------------------------------------------------------


def test_snapshot_pickles_and_restores_pending_timers_and_windows():
    """A restored engine continues exactly where the snapshot was taken."""
    rules = ruleset(LOAN, WEALTH, DORM)
    first = [app("s", at(0), "apply_start", "loan"), app("v0", at(0), "page_view", "wealth"),
             app("v1", at(hours=1), "page_view", "wealth")]  # fmt: skip
    rest = [app("v2", at(hours=2), "page_view", "wealth")]
    straight = run(rules, first + rest, until=at(100))
    engine = Engine(rules)
    head = run(engine, first)
    restored = Engine(rules)
    restored.restore(pickle.loads(pickle.dumps(engine.snapshot())))
    assert head + run(restored, rest, until=at(100)) == straight


def test_restore_refuses_an_unknown_snapshot_version():
    """A snapshot from another format is an error, not silently wrong state."""
    with pytest.raises(ValueError, match="snapshot version"):
        Engine(ruleset(DORM)).restore({"v": 99})


def test_the_engines_inlined_activity_test_is_events_is_activity():
    """`Engine.evaluate` writes `is_activity` out for speed: both agree on every input shape."""
    from typing import get_args

    from keymoment.triggers.events import (
        TRANSACTION_KINDS,
        Action,
        AppEvent,
        Initiator,
        TransactionEvent,
        is_activity,
    )

    engine = Engine(ruleset(DORM))
    when = at(0)
    events: list = [AppEvent(event_id="a", customer_id="c", occurred_at=when, action=a)
                    for a in get_args(Action)]  # fmt: skip
    for kind in TRANSACTION_KINDS:
        for by in (None, *get_args(Initiator)):
            events.append(TransactionEvent(
                event_id="t", customer_id="c", occurred_at=when, account_id="ac",
                direction="debit", amount=100, kind=kind, initiated_by=by))  # fmt: skip
    for n, event in enumerate(events):
        customer_id = f"c{n}"
        event = type(event)(**{**msgspec.structs.asdict(event), "customer_id": customer_id})
        engine.evaluate(event)
        recorded = engine.customers[customer_id].last_activity_at is not None
        assert recorded == is_activity(event), event
