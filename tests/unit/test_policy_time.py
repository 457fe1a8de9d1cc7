"""Quiet hours and calendar periods against minute-by-minute brute force, in several zones."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from keymoment.policy.config import END_OF_DAY, QuietHours, SendHours
from keymoment.policy.decision import _iso, isoformat, offer_id_of
from keymoment.policy.localtime import allowed, minute_table, next_opening, period, zone
from keymoment.triggers.candidate import Candidate

ZONES = [
    "UTC",
    "Asia/Shanghai",
    "Europe/Prague",
    "America/New_York",
    "Australia/Sydney",
    "America/Santiago",
    "Asia/Kolkata",
]
instants = st.datetimes(datetime(2025, 1, 1), datetime(2027, 12, 31)).map(
    lambda d: d.replace(second=0, microsecond=0, tzinfo=UTC)
)
hours = (
    st.tuples(
        st.integers(0, 23), st.sampled_from([0, 30]), st.integers(0, 24), st.sampled_from([0, 30])
    )
    .filter(lambda h: h[2] < 24 or h[3] == 0)
    .map(lambda h: QuietHours.parse(f"{h[0]:02d}:{h[1]:02d}-{h[2]:02d}:{h[3]:02d}"))
)


any_minutes = st.tuples(
    st.integers(0, 24), st.integers(0, 59), st.integers(0, 24), st.integers(0, 59)
)
send_hours = any_minutes.filter(lambda h: (h[0] < 24 or not h[1]) and (h[2] < 24 or not h[3])).map(
    lambda h: SendHours.parse(f"{h[0]:02d}:{h[1]:02d}-{h[2]:02d}:{h[3]:02d}")
)


@settings(max_examples=300, deadline=None)
@given(send_hours, st.times())
def test_the_minute_table_answers_as_allowed_at_every_instant(hours, local):
    """Send hours are whole minutes, so the minute's entry holds for each of its microseconds.

    Only a start of 24:00 (the last microsecond of the day) gets no table.
    """
    table = minute_table(hours)
    if table is None:
        assert hours.start == END_OF_DAY
    else:
        assert table[local.hour * 60 + local.minute] == allowed(local, hours)


def test_hours_with_seconds_have_no_minute_table():
    """Hours built with seconds (no rules file writes them) change inside a minute: no table."""
    odd = SendHours(start=time(8, 0, 30), end=time(21))
    assert minute_table(odd) is None
    assert minute_table(SendHours(start=time(8), end=time(21, 0, 0, 5))) is None
    assert minute_table(SendHours.parse("24:00-08:00")) is None


def open_at(at: datetime, tz_name: str, qh: QuietHours) -> bool:
    return allowed(at.astimezone(zone(tz_name)).time().replace(tzinfo=None), qh)


@settings(max_examples=150, deadline=None)
@given(instants, st.sampled_from(ZONES), hours)
def test_next_opening_is_the_first_allowed_minute(earliest, tz_name, qh):
    """The opening is allowed and no earlier minute is (a DST gap may push it by the gap)."""
    got = next_opening(earliest, qh, zone(tz_name))
    assert got >= earliest and open_at(got, tz_name, qh)
    first = earliest
    while not open_at(first, tz_name, qh):
        first += timedelta(minutes=1)
    assert first <= got <= first + timedelta(hours=1)
    if zone(tz_name).utcoffset(earliest) == zone(tz_name).utcoffset(got):
        assert got == first


@settings(max_examples=150, deadline=None)
@given(instants, st.sampled_from(ZONES), st.sampled_from(["day", "week", "month"]))
def test_periods_tile_time_and_start_at_local_midnight(at, tz_name, window):
    """`at` is in its period; the period starts at local 00:00 (Monday, the 1st); periods meet."""
    tz = zone(tz_name)
    start, end = period(at, window, tz)
    assert start <= at < end
    local = start.astimezone(tz)
    assert local.time() <= time(1) and (window != "week" or local.weekday() == 0)
    assert window != "month" or local.day == 1
    assert (
        period(end, window, tz)[0] == end
        and period(start - timedelta(microseconds=1), window, tz)[1] == start
    )


@settings(max_examples=400, deadline=None)
@given(
    st.datetimes(datetime(1, 1, 1), datetime(9999, 12, 31)),
    st.sampled_from([0, None]),
    st.sampled_from(["UTC", "Asia/Shanghai", "America/New_York"]),
)
def test_record_times_are_isoformat_with_a_z(at, microsecond, tz_name):
    """`decision._iso` (orjson for UTC datetimes) writes what `isoformat()` did before."""
    if microsecond is not None:
        at = at.replace(microsecond=microsecond)
    tz = UTC if tz_name == "UTC" else zone(tz_name)
    aware = at.replace(tzinfo=tz)
    assert _iso(aware) == aware.isoformat().replace("+00:00", "Z")


@settings(max_examples=300, deadline=None)
@given(
    st.datetimes(datetime(1, 1, 1), datetime(9999, 12, 31)),
    st.sampled_from([0, None]),
    st.booleans(),
    st.sampled_from(["UTC", "Asia/Shanghai"]),
)
def test_the_policys_offer_id_is_the_candidates(at, microsecond, timer, tz_name):
    """`decision.offer_id_of` (a timer's deadline written by orjson) is `Candidate.offer_id`."""
    if microsecond is not None:
        at = at.replace(microsecond=microsecond)
    at = at.replace(tzinfo=UTC if tz_name == "UTC" else zone(tz_name))
    c = Candidate("r1", "dormancy", "camp", "C1", at, "E1", timer=timer)
    assert offer_id_of(c) == c.offer_id
    assert isoformat(at) == at.isoformat()
