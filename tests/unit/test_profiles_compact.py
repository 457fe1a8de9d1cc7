"""Profiles load into compact structs with exactly the old validation, reasons and values."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from keymoment.connectors.customers import (
    Sharing,
    _Checked,
    _parse_line,
    _reason,
    parse_profile,
    read_profiles,
)
from keymoment.triggers.events import CustomerProfile

FIELDS = ("customer_id", "opened_at", "timezone", "segment", "tags", "consent", "rm_id", "branch")
_ANY = (
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.floats(allow_nan=False)
    | st.text(max_size=3)
)
_TIMES = st.sampled_from(
    ["2026-01-01T00:00:00Z", "2026-01-01T01:00:00+01:00", "2026-01-01T00:00:00",
     "2026-01-01 00:00:00Z", "2026-13-01T00:00:00Z", "2026-01-01T00:00:00.1234567891Z", ""]
)  # fmt: skip
_ZONES = st.sampled_from(["Europe/Prague", "UTC", "Mars/Base", "", "../etc"])
_CONSENT_VALUES = st.booleans() | st.sampled_from(["yes", "no", "true", 1, 0, 2, None, "x"])
_FIELD_VALUES = {
    "customer_id": st.sampled_from(["C1", "C2", "", "x" * 64, "x" * 65]) | _ANY,
    "opened_at": _TIMES | _ANY,
    "timezone": _ZONES | _ANY,
    "segment": st.sampled_from(["mass", "private"]) | _ANY,
    "tags": st.lists(st.sampled_from(["a", "b"]) | _ANY, max_size=3) | _ANY,
    "consent": st.dictionaries(st.sampled_from(["sms", "app_push"]), _CONSENT_VALUES) | _ANY,
    "rm_id": st.sampled_from(["RM1", "RM2"]) | _ANY,
    "branch": st.sampled_from(["B1"]) | _ANY,
    "extra": _ANY,
}


@st.composite
def records(draw: st.DrawFn) -> object:
    if draw(st.integers(0, 20)) == 0:
        return draw(_ANY | st.lists(_ANY, max_size=2))  # not an object at all
    names = draw(st.lists(st.sampled_from(list(_FIELD_VALUES)), unique=True))
    record = {name: draw(_FIELD_VALUES[name]) for name in names}
    if draw(st.booleans()):
        record["customer_id"] = draw(st.sampled_from(["C1", "C2", "C3"]))
    return record


def _old(data: object) -> tuple[str, object]:
    """What the pydantic model alone (the old `parse_profile`) made of a record."""
    try:
        profile = _Checked.model_validate(data)
        if profile.timezone is not None:
            try:
                ZoneInfo(profile.timezone)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown timezone {profile.timezone!r}") from None
    except (ValidationError, ValueError) as exc:
        return "problem", _reason(exc)
    return "profile", tuple(getattr(profile, f) for f in FIELDS)


def _new(data: object, sharing: Sharing) -> tuple[str, object]:
    try:
        profile = parse_profile(data, sharing)
    except (ValidationError, ValueError) as exc:
        return "problem", _reason(exc)
    return "profile", tuple(getattr(profile, f) for f in FIELDS)


@settings(max_examples=400, deadline=None)
@given(st.lists(records(), max_size=6))
def test_the_fast_check_accepts_rejects_and_builds_what_pydantic_did(data):
    sharing = Sharing()  # shared across the records, as a whole load shares
    for record in data:
        assert _new(record, sharing) == _old(record), record


_ODD_LINES = st.sampled_from(
    [b'{"customer_id":"C1","extra":1e400}', b'{"customer_id":"C1","customer_id":"C2"}',
     b'{"customer_id":5,"customer_id":"C2"}', b'{"customer_id":"C1","customer_id":5}',
     b'{"customer_id":"\\ud800"}', b'{"customer_id":"\xff"}', b'\xef\xbb\xbf{"customer_id":"C1"}',
     b'{"customer_id":"C1"} x', b'{"customer_id":"C1","x":' + b"[" * 2000 + b"]" * 2000 + b"}",
     b'{"customer_id":"C1","tags":["a","a"],"consent":{"sms":true,"sms":false}}', b"[]", b"null"]
)  # fmt: skip


def _from_line(line: bytes, sharing: Sharing) -> tuple[str, object]:
    try:
        profile = _parse_line(line, sharing)
    except (orjson.JSONDecodeError, ValidationError, ValueError) as exc:
        return "problem", _reason(exc)
    return "profile", tuple(getattr(profile, f) for f in FIELDS)


def _from_dict(line: bytes, sharing: Sharing) -> tuple[str, object]:
    try:
        return _new(orjson.loads(line), sharing)
    except orjson.JSONDecodeError as exc:
        return "problem", _reason(exc)


@settings(max_examples=400, deadline=None)
@given(st.lists(records().map(orjson.dumps) | _ODD_LINES, max_size=6))
def test_a_line_decoded_typed_gives_what_the_dict_path_gives(lines):
    """The one-call decoder of known-field lines accepts, refuses and builds what orjson and
    the dict path do, odd JSON included (numbers out of range, repeated keys, bad text)."""
    one, other = Sharing(), Sharing()
    for line in lines:
        assert _from_line(line, one) == _from_dict(line, other), line


def test_a_file_load_gives_the_same_problems_and_shares_equal_values(tmp_path):
    path = tmp_path / "customers.jsonl"
    rows = [
        {"customer_id": "C1", "timezone": "Europe/Prague", "consent": {"sms": True}, "x": 1},
        {"customer_id": "C2", "timezone": "Europe/Prague", "consent": {"sms": True}},
        {"customer_id": "C3", "consent": {"sms": "yes"}, "tags": ["vip"]},  # lax: still accepted
        {"customer_id": "C4", "timezone": "Nowhere/City"},
        {"customer_id": "C5", "consent": {"sms": "maybe"}},
        {"customer_id": "", "segment": "mass"},
    ]
    text = b"".join(orjson.dumps(r) + b"\n" for r in rows) + b"{not json\n"
    path.write_bytes(text)
    profiles, problems = read_profiles(path)
    assert list(profiles) == ["C1", "C2", "C3"]
    assert profiles["C3"].consent == {"sms": True} and profiles["C3"].tags == ("vip",)
    assert profiles["C1"].consent is profiles["C2"].consent  # one map for equal consents
    assert profiles["C1"].timezone is profiles["C2"].timezone
    assert problems == [
        f"{path}:4: unknown timezone 'Nowhere/City'",
        f"{path}:5: schema:consent.sms",
        f"{path}:6: schema:customer_id",
        f"{path}:7: malformed_json",
    ]


def test_a_profile_keeps_its_attributes_pickles_and_takes_no_gc_slot():
    p = parse_profile({"customer_id": "C1", "opened_at": "2026-01-01T01:00:00+01:00",
                       "consent": {"sms": True, "app_push": False}})  # fmt: skip
    assert p.opened_at == datetime(2026, 1, 1, tzinfo=UTC) and p.opened_at.tzinfo is UTC
    assert p.consents_to("sms") and not p.consents_to("app_push") and not p.consents_to("rm")
    assert pickle.loads(pickle.dumps(p)) == p
    import gc

    assert not gc.is_tracked(p)
    assert CustomerProfile.model_validate({"customer_id": "C1", "consent": {"sms": True}}).consent
