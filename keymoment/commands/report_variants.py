"""The A/B part of `keymoment report`: each variant against control and against each other.

For a campaign with variants, a customer's first candidate puts them in one
arm: `control` (the holdout), or the variant it was `sent` with. Per arm the
conversion rate; then every variant's uplift over control and every pair's
difference, with a two-sided z-test each. With `m` comparisons in one
campaign, p-values are Holm-adjusted (step-down, so it controls the
family-wise error at 5% without Bonferroni's loss of power), and each
interval is taken at level `1 - 0.05/m`, which holds for all `m` at once.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import combinations
from statistics import NormalDist
from typing import Any

ALPHA = 0.05
CONTROL = "control"


@dataclass
class Arm:
    customers: int = 0
    converted: int = 0

    @property
    def rate(self) -> float:
        return self.converted / self.customers if self.customers else 0.0


@dataclass(frozen=True)
class Comparison:
    """`first` minus `second`: the rate difference, its interval, raw and Holm-adjusted p."""

    first: str
    second: str
    diff: float
    low: float
    high: float
    p: float
    p_holm: float = math.nan

    @property
    def significant(self) -> bool:
        return self.p_holm < ALPHA


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
    raw = [_z_test(a, b, arms[a], arms[b], level) for a, b in pairs]
    adjusted = holm([c.p for c in raw])
    return [
        Comparison(c.first, c.second, c.diff, c.low, c.high, c.p, p)
        for c, p in zip(raw, adjusted, strict=True)
    ]


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


def _z_test(first: str, second: str, a: Arm, b: Arm, level: float) -> Comparison:
    diff = a.rate - b.rate
    if not a.customers or not b.customers:
        return Comparison(first, second, diff, math.nan, math.nan, math.nan)
    se = math.sqrt(a.rate * (1 - a.rate) / a.customers + b.rate * (1 - b.rate) / b.customers)
    half = NormalDist().inv_cdf(0.5 + level / 2) * se
    pooled = (a.converted + b.converted) / (a.customers + b.customers)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / a.customers + 1 / b.customers))
    p = math.erfc(abs(diff) / se0 / math.sqrt(2)) if se0 else 1.0
    return Comparison(first, second, diff, diff - half, diff + half, p)


def render_variants(arms: Mapping[str, Mapping[str, Arm]]) -> str:
    """The table `report` prints after the campaign uplift; empty when no campaign has variants."""
    if not arms:
        return ""
    lines = ["variants (first candidate sent, by arm; Holm-adjusted over each campaign's tests):"]
    for campaign in sorted(arms):
        lines.append(f"  {campaign}")
        for name in sorted(arms[campaign]):
            arm = arms[campaign][name]
            lines.append(f"    {name:<12}{arm.customers:>9,} customers{arm.rate:>8.1%} converted")
        tests = compare(arms[campaign])
        if tests:
            level = 1 - ALPHA / len(tests)
            lines.append(f"    {'comparison':<22}{'diff':>9}  {f'{level:.1%} interval':<20}"
                         f"{'p':>8}{'p Holm':>8}  significant")  # fmt: skip
        for t in tests:
            interval = f"[{t.low * 100:+.1f}, {t.high * 100:+.1f}]pp"
            lines.append(
                f"    {t.first + ' - ' + t.second:<22}{t.diff * 100:>+7.1f}pp  {interval:<20}"
                f"{t.p:>8.3f}{t.p_holm:>8.3f}  {'yes' if t.significant else 'no'}"
            )
    return "\n".join(lines)
