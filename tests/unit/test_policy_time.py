"""Quiet hours and calendar periods against minute-by-minute brute force, in several zones."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from keymoment.policy.config import QuietHours
from keymoment.policy.localtime import allowed, next_opening, period, zone

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
