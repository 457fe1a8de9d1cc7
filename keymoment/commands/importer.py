"""`keymoment import berka`: the shared Berka bank data in keymoment's wire format.

The mapping is the one in `../shared/data/berka/README.md`: one customer per
account, each transaction at 12:00 Europe/Prague on its date, kinds chosen
top to bottom from k_symbol and operation. Berka has no consent data, so the
import grants consent on the channels named by `--consent` (default: all)
and says so; real reference data must carry the bank's own consent flags.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from keymoment.cli import UserError

from .files import open_output

PRAGUE = ZoneInfo("Europe/Prague")
CHANNELS = ("app_push", "sms", "wecom", "call_center", "rm_task")
_K_SYMBOL_KINDS = (
    ({"UROK"}, "interest", "bank"),
    ({"SLUZBY", "SANKC. UROK"}, "fee", "bank"),
    ({"DUCHOD"}, "pension", "third_party"),
    ({"UVER"}, "loan_repayment", "bank"),
    ({"SIPO", "POJISTNE", "LEASING"}, "standing_order", "bank"),
)
_OPERATION_KINDS = {
    "VKLAD": ("cash_deposit", "customer"),
    "PREVOD Z UCTU": ("transfer_in", "third_party"),
    "VYBER": ("cash_withdrawal", "customer"),
    "VYBER KARTOU": ("card_payment", "customer"),
    "PREVOD NA UCET": ("transfer_out", "customer"),
}
_DIRECTIONS = {"PRIJEM": "credit", "VYDAJ": "debit", "VYBER": "debit"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "import", help="convert external data to keymoment's wire format"
    )
    formats = parser.add_subparsers(dest="format", required=True, metavar="FORMAT")
    berka = formats.add_parser("berka", help="the Berka (PKDD'99) Czech bank data set")
    berka.add_argument("--trans", required=True, help="trans.asc, optionally .gz")
    berka.add_argument("--accounts", required=True, help="account.asc")
    berka.add_argument("--events", required=True, help="output JSONL (.gz to compress)")
    berka.add_argument("--customers", required=True, help="output reference data JSONL")
    berka.add_argument(
        "--consent",
        default=",".join(CHANNELS),
        help="channels every imported customer consents to (Berka has no consent data); "
        "comma-separated, empty for none [%(default)s]",
    )
    berka.set_defaults(handler=run)


TRANS_COLUMNS = ("trans_id", "account_id", "date", "type", "operation", "amount", "balance")
ACCOUNT_COLUMNS = ("account_id", "district_id", "frequency", "date")


def run(args: argparse.Namespace) -> int:
    consent = [c for c in args.consent.split(",") if c]
    check_table(args.trans, TRANS_COLUMNS, "--trans", "trans.asc")  # both before writing
    check_table(args.accounts, ACCOUNT_COLUMNS, "--accounts", "account.asc")
    with open_output(args.events) as out:
        events = sum(1 for record in berka_events(args.trans) if out.write(_line(record)))
    with open_output(args.customers) as out:
        customers = sum(
            1 for record in berka_customers(args.accounts, consent) if out.write(_line(record))
        )
    print(f"wrote {events} events to {args.events} and {customers} customers to {args.customers}")
    print(
        f"consent: every customer consents to {', '.join(consent) or 'nothing'} "
        "(Berka has no consent data; change with --consent)"
    )
    return 0


def berka_events(path: str | Path) -> Iterator[dict[str, Any]]:
    """Every transaction of a Berka `trans` file as a wire-format dict, in file order."""
    for row in _rows(path):
        yield berka_event(row)


def berka_event(row: dict[str, str]) -> dict[str, Any]:
    """One `trans` row mapped as in data/berka/README.md."""
    kind, initiated_by = berka_kind(row["k_symbol"].strip(), row["operation"].strip())
    event: dict[str, Any] = {
        "type": "transaction",
        "event_id": f"T{row['trans_id']}",
        "customer_id": f"A{row['account_id']}",
        "account_id": row["account_id"],
        "occurred_at": berka_time(row["date"]),
        "direction": _DIRECTIONS.get(row["type"].strip(), "debit"),
        "amount": row["amount"],
        "currency": "CZK",
        "kind": kind,
        "initiated_by": initiated_by,
        "balance_after": row["balance"],
    }
    bank, account = row["bank"].strip(), row["account"].strip()
    if bank and account:
        event["counterparty"] = f"{bank}/{account}"
    return event


def berka_kind(k_symbol: str, operation: str) -> tuple[str, str]:
    """(kind, initiated_by): the first matching line of the README's table."""
    for symbols, kind, initiated_by in _K_SYMBOL_KINDS:
        if k_symbol in symbols:
            return kind, initiated_by
    return _OPERATION_KINDS.get(operation, ("other", "customer"))


@lru_cache(maxsize=4096)
def berka_time(yymmdd: str) -> str:
    """A Berka date at 12:00 Europe/Prague, as RFC 3339 UTC."""
    day = datetime.strptime("19" + yymmdd.strip(), "%Y%m%d")
    local = day.replace(hour=12, tzinfo=PRAGUE)
    return local.astimezone(UTC).isoformat().replace("+00:00", "Z")


def berka_customers(path: str | Path, consent: list[str]) -> Iterator[dict[str, Any]]:
    """One customer per account: opened_at from the account's date, Prague time."""
    for row in _rows(path):
        yield {
            "customer_id": f"A{row['account_id']}",
            "opened_at": berka_time(row["date"]),
            "timezone": "Europe/Prague",
            "consent": {channel: True for channel in consent},
        }


def check_table(path: str | Path, columns: tuple[str, ...], option: str, expected: str) -> None:
    """The file's header has the columns of the Berka table the option expects, or one line."""
    with _open(Path(path)) as raw, io.TextIOWrapper(raw, encoding="latin-1", newline="") as text:
        try:
            header = next(csv.reader(text, delimiter=";", quotechar='"'), [])
        except (OSError, EOFError, csv.Error, UnicodeDecodeError) as exc:
            raise UserError(f"{option} {path}: cannot read it: {exc}") from None
    missing = [c for c in columns if c not in header]
    if missing:
        raise UserError(
            f"{option} {path}: not Berka's {expected} (no {', '.join(missing)} column"
            f"{'s' if len(missing) > 1 else ''}; header: {';'.join(header)[:80] or 'empty'})"
        )


def _open(path: Path):  # noqa: ANN202 - a binary file object, gzip by suffix
    try:
        return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None


def _rows(path: str | Path) -> Iterator[dict[str, str]]:
    path = Path(path)
    try:
        raw = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    with raw, io.TextIOWrapper(raw, encoding="latin-1", newline="") as text:
        reader = csv.DictReader(text, delimiter=";", quotechar='"')
        if not reader.fieldnames or "account_id" not in reader.fieldnames:
            raise UserError(f"{path}: not a Berka table (no account_id column)")
        yield from reader


def _line(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record) + b"\n"
