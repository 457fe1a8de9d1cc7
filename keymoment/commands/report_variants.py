"""The A/B part of `keymoment report`: each variant against control and against each other.

For a campaign with variants, a customer's first candidate puts them in one
arm: `control` (the holdout), or the variant it was `sent` with. Per arm the
conversion rate with its Wilson interval; then every variant's uplift over
control and every pair's difference, each with Newcombe's hybrid score
interval and Fisher's exact p (`keymoment.desk.stats`: both stay honest for
small arms and rates near 0 or 1, where Wald intervals and the z-test do
not). With `m` comparisons in one campaign, p-values are Holm-adjusted
(step-down, so it controls the family-wise error at 5% without Bonferroni's
loss of power), and each interval is taken at level `1 - 0.05/m`, which
holds for all `m` at once. A comparison with an arm of fewer than `MIN_ARM`
customers still counts in `m` but is marked too small, never significant.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from itertools import combinations
from typing import Any

from keymoment.desk.stats import LEVEL, MIN_ARM, Rate, newcombe, too_small, wilson

ALPHA = 0.05
CONTROL = "control"


@dataclass
class Arm:
    customers: int = 0
    converted: int = 0


@dataclass(frozen=True)
class Comparison:
    """`first` minus `second`: the rate difference, its interval, raw and Holm-adjusted p.

    `warning` says why an arm is too small to judge; such a comparison is never significant.
    """

    first: str
    second: str
    diff: float
    low: float
    high: float
    p: float
    p_holm: float = math.nan
    warning: str | None = None

    @property
    def significant(self) -> bool:
        return self.warning is None and self.p_holm < ALPHA


def variant_arms(
    records: Iterable[Mapping[str, Any]],
    conversions: Mapping[str, list[datetime]],
    window: timedelta,
) -> dict[str, dict[str, Arm]]:
    """campaign -> arm name -> Arm, for campaigns whose decisions carry a variant."""
    first: dict[tuple[str, str], tuple[datetime, str, str | None]] = {}
    with_variants: set[str] = set()
    for r in records:
        key = (r["campaign_id"], r["customer_id"])
        at = datetime.fromisoformat(r["triggered_at"].replace("Z", "+00:00"))
        if r.get("variant"):
            with_variants.add(r["campaign_id"])
        if key not in first or at < first[key][0]:
            first[key] = (at, r["outcome"], r.get("variant"))
    arms: dict[str, dict[str, Arm]] = defaultdict(lambda: defaultdict(Arm))
    for (campaign, customer), (at, outcome, variant) in first.items():
        name = CONTROL if outcome == CONTROL else variant if outcome == "sent" else None
        if campaign not in with_variants or name is None:
            continue
        arm = arms[campaign][name]
        arm.customers += 1
        arm.converted += any(at <= t <= at + window for t in conversions.get(customer, ()))
    return arms


def compare(arms: Mapping[str, Arm]) -> list[Comparison]:
    """Every variant against control, then every pair of variants, Holm-adjusted together."""
    variants = sorted(a for a in arms if a != CONTROL)
    pairs = [(v, CONTROL) for v in variants if CONTROL in arms]
    pairs += list(combinations(variants, 2))
    level = 1 - ALPHA / max(len(pairs), 1)
    rates = {name: wilson(arm.converted, arm.customers) for name, arm in arms.items()}
    raw = [_test(a, b, rates[a], rates[b], level) for a, b in pairs]
    adjusted = holm([c.p for c in raw])
    return [replace(c, p_holm=p) for c, p in zip(raw, adjusted, strict=True)]


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order (NaN stays NaN)."""
    order = sorted(range(len(p_values)), key=lambda i: (math.isnan(p_values[i]), p_values[i]))
    m, running = len(p_values), 0.0
    out = [math.nan] * m
    for rank, i in enumerate(order):
        if math.isnan(p_values[i]):
            continue
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        out[i] = running
    return out


def _test(first: str, second: str, a: Rate, b: Rate, level: float) -> Comparison:
    u = newcombe(a, b, level)
    warning = too_small(a, b, (first, second))
    return Comparison(first, second, u.diff, u.low, u.high, u.p_value, warning=warning)


def render_variants(arms: Mapping[str, Mapping[str, Arm]]) -> str:
    """The table `report` prints after the campaign uplift; empty when no campaign has variants."""
    if not arms:
        return ""
    lines = [
        f"variants (first candidate sent, by arm, {LEVEL:.0%} Wilson intervals;"
        " Holm-adjusted over each campaign's tests):"
    ]
    for campaign in sorted(arms):
        lines.append(f"  {campaign}")
        for name in sorted(arms[campaign]):
            r = wilson(arms[campaign][name].converted, arms[campaign][name].customers)
            lines.append(f"    {name:<12}{r.customers:>9,} customers{r.rate:>8.1%} converted"
                         f"  [{r.low:.1%}, {r.high:.1%}]")  # fmt: skip
        tests = compare(arms[campaign])
        if tests:
            level = 1 - ALPHA / len(tests)
            lines.append(f"    {'comparison':<22}{'diff':>9}  {f'{level:.1%} Newcombe':<20}"
                         f"{'p Fisher':>9}{'p Holm':>8}  significant")  # fmt: skip
        for t in tests:
            interval = f"[{t.low * 100:+.1f}, {t.high * 100:+.1f}]pp"
            verdict = "too small" if t.warning else "yes" if t.significant else "no"
            lines.append(
                f"    {t.first + ' - ' + t.second:<22}{t.diff * 100:>+7.1f}pp  {interval:<20}"
                f"{_p(t.p):>9}{_p(t.p_holm):>8}  {verdict}"
            )
        warnings = [f"      {t.first} - {t.second}: {t.warning}" for t in tests if t.warning]
        if warnings:
            lines.append(f"    too small (an arm needs at least {MIN_ARM} customers):")
            lines.extend(warnings)
    return "\n".join(lines)


def _p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"
