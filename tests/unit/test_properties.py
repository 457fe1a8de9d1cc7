"""Property tests: the engine against brute-force recomputation and against itself
(docs/semantics.md sections 2-3)."""

from __future__ import annotations

import os
import pickle
import statistics
from datetime import timedelta
from fractions import Fraction

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_triggers_support import T0, app, ruleset, run, tx

from keymoment.triggers.engine import Engine

# KM_EXAMPLES=5000 for a deeper hunt; 150 keeps the suite fast.
SETTINGS = settings(
    max_examples=int(os.environ.get("KM_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
DAY = 86400
STEPS = [0, 1, 60, 1799, 1800, 1801, 3600, DAY, 25 * DAY, 30 * DAY, 35 * DAY, 45 * DAY, 90 * DAY,
         401 * DAY]  # fmt: skip
ALL_RULES = ruleset(
    {"rule_id": "big", "trigger": "large_deposit", "min_amount": 1000, "min_history": 2},
    {"rule_id": "pay", "trigger": "salary_credit"},
    {"rule_id": "miss", "trigger": "salary_missed"},
    {"rule_id": "dorm", "trigger": "dormancy"},
    {"rule_id": "react", "trigger": "reactivation"},
    {"rule_id": "mile", "trigger": "balance_milestone"},
    {"rule_id": "wealth", "trigger": "window_threshold", "window": "24h", "value": 2,
     "filter": {"type": "app", "action": ["page_view", "login"]}},
    {"rule_id": "loan", "trigger": "absence", "within": "30m",
     "start": {"type": "app", "action": "apply_start", "product": "loan"},
     "cancel": {"type": "app", "action": "apply_submit"}},
)  # fmt: skip
TIMER_RULES = {"miss", "dorm", "loan"}


@st.composite
def streams(draw, customers=("a", "b", "c"), max_size=30):
    """In-order mixed streams for a few customers, with time steps that hit the rule edges."""
    at, events = T0, []
    for i in range(draw(st.integers(1, max_size))):
        at += timedelta(seconds=draw(st.sampled_from(STEPS)))
        customer = draw(st.sampled_from(customers))
        eid = f"e{i}"
        if draw(st.booleans()):
            action = draw(
                st.sampled_from(["login", "page_view", "apply_start", "apply_submit", "logout"])
            )
            product = draw(st.sampled_from(["wealth", "loan", None]))
            events.append(app(eid, at, action, product, customer=customer))
        else:
            kind = draw(
                st.sampled_from(
                    ["cash_deposit", "transfer_in", "payroll", "interest", "card_payment"]
                )
            )
            amount = draw(st.sampled_from([1, 100, 1000, 1200, 5000, 60000]))
            counterparty = draw(st.sampled_from([None, "E1", "E2"]))
            balance = draw(st.sampled_from([None, 500, 1000, 20000, 60000]))
            events.append(tx(eid, at, amount, kind, customer=customer, counterparty=counterparty,
                             balance=balance))  # fmt: skip
    return events


# -- brute force: windows and medians ------------------------------------------


AGGREGATES = ["count", "sum", "avg", "max", "distinct:counterparty"]


@st.composite
def window_cases(draw):
    at, events = T0, []
    for i in range(draw(st.integers(1, 25))):
        at += timedelta(minutes=draw(st.sampled_from([0, 1, 10, 30, 59, 60, 61, 120])))
        kind = draw(st.sampled_from(["transfer_in", "card_payment"]))
        amount = draw(st.sampled_from(["1", "2.50", "10", "99.99"]))
        counterparty = draw(st.sampled_from(["X", "Y", "Z", None]))
        events.append(tx(f"e{i}", at, amount, kind, counterparty=counterparty))
    aggregate = draw(st.sampled_from(AGGREGATES))
    op = draw(st.sampled_from(["gte", "gt", "lte", "lt"]))
    value = draw(st.sampled_from(["1", "2", "3", "5", "10", "12.5", "25"]))
    return events, aggregate, op, value


def _brute_window(events, aggregate, op, value):
    """Fire ids by definition: aggregate over matching events in (t - 1h, t], edge-triggered."""
    compare = {"gte": Fraction.__ge__, "gt": Fraction.__gt__, "lte": Fraction.__le__,
               "lt": Fraction.__lt__}[op]  # fmt: skip
    seen, fired, was = [], [], False
    for e in events:
        if e.kind != "transfer_in":
            continue
        earlier = [
            x for x in seen if e.occurred_at - timedelta(hours=1) < x.occurred_at <= e.occurred_at
        ]
        window = [*earlier, e]
        amounts = [Fraction(x.amount, 100) for x in window]
        agg = {
            "count": Fraction(len(window)),
            "sum": sum(amounts, Fraction(0)),
            "avg": sum(amounts, Fraction(0)) / len(amounts),
            "max": max(amounts),
            "distinct:counterparty": Fraction(len({x.counterparty for x in window} - {None})),
        }[aggregate]
        now = compare(agg, Fraction(value))
        if now and not (was and earlier):
            fired.append(e.event_id)
        was = now
        seen.append(e)
    return fired


@SETTINGS
@given(window_cases())
def test_window_aggregates_equal_brute_force(case):
    """count/sum/avg/max/distinct firings equal a recomputation from the definition."""
    events, aggregate, op, value = case
    rule = {"rule_id": "w", "trigger": "window_threshold", "window": "1h", "aggregate": aggregate,
            "op": op, "value": value,
            "filter": {"type": "transaction", "kind": "transfer_in"}}  # fmt: skip
    got = [c.event_id for c in run(ruleset(rule), events)]
    assert got == _brute_window(events, aggregate, op, value)


@st.composite
def deposit_cases(draw):
    at, events = T0, []
    for i in range(draw(st.integers(1, 25))):
        at += timedelta(days=draw(st.sampled_from([0, 1, 5, 10, 20, 30])))
        kind = draw(st.sampled_from(["cash_deposit", "transfer_in", "pension"]))
        amount = draw(
            st.sampled_from(["1", "100", "100.01", "250", "500", "1000", "2000", "5000.05"])
        )
        events.append(tx(f"e{i}", at, amount, kind))
    params = {"min_amount": draw(st.sampled_from([1, 100, 500])),
              "multiple": draw(st.sampled_from(["1", "2", "2.5", "5"])),
              "min_history": draw(st.integers(0, 4)),
              "lookback": draw(st.sampled_from(["10d", "30d", "90d"]))}  # fmt: skip
    return events, params


def _brute_deposits(events, params):
    lookback = timedelta(days=int(params["lookback"][:-1]))
    seen, fired = [], []
    for e in events:
        if e.kind == "pension":
            continue
        earlier = [
            x.amount for x in seen if e.occurred_at - lookback < x.occurred_at <= e.occurred_at
        ]
        big = e.amount >= params["min_amount"] * 100
        if big and (
            len(earlier) < max(params["min_history"], 1)
            or e.amount >= Fraction(params["multiple"]) * Fraction(statistics.median(earlier))
        ):
            fired.append(e.event_id)  # fmt: skip
        seen.append(e)
    return fired


@SETTINGS
@given(deposit_cases())
def test_large_deposit_medians_equal_brute_force(case):
    """large_deposit fires exactly where min_amount and multiple x median say it should."""
    events, params = case
    got = [
        c.event_id
        for c in run(ruleset({"rule_id": "b", "trigger": "large_deposit", **params}), events)
    ]
    assert got == _brute_deposits(events, params)


# -- timers --------------------------------------------------------------------


@SETTINGS
@given(streams())
def test_timers_fire_once_in_deadline_order_never_early(events):
    """Each timer candidate appears once, deadlines never decrease, none precedes the watermark."""
    engine = Engine(ALL_RULES)
    timers, previous_watermark = [], None
    for event in events:
        fed = engine.feed(event, None)
        for c in fed.candidates:
            if c.timer:
                assert c.triggered_at <= engine.watermark
                assert previous_watermark is None or c.triggered_at > previous_watermark
                timers.append(c)
        previous_watermark = engine.watermark
    timers += engine.advance(events[-1].occurred_at + timedelta(days=1000))
    keys = [(c.rule_id, c.customer_id, c.offer_key) for c in timers]
    assert len(keys) == len(set(keys))
    assert [c.triggered_at for c in timers] == sorted(c.triggered_at for c in timers)
    assert {c.rule_id for c in timers} <= TIMER_RULES


def _brute_absence(events):
    """Absence by definition: a start with no cancel of the customer before start + 30m."""
    pending, fired = {}, []
    for e in events:
        deadline = pending.get(e.customer_id)
        if deadline and deadline[0] <= e.occurred_at:
            fired.append(pending.pop(e.customer_id))
        if e.type != "app":
            continue
        if e.customer_id in pending and e.action == "apply_submit":
            del pending[e.customer_id]
        if e.customer_id not in pending and e.action == "apply_start" and e.product == "loan":
            pending[e.customer_id] = (e.occurred_at + timedelta(minutes=30), e.event_id)
    fired += pending.values()
    return sorted(fired)


@SETTINGS
@given(streams())
def test_absence_equals_brute_force(events):
    """Absence timers fire exactly for the starts a plain simulation leaves uncancelled."""
    got = run(ALL_RULES, events, until=events[-1].occurred_at + timedelta(days=1))
    assert sorted(
        (c.triggered_at, c.event_id) for c in got if c.rule_id == "loan"
    ) == _brute_absence(events)


CUSTOMER_KINDS = {"cash_deposit", "card_payment"}  # of the kinds `streams` draws
NOT_ACTIVITY = {"logout"}


def _brute_dormancy(events, until):
    """Dormancy by definition: last activity + 90d with none since, naming the last activity.

    "Last" is in stream order, so of several activities at one time the
    latest processed arms the timer (issue 8).
    """
    armed, fired = {}, []
    for e in [*events, None]:
        now = until if e is None else e.occurred_at
        for customer, (deadline, event_id) in list(armed.items()):
            if deadline <= now:
                fired.append((deadline, customer, event_id))
                del armed[customer]
        if e is None:
            break
        active = e.action not in NOT_ACTIVITY if e.type == "app" else e.kind in CUSTOMER_KINDS
        if active:
            armed[e.customer_id] = (e.occurred_at + timedelta(days=90), e.event_id)
    return sorted(fired)


@SETTINGS
@given(streams())
def test_dormancy_equals_brute_force(events):
    """Dormancy fires where a plain simulation says, with ties named by their last activity."""
    until = events[-1].occurred_at + timedelta(days=100)
    got = run(ALL_RULES, events, until=until)
    assert sorted(
        (c.triggered_at, c.customer_id, c.event_id) for c in got if c.rule_id == "dorm"
    ) == _brute_dormancy(events, until)


# -- determinism, partitioning, snapshots ----------------------------------------


@SETTINGS
@given(streams())
def test_same_stream_twice_gives_identical_output(events):
    """The engine is a pure function of its input."""
    until = events[-1].occurred_at + timedelta(days=500)
    assert run(ALL_RULES, events, until=until) == run(ALL_RULES, events, until=until)


@SETTINGS
@given(streams())
def test_customers_run_separately_equal_running_together(events):
    """Partitioning by customer (same watermark moves) changes nothing."""
    until = events[-1].occurred_at + timedelta(days=500)
    together = run(ALL_RULES, events, until=until)
    engines = {c: Engine(ALL_RULES) for c in {e.customer_id for e in events}}
    apart = []
    for event in events:
        for engine in engines.values():
            apart += engine.advance(event.occurred_at)
        apart += engines[event.customer_id].feed(event, None).candidates
    for engine in engines.values():
        apart += engine.advance(until)

    def by_customer(cands):
        return {c: [x for x in cands if x.customer_id == c] for c in engines}

    assert by_customer(apart) == by_customer(together)


@SETTINGS
@given(streams(), st.data())
def test_snapshot_restore_mid_stream_equals_uninterrupted_run(events, data):
    """A pickle round trip of the snapshot at any point loses nothing."""
    cut = data.draw(st.integers(0, len(events)))
    until = events[-1].occurred_at + timedelta(days=500)
    engine = Engine(ALL_RULES)
    head = run(engine, events[:cut])
    restored = Engine(ALL_RULES)
    restored.restore(pickle.loads(pickle.dumps(engine.snapshot())))
    assert head + run(restored, events[cut:], until=until) == run(ALL_RULES, events, until=until)


@SETTINGS
@given(streams(), st.sampled_from(["1s", "30m", "1d", "40d"]))
def test_allowed_lateness_changes_when_timers_fire_not_what_fires(events, lateness):
    """For an in-order stream any lateness gives the same candidates (docs/engine.md, Time)."""
    until = events[-1].occurred_at + timedelta(days=1000)
    late = ruleset(
        *[r.model_dump() for r in ALL_RULES.rules], engine={"allowed_lateness": lateness}
    )

    def key(c):
        return (c.customer_id, c.triggered_at, c.rule_id, c.event_id, sorted(c.attributes.items()))

    assert sorted(map(key, run(late, events, until=until))) == sorted(
        map(key, run(ALL_RULES, events, until=until))
    )
