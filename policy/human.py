"""Human channels (issue 12, section 1): who takes a lead, and when a person works.

A channel with `human: true` is a relationship manager's task list or a call
centre's queue. Its `capacity` says how many leads one owner takes per
`window` (a calendar `day` or `week` in the working timezone): the owner is
the customer's RM (`per: rm`, reference data `rm_id`), their branch
(`per: branch`, `branch`) or the channel's one pool (`per: pool`). A customer
of an RM channel without an `rm_id` goes to their branch's pool when
`fallback: branch` (with `branch_limit`, default `limit`), else to the
campaign's next channel.

Working time is `working_hours` (one span, no wrap past midnight) on
`working_days`, except `holidays` (an ISO date per line in a file, resolved
next to the rules file), in the channel's `timezone` (the branch's) or else
the customer's. A lead is only ever handed over inside working time.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Literal, NamedTuple
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from keymoment.triggers.events import CustomerProfile

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Capacity(BaseModel):
    """At most `limit` leads per owner per calendar `window` (`branch_limit` for branch pools)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    per: Literal["rm", "branch", "pool"]
    limit: int = Field(ge=0)
    window: Literal["day", "week"] = "day"
    branch_limit: int | None = Field(default=None, ge=0)


class Owner(NamedTuple):
    """Who takes a lead: `kind` rm / branch / pool, its id, and how many per window."""

    kind: str
    id: str
    limit: int

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.id}"


def owner_of(
    channel: str, capacity: Capacity, fallback: str | None, p: CustomerProfile
) -> Owner | None:
    """The lead's owner on this channel, or None: the channel cannot take this customer."""
    branch_limit = capacity.branch_limit if capacity.branch_limit is not None else capacity.limit
    if capacity.per == "pool":
        return Owner("pool", channel, capacity.limit)
    if capacity.per == "rm" and p.rm_id:
        return Owner("rm", p.rm_id, capacity.limit)
    if p.branch and (capacity.per == "branch" or fallback == "branch"):
        return Owner("branch", p.branch, branch_limit)
    return None


class WorkingTime(NamedTuple):
    """When people on one channel work: hours, days and holidays (all local)."""

    start: time
    end: time
    days: frozenset[int]  # date.weekday() numbers
    holidays: frozenset[date]

    def works_on(self, day: date) -> bool:
        return day.weekday() in self.days and day not in self.holidays

    def next_start(self, at: datetime, tz: ZoneInfo) -> datetime | None:
        """`at` itself inside working time, else the next working period's start (None: never)."""
        local = at.astimezone(tz)
        day = local.date()
        if self.works_on(day) and self.start <= local.time().replace(tzinfo=None) < self.end:
            return at
        for offset in range(0, 370):
            candidate = day + timedelta(days=offset)
            if self.works_on(candidate):
                opening = at_local(candidate, self.start, tz)
                if opening > at:
                    return opening
        return None

    def next_day_start(self, at: datetime, tz: ZoneInfo) -> datetime | None:
        """The start of the first working day after `at`'s local day (a full day's lead waits)."""
        day = at.astimezone(tz).date()
        for offset in range(1, 370):
            if self.works_on(day + timedelta(days=offset)):
                return at_local(day + timedelta(days=offset), self.start, tz)
        return None


def working_time(
    hours: tuple[time, time], days: list[Weekday], holidays: Path | None
) -> WorkingTime:
    numbers = frozenset(WEEKDAYS.index(d) for d in days)
    return WorkingTime(hours[0], hours[1], numbers, read_holidays(holidays))


@lru_cache(maxsize=64)
def read_holidays(path: Path | None) -> frozenset[date]:
    """ISO dates, one per line; blank lines and `#` comments are skipped (read once per path)."""
    if path is None:
        return frozenset()
    days = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.split("#", 1)[0].strip()
        if text:
            days.add(date.fromisoformat(text))
    return frozenset(days)


def at_local(day: date, clock: time, tz: ZoneInfo) -> datetime:
    """As `localtime.at_local` (which imports the config this module is part of)."""
    return datetime.combine(day, clock, tzinfo=tz).astimezone(UTC)


DEFAULT_DAYS: list[Weekday] = ["mon", "tue", "wed", "thu", "fri"]
