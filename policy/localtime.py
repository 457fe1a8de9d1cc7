"""Local time for quiet hours and calendar caps, DST-safe (semantics section 4.4).

Local wall times are turned into instants with `fold=0`, so a period or an
opening that falls in a DST gap starts at the first real instant after it,
and in a repeated hour at its first occurrence. Every boundary is computed
the same way, so consecutive periods always meet exactly.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from .config import END_OF_DAY, SendHours


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def at_local(day: date, clock: time, tz: ZoneInfo) -> datetime:
    """The UTC instant of wall time `clock` on `day` in `tz` (first occurrence; gaps move on)."""
    return datetime.combine(day, clock, tzinfo=tz).astimezone(UTC)


def allowed(local: time, hours: SendHours) -> bool:
    """`start <= t < end`; an end before the start wraps past midnight; equal means always."""
    start, end = hours.start, hours.end
    if start == end:
        return True
    if end == END_OF_DAY:
        return local >= start
    if start < end:
        return start <= local < end
    return local >= start or local < end


def minute_table(hours: SendHours) -> tuple[bool, ...] | None:
    """`allowed` for each minute of the day (index `hour * 60 + minute`), or None.

    Exact for every instant of a minute when both ends are whole minutes (or the end is
    24:00, which `allowed` never compares with), as every `HH:MM` in a rules file is:
    nothing can change inside a minute then. The planner reads it instead of calling
    `allowed` (about 1 us a channel on this machine, round 4).
    """
    start, end = hours.start, hours.end
    if not _whole_minute(start) or not (_whole_minute(end) or end == END_OF_DAY):
        return None
    return tuple(allowed(time(m // 60, m % 60), hours) for m in range(24 * 60))


def _whole_minute(at: time) -> bool:
    return at.second == 0 and at.microsecond == 0


def next_opening(earliest: datetime, hours: SendHours | None, tz: ZoneInfo) -> datetime:
    """`earliest` itself when sending is allowed then, else the next instant it is."""
    if hours is None:
        return earliest
    return opening(earliest, earliest.astimezone(tz), hours, tz)


def opening(earliest: datetime, local: datetime, hours: SendHours, tz: ZoneInfo) -> datetime:
    """`next_opening` for a caller that already has `local = earliest.astimezone(tz)`.

    The planner converts a candidate's time once for all its channels and caps; the
    day's candidate openings are cached per (date, start, zone).
    """
    if allowed(local.time(), hours):
        return earliest
    for at in _openings(local.date(), hours.start, tz):
        if at > earliest:
            return at
    raise AssertionError("an opening always exists within two days")  # pragma: no cover


@lru_cache(maxsize=65536)
def _openings(day: date, start: time, tz: ZoneInfo) -> tuple[datetime, datetime, datetime]:
    """Wall time `start` on `day` and the two days after it, as UTC instants."""
    return (
        at_local(day, start, tz),
        at_local(day + timedelta(days=1), start, tz),
        at_local(day + timedelta(days=2), start, tz),
    )


def period(at: datetime, window: str, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The calendar `day`, `week` (from Monday) or `month` holding `at`, as UTC `[start, end)`."""
    day = at.astimezone(tz).date()
    if window == "day":
        first, after = day, day + timedelta(days=1)
    elif window == "week":
        first = day - timedelta(days=day.weekday())
        after = first + timedelta(days=7)
    else:
        first = day.replace(day=1)
        after = (first + timedelta(days=32)).replace(day=1)
    return at_local(first, time(0), tz), at_local(after, time(0), tz)
