"""The A/B statistics of `report`: Holm's adjustment and the per-arm comparisons."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from keymoment.commands.report_variants import Arm, compare, holm, variant_arms


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
