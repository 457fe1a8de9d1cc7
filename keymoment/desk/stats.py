"""Intervals for conversion rates that hold for small groups, from statsmodels and scipy.

Wald intervals (rate ± 1.96 standard errors) are too narrow for small arms
and rates near 0 or 1, and collapse to zero width when nobody converted.
Wilson's score interval for one rate and Newcombe's hybrid score interval
for the difference of two (method 10 of Newcombe 1998) keep close to their
nominal 95% there; Fisher's exact test gives the p-value without a normal
approximation. The libraries are imported on first use: they take about a
second to load and only `report` needs them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MIN_ARM = 30  # fewer customers in an arm than this: the interval is too wide to say anything
LEVEL = 0.95


@dataclass(frozen=True)
class Rate:
    """One arm: customers, how many converted, the rate and its Wilson interval."""

    customers: int
    converted: int
    low: float
    high: float

    @property
    def rate(self) -> float:
        return self.converted / self.customers if self.customers else math.nan


@dataclass(frozen=True)
class Uplift:
    """Treated minus control: the difference, its Newcombe interval and Fisher's p-value."""

    diff: float
    low: float
    high: float
    p_value: float


def wilson(converted: int, customers: int) -> Rate:
    """The rate with its Wilson score interval (NaN bounds for an empty arm)."""
    if not customers:
        return Rate(0, 0, math.nan, math.nan)
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(converted, customers, alpha=1 - LEVEL, method="wilson")
    return Rate(customers, converted, float(low), float(high))


def newcombe(treated: Rate, control: Rate, level: float = LEVEL) -> Uplift:
    """Newcombe's hybrid score interval for treated.rate - control.rate, Fisher's exact p.

    `level` other than 95% is for intervals that must hold together: m of them
    at `1 - 0.05/m` each hold simultaneously (Bonferroni).
    """
    if not treated.customers or not control.customers:
        return Uplift(math.nan, math.nan, math.nan, math.nan)
    from scipy.stats import fisher_exact
    from statsmodels.stats.proportion import confint_proportions_2indep

    low, high = confint_proportions_2indep(
        treated.converted,
        treated.customers,
        control.converted,
        control.customers,
        method="newcomb",
        compare="diff",
        alpha=1 - level,
    )
    table = [
        [treated.converted, treated.customers - treated.converted],
        [control.converted, control.customers - control.converted],
    ]
    p_value = float(fisher_exact(table).pvalue)
    bounds = max(-1.0, float(low)), min(1.0, float(high))  # statsmodels can round past ±1
    return Uplift(treated.rate - control.rate, *bounds, p_value)


def too_small(
    treated: Rate, control: Rate, names: tuple[str, str] = ("treated", "control")
) -> str | None:
    """Why this comparison cannot say anything, or None when it can."""
    small = [
        f"{name} arm has {arm.customers:,} customer{'s' if arm.customers != 1 else ''}"
        for name, arm in zip(names, (treated, control), strict=True)
        if arm.customers < MIN_ARM
    ]
    if small:
        return " and ".join(small) + f" (fewer than {MIN_ARM}): too small to say anything"
    return None
