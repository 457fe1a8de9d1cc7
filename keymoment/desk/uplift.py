"""Each campaign's conversion rate, sent against control, from a decision log (closed loop).

For each campaign, customers whose first candidate was `sent` form the
treated arm and customers whose first candidate fell in the holdout
(`control`) the control arm; a customer converted when a conversion event
(optionally of one product) occurred within the window after that first
candidate's `triggered_at`. Customers whose first candidate ended otherwise
(capped, suppressed, ...) are in neither arm, so the arms differ only by the
holdout draw.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .records import when
from .stats import Rate, Uplift, newcombe, too_small, wilson

First = dict[tuple[str, str], tuple[datetime, str]]


@dataclass(frozen=True)
class CampaignUplift:
    """One campaign's two arms and what can be said about their difference."""

    campaign_id: str
    treated: Rate
    control: Rate
    uplift: Uplift
    warning: str | None


def first_exposures(records: Iterable[dict]) -> First:
    """(campaign, customer) -> (triggered_at, outcome) of the customer's first candidate.

    Shadow candidates are left out: a rule tried in shadow never reached the
    customer, so it neither exposes nor holds out anyone (docs/rollout.md).
    """
    first: First = {}
    for record in records:
        if record["outcome"] == "shadow":
            continue
        key = (record["campaign_id"], record["customer_id"])
        at = when(record["triggered_at"])
        if key not in first or at < first[key][0]:
            first[key] = (at, record["outcome"])
    return first


def conversions(records: Iterable[dict], product: str | None) -> dict[str, list[datetime]]:
    """Conversion times per customer; malformed conversions are passed over."""
    out: dict[str, list[datetime]] = defaultdict(list)
    for record in records:
        if record.get("type") != "conversion" or (product and record.get("product") != product):
            continue
        try:
            out[str(record["customer_id"])].append(when(record["occurred_at"]))
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
    return out


def tally(
    first: First, converted: dict[str, list[datetime]], window: timedelta
) -> list[CampaignUplift]:
    """Each campaign's arms (sorted by campaign id), with intervals and a small-arm warning."""
    counts: dict[str, dict[str, list[int]]] = defaultdict(
        lambda: {"sent": [0, 0], "control": [0, 0]}
    )
    for (campaign, customer), (at, outcome) in first.items():
        if outcome not in ("sent", "control"):
            continue
        arm = counts[campaign][outcome]
        arm[0] += 1
        arm[1] += any(at <= t <= at + window for t in converted.get(customer, ()))
    return [_campaign(c, counts[c]) for c in sorted(counts)]


def _campaign(campaign: str, arms: dict[str, list[int]]) -> CampaignUplift:
    treated = wilson(arms["sent"][1], arms["sent"][0])
    control = wilson(arms["control"][1], arms["control"][0])
    return CampaignUplift(
        campaign, treated, control, newcombe(treated, control), too_small(treated, control)
    )


def as_json(
    rows: list[CampaignUplift], window: str, product: str | None, found: int
) -> dict[str, Any]:
    """The report for machines (docs/desk.md); NaN, for an empty arm, becomes null."""
    return {
        "window": window,
        "product": product,
        "conversion_events": found,
        "level": 0.95,
        "campaigns": {
            row.campaign_id: {
                "treated": _arm(row.treated),
                "control": _arm(row.control),
                "uplift": _num(row.uplift.diff),
                "interval": [_num(row.uplift.low), _num(row.uplift.high)],
                "p_value": _num(row.uplift.p_value),
                "warning": row.warning,
            }
            for row in rows
        },
    }


def _arm(rate: Rate) -> dict[str, Any]:
    return {
        "customers": rate.customers,
        "converted": rate.converted,
        "rate": _num(rate.rate),
        "interval": [_num(rate.low), _num(rate.high)],
    }


def _num(value: float) -> float | None:
    return None if value != value else round(value, 6)  # NaN is the only value not equal to itself
