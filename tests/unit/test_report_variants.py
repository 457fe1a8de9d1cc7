"""The A/B statistics of `report`: Holm's adjustment and the per-arm comparisons."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from keymoment.commands.report_variants import Arm, compare, holm, render_variants, variant_arms
from keymoment.desk.stats import MIN_ARM, newcombe, wilson


def brute_holm(p: list[float]) -> list[float]:
    """Holm by its definition: adjusted p_(i) = max over j <= i of min(1, (m - j + 1) p_(j))."""
    m = len(p)
    ranked = sorted(range(m), key=lambda i: p[i])
    out = [0.0] * m
    for pos, i in enumerate(ranked):
        out[i] = max(min(1.0, (m - j) * p[ranked[j]]) for j in range(pos + 1))
    return out


@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=8))
def test_holm_matches_its_definition(p):
    """Step-down adjusted p-values equal the textbook formula, in input order."""
    assert holm(p) == brute_holm(p)


@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=8))
def test_holm_never_lowers_a_p_value_and_keeps_their_order(p):
    """Adjusted p >= raw p, at most 1, and a smaller raw p never gets a larger adjusted one."""
    adjusted = holm(p)
    assert all(raw <= adj <= 1 for raw, adj in zip(p, adjusted, strict=True))
    for i in range(len(p)):
        for j in range(len(p)):
            if p[i] <= p[j]:
                assert adjusted[i] <= adjusted[j]


def test_holm_on_a_known_case():
    """p = 0.01, 0.04, 0.03 over three tests adjust to 0.03, 0.06, 0.06."""
    assert [round(x, 10) for x in holm([0.01, 0.04, 0.03])] == [0.03, 0.06, 0.06]


def test_compare_covers_each_variant_against_control_and_every_pair():
    """Two variants and control give three comparisons; a big true gap is significant."""
    arms = {"control": Arm(2000, 100), "A": Arm(2000, 110), "B": Arm(2000, 300)}
    tests = {(t.first, t.second): t for t in compare(arms)}
    assert set(tests) == {("A", "control"), ("B", "control"), ("A", "B")}
    assert tests[("B", "control")].significant and not tests[("A", "control")].significant
    b = tests[("B", "control")]
    assert b.low < 0.10 < b.high and math.isclose(b.diff, 0.10)
    assert all(t.p_holm >= t.p for t in tests.values())


def test_small_counts_are_judged_by_fisher_not_by_a_z_test():
    """5 of 40 against 0 of 40: the pooled z-test says p = 0.021; Fisher's exact p is 0.055."""
    se0 = math.sqrt(5 / 80 * 75 / 80 * (2 / 40))
    assert math.isclose(math.erfc(5 / 40 / se0 / math.sqrt(2)), 0.021, abs_tol=5e-4)
    (t,) = compare({"control": Arm(40, 0), "A": Arm(40, 5)})
    assert math.isclose(t.p, 0.0547, abs_tol=5e-5) and t.warning is None and not t.significant


def test_an_arm_without_conversions_keeps_a_real_interval():
    """0 of 50 against 0 of 50: Wald says 0 ± 0; Newcombe at 95% stays about ±7pp wide."""
    (t,) = compare({"control": Arm(50, 0), "A": Arm(50, 0)})
    assert t.diff == 0 and t.low < -0.07 and t.high > 0.07 and t.p == 1


def test_a_comparison_with_a_small_arm_is_marked_and_never_significant():
    """20 of 20 against 0 of 2,000 is no finding when an arm has fewer than MIN_ARM customers."""
    arms = {"control": Arm(2000, 0), "A": Arm(MIN_ARM - 10, MIN_ARM - 10), "B": Arm(2000, 300)}
    tests = {(t.first, t.second): t for t in compare(arms)}
    small = tests[("A", "control")]
    assert small.p_holm < 1e-6 and not small.significant
    assert small.warning == (
        f"A arm has {MIN_ARM - 10} customers (fewer than {MIN_ARM}): too small to say anything"
    )
    assert tests[("A", "B")].warning and not tests[("A", "B")].significant
    assert tests[("B", "control")].warning is None and tests[("B", "control")].significant
    table = render_variants({"wm": arms})
    row = next(line for line in table.splitlines() if line.strip().startswith("A - control"))
    assert row.endswith("too small") and "A - control: A arm has 20 customers" in table
    assert "98.3% Newcombe" in table


@st.composite
def campaign_arms(draw: st.DrawFn) -> dict[str, Arm]:
    names = ["control", *draw(st.lists(st.sampled_from("ABCD"), min_size=1, unique=True))]
    arms = {}
    for name in names:
        customers = draw(st.integers(1, 300))
        arms[name] = Arm(customers, draw(st.integers(0, customers)))
    return arms


@settings(max_examples=100, deadline=None)
@given(campaign_arms())
def test_each_comparison_is_newcombe_at_the_simultaneous_level(arms):
    """m comparisons: intervals at 1 - 0.05/m, Holm p >= Fisher p, small arms never significant."""
    tests = compare(arms)
    level = 1 - 0.05 / len(tests)
    for t in tests:
        a, b = arms[t.first], arms[t.second]
        u = newcombe(wilson(a.converted, a.customers), wilson(b.converted, b.customers), level)
        assert (t.diff, t.low, t.high, t.p) == (u.diff, u.low, u.high, u.p_value)
        assert 0 <= t.p <= t.p_holm <= 1
        assert (t.warning is not None) == (min(a.customers, b.customers) < MIN_ARM)
        assert t.significant == (t.warning is None and t.p_holm < 0.05)


def test_arms_come_from_the_first_candidate_of_each_customer():
    """A customer's arm is their first candidate's: control, or the variant it was sent with."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)

    def rec(cust, outcome, variant, days):  # type: ignore[no-untyped-def]
        at = (t0 + timedelta(days=days)).isoformat()
        return {"campaign_id": "wm", "customer_id": cust, "triggered_at": at,
                "outcome": outcome, "variant": variant}  # fmt: skip

    records = [
        rec("C1", "sent", "A", 0),
        rec("C1", "sent", "B", 5),
        rec("C2", "control", None, 0),
        rec("C3", "capped", "B", 0),
    ]
    arms = variant_arms(records, {"C1": [t0 + timedelta(days=1)]}, timedelta(days=30))
    assert {k: (a.customers, a.converted) for k, a in arms["wm"].items()} == {
        "A": (1, 1),
        "control": (1, 0),
    }
