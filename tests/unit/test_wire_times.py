"""Event and reference-data times are RFC 3339 date-times with `Z` or `+hh:mm`, nothing else.

Issue 8 part 3: epoch numbers, a space instead of `T`, `+hhmm` offsets and
naive times were all taken. Each is now `schema:occurred_at` (events) or a
`schema:opened_at` problem (reference data), and accepted times keep their
instant, in `datetime.UTC`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from keymoment.connectors.customers import read_profiles
from keymoment.connectors.wire import DeadLetter, decode
from keymoment.triggers.events import AppEvent, parse_time

APP = {"type": "app", "event_id": "e2", "customer_id": "c1", "action": "login"}
NOT_RFC3339 = [
    "1700000000", 1700000000, 1700000000.5, "2026-01-01 00:00:00+00:00", "2026-01-01T00:00:00",
    "2026-01-01T00:00:00+0000", "2026-01-01T00:00Z", "2026-01-01", "2026-01-01T00:00:00z",
    "2026-01-01T00:00:00 Z", " 2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z ",
    "2026-W01-1T00:00:00Z",
    "20260101T000000Z", "2026-01-01T00:00:00.Z", "2026-01-01T00:00:00.1234567890Z",
    "2026-02-30T00:00:00Z", "2026-01-01T24:00:00Z", "2026-01-01T00:00:60Z",
    "2026-01-01T00:00:00+24:00", "\u0662026-01-01T00:00:00Z", True, None, [], {},
]  # fmt: skip


def decoded(value: object) -> object:
    return decode(orjson.dumps({**APP, "occurred_at": value}), "test:1")


@pytest.mark.parametrize("value", NOT_RFC3339)
def test_occurred_at_that_is_not_rfc3339_with_offset_is_a_schema_dead_letter(value):
    out = decoded(value)
    assert isinstance(out, DeadLetter) and out.reason == "schema:occurred_at", out
    assert out.event_id == "e2"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2026-01-01T08:00:00+08:00", datetime(2026, 1, 1, tzinfo=UTC)),
     ("2026-01-01T00:00:00Z", datetime(2026, 1, 1, tzinfo=UTC)),
     ("2025-12-31T19:00:00-05:00", datetime(2026, 1, 1, tzinfo=UTC)),
     ("2026-01-01T00:00:00-00:00", datetime(2026, 1, 1, tzinfo=UTC)),
     ("2026-01-01T00:00:00.5Z", datetime(2026, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)),
     ("2026-01-01T00:00:00.123456789Z", datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=UTC))],
)  # fmt: skip
def test_rfc3339_times_keep_their_instant_in_utc(text, expected):
    out = decoded(text)
    assert not isinstance(out, DeadLetter)
    assert out.occurred_at == expected and out.occurred_at.tzinfo is UTC  # type: ignore[union-attr]


_OFFSETS = st.integers(-23 * 60 - 59, 23 * 60 + 59)


@given(st.datetimes(datetime(1900, 1, 2), datetime(8999, 12, 30)), _OFFSETS, st.booleans())
def test_any_rfc3339_time_decodes_to_its_instant(local, offset_minutes, zulu):
    """Every accepted form round-trips: `Z` or any `+hh:mm`, with or without a fraction."""
    if zulu:
        offset_minutes = 0
    tz = timedelta(minutes=offset_minutes)
    sign, mins = ("-" if offset_minutes < 0 else "+"), abs(offset_minutes)
    suffix = "Z" if zulu else f"{sign}{mins // 60:02d}:{mins % 60:02d}"
    out = decoded(local.isoformat() + suffix)
    assert not isinstance(out, DeadLetter), (local, suffix)
    assert out.occurred_at == (local - tz).replace(tzinfo=UTC)  # type: ignore[union-attr]


@pytest.mark.parametrize("value", NOT_RFC3339[:10])
def test_opened_at_that_is_not_rfc3339_is_a_reference_data_problem(tmp_path, value):
    path = tmp_path / "customers.jsonl"
    good = {"customer_id": "ok", "opened_at": "2026-01-01T00:00:00+01:00"}
    bad = {"customer_id": "c1", "opened_at": value}
    path.write_bytes(orjson.dumps(good) + b"\n" + orjson.dumps(bad) + b"\n")
    profiles, problems = read_profiles(path)
    assert list(profiles) == ["ok"]
    assert profiles["ok"].opened_at == datetime(2025, 12, 31, 23, tzinfo=UTC)
    assert profiles["ok"].opened_at.tzinfo is UTC  # type: ignore[union-attr]
    assert problems == [f"{path}:2: schema:opened_at"]


def test_balances_off_checks_balance_after_but_leaves_it_out():
    """Without a rule that reads balances they are checked (same dead letters), not kept."""
    tx = {"type": "transaction", "event_id": "e1", "customer_id": "c1", "account_id": "a",
          "occurred_at": "2026-01-01T00:00:00Z", "direction": "credit", "amount": "5.00",
          "kind": "cash_deposit", "balance_after": "lots"}  # fmt: skip
    assert decode(orjson.dumps(tx), "t").reason == "schema:balance_after"  # type: ignore[union-attr]
    lazy = decode(orjson.dumps(tx), "t", balances=False)
    assert isinstance(lazy, DeadLetter) and lazy.reason == "schema:balance_after"
    for good in ("-12.30", "7", 7, 7.5, "1e3"):
        tx["balance_after"] = good
        lazy = decode(orjson.dumps(tx), "t", balances=False)
        assert not isinstance(lazy, DeadLetter) and lazy.balance_after is None
        assert decode(orjson.dumps(tx), "t").balance_after is not None  # type: ignore[union-attr]


_NUMBERS = st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
_TEXTS = st.text(max_size=20) | st.from_regex(r"-?[0-9]{1,17}(\.[0-9]{1,3})?", fullmatch=True)


@given(_TEXTS | _NUMBERS | st.none() | st.booleans())
def test_a_balance_left_out_is_rejected_exactly_when_a_kept_one_would_be(balance):
    tx = {"type": "transaction", "event_id": "e1", "customer_id": "c1", "account_id": "a",
          "occurred_at": "2026-01-01T00:00:00Z", "direction": "credit", "amount": "5.00",
          "kind": "cash_deposit", "balance_after": balance}  # fmt: skip
    raw = orjson.dumps(tx)
    kept, lazy = decode(raw, "t"), decode(raw, "t", balances=False)
    assert isinstance(kept, DeadLetter) == isinstance(lazy, DeadLetter)
    if isinstance(kept, DeadLetter):
        assert kept.record() == lazy.record()  # type: ignore[union-attr]


def test_a_remembered_time_decodes_as_a_fresh_one_and_rejections_are_not_remembered():
    """The decoder's cache of recent times changes no result: the same text, the same time."""
    from keymoment.connectors import wire

    base = {"type": "app", "event_id": "e", "customer_id": "c", "action": "login"}
    for text in ("2026-03-01T08:00:00+08:00", "2026-03-01T00:00:00Z", "2026-03-01T00:00:00.5Z"):
        first = wire.decode(orjson.dumps({**base, "occurred_at": text}), "t")
        again = wire.decode(orjson.dumps({**base, "occurred_at": text}), "t")
        assert isinstance(first, AppEvent) and isinstance(again, AppEvent)
        assert first.occurred_at == again.occurred_at == parse_time(text)
        assert first.occurred_at.tzinfo is UTC
    bad = "2026-02-30T00:00:00Z"
    for _ in range(2):
        out = wire.decode(orjson.dumps({**base, "occurred_at": bad}), "t")
        assert isinstance(out, DeadLetter) and out.reason == "schema:occurred_at"
    assert bad not in wire._RECENT_TIMES
