"""`keymoment report`: did each campaign beat its control group? (closed-loop review, 效果评估)

The arithmetic is in `keymoment.desk.uplift` (arms) and `keymoment.desk.stats`
(Wilson and Newcombe intervals, Fisher's exact p); this module reads the
files, says plainly when there is nothing to report, and prints the table,
the JSON and the HTML page.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Iterable

from keymoment.cli import UserError
from keymoment.desk import uplift
from keymoment.desk.records import InputError, Skipped, decisions, jsonl
from keymoment.desk.stats import LEVEL, MIN_ARM
from keymoment.triggers.durations import parse_duration

from .files import write_json_and_html
from .report_leads import lead_outcomes, render_leads, tally_leads
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
    parser.add_argument("--product", help="count only conversions of this product [any]")
    parser.add_argument("--json", metavar="OUT", help="write the report as JSON (docs/desk.md)")
    parser.add_argument("--html", metavar="OUT", help="write the report as one HTML page")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        window = parse_duration(args.window)
    except ValueError as exc:
        raise UserError(f"--window: {exc}") from None
    skipped = Skipped()
    try:
        first = uplift.first_exposures(decisions(args.decisions, skipped))
        converted = uplift.conversions(_events(args.events, skipped), args.product)
    except InputError as exc:
        raise UserError(str(exc)) from None
    _warn_skipped(skipped)
    found = sum(len(times) for times in converted.values())
    if not found:
        what = f"of product {args.product} " if args.product else ""
        raise UserError(f"no conversion events {what}found in {', '.join(args.events)}")
    rows = uplift.tally(first, converted, window)
    report = uplift.as_json(rows, args.window, args.product, found)
    print(render(rows, args.window, args.product, found))
    variants = render_variants(variant_arms(decisions(args.decisions), converted, window))
    if variants:
        print(variants)
    shadow = _shadow_line(decisions(args.decisions))
    if shadow:
        print(shadow)
    outcomes = lead_outcomes(_events(args.events, Skipped()))
    leads = render_leads(tally_leads(decisions(args.decisions), outcomes))
    if leads:
        print(leads)
    _write_outputs(args, report)
    return 0


def _shadow_line(records: Iterable[dict]) -> str:
    """Shadow candidates per campaign, shown apart: they are in no arm of the uplift."""
    counts = Counter(r["campaign_id"] for r in records if r["outcome"] == "shadow")
    if not counts:
        return ""
    rows = "".join(f"\n  {campaign:<24}{n:>10,}" for campaign, n in sorted(counts.items()))
    return "shadow candidates (tried, never sent, in no arm):" + rows


def _events(paths: list[str], skipped: Skipped):  # noqa: ANN202 - a generator of dicts
    for path in paths:
        yield from jsonl(path, skipped)


def _warn_skipped(skipped: Skipped) -> None:
    for path, n in skipped.counts.items():
        print(f"warning: {n:,} unreadable line(s) in {path} skipped", file=sys.stderr)


def _write_outputs(args: argparse.Namespace, report: dict) -> None:
    from keymoment.desk.pages import report_page

    write_json_and_html(args.json, args.html, report, report_page)


def render(rows: list[uplift.CampaignUplift], window: str, product: str | None, found: int) -> str:
    """The table an operator reads: both arms, the difference with its interval, warnings."""
    what = (
        f"conversions{' of ' + product if product else ''} within {window} of the first candidate"
    )
    lines = [
        f"uplift by campaign ({what}; {found:,} conversion events; {LEVEL:.0%} intervals):",
        f"  {'campaign':<20}{'treated':>9}{'rate':>8}{'control':>9}{'rate':>8}"
        f"{'uplift':>10}  {'interval (Newcombe)':<22}{'p (Fisher)':>10}",
    ]
    for row in rows:
        t, c, u = row.treated, row.control, row.uplift
        lines.append(
            f"  {row.campaign_id:<20}{t.customers:>9,}{_pct(t.rate):>8}{c.customers:>9,}"
            f"{_pct(c.rate):>8}{_pp(u.diff):>10}  {_span(u.low, u.high):<22}{_p(u.p_value):>10}"
        )
    if not rows:
        lines.append("  no campaign has sent or control decisions in the log")
    warnings = [f"  {row.campaign_id}: {row.warning}" for row in rows if row.warning]
    if warnings:
        lines.append(f"warnings (an arm needs at least {MIN_ARM} customers):")
        lines.extend(warnings)
    return "\n".join(lines)


def _pct(rate: float) -> str:
    return "-" if rate != rate else f"{rate:.1%}"


def _pp(diff: float) -> str:
    return "-" if diff != diff else f"{diff * 100:+.1f}pp"


def _span(low: float, high: float) -> str:
    return "-" if low != low else f"{low * 100:+.1f} .. {high * 100:+.1f}pp"


def _p(p: float) -> str:
    return "-" if p != p else ("<0.001" if p < 0.001 else f"{p:.3f}")
