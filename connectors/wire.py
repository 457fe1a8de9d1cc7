"""Bytes on the wire -> domain events, or a dead letter with its reason (section 1).

The only place that knows the JSON wire format of input events. It never
raises on bad input: every payload becomes an `Event` or a `DeadLetter`,
and a dead letter carries a reason code and where the payload came from,
never the payload itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from itertools import compress, repeat
from operator import attrgetter, is_, is_not, itemgetter
from typing import Any, cast

import msgspec
import orjson

from keymoment.triggers.events import (
    MAX_AMOUNT_MINOR,
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
    still checked, so what is dead-lettered does not change, but not
    converted.
    """
    if len(raw) > MAX_PAYLOAD:
        return DeadLetter("oversize", source, detail=f"over {MAX_PAYLOAD} bytes")
    try:
        wire = _DECODER.decode(raw)
        text = wire.occurred_at
        at = _RECENT_TIMES.get(text) or _utc(text)
        if type(wire) is TransactionWire:
            event: Event = _transaction(wire, at, balances)
        else:
            event = _other(wire, at)
    except msgspec.ValidationError as exc:
        return _rejection(str(exc), source, raw)
    except (msgspec.DecodeError, UnicodeEncodeError):  # a `str` with a lone surrogate
        return DeadLetter("malformed_json", source)
    except _BadField as exc:  # raised only once `wire` is there
        return DeadLetter(exc.reason, source, _readable(wire.event_id), detail=exc.detail)
    if now is not None and event.occurred_at - now > max_future:
        return DeadLetter("clock_skew", source, event.event_id, detail="occurred_at ahead of clock")
    return event


def decode_many(
    records: Iterable[tuple[str, bytes | str]],
    *,
    now: datetime | None = None,
    max_future: timedelta = timedelta(minutes=5),
    balances: bool = True,
) -> list[Event | DeadLetter]:
    """`decode` of each `(source, payload)` (a reader's batch), in order, with the same results.

    A batch is first tried whole (`_whole`); one that does not go through
    whole (a reject, an unusual amount) is decoded message by message
    (`_one_by_one`), which names each reject's reason.
    """
    records = records if isinstance(records, list) else list(records)
    try:
        return _whole(list(map(_PAYLOAD, records)), now, max_future, balances)
    except (msgspec.MsgspecError, UnicodeEncodeError, _BadField, _Refused):
        return _one_by_one(records, now, max_future, balances)


def _whole(
    raws: list[bytes | str], now: datetime | None, max_future: timedelta, balances: bool
) -> list[Event | DeadLetter]:
    """A batch of which every message is accepted, or an exception (`_Refused` or
    whatever a message raises).

    msgspec parses every message first (`map`), so that the amounts and
    balances of all the transactions can be checked and converted in a
    few C calls over the batch (`_money`) instead of a dozen Python steps
    each; the loop then does what `_one_by_one` does with the times
    (written out again: a call per event would cost more than the batch
    saves), and builds the events. It accepts only what `_one_by_one` accepts, with
    the same values; everything else is refused, and `_one_by_one` gives
    the results. A hot loop, kept in one piece.
    """
    if not raws:
        return []
    if max(map(len, raws)) > MAX_PAYLOAD:
        raise _Refused
    wires = list(map(_DECODER.decode, raws))
    flags = map(is_, map(type, wires), repeat(TransactionWire))
    transactions = cast(list[TransactionWire], list(compress(wires, flags)))
    amount, balance = _money(transactions, balances)
    out: list[Event | DeadLetter] = []
    append, clocks = out.append, _CLOCKS.get
    last_text, last_at, hour_text, hour_at = _LAST[0]
    for wire in wires:
        text = wire.occurred_at
        if text != last_text:
            clock = clocks(text[14:]) if text.startswith(hour_text) else None
            if clock is None:
                last_at = _RECENT_TIMES.get(text) or _utc(text)
                hour_text, hour_at = _hour_of(text, hour_text, hour_at)
            else:  # `hour_text` + an accepted `MM:SSZ`: a valid time
                last_at = hour_at + clock
            last_text = text
        if type(wire) is TransactionWire:
            append(TransactionEvent(wire.event_id, wire.customer_id, last_at, wire.account_id,
                                    wire.direction, amount(), wire.kind, wire.currency,
                                    wire.initiated_by, wire.counterparty, balance(),
                                    wire.channel))  # fmt: skip
        else:
            append(_other(wire, last_at))
        if now is not None and last_at - now > max_future:
            raise _Refused
    _LAST[0] = (last_text, last_at, hour_text, hour_at)
    return out


def _money(
    transactions: list[TransactionWire], balances: bool
) -> tuple[Callable[[], int], Callable[[], int | None]]:
    """The amounts and the balances of a batch's transactions, in minor units, one call each
    (balances: None when absent or when `balances` is False), or `_Refused`.

    Only plain shapes (`_minors`), an amount with its cents and in range,
    a balance with its cents when converted.
    """
    amounts = _minors(list(map(_AMOUNT, transactions)), _CENTS_AMOUNTS)
    if amounts and (min(amounts) <= 0 or max(amounts) > MAX_AMOUNT_MINOR):
        raise _Refused
    given = list(map(_BALANCE, transactions))
    present = list(filter(_NOT_NONE, given))
    if not balances:
        _minors(present, _PLAIN_BALANCES, convert=False)
        return iter(amounts).__next__, repeat(None).__next__
    if len(present) == len(given):
        return iter(amounts).__next__, iter(_minors(present, _CENTS_BALANCES)).__next__
    pick = {True: repeat(None), False: iter(_minors(present, _CENTS_BALANCES))}
    each = map(next, map(pick.__getitem__, map(is_, given, repeat(None))))  # absent: None
    return iter(amounts).__next__, each.__next__


def _one_by_one(
    records: list[tuple[str, bytes | str]],
    now: datetime | None,
    max_future: timedelta,
    balances: bool,
) -> list[Event | DeadLetter]:
    """`decode_many` message by message: the path of a batch with a reject.

    One Python call per batch instead of per message; a message refused
    for any reason goes through `decode` itself, which names the reason.
    Times: input is mostly in time order, so the loop keeps the last time
    it converted and the hour it fell in (`_LAST`, also between calls): a
    repeat of the last time (about half the events of a feed with many
    events per second) is one comparison, and a new `...:SSZ` time in that
    hour a prefix test and its `MM:SSZ` looked up (`_CLOCKS`). Anything
    else goes through `_utc`, as in `decode`. A hot loop, kept in one piece.
    """
    out: list[Event | DeadLetter] = []
    append, parse, clocks = out.append, _DECODER.decode, _CLOCKS.get
    last_text, last_at, hour_text, hour_at = _LAST[0]
    for source, raw in records:
        try:
            if len(raw) > MAX_PAYLOAD:
                raise _Refused
            wire = parse(raw)
            text = wire.occurred_at
            if text != last_text:
                clock = clocks(text[14:]) if text.startswith(hour_text) else None
                if clock is None:
                    last_at = _RECENT_TIMES.get(text) or _utc(text)
                    hour_text, hour_at = _hour_of(text, hour_text, hour_at)
                else:  # `hour_text` + an accepted `MM:SSZ`: a valid time
                    last_at = hour_at + clock
                last_text = text
            if type(wire) is TransactionWire:
                event: Event = _transaction(wire, last_at, balances)
            else:
                event = _other(wire, last_at)
            if now is not None and last_at - now > max_future:
                raise _Refused
        except (msgspec.MsgspecError, UnicodeEncodeError, _BadField, _Refused):
            append(decode(raw, source, now=now, max_future=max_future, balances=balances))
        else:
            append(event)
    _LAST[0] = (last_text, last_at, hour_text, hour_at)
    return out


def _minors(values: list[object], shapes: frozenset[bytes], convert: bool = True) -> list[int]:
    """Money texts of `shapes` (digits as `0`; each `digits.dd` when converted) -> minor
    units, or `_Refused`.

    One join (a value that is not a `str` fails it), its digits mapped to
    `0` and split again: the distinct templates, a handful, must all be
    plain shapes, and a separator inside a value shows as one value too
    many. The digits without their points are then one JSON array of
    integers for msgspec, once leading zeros are gone (JSON has none:
    `0.50` is `050`).
    """
    if not values:
        return []
    try:
        text = ",".join(values)  # type: ignore[arg-type]
    except TypeError:
        raise _Refused from None
    templates = text.encode().translate(_DIGITS_AS_ZERO).split(b",")
    if len(templates) != len(values) or not shapes.issuperset(templates):
        raise _Refused
    if not convert:
        return []
    digits = "," + text.replace(".", "") + ","
    while ",0" in digits or ",-0" in digits:  # `0.00` ends as nothing: refused below
        digits = digits.replace(",0", ",").replace(",-0", ",-")
    minors = _INTS.decode(f"[{digits[1:-1]}]")
    if len(minors) != len(values):  # `[]` of one `0.00`; more are `,,`, malformed JSON
        raise _Refused
    return minors


def _hour_of(text: str, hour_text: str, hour_at: datetime) -> tuple[str, datetime]:
    """`text`'s remembered hour (`_HOURS`) when there is one, else the one `decode_many` had."""
    hour = _HOURS.get(text[:14])
    return (text[:14], hour) if hour is not None else (hour_text, hour_at)


class _Refused(Exception):
    """A message `decode_many` hands to `decode` for its dead letter."""


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


def _other(wire: AppWire | ConversionWire, at: datetime) -> Event:
    """An app or conversion event at `at` (positional construction: cheaper than keywords)."""
    if type(wire) is AppWire:
        return AppEvent(wire.event_id, wire.customer_id, at, wire.action, wire.page, wire.product,
                        wire.session_id)  # fmt: skip
    assert type(wire) is ConversionWire
    return ConversionEvent(wire.event_id, wire.customer_id, at, wire.product, wire.offer_id)


def _transaction(wire: TransactionWire, at: datetime, balances: bool) -> TransactionEvent:
    """A transaction (three events in four) at `at`: the hot path, kept in one piece on purpose.

    The amount and the balance are checked together against the plain
    shapes (`digits[.dd]`, ASCII; see `_PLAIN_MONEY`): one dict lookup of
    their UTF-8 text with ASCII digits mapped to `0` (a non-ASCII character
    leaves bytes above 0x7f, which no shape has; msgspec refuses lone
    surrogates, so `encode()` cannot fail), then `int()` of the digits.
    Everything else goes through `to_minor`, `balance_to_minor` and
    `_checked`, which give the same values and the same rejections.
    """
    amount, balance = wire.amount, wire.balance_after
    dots, plain_amount, plain_balance = None, "", ""  # the two as `str`, for the plain path
    if type(amount) is str:
        plain_amount = amount
        if balance is None:
            dots = _PLAIN_AMOUNTS.get(amount.encode().translate(_DIGITS_AS_ZERO))
        elif type(balance) is str:
            plain_balance = balance
            dots = _PLAIN_MONEY.get(f"{amount}|{balance}".encode().translate(_DIGITS_AS_ZERO))
    if dots is None:
        minor = _convert("amount", to_minor, amount)
        balance_minor = _balance(balance, balances)
    else:
        minor = int(plain_amount.replace(".", "")) if dots[0] else int(plain_amount) * 100
        if not 0 < minor <= MAX_AMOUNT_MINOR:
            _convert("amount", to_minor, amount)  # raises, with the reason
        if not balances or balance is None:
            balance_minor = None
        elif dots[1]:
            balance_minor = int(plain_balance.replace(".", ""))
        else:
            balance_minor = int(plain_balance) * 100
    return TransactionEvent(
        wire.event_id, wire.customer_id, at, wire.account_id, wire.direction, minor, wire.kind,
        wire.currency, wire.initiated_by, wire.counterparty, balance_minor, wire.channel,
    )  # fmt: skip


def _balance(balance: object, balances: bool) -> int | None:
    """`balance_after` in minor units, or None when absent or when no rule reads it."""
    if balance is None:
        return None
    return _convert("balance_after", balance_to_minor if balances else _checked, balance)


def _utc(text: str) -> datetime:
    """`parse_time` with its common cases written out, and remembered (callers look first).

    Feeds carry many events per second (batch postings, app sessions; Berka
    has dates only), so the last few thousand distinct times are kept: a hit
    is one dict lookup. A new `...:SSZ` time is its hour (remembered) plus
    its `MM:SSZ` (remembered: 3,600 at most). Any other new time is checked
    against RFC 3339's shapes with its digits mapped to `0` (one set lookup,
    the same strings as the `RFC3339` regex, which costs more) and parsed
    by `fromisoformat`. Only accepted times are kept, so a rejection is
    always computed afresh.
    """
    hour, clock = _HOURS.get(text[:14]), _CLOCKS.get(text[14:])
    at = hour + clock if hour is not None and clock is not None else _parsed(text)
    if len(_RECENT_TIMES) >= _RECENT_MAX:
        _RECENT_TIMES.clear()
    _RECENT_TIMES[text] = at
    return at


def _parsed(text: str) -> datetime:
    """A time seen for the first time: parsed, and a `...:SSZ` one split for `_utc`."""
    if not (text.isascii() and text.encode().translate(_DIGITS_AS_ZERO) in _RFC3339_SHAPES):
        return _convert("occurred_at", parse_time, text)
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        return _convert("occurred_at", parse_time, text)  # raises, with the reason
    if at.tzinfo is not UTC or not 1900 <= at.year <= 9000:
        return _convert("occurred_at", parse_time, text)
    if len(text) == 20:  # `YYYY-MM-DDTHH:MM:SSZ`: the hour and the `MM:SSZ` apart
        if len(_HOURS) >= _RECENT_MAX:
            _HOURS.clear()
        hour = _HOURS[text[:14]] = at.replace(minute=0, second=0)
        _CLOCKS[text[14:]] = at - hour
    return at


_RECENT_MAX = 4096
_RECENT_TIMES: dict[str, datetime] = {}
# decode_many's last time and its hour, kept between calls: (text, time, `YYYY-MM-DDTHH:`, hour);
# the hour is always a valid one (text[:14] of an accepted `...:SSZ` time, or this start).
_START: tuple[str | None, datetime, str, datetime] = (
    None, datetime(1900, 1, 1, tzinfo=UTC), "1900-01-01T00:", datetime(1900, 1, 1, tzinfo=UTC)
)  # fmt: skip
_LAST = [_START]
_HOURS: dict[str, datetime] = {}  # `YYYY-MM-DDTHH:` of accepted times -> that hour in UTC
_CLOCKS: dict[str, timedelta] = {}  # `MM:SSZ` of accepted times -> its offset in the hour

_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
# Every string `events.RFC3339` matches, with its ASCII digits as 0: a fraction of 0..9
# digits, then `Z` or an offset [`test_rfc3339_shapes_are_the_regex`].
_RFC3339_SHAPES = frozenset(
    f"0000-00-00T00:00:00{fraction}{zone}".encode()
    for fraction in ["", *("." + "0" * n for n in range(1, 10))]
    for zone in ("Z", "+00:00", "-00:00")
)


def _plain_money() -> tuple[dict[bytes, tuple[bool, bool]], dict[bytes, tuple[bool, bool]]]:
    """The plain money shapes, digits as `0` -> (amount has cents, balance has cents).

    Amounts: 1..16 digits, optionally `.dd` (`to_minor`'s fast shape, unsigned);
    balances: an optional `-`, 1..12 digits (always under 1e12), optionally
    `.dd`. Alone for an amount without a balance, and as `amount|balance`.
    """
    amounts = [("0" * n + cents, bool(cents)) for n in range(1, 17) for cents in ("", ".00")]
    balances = [
        (sign + "0" * n + cents, bool(cents))
        for sign in ("", "-")
        for n in range(1, 13)
        for cents in ("", ".00")
    ]
    alone = {text.encode(): (dot, False) for text, dot in amounts}
    pairs = {f"{a}|{b}".encode(): (a_dot, b_dot) for a, a_dot in amounts for b, b_dot in balances}
    return alone, pairs


_PLAIN_AMOUNTS, _PLAIN_MONEY = _plain_money()
_PLAIN_BALANCE = re.compile(r"-?\d{1,12}(?:\.\d\d)?", re.ASCII)  # always under 1e12


def _checked(balance: object) -> None:
    """Validate a balance nobody reads, as `balance_to_minor` would, without building it."""
    if type(balance) is not str or not _PLAIN_BALANCE.fullmatch(balance):
        balance_to_minor(balance)


# `_money`'s templates (digits as `0`), as in `_plain_money`.
_PLAIN_BALANCES = frozenset(b.partition(b"|")[2] for b in _PLAIN_MONEY)
_CENTS_BALANCES = frozenset(b for b in _PLAIN_BALANCES if b.endswith(b".00"))
_CENTS_AMOUNTS = frozenset(a for a in _PLAIN_AMOUNTS if a.endswith(b".00"))
_INTS = msgspec.json.Decoder(list[int])
_PAYLOAD = itemgetter(1)
_AMOUNT, _BALANCE = attrgetter("amount"), attrgetter("balance_after")
_NOT_NONE = partial(is_not, None)

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
