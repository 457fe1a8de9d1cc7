"""The contact-policy part of the rules file (docs/semantics.md sections 4 and 7)."""

from __future__ import annotations

import re
from datetime import time, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from keymoment.triggers.durations import Duration, parse_duration

from .human import DEFAULT_DAYS, Capacity, Weekday, WorkingTime, working_time
from .variants import Variant, weight_problems

Id = str  # ids are checked by pattern where they are declared
_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
CALENDAR_WINDOWS = ("day", "week", "month")
END_OF_DAY = time(23, 59, 59, 999999)  # how 24:00 is written as a time
_HOURS = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")


class Campaign(BaseModel):
    """What a rule's candidates become: an offer on one of `channels`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    campaign_id: str = Field(pattern=_ID)
    offer_code: str = Field(min_length=1, max_length=64)
    channels: list[str] = Field(min_length=1)
    priority: int = 0
    value: float = 0.0
    ttl: Duration = timedelta(hours=24)
    holdout: float = Field(default=0.0, ge=0.0, le=1.0)
    max_delay: Duration | None = None
    lists: list[str] = Field(default_factory=list)
    description: str | None = None
    mode: Literal["live", "shadow", "paused"] = "live"  # as a rule's mode, for all its rules
    product: str | None = Field(default=None, max_length=64)  # what a conversion ends (journeys)
    variants: list[Variant] = Field(default_factory=list)  # A/B arms: policy/variants.py

    @model_validator(mode="after")
    def _variants_add_up(self) -> Campaign:
        problems = weight_problems(self.variants)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def deferral_limit(self) -> timedelta:
        """How far quiet hours may push `send_at` past `triggered_at` (default: the ttl)."""
        return self.max_delay if self.max_delay is not None else self.ttl


class SendHours(BaseModel):
    """Local hours `HH:MM-HH:MM` in which a channel may send; an end before the start wraps."""

    model_config = ConfigDict(frozen=True)
    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> SendHours:
        match = _HOURS.match(text.strip())
        if not match:
            raise ValueError("expected hours like 08:00-21:00")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        if h1 > 24 or h2 > 24 or m1 > 59 or m2 > 59 or (h1 == 24 and m1) or (h2 == 24 and m2):
            raise ValueError("hours must be 00:00..24:00")
        to_time = lambda h, m: END_OF_DAY if h == 24 else time(h, m)  # noqa: E731
        return cls(start=to_time(h1, m1), end=to_time(h2, m2))

    @property
    def whole_day(self) -> bool:
        """`08:00-08:00` and `00:00-24:00` both cover every minute of the day."""
        return self.start == self.end or (self.start == time(0) and self.end == END_OF_DAY)

    def complement(self) -> SendHours:
        """The other hours of the day: quiet hours `21:00-08:00` allow `08:00-21:00`."""
        start = time(0) if self.end == END_OF_DAY else self.end  # "21:00-24:00" frees 00:00
        return SendHours(start=start, end=self.start)


def human_problems(channel: ChannelPolicy) -> list[str]:
    """A human channel needs a capacity, non-wrapping working hours and no send/quiet hours."""
    if not channel.human:
        named = ("capacity", "working_hours", "sla", "fallback", "holidays")
        return [f"{name}: only a human channel has one" for name in named if getattr(channel, name)]
    problems = [] if channel.capacity else ["capacity: a human channel needs one"]
    if channel.send_hours or channel.quiet_hours:
        problems.append("human channels use working_hours, not send_hours or quiet_hours")
    hours = channel.working_hours
    if hours is not None and not hours.start < hours.end:
        problems.append("working_hours: must start before they end, within one day")
    return problems


QuietHours = SendHours  # the name older modules import; it is the allowed hours either way


class ChannelPolicy(BaseModel):
    """Per-channel hours: `send_hours` when it may send, or `quiet_hours` when it may not.

    A `human` channel (an RM's task list, a call centre) has `capacity`, `working_hours`
    and the rest of policy/human.py instead.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    send_hours: SendHours | None = None
    quiet_hours: SendHours | None = None
    human: bool = False
    capacity: Capacity | None = None
    working_hours: SendHours | None = None
    working_days: list[Weekday] = Field(default_factory=lambda: list(DEFAULT_DAYS), min_length=1)
    holidays: Path | None = None
    timezone: str | None = None
    sla: Duration | None = None
    fallback: Literal["branch", "next"] | None = None

    @model_validator(mode="after")
    def _human_fields(self) -> ChannelPolicy:
        problems = human_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def working(self) -> WorkingTime:
        hours = self.working_hours or SendHours(start=time(0), end=END_OF_DAY)
        return working_time((hours.start, hours.end), self.working_days, self.holidays)

    @field_validator("send_hours", "quiet_hours", "working_hours", mode="before")
    @classmethod
    def _parse_hours(cls, value: object) -> object:
        return SendHours.parse(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_of(self) -> ChannelPolicy:
        if self.send_hours is not None and self.quiet_hours is not None:
            raise ValueError("give send_hours or quiet_hours, not both")
        if self.quiet_hours is not None and self.quiet_hours.whole_day:
            raise ValueError("quiet_hours that cover the whole day leave no hour to send")
        return self

    @property
    def allowed_hours(self) -> SendHours | None:
        """The hours this channel may send, however the file said it (None: any hour)."""
        if self.quiet_hours is not None:
            return self.quiet_hours.complement()
        return self.send_hours


class Cap(BaseModel):
    """At most `limit` offers per `window` within `scope` (section 4, caps)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=_ID)
    scope: Literal["customer", "customer_channel", "customer_campaign", "customer_rule"]
    limit: int = Field(ge=0)
    window: str
    channel: str | None = None
    campaign: str | None = None
    rule: str | None = None

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        if value not in CALENDAR_WINDOWS:
            try:
                parse_duration(value)
            except ValueError:
                raise ValueError(
                    "expected a rolling window like 7d, or day, week or month"
                ) from None
        return value

    @property
    def calendar(self) -> bool:
        return self.window in CALENDAR_WINDOWS

    @property
    def rolling(self) -> timedelta:
        """The rolling window's length (only for non-calendar caps)."""
        return parse_duration(self.window)


class PolicyParams(BaseModel):
    """The `policy:` block."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_offers_per_event: int = Field(default=1, ge=1)
