"""Hand-written sequences for the money triggers: large_deposit, salary_credit, salary_missed,
balance_milestone (docs/semantics.md section 3, items 1-3 and 6)."""

from __future__ import annotations

from test_triggers_support import at, brief, profile, ruleset, run, tx

BIG = {"rule_id": "big", "trigger": "large_deposit"}
PAY = {"rule_id": "pay", "trigger": "salary_credit"}
MISS = {"rule_id": "miss", "trigger": "salary_missed"}
MILE = {"rule_id": "mile", "trigger": "balance_milestone"}


def monthly(
    days: list[float], amounts: list[str] | None = None, kind: str = "transfer_in", cp="EMP"
):
    amounts = amounts or ["1000"] * len(days)
    return [
        tx(f"s{i}", at(d), a, kind, counterparty=cp)
        for i, (d, a) in enumerate(zip(days, amounts, strict=True))
    ]


# -- large_deposit -------------------------------------------------------------


def test_large_deposit_min_amount_is_inclusive():
    """Without history, exactly min_amount fires and one cent less does not."""
    got = run(ruleset(BIG), [tx("a", at(0), "49999.99"), tx("b", at(1), "50000")])
    assert brief(got) == [("big", at(1), "b", {"amount_band": "<100k"})]


def test_large_deposit_needs_multiple_of_odd_median():
    """With 3 earlier credits the deposit must be >= 5 x their median (12000 -> 60000)."""
    history = [tx("h1", at(0), "10000"), tx("h2", at(1), "20000"), tx("h3", at(2), "12000")]
    assert run(ruleset(BIG), [*history, tx("low", at(3), "59999.99")]) == []
    assert [c.event_id for c in run(ruleset(BIG), [*history, tx("ok", at(3), "60000")])] == ["ok"]


def test_large_deposit_even_count_median_is_mean_of_middles_exactly():
    """Median of 10000.01 and 10000.02 is 10000.015, so 5x is 50000.075: .08 fires, .07 not."""
    history = [tx(f"h{i}", at(i), a) for i, a in enumerate(["1", "10000.01", "10000.02", "49000"])]
    assert [c.event_id for c in run(ruleset(BIG), [*history, tx("x", at(5), "50000.07")])] == []
    assert [c.event_id for c in run(ruleset(BIG), [*history, tx("y", at(5), "50000.08")])] == ["y"]


def test_large_deposit_lookback_window_is_open_at_its_start():
    """A credit exactly lookback earlier is outside (t - 90d, t]; one second later is inside."""
    history = [tx("h1", at(0), "20000"), tx("h2", at(10), "20000"), tx("h3", at(20), "20000")]
    outside = run(ruleset(BIG), [*history, tx("x", at(90), "50000")])
    inside = run(ruleset(BIG), [*history, tx("y", at(90, seconds=-1), "50000")])
    assert [c.event_id for c in outside] == ["x"]  # 2 earlier credits: min_amount alone decides
    assert inside == []  # 3 earlier credits, median 20000: needs 100000


def test_large_deposit_counts_only_credits_of_its_kinds():
    """Card payments, debits and pensions are not qualifying credits; transfer_in is."""
    events = [
        tx("p", at(0), "20000", "pension"),
        tx("d", at(1), "20000", "transfer_out"),
        tx("c", at(2), "20000", "card_payment"),
        tx("t", at(3), "60000", "transfer_in"),
        tx("w", at(4), "60000", "cash_withdrawal"),
    ]
    assert [c.event_id for c in run(ruleset(BIG), events)] == ["t"]


def test_large_deposit_band_never_shows_the_amount():
    """The candidate carries a coarse band only."""
    got = run(ruleset(BIG), [tx("a", at(0), "750000")])
    assert brief(got)[0][3] == {"amount_band": "500k-1m"}


# -- salary_credit -------------------------------------------------------------


def test_third_monthly_transfer_is_a_salary_credit_and_fires_every_month():
    """A series of 3 within tolerance fires with occurrence 3 and first_detection, then 4, ..."""
    got = run(ruleset(PAY), monthly([0, 30, 60, 90]))
    assert brief(got) == [
        ("pay", at(60), "s2", {"occurrence": 3, "first_detection": True}),
        ("pay", at(90), "s3", {"occurrence": 4, "first_detection": False}),
    ]


def test_salary_gaps_of_exactly_25_and_35_days_continue_the_series():
    """Both interval bounds are inclusive."""
    assert [c.event_id for c in run(ruleset(PAY), monthly([0, 25, 60]))] == ["s2"]


def test_salary_gaps_just_outside_restart_the_series():
    """25d minus a second and 35d plus a second each start a new series of length 1."""
    short = monthly([0, 25 - 1 / 86400, 50, 75])
    long = monthly([0, 35 + 1 / 86400, 65, 95])
    assert [(c.event_id, c.attributes["occurrence"]) for c in run(ruleset(PAY), short)] == [
        ("s3", 3)
    ]
    assert [(c.event_id, c.attributes["occurrence"]) for c in run(ruleset(PAY), long)] == [
        ("s3", 3)
    ]


def test_salary_tolerance_is_inclusive_and_relative_to_the_previous_amount():
    """+20% exactly continues (1000 -> 1200 -> 1440); +20% and a cent restarts."""
    assert [
        c.event_id for c in run(ruleset(PAY), monthly([0, 30, 60], ["1000", "1200", "1440"]))
    ] == ["s2"]
    assert run(ruleset(PAY), monthly([0, 30, 60], ["1000", "1200.01", "1440"])) == []
    assert [
        c.event_id for c in run(ruleset(PAY), monthly([0, 30, 60], ["1000", "800", "640"]))
    ] == ["s2"]


def test_transfers_without_counterparty_are_never_salary():
    """Salary series are per counterparty; no counterparty, no series."""
    assert run(ruleset(PAY), monthly([0, 30, 60, 90], cp=None)) == []


def test_series_are_per_counterparty():
    """Two payers interleaved each need their own three credits."""
    events = monthly([0, 30, 60], cp="A") + [
        tx("b", at(45), "1000", "transfer_in", counterparty="B")
    ]
    events.sort(key=lambda e: e.occurred_at)
    assert [c.event_id for c in run(ruleset(PAY), events)] == ["s2"]


def test_payroll_is_always_salary_and_counts_within_memory():
    """Payroll fires from the first credit; occurrence counts payrolls in (t - 400d, t]."""
    got = run(ruleset(PAY), monthly([0, 30, 400, 431], kind="payroll"))
    assert [(c.attributes["occurrence"], c.attributes["first_detection"]) for c in got] == [
        (1, True), (2, False), (2, False), (2, False),
    ]  # fmt: skip


def test_salary_pair_is_forgotten_after_400_days_without_salary():
    """first_detection comes back only after more than `memory` since the last salary credit."""
    got = run(ruleset(PAY), monthly([0, 400, 801 + 1 / 86400], kind="payroll"))
    assert [c.attributes["first_detection"] for c in got] == [True, False, True]


def test_only_first_fires_once_per_recognition():
    """only_first: the first detection fires, later salary credits do not, until forgotten."""
    rules = ruleset({**PAY, "only_first": True})
    got = run(rules, monthly([0, 30, 60, 90, 120, 521], kind="payroll"))
    assert [c.event_id for c in got] == ["s0", "s5"]


# -- salary_missed -------------------------------------------------------------


def test_salary_missed_fires_at_last_salary_plus_max_interval_plus_grace():
    """Recognised at day 60, nothing after: fires at day 60 + 35 + 10 = 105, once."""
    got = run(ruleset(MISS), monthly([0, 30, 60]), until=at(400))
    assert brief(got) == [("miss", at(105), "s2", {"occurrence": 3})]


def test_salary_missed_credit_exactly_at_deadline_does_not_cancel():
    """The timer fires before the event at its deadline is evaluated."""
    late = tx("late", at(105), "1000", "transfer_in", counterparty="EMP")
    got = run(ruleset(MISS), [*monthly([0, 30, 60]), late], until=at(400))
    assert [(c.triggered_at, c.event_id) for c in got] == [(at(105), "s2")]


def test_salary_missed_any_credit_from_payer_just_before_deadline_cancels():
    """A credit from the counterparty (even not a salary) before the deadline cancels the break."""
    odd = tx("odd", at(105, seconds=-1), "5", "cash_deposit", counterparty="EMP")
    assert run(ruleset(MISS), [*monthly([0, 30, 60]), odd], until=at(400)) == []


def test_salary_missed_rearms_on_every_salary_credit():
    """Each salary credit moves the deadline: last credit at day 120 -> fires at day 165."""
    got = run(ruleset(MISS), monthly([0, 30, 60, 90, 120]), until=at(400))
    assert brief(got) == [("miss", at(165), "s4", {"occurrence": 5})]


def test_salary_missed_tie_is_armed_by_the_last_salary_credit():
    """Two payrolls from one payer on one day: the second re-arms, so the break names it."""
    pays = [tx("p1", at(0), "1000", "payroll", counterparty="EMP"),
            tx("p2", at(0), "1000", "payroll", counterparty="EMP")]  # fmt: skip
    got = run(ruleset(MISS), pays, until=at(100))
    assert brief(got) == [("miss", at(45), "p2", {"occurrence": 2})]


def test_salary_missed_ignores_credits_from_other_payers():
    """Another counterparty's credit does not cancel the timer."""
    other = tx("o", at(70), "1000", "transfer_in", counterparty="OTHER")
    got = run(ruleset(MISS), [*monthly([0, 30, 60]), other], until=at(400))
    assert [c.event_id for c in got] == ["s2"]


def test_salary_missed_for_payroll_arms_from_the_first_payroll():
    """Payroll is salary at once, so one payroll credit arms the timer."""
    got = run(ruleset(MISS), monthly([0], kind="payroll"), until=at(100))
    assert brief(got) == [("miss", at(45), "s0", {"occurrence": 1})]


# -- balance_milestone -----------------------------------------------------------


def test_milestones_fire_once_each_and_the_highest_of_several_at_once():
    """1000 fires; a jump to 60000 fires 50000 only, and 10000 counts as reached."""
    events = [
        tx("a", at(1), "1", balance="999.99"),
        tx("b", at(2), "1", balance="1000"),
        tx("c", at(3), "1", balance="1500"),
        tx("d", at(4), "1", balance="60000"),
        tx("e", at(5), "1", "card_payment", balance="20000"),
        tx("f", at(6), "1", balance="70000"),
    ]
    got = run(ruleset(MILE), events, {"c1": profile(opened_at=at(0))})
    assert brief(got) == [
        ("mile", at(2), "b", {"threshold": "1000"}),
        ("mile", at(4), "d", {"threshold": "50000"}),
    ]


def test_onboarding_window_includes_opening_and_exactly_90_days():
    """0 <= occurred_at - opened_at <= 90d: both ends fire, a second later and before do not."""
    profiles = {"c1": profile(opened_at=at(10))}
    for when, fires in (
        (at(10), True),
        (at(100), True),
        (at(100, seconds=1), False),
        (at(9), False),
    ):
        got = run(ruleset(MILE), [tx("a", when, "1", balance="5000")], profiles)
        assert bool(got) is fires, when


def test_onboarding_starts_at_first_event_without_reference_data():
    """No opened_at: the first event seen (and still remembered) opens the onboarding window."""
    events = [tx("a", at(0), "1", balance="10"), tx("m", at(60), "1", balance="10")]
    assert run(ruleset(MILE), [*events, tx("b", at(91), "1", balance="5000")]) == []
    events = [tx("a", at(0), "1", balance="10"), tx("b", at(90), "1", balance="5000")]
    assert [c.event_id for c in run(ruleset(MILE), events)] == ["b"]


def test_transactions_without_balance_are_ignored():
    """balance_after is optional on the wire; without it there is nothing to compare."""
    assert run(ruleset(MILE), [tx("a", at(0), "99999")], {"c1": profile(opened_at=at(0))}) == []
