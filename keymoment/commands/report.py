"""`keymoment report`: did each campaign beat its control group? (closed-loop review, 效果评估)

Reads a decision log and conversion events. For each campaign, customers
whose first candidate was `sent` form the treated group and customers whose
first candidate fell in the holdout (`control`) the control group; a
customer converted when a conversion event (optionally of one product)
occurred within `--window` after that first candidate's `triggered_at`.
Customers whose first candidate ended otherwise (capped, suppressed, ...)
are in neither group, so the two groups differ only by the holdout draw.
"""

from __future__ import annotations

import argparse
import gzip
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson

from keymoment.cli import UserError
from keymoment.triggers.durations import parse_duration

from .report_variants import render_variants, variant_arms


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report", help="conversion uplift of each campaign over its control group"
    )
    parser.add_argument(
        "--decisions", required=True, action="append", help="decision log(s) (JSONL, .gz ok)"
    )
    parser.add_argument(
        "--events", required=True, action="append", help="event files holding conversions"
    )
    parser.add_argument(
        "--window", default="30d", help="attribution window after triggered_at [%(default)s]"
    )
    parser.add_argument("--product", help="count only conversions of this product")
    parser.set_defaults(handler=run)


@dataclass
class Arm:
    """One side of a campaign: customers exposed and customers who converted."""

    customers: int = 0
    converted: int = 0

    @property
    def rate(self) -> float:
        return self.converted / self.customers if self.customers else 0.0


def run(args: argparse.Namespace) -> int:
    try:
        window = parse_duration(args.window)
    except ValueError as exc:
        raise UserError(f"--window: {exc}") from None
    first = first_exposures(args.decisions)
    conversions = read_conversions(args.events, args.product)
    arms = tally(first, conversions, window)
    print(render(arms, args.window, args.product))
    variants = render_variants(variant_arms(_records(args.decisions), conversions, window))
    if variants:
        print(variants)
    return 0


def first_exposures(paths: list[str]) -> dict[tuple[str, str], tuple[datetime, str]]:
    """(campaign, customer) -> (triggered_at, outcome) of the customer's first candidate."""
    first: dict[tuple[str, str], tuple[datetime, str]] = {}
    for record in _records(paths):
        key = (record["campaign_id"], record["customer_id"])
        at = _time(record["triggered_at"])
        if key not in first or at < first[key][0]:
            first[key] = (at, record["outcome"])
    return first


def read_conversions(paths: list[str], product: str | None) -> dict[str, list[datetime]]:
    """Conversion times per customer; malformed lines are skipped (the engine dead-letters them)."""
    out: dict[str, list[datetime]] = defaultdict(list)
    for record in _records(paths):
        if record.get("type") != "conversion" or (product and record.get("product") != product):
            continue
        try:
            out[record["customer_id"]].append(_time(record["occurred_at"]))
        except (KeyError, TypeError, ValueError):
            continue
    return out


def tally(
    first: dict[tuple[str, str], tuple[datetime, str]],
    conversions: dict[str, list[datetime]],
    window: timedelta,
) -> dict[str, dict[str, Arm]]:
    arms: dict[str, dict[str, Arm]] = defaultdict(lambda: {"sent": Arm(), "control": Arm()})
    for (campaign, customer), (at, outcome) in first.items():
        if outcome not in ("sent", "control"):
            continue
        arm = arms[campaign][outcome]
        arm.customers += 1
        arm.converted += any(at <= t <= at + window for t in conversions.get(customer, ()))
    return arms


def uplift(treated: Arm, control: Arm) -> tuple[float, float, float]:
    """(rate difference, half-width of its 95% interval, two-sided p-value), normal approx."""
    diff = treated.rate - control.rate
    if not treated.customers or not control.customers:
        return diff, math.nan, math.nan
    se = math.sqrt(
        treated.rate * (1 - treated.rate) / treated.customers
        + control.rate * (1 - control.rate) / control.customers
    )
    pooled = (treated.converted + control.converted) / (treated.customers + control.customers)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / treated.customers + 1 / control.customers))
    p_value = math.erfc(abs(diff) / se0 / math.sqrt(2)) if se0 else 1.0
    return diff, 1.96 * se, p_value


def render(arms: dict[str, dict[str, Arm]], window: str, product: str | None) -> str:
    what = (
        f"conversions{' of ' + product if product else ''} within {window} of the first candidate"
    )
    lines = [
        f"uplift by campaign ({what}):",
        f"  {'campaign':<20}{'treated':>9}{'rate':>8}{'control':>9}{'rate':>8}"
        f"{'uplift':>9}{'95% CI':>10}{'p':>8}",
    ]
    for campaign in sorted(arms):
        sent, control = arms[campaign]["sent"], arms[campaign]["control"]
        diff, half, p = uplift(sent, control)
        lines.append(
            f"  {campaign:<20}{sent.customers:>9,}{sent.rate:>8.1%}{control.customers:>9,}"
            f"{control.rate:>8.1%}{diff * 100:>+8.1f}pp{_plus_minus(half):>9}{p:>8.3f}"
        )
    if not arms:
        lines.append("  no campaign has sent or control decisions in the log")
    return "\n".join(lines)


def _plus_minus(half_width: float) -> str:
    return f"±{half_width * 100:.1f}"


def _records(paths: list[str]):  # type: ignore[no-untyped-def]
    for path in paths:
        try:
            handle = gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")  # noqa: SIM115
        except OSError as exc:
            raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
        with handle:
            for line in handle:
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(record, dict):
                    yield record


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
