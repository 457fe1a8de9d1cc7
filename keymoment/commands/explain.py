"""`keymoment explain`: everything the engine decided for one customer, in plain words.

The logic is `keymoment.desk.explain.explain` (pure, shared with the
console); this module reads the files. Only the customer's lines of the
event files are decoded: a line is decoded when it contains the id.
"""

from __future__ import annotations

import argparse
import sys

import orjson

from keymoment.cli import UserError
from keymoment.config import RulesError, RulesFile, load_rules
from keymoment.connectors.customers import ReferenceDataError, read_profiles
from keymoment.connectors.wire import DeadLetter, decode
from keymoment.desk.explain import explain
from keymoment.desk.records import InputError, Skipped, decisions
from keymoment.triggers.events import CustomerProfile, Event

from .args import timestamp
from .files import open_input


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "explain", help="everything decided for one customer, in time order and plain words"
    )
    parser.add_argument(
        "--decisions", required=True, action="append", help="decision log(s) (JSONL, .gz ok)"
    )
    parser.add_argument("--customer", required=True, metavar="ID", help="the customer_id")
    parser.add_argument(
        "--events", action="append", help="the events replayed (with --rules: timers, near misses)"
    )
    parser.add_argument("--rules", help="the rules file the decision log was made with")
    parser.add_argument("--customers", help="customer reference data (JSONL) for the profile")
    parser.add_argument("--until", type=timestamp, help="the backtest's --until, if it had one")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    rules = _rules(args.rules)
    skipped = Skipped()
    try:
        records = list(decisions(args.decisions, skipped))
    except InputError as exc:
        raise UserError(str(exc)) from None
    events = _events(args.events, args.customer) if args.events else None
    profile = _profile(args.customers, args.customer)
    result = explain(args.customer, records, rules, events, profile, args.until)
    if args.json:
        print(orjson.dumps(result.as_json(), option=orjson.OPT_INDENT_2).decode())
    else:
        print("\n".join(result.lines()))
    for path, n in skipped.counts.items():
        print(f"warning: {n:,} unreadable line(s) in {path} skipped", file=sys.stderr)
    return 0


def _rules(path: str | None) -> RulesFile | None:
    if path is None:
        return None
    try:
        return load_rules(path)
    except RulesError as exc:
        first = exc.readable()[0] if exc.problems else "invalid"
        raise UserError(
            f"{exc.source}: invalid ({len(exc.problems)} problem(s)), first: {first}"
        ) from None


def _events(paths: list[str], customer: str) -> list[Event]:
    """The customer's events from JSONL files; a line is decoded only if it holds the id."""
    needle = orjson.dumps(customer)
    out: list[Event] = []
    for path in paths:
        with open_input(path) as raw:
            lines = _lines(raw, path)
            for n, line in enumerate(lines, 1):
                if needle in line:
                    decoded = decode(line, f"{path}:{n}")
                    if not isinstance(decoded, DeadLetter) and decoded.customer_id == customer:
                        out.append(decoded)
    return out


def _lines(raw, path: str):  # noqa: ANN001, ANN202 - a binary file in, its lines out
    import gzip

    return gzip.GzipFile(fileobj=raw) if path.endswith(".gz") else raw


def _profile(path: str | None, customer: str) -> CustomerProfile | None:
    if path is None:
        return None
    try:
        profiles, _ = read_profiles(path)
    except ReferenceDataError as exc:
        raise UserError(str(exc)) from None
    return profiles.get(customer)
