"""The decoder's fast paths against the plain reading of section 1 (the oracle below).

`decode()` and `decode_many()` write out their common shapes (remembered times,
an hour plus its `MM:SSZ`, `decode_many`'s last time and hour, RFC 3339 and
money shapes checked as digit templates, positional construction). The oracle
is the decoder as it was before those paths: msgspec's wire structs, then
`parse_time`, `to_minor` and `balance_to_minor` on every field, in the same
order. Both must give the same event or the same dead letter (reason, event
id and detail) for every payload.
"""

from __future__ import annotations

import json
import random
import re
from datetime import UTC, datetime, timedelta

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from keymoment.connectors import wire
from keymoment.connectors.wire import MAX_PAYLOAD, DeadLetter, decode, decode_many
from keymoment.connectors.wire_shapes import WIRE_TYPES, AppWire, ConversionWire, TransactionWire
from keymoment.triggers.events import (
    RFC3339,
    AppEvent,
    ConversionEvent,
    TransactionEvent,
    balance_to_minor,
    parse_time,
    to_minor,
)

_EVENT_OF = {TransactionWire: TransactionEvent, AppWire: AppEvent, ConversionWire: ConversionEvent}
_FIELD_ERRORS = {"amount": "bad_amount"}


def oracle(raw: bytes, source: str, *, now=None, max_future=timedelta(minutes=5), balances=True):
    """Section 1 read plainly: every time and amount through the contract's own converters."""
    if len(raw) > MAX_PAYLOAD:
        return DeadLetter("oversize", source, detail=f"over {MAX_PAYLOAD} bytes")
    try:
        shape = msgspec.json.decode(raw, type=WIRE_TYPES)
    except msgspec.ValidationError as exc:
        return wire._rejection(str(exc), source, raw)
    except msgspec.DecodeError:
        return DeadLetter("malformed_json", source)
    fields = msgspec.structs.asdict(shape)
    converters = [("occurred_at", parse_time)]
    if type(shape) is TransactionWire:
        converters.append(("amount", to_minor))
        if shape.balance_after is not None:
            converters.append(("balance_after", balance_to_minor))
    for name, convert in converters:
        try:
            fields[name] = convert(fields[name])
        except ValueError as exc:
            reason = _FIELD_ERRORS.get(name, f"schema:{name}")
            event_id = wire._readable(shape.event_id)
            return DeadLetter(reason, source, event_id, detail=str(exc)[:80])
    if not balances and "balance_after" in fields:
        fields["balance_after"] = None
    event = _EVENT_OF[type(shape)](**fields)
    if now is not None and event.occurred_at - now > max_future:
        return DeadLetter("clock_skew", source, event.event_id, detail="occurred_at ahead of clock")
    return event


def dumps(data: dict) -> bytes:
    """JSON with integers of any size (orjson stops at 64 bits) and `NaN` (not JSON)."""
    return json.dumps(data).encode()


def same(raw: bytes, **kw) -> None:
    """decode() and the oracle agree on `raw`, also when decode() has just seen it."""
    expected = oracle(raw, "s:1", **kw)
    for _ in range(2):  # the second time through the decoder's remembered times
        got = decode(raw, "s:1", **kw)
        assert type(got) is type(expected) and got == expected, (raw, got, expected)
        if not isinstance(got, DeadLetter):
            assert got.occurred_at.tzinfo is UTC


TX = {"type": "transaction", "event_id": "e1", "customer_id": "c1",
      "occurred_at": "2026-01-01T08:00:00Z", "account_id": "a1", "direction": "credit",
      "amount": "52000.00", "kind": "transfer_in", "balance_after": "361157.51"}  # fmt: skip
APP = {"type": "app", "event_id": "e2", "customer_id": "c1", "occurred_at": "2026-01-01T00:00:00Z",
       "action": "page_view", "product": "wealth", "page": "/w"}  # fmt: skip
CONV = {"type": "conversion", "event_id": "e3", "customer_id": "c1",
        "occurred_at": "2026-01-01T00:00:00Z", "product": "card", "offer_id": "o1"}  # fmt: skip

_DIGIT = st.sampled_from("0123456789" * 4 + "\u0661\uff15x")  # now and then not an ASCII digit


def _digits(low: int, high: int) -> st.SearchStrategy[str]:
    return st.lists(_DIGIT, min_size=low, max_size=high).map("".join)


def _number(width: int, low: int, high: int) -> st.SearchStrategy[str]:
    """Mostly well-formed `width`-digit numbers around the valid range, sometimes anything."""
    well_formed = st.integers(low, high).map(lambda n: str(n).zfill(width))
    return well_formed | well_formed | _digits(width - 1, width + 1)


# Times of every shape: right and wrong lengths, separators, fractions, zones, ranges.
_ZONES = ["Z", "Z", "Z", "z", "+00:00", "-00:00", "+08:00", "-05:30", "+0800", "+08", "", " Z"]
_TIME_TEXT = st.builds(
    "{}-{}-{}{}{}:{}:{}{}{}".format,
    _number(4, 1890, 9010) | st.sampled_from(["0000", "9999"]),
    _number(2, 0, 13),
    _number(2, 0, 32),
    st.sampled_from(["T", "T", "T", "t", " ", "_"]),
    _number(2, 0, 24),
    _number(2, 0, 60),
    _number(2, 0, 60),
    st.sampled_from(["", "", "", ".", ".5", ".123456", ".1234567", ".123456789", ".1234567890"])
    | _digits(1, 10).map(lambda d: "." + d),
    st.sampled_from(_ZONES) | st.builds("{}{}:{}".format, st.sampled_from("+-"),
                                         _number(2, 0, 24), _number(2, 0, 60)),
)  # fmt: skip
_JSON_SCALAR = st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.floats() | st.text()
_TIMES = _TIME_TEXT | st.text(max_size=30) | _JSON_SCALAR | st.just([])

# Amounts and balances of every shape.
_MONEY_TEXT = st.builds(
    "{}{}{}{}".format,
    st.sampled_from(["", "", "", "-", "+", " "]),
    _digits(0, 18)
    | st.integers(0, 10**16).map(str)
    | st.sampled_from(["0", "00", "1000000000000", "999999999999", "9999999999999", "1" * 5000]),
    st.sampled_from(["", "", ".00", ".01", ".", ".5", ".005", "e3", "E-2", "_0"])
    | _digits(1, 3).map(lambda d: "." + d),
    st.sampled_from(["", "", "", "", " ", "|5"]),
)
_MONEY = (
    _MONEY_TEXT
    | st.sampled_from(["NaN", "Infinity", "-inf", "0x10", "1_000", "", "1.2.34", ".12"])
    | st.integers(-(10**15), 10**15)
    | st.floats(allow_nan=False)
    | _JSON_SCALAR
)


@settings(max_examples=600, deadline=None)
@given(_TIMES, st.sampled_from([APP, TX, CONV]))
def test_times_of_every_shape_decode_as_the_oracle(text, base):
    same(dumps({**base, "occurred_at": text}))


@settings(max_examples=600, deadline=None)
@given(_MONEY, _MONEY | st.just(None) | st.just("absent"), st.booleans())
def test_amounts_and_balances_of_every_shape_decode_as_the_oracle(amount, balance, balances):
    tx = {**TX, "amount": amount, "balance_after": balance}
    if balance == "absent":
        del tx["balance_after"]
    same(dumps(tx), balances=balances)


_KEYS = ["type", "event_id", "customer_id", "occurred_at", "account_id", "direction", "amount",
         "kind", "currency", "initiated_by", "counterparty", "balance_after", "channel", "action",
         "page", "product", "session_id", "offer_id", "colour"]  # fmt: skip
_VALUES = (
    _JSON_SCALAR
    | _TIME_TEXT
    | _MONEY_TEXT
    | st.sampled_from(
        [
            "transaction",
            "app",
            "conversion",
            "credit",
            "debit",
            "payroll",
            "login",
            "customer",
            "bank",
            "CNY",
            "usd",
            "x" * 65,
            "x" * 129,
        ]
    )  # fmt: skip
    | st.lists(st.integers(), max_size=2)
    | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
)


@settings(max_examples=800, deadline=None)
@given(
    st.sampled_from([TX, APP, CONV]),
    st.lists(st.sampled_from(_KEYS), max_size=3),
    st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=4),
    st.booleans(),
    st.sampled_from([None, datetime(2026, 1, 1, tzinfo=UTC), datetime(2025, 12, 31, tzinfo=UTC)]),
)
def test_missing_extra_and_wrong_fields_decode_as_the_oracle(base, dropped, changes, balances, now):
    data = {k: v for k, v in {**base, **changes}.items() if k not in dropped}
    same(dumps(data), balances=balances, now=now)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_arbitrary_bytes_decode_as_the_oracle(raw):
    same(raw)


def time_parts(min_size: int, max_size: int) -> st.SearchStrategy[list[tuple[int, ...]]]:
    """Lists of valid (year, month, day, hour, minute, second) times."""
    return st.lists(
        st.tuples(st.integers(1900, 9000), st.integers(1, 12), st.integers(1, 28),
                  st.integers(0, 23), st.integers(0, 59), st.integers(0, 59)),
        min_size=min_size, max_size=max_size,
    )  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(time_parts(2, 40), st.randoms(use_true_random=False))
def test_remembered_hours_and_clocks_recombine_exactly(parts, rng: random.Random):
    """Hours and `MM:SSZ` learnt from some times give every other combination of them."""
    hours = [f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:" for y, mo, d, h, _, _ in parts]
    clocks = [f"{mi:02d}:{s:02d}Z" for *_, mi, s in parts]
    wire._RECENT_TIMES.clear()
    texts = [hour + clock for hour in hours for clock in clocks]
    rng.shuffle(texts)
    for text in texts:
        same(dumps({**APP, "occurred_at": text}))


@settings(max_examples=150, deadline=None)
@given(time_parts(1, 6), st.booleans(), st.randoms(use_true_random=False))
def test_decode_many_last_time_and_hour_never_accept_or_move_a_time(parts, ordered, rng):
    """decode_many keeps the last time and its hour between messages and calls: sorted or
    shuffled times, repeats, one-character edits of them, in batches of any size, as the oracle."""
    hours = [f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:" for y, mo, d, h, _, _ in parts]
    clocks = [f"{mi:02d}:{s:02d}Z" for *_, mi, s in parts]
    texts = [hour + clock for hour in hours for clock in clocks]
    texts += [edit for text in texts for edit in rng.sample(sorted(_neighbours(text)), 3)]
    texts += rng.sample(texts, len(texts) // 3)  # repeats
    texts.sort() if ordered else rng.shuffle(texts)
    wire._LAST[0] = wire._START  # as in a new process: the start hour is no prefix of these
    payloads = [dumps({**APP, "event_id": f"e{n}", "occurred_at": t}) for n, t in enumerate(texts)]
    records = [(f"f:{n}", raw) for n, raw in enumerate(payloads, 1)]
    got: list = []
    while len(got) < len(records):
        got += decode_many(records[len(got) : len(got) + rng.randint(1, 8)])
    assert got == [oracle(raw, source) for source, raw in records]


_ALPHABET = "05aTtZz:-+._| |\u0661\uff15"


def _neighbours(text: str) -> set[str]:
    """`text` with one character changed, inserted or deleted, from `_ALPHABET`."""
    out = {text[:i] + text[i + 1 :] for i in range(len(text))}
    for i in range(len(text) + 1):
        out.update(text[:i] + c + text[i:] for c in _ALPHABET)
        out.update(text[:i] + c + text[i + 1 :] for c in _ALPHABET if i < len(text))
    return out


def test_rfc3339_shapes_are_the_regex():
    """A time's digit template is one of `_RFC3339_SHAPES` exactly when `RFC3339` matches it:
    every template, and every string one edit away from one (the template's digits as 5s)."""
    texts = {shape.decode().replace("0", "5") for shape in wire._RFC3339_SHAPES}
    for text in {n for t in texts for n in _neighbours(t)} | texts:
        shape = text.isascii() and text.encode().translate(wire._DIGITS_AS_ZERO)
        assert (shape in wire._RFC3339_SHAPES) == bool(RFC3339.fullmatch(text)), text


_PLAIN_AMOUNT = re.compile(r"\d{1,16}(?:\.\d\d)?", re.ASCII)
_PLAIN_BALANCE = re.compile(r"-?\d{1,12}(?:\.\d\d)?", re.ASCII)


def test_money_shapes_are_the_plain_regexes():
    """`_PLAIN_AMOUNTS` / `_PLAIN_MONEY` hold exactly the plain amounts (and balances) of
    `to_minor`'s fast shape, with which of them have cents: every template and its neighbours
    (non-ASCII ones too: their UTF-8 bytes are never a shape, so no `isascii()` is needed)."""
    amounts = {shape.decode().replace("0", "7") for shape in wire._PLAIN_AMOUNTS}
    balances = {b for t in ("7", "7.77", "-7", "-7.77", "7" * 12 + ".77") for b in _neighbours(t)}
    for amount in {n for t in amounts for n in _neighbours(t)} | amounts:
        template = amount.encode().translate(wire._DIGITS_AS_ZERO)  # as `_transaction`: no isascii
        expected = (amount[-3:-2] == ".", False) if _PLAIN_AMOUNT.fullmatch(amount) else None
        assert wire._PLAIN_AMOUNTS.get(template) == expected, amount
        for balance in balances if len(amount) in (1, 4, 19) else ():
            both = f"{amount}|{balance}"
            template = both.encode().translate(wire._DIGITS_AS_ZERO)
            plain = expected is not None and _PLAIN_BALANCE.fullmatch(balance)
            want = (expected[0], balance[-3:-2] == ".") if expected and plain else None
            assert wire._PLAIN_MONEY.get(template) == want, both


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([TX, APP, CONV]), st.dictionaries(st.sampled_from(_KEYS), _VALUES,
                                                                     max_size=2))
        .map(lambda pair: dumps({**pair[0], **pair[1]}))
        | st.sampled_from([b"", b"{", b"[1]", b"x" * (MAX_PAYLOAD + 1)]),
        max_size=30,
    ),
    st.booleans(),
    st.sampled_from([None, datetime(2026, 1, 1, tzinfo=UTC)]),
)  # fmt: skip
def test_decode_many_is_decode_of_each_in_order(payloads, balances, now):
    """A batch gives what the oracle gives for each of its messages, in the same order."""
    records = [(f"f:{n}", raw) for n, raw in enumerate(payloads, 1)]
    got = decode_many(records, now=now, balances=balances)
    assert got == [oracle(raw, source, now=now, balances=balances) for source, raw in records]


# Money that is mostly of the shapes `decode_many`'s whole-batch path takes (`digits.dd`,
# leading zeros, zero, signs, limits, separators inside), and now and then any money at all.
_BATCH_MONEY = (
    st.builds("{}.{:02d}".format, st.integers(0, 10**12 + 1).map(str), st.integers(0, 99))
    | st.sampled_from(["0.50", "00.05", "0.00", "-0.00", "-0.50", "-007.10", "1000000000000.00",
                       "1000000000000.01", "9999999999999999.99", "1.00,2.00", "1.00\n2.00",
                       "5", "5.5", "050"])
    | _MONEY
)  # fmt: skip


def _batch_line(base: dict, time: str, amount: object, balance: object, extra: dict) -> bytes:
    data = {**base, "occurred_at": time, **extra}
    if base is TX:
        data["amount"] = amount
        if balance == "absent":
            data.pop("balance_after")
        else:
            data["balance_after"] = balance
    return dumps(data)


_PLAIN_MONEY = st.builds("{}.{:02d}".format, st.integers(0, 10**6).map(str), st.integers(1, 99))
_PLAIN_LINES = st.builds(
    _batch_line,
    st.sampled_from([TX, TX, TX, APP, CONV]),
    st.sampled_from(["2026-01-01T08:00:00Z", "2026-01-01T08:59:59Z", "2026-01-01T09:00:01Z"]),
    _PLAIN_MONEY,
    _PLAIN_MONEY | st.just("-12.00") | st.just("absent"),
    st.just({}),
)  # fmt: skip
_ODD_TIMES = st.sampled_from(["2026-01-01T10:00:00.5Z", "2026-01-01T11:00:00+01:00"]) | _TIME_TEXT
_PLAIN_TIME = st.just("2026-01-01T08:00:00Z")
_ODD_LINES = st.one_of(  # a plain line but for one thing, or no event at all
    st.builds(_batch_line, st.just(TX), _PLAIN_TIME, _BATCH_MONEY, _PLAIN_MONEY, st.just({})),
    st.builds(_batch_line, st.just(TX), _PLAIN_TIME, _PLAIN_MONEY,
              _BATCH_MONEY | st.just(None), st.just({})),
    st.builds(_batch_line, st.just(TX), _PLAIN_TIME, _PLAIN_MONEY | st.just("1.00,2.00"),
              st.sampled_from(["1.00,2.00", "-1,2.00", "1.00\n2.00", "1,2"]), st.just({})),
    st.builds(_batch_line, st.sampled_from([TX, APP, CONV]), _ODD_TIMES, _PLAIN_MONEY,
              _PLAIN_MONEY, st.just({})),
    st.builds(_batch_line, st.sampled_from([TX, APP, CONV]), _PLAIN_TIME, _PLAIN_MONEY,
              _PLAIN_MONEY, st.dictionaries(st.sampled_from(_KEYS), _VALUES, min_size=1,
                                            max_size=2)),
    st.sampled_from([b"", b" ", b"{}{}", b"{} {}", b"x" * (MAX_PAYLOAD + 1),
                     dumps({**APP, "colour": "x" * MAX_PAYLOAD})]),  # JSON, but too long
)  # fmt: skip


@settings(max_examples=700, deadline=None)
@given(
    st.lists(_PLAIN_LINES, max_size=8),
    st.none() | st.tuples(st.integers(0, 8), _ODD_LINES),
    st.booleans(),
    st.sampled_from([None, datetime(2026, 1, 1, 9, tzinfo=UTC)]),
)  # fmt: skip
def test_whole_batches_decode_as_message_by_message(payloads, odd, balances, now):
    """`decode_many` (its whole-batch path first) gives what `_one_by_one`, the message-by-
    message path, and the oracle give: every field, with the same types, and each reject.

    Plain batches (the whole-batch path's), and the same with one odd line among them (any
    money, time, field or JSON), which that path must refuse unless it gives the same."""
    if odd is not None:
        payloads.insert(*odd)
    records = [(f"f:{n}", raw) for n, raw in enumerate(payloads, 1)]
    got = decode_many(records, now=now, balances=balances)
    one_by_one = wire._one_by_one(records, now, timedelta(minutes=5), balances)
    expected = [oracle(raw, source, now=now, balances=balances) for source, raw in records]
    assert got == one_by_one == expected
    for event, want in zip(got, expected, strict=True):
        assert type(event) is type(want)
        if not isinstance(event, DeadLetter):
            assert [type(v) for v in msgspec.structs.astuple(event)] == [
                type(v) for v in msgspec.structs.astuple(want)
            ]


def test_whole_batch_path_takes_plain_batches():
    """Plain batches (the test above's point) go through `_whole`: it is not always refused."""
    lines = [_batch_line(TX, "2026-01-01T08:00:00Z", "0.50", "-007.10", {}),
             _batch_line(APP, "2026-01-01T08:00:01Z", None, None, {}),
             _batch_line(TX, "2026-01-01T08:00:01Z", "12.34", "absent", {})]  # fmt: skip
    events = wire._whole(lines, None, timedelta(minutes=5), True)
    assert [getattr(e, "amount", None) for e in events] == [50, None, 1234]
    assert [getattr(e, "balance_after", None) for e in events] == [-710, None, None]
