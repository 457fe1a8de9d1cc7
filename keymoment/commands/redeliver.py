"""`keymoment redeliver --dead-letters FILE --sink URL`: send dead-lettered offers again.

A delivery dead letter (`channel_backlog_full`, `webhook_unavailable`,
`expired_in_delivery`, `webhook_rejected`) carries the whole offer under
`offer`, so it can be sent again as it was: same body, same `offer_id`,
so the same `Idempotency-Key`, and the gateway drops an offer it had in
fact accepted. Only offers still before their `expires_at` are sent; the
rest, and every record that is not an offer (input dead letters), is
skipped and counted by why. Offers that fail again can be written to
`--failed FILE` (dead letters again, for a later try).
"""

from __future__ import annotations

import argparse
import gzip
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson

from keymoment.cli import UserError
from keymoment.commands.files import open_input, open_output


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "redeliver", help="send dead-lettered offers again while they are before expires_at"
    )
    p.add_argument("--dead-letters", required=True, metavar="FILE", help="dead letters (JSONL)")
    p.add_argument("--sink", required=True, metavar="URL", help="webhook+https://...?secret_env=")
    p.add_argument(
        "--reason", action="append", metavar="REASON", help="only dead letters with this reason"
    )
    p.add_argument("--failed", metavar="FILE", help="write the offers that fail again here")
    p.add_argument("--dry-run", action="store_true", help="say what would be sent; send nothing")
    p.set_defaults(handler=run)


@dataclass
class Plan:
    """The offers to send again, in file order, and how many records were skipped, by why."""

    offers: list[dict] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)


def plan(records: Iterable[dict | None], now: datetime, reasons: set[str] | None) -> Plan:
    """Which dead letters to send again (None stands for an unreadable line)."""
    out, seen = Plan(), set[str]()
    for record in records:
        why = _skip(record, now, reasons, seen)
        if why:
            out.skipped[why] += 1
            continue
        assert record is not None
        seen.add(record["offer"]["offer_id"])
        out.offers.append(record["offer"])
    return out


def _skip(
    record: dict | None, now: datetime, reasons: set[str] | None, seen: set[str]
) -> str | None:
    if record is None:
        return "unreadable line"
    offer = record.get("offer")
    if not isinstance(offer, dict) or not offer.get("offer_id"):
        return "no offer body" if record.get("offer_id") else "not an offer"
    if reasons is not None and record.get("reason") not in reasons:
        return "reason not selected"
    if offer["offer_id"] in seen:
        return "offer listed again"
    expires = _time(offer.get("expires_at"))
    if expires is not None and expires <= now:
        return "past expires_at"
    return None


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def read_dead_letters(path: str) -> Iterator[dict | None]:
    """Each line as a dict; None for a line that is not a JSON object."""
    with open_input(path) as raw:
        stream = gzip.open(raw) if path.endswith(".gz") else raw  # noqa: SIM115 - closed with raw
        for line in stream:
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                record = None
            yield record if isinstance(record, dict) else None


def run(args: argparse.Namespace) -> int:
    todo = plan(read_dead_letters(args.dead_letters), datetime.now(UTC), _reasons(args.reason))
    for why, n in sorted(todo.skipped.items()):
        print(f"skipped {n:,} ({why})")
    if args.dry_run or not todo.offers:
        print(f"would send {len(todo.offers):,} offers" if args.dry_run else "nothing to send")
        return 0
    dead = _send(args.sink, todo.offers)
    print(f"sent {len(todo.offers):,} offers: {len(todo.offers) - len(dead):,} accepted")
    for reason, n in sorted(Counter(d["reason"] for d in dead).items()):
        print(f"failed again {n:,} ({reason})")
    if args.failed and dead:
        with open_output(args.failed) as out:
            out.write(b"".join(orjson.dumps(d) + b"\n" for d in dead))
    return 1 if dead else 0


def _reasons(given: list[str] | None) -> set[str] | None:
    return set(given) if given else None


def _send(url: str, offers: list[dict]) -> list[dict]:
    from keymoment.connectors.urls import sink_from_url

    try:
        sink = sink_from_url(url)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    delivery = getattr(sink, "delivery", None)
    if delivery is None:
        raise UserError("--sink must be a webhook+http(s):// URL (the sinks that dead-letter)")
    try:
        return delivery.deliver_batch(offers)
    finally:
        delivery.close()
