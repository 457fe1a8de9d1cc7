"""desk.stats: Newcombe's interval at any level and Fisher's p, against independent sums."""

from __future__ import annotations

import math
from statistics import NormalDist

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from keymoment.desk.stats import newcombe, wilson


def wilson_by_formula(x: int, n: int, level: float) -> tuple[float, float]:
    """Wilson (1927): (x + z²/2 ± z·sqrt(x(n-x)/n + z²/4)) / (n + z²)."""
    z = NormalDist().inv_cdf(0.5 + level / 2)
    centre, half = x + z * z / 2, z * math.sqrt(x * (n - x) / n + z * z / 4)
    return (centre - half) / (n + z * z), (centre + half) / (n + z * z)


def newcombe_by_formula(x1: int, n1: int, x2: int, n2: int, level: float) -> tuple[float, float]:
    """Newcombe (1998) method 10: each side from the two Wilson intervals at the same level."""
    p1, p2 = x1 / n1, x2 / n2
    (l1, u1), (l2, u2) = wilson_by_formula(x1, n1, level), wilson_by_formula(x2, n2, level)
    d = p1 - p2
    return d - math.hypot(p1 - l1, u2 - p2), d + math.hypot(u1 - p1, p2 - l2)


def fisher_by_sum(x1: int, n1: int, x2: int, n2: int) -> float:
    """Two-sided Fisher: the hypergeometric mass of every table no likelier than the one seen."""
    total, k = n1 + n2, x1 + x2

    def mass(a: int) -> float:
        return math.comb(n1, a) * math.comb(n2, k - a) / math.comb(total, k)

    seen = mass(x1)
    tables = range(max(0, k - n2), min(k, n1) + 1)
    return min(1.0, sum(m for a in tables if (m := mass(a)) <= seen * (1 + 1e-7)))


@st.composite
def arm(draw: st.DrawFn, smallest: int = 1) -> tuple[int, int]:
    n = draw(st.integers(smallest, 400))
    return draw(st.integers(0, n)), n


LEVELS = st.sampled_from([0.8, 0.9, 0.95, 0.99, 1 - 0.05 / 3, 1 - 0.05 / 6, 0.999])


@pytest.mark.parametrize(
    ("counts", "published"),
    [
        ((56, 70, 48, 80), (0.0524, 0.3339)),
        ((9, 10, 3, 10), (0.1705, 0.8090)),
        ((0, 10, 0, 20), (-0.1611, 0.2775)),
        ((0, 10, 0, 10), (-0.2775, 0.2775)),
        ((10, 10, 0, 20), (0.6791, 1.0)),
        ((10, 10, 0, 10), (0.6075, 1.0)),
    ],
)
def test_newcombe_at_95_matches_newcombe_1998_table_ii(counts, published):
    """Method 10 of Newcombe (1998) Table II, to the four decimals printed there."""
    x1, n1, x2, n2 = counts
    u = newcombe(wilson(x1, n1), wilson(x2, n2))
    assert (round(u.low, 4), round(u.high, 4)) == published


@settings(max_examples=200, deadline=None)
@given(arm(), arm(), LEVELS)
def test_newcombe_at_any_level_is_method_10_at_that_level(a, b, level):
    """The interval at `level` is built from Wilson intervals at `level`, not at 95%."""
    u = newcombe(wilson(*a), wilson(*b), level)
    low, high = newcombe_by_formula(*a, *b, level)
    assert math.isclose(u.low, low, abs_tol=1e-9) and math.isclose(u.high, high, abs_tol=1e-9)


@settings(max_examples=200, deadline=None)
@given(arm(), arm(), LEVELS, LEVELS)
@example((0, 341), (341, 341), 0.8, 0.9)  # statsmodels' lower bound was -1.0000000000000002
def test_newcombe_holds_the_difference_and_widens_with_the_level(a, b, one, two):
    """The point difference is inside; a higher level's interval contains a lower one's."""
    lower, higher = sorted((one, two))
    narrow = newcombe(wilson(*a), wilson(*b), lower)
    wide = newcombe(wilson(*a), wilson(*b), higher)
    assert narrow.low <= narrow.diff <= narrow.high
    assert wide.low <= narrow.low + 1e-12 and narrow.high <= wide.high + 1e-12
    assert wide.low >= -1 and wide.high <= 1


@settings(max_examples=200, deadline=None)
@given(arm(), arm(), LEVELS)
def test_swapping_the_arms_negates_the_interval_and_keeps_p(a, b, level):
    """b - a is -(a - b): the interval mirrors, Fisher's p does not move."""
    ab = newcombe(wilson(*a), wilson(*b), level)
    ba = newcombe(wilson(*b), wilson(*a), level)
    assert math.isclose(ab.low, -ba.high, abs_tol=1e-12)
    assert math.isclose(ab.high, -ba.low, abs_tol=1e-12)
    assert math.isclose(ab.p_value, ba.p_value, rel_tol=1e-12)


@settings(max_examples=200, deadline=None)
@given(arm(), arm())
def test_fisher_p_is_the_hypergeometric_sum(a, b):
    """The p-value equals the two-sided exact sum over all tables with the same margins."""
    p = newcombe(wilson(*a), wilson(*b)).p_value
    assert 0 <= p <= 1
    assert math.isclose(p, fisher_by_sum(*a, *b), rel_tol=1e-9, abs_tol=1e-12)


def test_fisher_on_the_tea_tasting_table():
    """Fisher's lady tasting tea, 3 of 4 against 1 of 4: two-sided p = 34/70."""
    assert math.isclose(newcombe(wilson(3, 4), wilson(1, 4)).p_value, 34 / 70)


def test_default_level_is_95():
    """Without a level the interval is the 95% one the campaign table has always shown."""
    a, b = wilson(30, 100), wilson(20, 100)
    assert newcombe(a, b) == newcombe(a, b, 0.95)
