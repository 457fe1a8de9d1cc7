"""The engine's dispatch by transaction kind and app action (docs/engine.md, "Shape").

The kinds and actions window_threshold and absence take from their filters must
leave out only calls that would have changed nothing: the same streams through an
engine that calls them for every kind and action (their `on_event` tests the filter
itself) give the same candidates and the same timers. large_deposit's `kinds` are its
own definition, tested through the engine (test_triggers_money.py).
"""

from __future__ import annotations

from typing import get_args

from hypothesis import example, given, settings
from hypothesis import strategies as st
from test_triggers_support import app, at, ruleset, tx

from keymoment.triggers.absence import Absence
from keymoment.triggers.engine import Engine
from keymoment.triggers.events import TRANSACTION_KINDS, Action
from keymoment.triggers.window_threshold import WindowThreshold

RULES = ruleset(
    {"rule_id": "big", "trigger": "large_deposit", "min_amount": 1, "min_history": 1},
    {"rule_id": "dorm", "trigger": "dormancy", "inactive": "2d"},
    {"rule_id": "wealth", "trigger": "window_threshold", "window": "24h", "value": 2,
     "filter": {"type": "app", "action": ["page_view", "click"], "product": "wealth"}},
    {"rule_id": "fees", "trigger": "window_threshold", "window": "24h", "value": 2,
     "filter": {"kind": ["fee", "interest"]}},
    {"rule_id": "loan", "trigger": "absence", "within": "30m",
     "start": {"type": "app", "action": "apply_start", "product": "loan"},
     "cancel": {"type": "app", "action": "apply_submit", "product": "loan"}},
    {"rule_id": "open", "trigger": "absence", "within": "1h",
     "start": {"type": "app", "action": "apply_start"}, "cancel": {"direction": "credit"}},
)  # fmt: skip

transactions = st.builds(
    lambda n, m, kind, credit: tx(f"t{n}", at(minutes=m), "60000", kind, customer=f"c{n % 2}",
                                  direction="credit" if credit else "debit"),
    st.integers(0, 10**6), st.integers(0, 300), st.sampled_from(TRANSACTION_KINDS), st.booleans(),
)  # fmt: skip
app_events = st.builds(
    lambda n, m, action, product: app(f"a{n}", at(minutes=m), action, product,
                                      customer=f"c{n % 2}"),
    st.integers(0, 10**6), st.integers(0, 300), st.sampled_from(get_args(Action)),
    st.sampled_from([None, "loan", "wealth"]),
)  # fmt: skip


def calling_everything() -> Engine:
    """An engine whose filter rules are called for every kind and action of their types."""
    engine = Engine(RULES)
    for trigger in engine.triggers:
        if isinstance(trigger, WindowThreshold | Absence):
            trigger.only_kinds = trigger.only_actions = None
    engine.dispatch()
    return engine


def replay(engine: Engine, events: list) -> list:
    out = []
    for event in events:
        fed = engine.feed(event, None)
        out.append((fed.duplicate, fed.candidates))
    out.append(engine.advance(at(days=30)))
    return out + [engine.pending_timers()]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(transactions, app_events), max_size=40))
@example([app("s", at(0), "apply_start", "loan"), app("c", at(minutes=10), "apply_submit", "loan")])
@example([app("v", at(0), "page_view", "wealth"), app("k", at(minutes=5), "click", "wealth")])
@example([tx("f", at(0), "1", "fee"), tx("i", at(minutes=1), "1", "interest")])
def test_dispatch_by_kind_and_action_calls_only_what_can_match(events):
    events = sorted(events, key=lambda e: e.occurred_at)
    assert replay(Engine(RULES), events) == replay(calling_everything(), events)


def test_the_tables_leave_out_the_kinds_and_actions_a_rule_excludes():
    """large_deposit is not called for card payments, the wealth window not for logins."""
    engine = Engine(RULES)
    big, _, wealth, fees, loan, open_ = (t.on_event for t in engine.triggers)
    credit = 2
    assert big in engine._by_kind["cash_deposit"][credit]
    assert big not in engine._by_kind["card_payment"][credit]
    assert fees in engine._by_kind["fee"][0] and fees not in engine._by_kind["payroll"][0]
    assert wealth in engine._by_action["click"][1] and wealth not in engine._by_action["login"][1]
    assert loan not in engine._by_action["login"][1] and open_ in engine._by_action["login"][1]
