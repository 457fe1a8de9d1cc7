"""The decoder: every dead-letter reason of section 1, exact amounts, UTC times, and that it
never raises whatever the bytes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import AwareDatetime, TypeAdapter, ValidationError

from keymoment.connectors.wire import MAX_PAYLOAD, DeadLetter, decode, decode_many, encode
from keymoment.triggers.events import (
    MAX_AMOUNT_MINOR,
    AmountError,
    AppEvent,
    ConversionEvent,
    TransactionEvent,
    to_minor,
)

TX = {
    "type": "transaction",
    "event_id": "e1",
    "customer_id": "c1",
    "occurred_at": "2026-01-01T08:00:00+08:00",
    "account_id": "a1",
    "direction": "credit",
    "amount": "52000.00",
    "kind": "payroll",
}
APP = {"type": "app", "event_id": "e2", "customer_id": "c1", "occurred_at": "2026-01-01T00:00:00Z",
       "action": "page_view"}  # fmt: skip
CONV = {"type": "conversion", "event_id": "e3", "customer_id": "c1",
        "occurred_at": "2026-01-01T00:00:00Z", "product": "card"}  # fmt: skip


def reason(data: dict | bytes, **kw) -> str | None:
    raw = data if isinstance(data, bytes) else orjson.dumps(data)
    out = decode(raw, "test:1", **kw)
    return out.reason if isinstance(out, DeadLetter) else None


def without(data: dict, field: str) -> dict:
    return {k: v for k, v in data.items() if k != field}


def test_valid_events_of_each_family_decode():
    """The three families decode to their models."""
    assert isinstance(decode(orjson.dumps(TX), "s"), TransactionEvent)
    assert isinstance(decode(orjson.dumps(APP), "s"), AppEvent)
    assert isinstance(decode(orjson.dumps(CONV), "s"), ConversionEvent)


def test_oversize_is_rejected_before_parsing():
    """Over 64 KiB is `oversize` even when it is not JSON at all; exactly 64 KiB is parsed."""
    assert reason(b"x" * (MAX_PAYLOAD + 1)) == "oversize"
    padded = orjson.dumps({**APP, "pad": ""})
    exact = padded[:-2] + b" " * (MAX_PAYLOAD - len(padded)) + padded[-2:]
    assert len(exact) == MAX_PAYLOAD and reason(exact) is None


@pytest.mark.parametrize(
    "raw", [b"", b"{", b"not json", b'{"a": NaN}', b"\xff\xfe", b"[1, 2]", b"42"]
)
def test_malformed_json(raw):
    """Unparseable bytes, or JSON that is not an object, are `malformed_json`."""
    assert reason(raw) == "malformed_json"


@pytest.mark.parametrize(
    ("data", "field"),
    [(without(TX, f), f) for f in ("type", "event_id", "customer_id", "occurred_at", "account_id",
                                   "direction", "kind", "amount")]
    + [(without(APP, "action"), "action"), (without(CONV, "product"), "product")],
)  # fmt: skip
def test_each_missing_required_field_is_named(data, field):
    """A missing required field is `schema:<field>`."""
    assert reason(data) == f"schema:{field}"


@pytest.mark.parametrize(
    ("field", "value"),
    [("type", "wire"), ("event_id", ""), ("event_id", "x" * 129), ("event_id", 7),
     ("customer_id", "x" * 65), ("occurred_at", "2026-01-01T08:00:00"),
     ("occurred_at", "yesterday"),
     ("occurred_at", "9999-12-31T23:59:59-05:00"), ("occurred_at", "0001-01-01T00:00:00+01:00"),
     ("direction", "up"), ("kind", "gift"), ("initiated_by", "robot"), ("currency", "usd"),
     ("balance_after", "lots")],
)  # fmt: skip
def test_invalid_field_values_are_named(field, value):
    """A wrong value (not just a missing one) names its field too; naive times are refused."""
    assert reason({**TX, field: value}) == f"schema:{field}"


@pytest.mark.parametrize(
    "amount",
    ["0", "0.00", "-5", -5, 0, "1000000000000.01", 10**12 + 1, "1.001", 0.001, "abc", "", "NaN",
     "Infinity", "-inf", True, False, None, [1], {"v": 1}, "1_000", " 5", "5 ", "\u0661\u0662",
     "0x10"],
)  # fmt: skip
def test_bad_amounts(amount):
    """<= 0, over 1e12, more than 2 decimals, non-numeric, NaN/inf and booleans are `bad_amount`."""
    assert reason({**TX, "amount": amount}) == "bad_amount"


def test_dead_letter_keeps_a_readable_event_id_but_never_the_payload():
    """The record names reason, source and event id only."""
    out = decode(orjson.dumps({**TX, "amount": "-1", "counterparty": "SECRET"}), "topic:0:17")
    assert out.record() == {"reason": "bad_amount", "source": "topic:0:17", "event_id": "e1",
                            "detail": "must be > 0"}  # fmt: skip
    assert "SECRET" not in str(out.record())


@pytest.mark.parametrize(
    ("amount", "minor"),
    [("52000.00", 5200000), ("0.1", 10), (0.1, 10), (0.29, 29), ("1e3", 100000), (1, 100),
     ("1000000000000", 10**14), (1234.5, 123450), ("7.05", 705)],
)  # fmt: skip
def test_amounts_are_exact_minor_units(amount, minor):
    """Strings and JSON numbers become exact integer cents (no float rounding)."""
    event = decode(orjson.dumps({**TX, "amount": amount}), "s")
    assert event.amount == minor and type(event.amount) is int


@settings(max_examples=400)
@given(st.from_regex(r"-?[0-9]{1,16}(\.[0-9][0-9])?", fullmatch=True))
def test_plain_amount_fast_path_is_exact(text):
    """Plain `[-]digits[.dd]` amounts (the regex fast path) equal the exact Decimal reading."""
    exact = int(Decimal(text).scaleb(2))
    for allow_negative in (False, True):
        try:
            got = to_minor(text, allow_negative=allow_negative)
        except AmountError:
            got = None
        ok = (allow_negative or exact > 0) and abs(exact) <= MAX_AMOUNT_MINOR
        assert got == (exact if ok else None)


def test_times_are_utc_aware_with_one_tzinfo():
    """Offsets are converted to UTC; every decoded time carries datetime.UTC itself."""
    for text in ("2026-01-01T08:00:00+08:00", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00+00:00"):
        event = decode(orjson.dumps({**TX, "occurred_at": text}), "s")
        assert event.occurred_at == datetime(2026, 1, 1, tzinfo=UTC)
        assert event.occurred_at.tzinfo is UTC


_ZULU_PARTS = st.tuples(
    st.integers(0, 9999), st.integers(0, 99), st.integers(0, 99), st.integers(0, 99),
    st.integers(0, 99), st.integers(0, 99),
    st.sampled_from(["", ".5", ".05", ".123456", ".000001"]),
)  # fmt: skip
_PYDANTIC_TIME = TypeAdapter(AwareDatetime)


@settings(max_examples=400)
@given(_ZULU_PARTS)
def test_fast_time_path_agrees_with_pydantic(parts):
    """`...Z` times on the fromisoformat fast path decode exactly as pydantic's parser would."""
    year, month, day, hour, minute, second, fraction = parts
    text = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}{fraction}Z"
    try:
        expected = _PYDANTIC_TIME.validate_python(text)
    except ValidationError:
        expected = None
    out = decode(orjson.dumps({**APP, "occurred_at": text}), "s")
    if expected is None or not 1900 <= expected.year <= 9000:
        assert isinstance(out, DeadLetter) and out.reason == "schema:occurred_at"
    else:
        assert out.occurred_at == expected and out.occurred_at.tzinfo is UTC


def test_clock_skew_only_with_a_wall_clock():
    """Over max_future ahead of `now` is `clock_skew`; exactly max_future is fine; replays skip."""
    now = datetime(2026, 1, 1, tzinfo=UTC) - timedelta(minutes=5)
    assert reason(APP, now=now) is None
    assert reason(APP, now=now - timedelta(seconds=1)) == "clock_skew"
    assert reason(APP, now=now - timedelta(hours=1), max_future=timedelta(hours=2)) is None
    assert reason(APP) is None


def test_unknown_fields_are_ignored():
    """Extra fields neither fail nor reach the model."""
    event = decode(orjson.dumps({**APP, "colour": "blue"}), "s")
    assert not hasattr(event, "colour")


def test_encode_round_trips():
    """encode(decode(x)) decodes to the same event."""
    event = decode(orjson.dumps({**TX, "balance_after": "-12.30", "counterparty": "EMP"}), "s")
    assert decode(encode(event), "s") == event


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_decode_never_raises_on_arbitrary_bytes(raw):
    """Any bytes give an event or a dead letter."""
    assert isinstance(
        decode(raw, "fuzz"), TransactionEvent | AppEvent | ConversionEvent | DeadLetter
    )


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([TX, APP, CONV]),
    st.dictionaries(
        st.sampled_from(
            [
                "type",
                "event_id",
                "customer_id",
                "occurred_at",
                "amount",
                "balance_after",
                "direction",
                "kind",
                "action",
                "product",
                "account_id",
                "initiated_by",
                "counterparty",
            ]
        ),
        JSON,
        max_size=4,
    ),
)
def test_decode_never_raises_on_arbitrary_field_values(base, changes):
    """Valid events with arbitrary JSON values swapped in give an event or a known reason."""
    out = decode(orjson.dumps({**base, **changes}), "fuzz", now=datetime(2026, 1, 1, tzinfo=UTC))
    if isinstance(out, DeadLetter):
        assert out.family in {"schema", "bad_amount", "clock_skew", "malformed_json"}


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=12), JSON, max_size=6))
def test_decode_never_raises_on_arbitrary_objects(data):
    """Arbitrary JSON objects are dead letters, never exceptions."""
    assert isinstance(
        decode(orjson.dumps(data), "fuzz"),
        DeadLetter | TransactionEvent | AppEvent | ConversionEvent,
    )


def test_a_str_payload_with_a_lone_surrogate_is_malformed_json():
    """A `str` payload msgspec cannot encode is bad input, never a crash (both entry points)."""
    raw = '{"type":"app","event_id":"e\ud800","customer_id":"c","occurred_at":"x","action":"login"}'
    assert decode(raw, "s").reason == "malformed_json"
    assert [d.reason for d in decode_many([("s", raw)])] == ["malformed_json"]
