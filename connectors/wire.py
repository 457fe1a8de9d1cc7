"""Bytes on the wire -> domain events, or a dead letter with its reason (section 1).

The only place that knows the JSON wire format of input events. It never
raises on bad input: every payload becomes an `Event` or a `DeadLetter`,
and a dead letter carries a reason code and where the payload came from,
never the payload itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import orjson

from keymoment.triggers.events import (
    MAX_AMOUNT_MINOR,
    RFC3339,
    AppEvent,
    ConversionEvent,
    Event,
    TransactionEvent,
    balance_to_minor,
    parse_time,
    to_minor,
)

from .wire_shapes import WIRE_TYPES, AppWire, ConversionWire, TransactionWire

MAX_PAYLOAD = 64 * 1024
REASONS = ("oversize", "malformed_json", "schema", "bad_amount", "clock_skew", "duplicate")
_DECODER = msgspec.json.Decoder(WIRE_TYPES)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A rejected input: `reason` is a section-1 code such as `schema:occurred_at`."""

    reason: str
    source: str
    event_id: str | None = None
    detail: str | None = None

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"reason": self.reason, "source": self.source}
        if self.event_id is not None:
            out["event_id"] = self.event_id
        if self.detail:
            out["detail"] = self.detail
        return out

    @property
    def family(self) -> str:
        """The reason without its field: `schema` for `schema:amount`."""
        return self.reason.partition(":")[0]


def decode(
    raw: bytes | str,
    source: str,
    *,
    now: datetime | None = None,
    max_future: timedelta = timedelta(minutes=5),
    balances: bool = True,
) -> Event | DeadLetter:
    """Decode one message; `now` (the wall clock) enables the `clock_skew` check.

    `balances=False` leaves `balance_after` out of the event (None) for rule
    sets with no rule that reads it (only balance milestones do): it is
    still checked, so what is dead-lettered does not change, but the
    common `digits.dd` shape costs one regex match instead of a conversion.
    """
    if len(raw) > MAX_PAYLOAD:
        return DeadLetter("oversize", source, detail=f"over {MAX_PAYLOAD} bytes")
    try:
        wire = _DECODER.decode(raw)
    except msgspec.ValidationError as exc:
        return _rejection(str(exc), source, raw)
    except msgspec.DecodeError:
        return DeadLetter("malformed_json", source)
    try:
        event = _event(wire, balances)
    except _BadField as exc:
        return DeadLetter(exc.reason, source, _readable(wire.event_id), detail=exc.detail)
    if now is not None and event.occurred_at - now > max_future:
        return DeadLetter("clock_skew", source, event.event_id, detail="occurred_at ahead of clock")
    return event


class _BadField(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        self.reason, self.detail = reason, detail


def _convert(field: str, convert: Any, value: object) -> Any:
    """`convert(value)`; a failure names the field (`bad_amount` for the amount)."""
    try:
        return convert(value)
    except ValueError as exc:  # AmountError and TimeError are ValueErrors
        reason = "bad_amount" if field == "amount" else f"schema:{field}"
        raise _BadField(reason, _short(str(exc))) from None


def _event(wire: TransactionWire | AppWire | ConversionWire, balances: bool) -> Event:
    """The domain event of a wire struct msgspec already checked."""
    at = _utc(wire.occurred_at)
    if type(wire) is TransactionWire:
        amount, balance = wire.amount, wire.balance_after
        # The common shapes inline (`digits.dd` strings), the rest through to_minor/_checked:
        # the same values and the same rejections, at a fraction of the calls.
        if type(amount) is str and _PLAIN_POSITIVE.fullmatch(amount):
            minor = int(amount.replace(".", "")) if amount[-3:-2] == "." else int(amount) * 100
            if not 0 < minor <= MAX_AMOUNT_MINOR:
                minor = _convert("amount", to_minor, amount)
        else:
            minor = _convert("amount", to_minor, amount)
        if balance is None or (
            not balances and type(balance) is str and _PLAIN_BALANCE.fullmatch(balance)
        ):
            balance_minor = None
        else:
            balance_minor = _convert(
                "balance_after", balance_to_minor if balances else _checked, balance
            )
        return TransactionEvent(
            event_id=wire.event_id, customer_id=wire.customer_id, occurred_at=at,
            account_id=wire.account_id, direction=wire.direction, amount=minor, kind=wire.kind,
            currency=wire.currency, initiated_by=wire.initiated_by,
            counterparty=wire.counterparty, channel=wire.channel, balance_after=balance_minor,
        )  # fmt: skip
    if type(wire) is AppWire:
        return AppEvent(event_id=wire.event_id, customer_id=wire.customer_id, occurred_at=at,
                        action=wire.action, page=wire.page, product=wire.product,
                        session_id=wire.session_id)  # fmt: skip
    assert type(wire) is ConversionWire
    return ConversionEvent(
        event_id=wire.event_id, customer_id=wire.customer_id, occurred_at=at,
        product=wire.product, offer_id=wire.offer_id,
    )  # fmt: skip


def _utc(text: str) -> datetime:
    """`parse_time` with its common case (a `Z` time in range) written out, and remembered.

    Feeds carry many events per second (batch postings, app sessions; Berka
    has dates only), so the last few thousand distinct times are kept: a hit
    is one dict lookup instead of a regex match and a parse. Only accepted
    times are kept, so a rejection is always computed afresh.
    """
    at = _RECENT_TIMES.get(text)
    if at is not None:
        return at
    if RFC3339.fullmatch(text):
        try:
            at = datetime.fromisoformat(text)
        except ValueError:
            pass  # parse_time names the reason
        else:
            if at.tzinfo is not UTC or not 1900 <= at.year <= 9000:
                at = _convert("occurred_at", parse_time, text)
            if len(_RECENT_TIMES) >= _RECENT_MAX:
                _RECENT_TIMES.clear()
            _RECENT_TIMES[text] = at
            return at
    return _convert("occurred_at", parse_time, text)


_RECENT_MAX = 4096
_RECENT_TIMES: dict[str, datetime] = {}

_PLAIN_POSITIVE = re.compile(r"\d{1,16}(?:\.\d\d)?", re.ASCII)  # to_minor's fast shape, unsigned
_PLAIN_BALANCE = re.compile(r"-?\d{1,12}(?:\.\d\d)?", re.ASCII)  # always under 1e12


def _checked(balance: object) -> None:
    """Validate a balance nobody reads, as `balance_to_minor` would, without building it."""
    if type(balance) is not str or not _PLAIN_BALANCE.fullmatch(balance):
        balance_to_minor(balance)


_AT_FIELD = re.compile(r"at `\$\.([A-Za-z_]+)")
_MISSING = re.compile(r"missing required field `([A-Za-z_]+)`")


def _rejection(message: str, source: str, raw: bytes | str) -> DeadLetter:
    """A msgspec validation error as a section-1 reason, without any input value in it."""
    text = message.split(" - at ", 1)[0]
    found = _AT_FIELD.search(message) or _MISSING.search(message)
    if found is None:  # the document itself: an array, a number, a string
        return DeadLetter("malformed_json", source, detail="not a JSON object")
    field = found.group(1)
    readable = _event_id_of(raw)
    detail = "missing" if "missing required" in text else _short(text.split("'")[0].strip())
    if field == "amount" and detail != "missing":
        return DeadLetter("bad_amount", source, readable, detail="not a number")
    return DeadLetter(f"schema:{field}", source, readable, detail=detail)


def _event_id_of(raw: bytes | str) -> str | None:
    """The payload's event id when it is a usable string (rejections only: parses again)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return _readable(data.get("event_id")) if isinstance(data, dict) else None


def _readable(event_id: object) -> str | None:
    return event_id if isinstance(event_id, str) and 0 < len(event_id) <= 128 else None


def _short(message: str) -> str:
    return message.removeprefix("Value error, ")[:80]


def encode(event: Event) -> bytes:
    """The wire form of an event (amounts back in major units), for generators and tests."""
    data = {k: v for k, v in msgspec.structs.asdict(event).items() if v is not None}
    data["occurred_at"] = event.occurred_at.isoformat().replace("+00:00", "Z")
    if isinstance(event, TransactionEvent):
        data["amount"] = minor_to_text(event.amount)
        if event.balance_after is not None:
            data["balance_after"] = minor_to_text(event.balance_after)
    return orjson.dumps(data)


def minor_to_text(minor: int) -> str:
    """Minor units as a decimal string with two places: 70050 -> "700.50"."""
    sign = "-" if minor < 0 else ""
    whole, cents = divmod(abs(minor), 100)
    return f"{sign}{whole}.{cents:02d}"
