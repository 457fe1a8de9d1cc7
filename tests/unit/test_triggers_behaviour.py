"""Hand-written sequences for the behaviour triggers: dormancy, reactivation, window_threshold,
absence, and customer filters (docs/semantics.md section 3, items 4-5 and 7-8)."""

from __future__ import annotations

from test_triggers_support import app, at, brief, profile, ruleset, run, tx

DORM = {"rule_id": "dorm", "trigger": "dormancy"}
REACT = {"rule_id": "react", "trigger": "reactivation"}
WEALTH = {
    "rule_id": "wealth",
    "trigger": "window_threshold",
    "filter": {"type": "app", "action": "page_view", "product": "wealth"},
    "aggregate": "count",
    "window": "24h",
    "op": "gte",
    "value": 3,
}
LOAN = {
    "rule_id": "loan",
    "trigger": "absence",
    "within": "30m",
    "start": {"type": "app", "action": "apply_start", "product": "loan"},
    "cancel": {"type": "app", "action": "apply_submit", "product": "loan"},
}


def views(*hours: float, product: str = "wealth"):
    return [app(f"v{i}", at(hours=h), "page_view", product) for i, h in enumerate(hours)]


# -- dormancy ------------------------------------------------------------------


def test_dormancy_fires_at_last_activity_plus_inactive_with_the_arming_event():
    """Login at day 0, then nothing: fires at day 90 exactly, naming the login."""
    got = run(ruleset(DORM), [app("l", at(0))], until=at(500))
    assert brief(got) == [("dorm", at(90), "l", {"inactive_days": 90})]


def test_dormancy_moves_with_activity_but_not_with_bank_postings():
    """Own activity at day 50 moves the deadline to 140; interest and salary do not."""
    events = [
        app("l", at(0)),
        tx("card", at(50), "10", "card_payment"),
        tx("int", at(100), "1", "interest"),
        tx("sal", at(120), "1000", "transfer_in", counterparty="EMP"),
        tx("so", at(130), "10", "card_payment", initiated_by="bank"),
        app("out", at(135), "logout"),
    ]
    got = run(ruleset(DORM), events, until=at(500))
    assert brief(got) == [("dorm", at(140), "card", {"inactive_days": 90})]


def test_dormancy_fires_once_per_quiet_period():
    """One firing per quiet period; the next activity starts a new one."""
    events = [app("a", at(0)), tx("i", at(200), "1", "interest"), app("b", at(300))]
    got = run(ruleset(DORM), events, until=at(1000))
    assert [(c.triggered_at, c.event_id) for c in got] == [(at(90), "a"), (at(390), "b")]


def test_dormancy_names_the_last_of_activities_sharing_a_time():
    """Ties (Berka has dates only): the last activity in stream order arms the timer (issue 8).

    Its event id is the candidate's, and so it is part of the offer id.
    """
    events = [app("a", at(0)), tx("b", at(0), "10", "card_payment"), app("c", at(0), "logout")]
    got = run(ruleset(DORM), events, until=at(500))
    assert brief(got) == [("dorm", at(90), "b", {"inactive_days": 90})]


def test_dormancy_tie_after_a_firing_does_not_fire_again():
    """A late activity at the time the timer already fired for names nothing new."""
    events = [app("a", at(0)), app("x", at(90), "logout", customer="other"), app("b", at(0))]
    got = run(ruleset(DORM), events, until=at(500))
    assert [(c.triggered_at, c.event_id) for c in got] == [(at(90), "a")]


def test_dormancy_never_fires_without_earlier_activity():
    """Only bank postings: the customer never had activity, so was never active then quiet."""
    assert run(ruleset(DORM), [tx("i", at(0), "1", "interest")], until=at(500)) == []


def test_activity_exactly_at_dormancy_deadline_sees_the_timer_fire_first():
    """The event at the deadline does not cancel it; reactivation fires on the same event too."""
    got = run(ruleset(DORM, REACT), [app("a", at(0)), app("b", at(90))], until=at(91))
    assert brief(got) == [
        ("dorm", at(90), "a", {"inactive_days": 90}),
        ("react", at(90), "b", {"gap_days": 90}),
    ]


def test_activity_just_before_dormancy_deadline_cancels_it():
    """Activity a second early moves the deadline; nothing fires at day 90."""
    got = run(ruleset(DORM), [app("a", at(0)), app("b", at(90, seconds=-1))], until=at(100))
    assert got == []


# -- reactivation --------------------------------------------------------------


def test_reactivation_needs_a_gap_of_at_least_inactive():
    """A gap of exactly 90d fires with gap_days; a second less does not."""
    assert brief(run(ruleset(REACT), [app("a", at(0)), app("b", at(90))])) == [
        ("react", at(90), "b", {"gap_days": 90})
    ]
    assert run(ruleset(REACT), [app("a", at(0)), app("b", at(90, seconds=-1))]) == []


def test_reactivation_counts_only_customer_activity_on_both_sides():
    """Interest in the gap does not shorten it; a bank posting after it does not fire."""
    events = [app("a", at(0)), tx("i", at(50), "1", "interest"), tx("f", at(100), "1", "fee")]
    assert run(ruleset(REACT), events) == []
    got = run(ruleset(REACT), [*events, tx("c", at(101), "5", "card_payment")])
    assert brief(got) == [("react", at(101), "c", {"gap_days": 101})]


def test_reactivation_memory_bounds_the_gap():
    """Quiet for exactly `memory` (400d) still fires; longer counts as a new customer."""
    assert [c.event_id for c in run(ruleset(REACT), [app("a", at(0)), app("b", at(400))])] == ["b"]
    assert run(ruleset(REACT), [app("a", at(0)), app("b", at(400, seconds=1))]) == []


def test_reactivation_fires_whether_or_not_dormancy_fired():
    """Reactivation is independent of the dormancy timer."""
    got = run(ruleset(REACT), [app("a", at(0)), app("b", at(95)), app("c", at(96))])
    assert [c.event_id for c in got] == ["b"]


# -- window_threshold ----------------------------------------------------------


def test_window_threshold_fires_on_the_event_that_makes_it_true_only():
    """3 wealth views in 24h fire on the third; the fourth (still true) does not."""
    got = run(ruleset(WEALTH), views(0, 1, 2, 3))
    assert brief(got) == [("wealth", at(hours=2), "v2", {"aggregate": "count", "window": "1d"})]


def test_window_is_open_at_its_start():
    """(t - 24h, t]: a view exactly 24h earlier is out, a second later is in."""
    assert run(ruleset(WEALTH), views(0, 12, 24)) == []
    assert [c.event_id for c in run(ruleset(WEALTH), views(0, 12, 24 - 1 / 3600))] == ["v2"]


def test_window_threshold_rearms_after_a_false_matching_event():
    """True at v2, false at v3 (only itself in the window), true again at v5: two firings."""
    got = run(ruleset(WEALTH), views(0, 1, 2, 30, 31, 32))
    assert [c.event_id for c in got] == ["v2", "v5"]


def test_window_threshold_ignores_events_outside_its_filter():
    """Loan views and logins neither count nor re-arm."""
    events = [
        *views(0, 1),
        app("loan", at(hours=1.5), "page_view", "loan"),
        app("l", at(hours=1.7)),
        app("w", at(hours=2), "page_view", "wealth"),
    ]
    assert [c.event_id for c in run(ruleset(WEALTH), events)] == ["w"]


def test_window_sum_avg_max_distinct_on_transactions():
    """Amount aggregates work in exact minor units; distinct counts values of a field."""
    deposits = [tx("a", at(0), "4000.01", "transfer_in", counterparty="X"),
                tx("b", at(1), "6000", "transfer_in", counterparty="Y"),
                tx("c", at(2), "10", "transfer_in", counterparty="X")]  # fmt: skip
    base = {"trigger": "window_threshold", "window": "7d",
            "filter": {"type": "transaction", "kind": "transfer_in"}}  # fmt: skip
    rules = ruleset(
        {**base, "rule_id": "sum", "aggregate": "sum", "op": "gt", "value": 10000},
        {**base, "rule_id": "avg", "aggregate": "avg", "op": "lt", "value": "3336.68"},
        {**base, "rule_id": "max", "aggregate": "max", "op": "gte", "value": 6000},
        {**base, "rule_id": "cps", "aggregate": "distinct:counterparty", "op": "gte", "value": 2},
    )
    got = [(c.rule_id, c.event_id) for c in run(rules, deposits)]
    assert sorted(got) == [("avg", "c"), ("cps", "b"), ("max", "b"), ("sum", "b")]


def test_window_threshold_condition_resets_once_its_window_empties():
    """Our choice (docs/engine.md): a new episode after an empty window fires again."""
    rule = {"rule_id": "big", "trigger": "window_threshold", "window": "1d", "aggregate": "sum",
            "filter": {"type": "transaction", "kind": "cash_deposit"},
            "op": "gte", "value": 100}  # fmt: skip
    alive = [tx(f"n{d}", at(d), "5", "card_payment") for d in (0.5, 1.5, 2.5, 3.5, 4.5)]
    events = sorted(
        [tx("a", at(0), "200"), *alive, tx("b", at(5), "200")], key=lambda e: e.occurred_at
    )
    assert [c.event_id for c in run(ruleset(rule), events)] == ["a", "b"]


# -- absence -------------------------------------------------------------------


def test_absence_fires_at_start_plus_within_naming_the_start():
    """apply_start without apply_submit fires 30m later, exactly."""
    got = run(ruleset(LOAN), [app("s", at(0), "apply_start", "loan")], until=at(1))
    assert brief(got) == [("loan", at(minutes=30), "s", {"within": "30m"})]


def test_absence_cancel_just_before_deadline_cancels():
    """A submit at 29m59s cancels."""
    events = [
        app("s", at(0), "apply_start", "loan"),
        app("x", at(minutes=30, seconds=-1), "apply_submit", "loan"),
    ]
    assert run(ruleset(LOAN), events, until=at(1)) == []


def test_absence_cancel_exactly_at_deadline_is_too_late():
    """A submit at exactly 30m comes after the timer fired."""
    events = [
        app("s", at(0), "apply_start", "loan"),
        app("x", at(minutes=30), "apply_submit", "loan"),
    ]
    assert [c.event_id for c in run(ruleset(LOAN), events, until=at(1))] == ["s"]


def test_absence_new_start_while_pending_does_not_rearm():
    """A second start at 10m leaves the first deadline (30m) in place; one firing."""
    events = [
        app("s1", at(0), "apply_start", "loan"),
        app("s2", at(minutes=10), "apply_start", "loan"),
    ]
    got = run(ruleset(LOAN), events, until=at(1))
    assert [(c.triggered_at, c.event_id) for c in got] == [(at(minutes=30), "s1")]


def test_absence_second_start_at_the_same_time_does_not_rearm():
    """Unlike dormancy, a tie keeps the first start: a start while one is pending is ignored."""
    events = [app("s1", at(0), "apply_start", "loan"), app("s2", at(0), "apply_start", "loan")]
    got = run(ruleset(LOAN), events, until=at(1))
    assert [(c.triggered_at, c.event_id) for c in got] == [(at(minutes=30), "s1")]


def test_absence_arms_again_after_firing_or_cancel():
    """Each start after the previous one resolved is its own episode."""
    events = [
        app("s1", at(0), "apply_start", "loan"),
        app("s2", at(hours=1), "apply_start", "loan"),
        app("x", at(hours=1, minutes=5), "apply_submit", "loan"),
        app("s3", at(hours=2), "apply_start", "loan"),
    ]
    got = run(ruleset(LOAN), events, until=at(1))
    assert [c.event_id for c in got] == ["s1", "s3"]


def test_absence_cancel_of_another_product_does_not_cancel():
    """The cancel filter must match (product loan), not any submit."""
    events = [
        app("s", at(0), "apply_start", "loan"),
        app("x", at(minutes=5), "apply_submit", "card"),
    ]
    assert [c.event_id for c in run(ruleset(LOAN), events, until=at(1))] == ["s"]


# -- customer filters ------------------------------------------------------------


def test_customer_filter_by_segment_and_excluded_tag():
    """Only affluent customers without the staff tag get wealth leads; no profile, no lead."""
    rule = {**WEALTH, "customer_filter": {"segments": ["affluent"], "tags_none": ["staff"]}}
    profiles = {
        "a": profile("a", segment="affluent"),
        "m": profile("m", segment="mass"),
        "s": profile("s", segment="affluent", tags=["staff"]),
    }
    events = [app(f"{c}{h}", at(hours=h), "page_view", "wealth", customer=c)
              for h in (0, 1, 2) for c in ("a", "m", "s", "none")]  # fmt: skip
    assert [c.customer_id for c in run(ruleset(rule), events, profiles)] == ["a"]


def test_customer_filter_tags_any_on_a_timer_rule():
    """tags_any admits a customer with one of the tags; timers respect it too."""
    rule = {**DORM, "customer_filter": {"tags_any": ["vip", "young"]}}
    profiles = {"y": profile("y", tags=["young"]), "o": profile("o", tags=["old"])}
    events = [app("1", at(0), customer="y"), app("2", at(0), customer="o")]
    assert [c.customer_id for c in run(ruleset(rule), events, profiles, until=at(100))] == ["y"]
