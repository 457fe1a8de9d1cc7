"""Channel choice (semantics section 4.4): consent, quiet hours, and the caps to check.

For one candidate the planner walks the campaign's channels in order and
turns each usable one into an `Option` for the cap store: the channel, the
`send_at` that quiet hours allow, and one `Check` per matching cap. The store
then reserves the first option every cap admits, so a whole channel fallback
costs one atomic step (and one round trip on Redis).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from keymoment.state.caps import DAY_MS, Check, Option, Reservation, cap_key
from keymoment.triggers.candidate import Candidate
from keymoment.triggers.events import CustomerProfile

from .config import Campaign, Cap
from .localtime import next_opening, period, zone

CALENDAR_SPAN_MS = 32 * DAY_MS  # longest calendar period plus a DST hour, rounded up
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

if TYPE_CHECKING:
    from keymoment.config import RulesFile


def to_ms(at: datetime) -> int:
    """Milliseconds since the epoch, in integer arithmetic (the store's time unit)."""
    return span_ms(at - _EPOCH)


def span_ms(span: timedelta) -> int:
    return (span.days * 86_400 + span.seconds) * 1000 + span.microseconds // 1000


def from_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


@dataclass(slots=True)
class Plan:
    """The options for one candidate, and why channels were left out (for the outcome)."""

    candidate: Candidate
    campaign: Campaign
    earliest: datetime
    channels: list[tuple[str, datetime]] = field(default_factory=list)
    reservation: Reservation | None = None
    consented: bool = False
    deferral_blocked: bool = False
    has_profile: bool = True


class Planner:
    """Builds `Plan`s from the rules file; pure, so it is tested without any store."""

    def __init__(self, rules: RulesFile) -> None:
        self.rules = rules
        self.default_zone = rules.timezone
        # how far behind the clock a slot can ever be asked for: the longest ttl
        self.horizon_ms = max((span_ms(c.ttl) for c in rules.campaigns), default=DAY_MS)
        self.caps = [(cap, 0 if cap.calendar else span_ms(cap.rolling)) for cap in rules.caps]

    def plan(
        self,
        candidate: Candidate,
        campaign: Campaign,
        profile: CustomerProfile | None,
        clock_at: datetime,
    ) -> Plan:
        earliest = max(candidate.triggered_at, clock_at)
        plan = Plan(candidate, campaign, earliest, has_profile=profile is not None)
        tz = self.zone_of(profile)
        limit = min(campaign.deferral_limit, campaign.ttl)
        for channel in campaign.channels:
            if profile is None or not profile.consents_to(channel):
                continue
            plan.consented = True
            policy = self.rules.channels.get(channel)
            send_at = next_opening(earliest, policy.quiet_hours if policy else None, tz)
            if send_at > earliest and send_at - candidate.triggered_at > limit:
                plan.deferral_blocked = True
                continue
            plan.channels.append((channel, send_at))
        if plan.channels:
            plan.reservation = self._reservation(plan, tz, to_ms(clock_at))
        return plan

    def zone_of(self, profile: CustomerProfile | None) -> ZoneInfo:
        """The customer's own timezone, else the rules file's (an unknown name falls back too)."""
        name = profile.timezone if profile and profile.timezone else self.default_zone
        try:
            return zone(name)
        except (KeyError, ValueError, OSError):
            return zone(self.default_zone)

    def _reservation(self, plan: Plan, tz: ZoneInfo, now_ms: int) -> Reservation:
        c = plan.candidate
        options = tuple(
            Option(
                tag=f"{channel}|{to_ms(send_at)}",
                slot_ms=to_ms(send_at),
                checks=self._checks(c, plan.campaign, channel, send_at, tz, now_ms),
            )
            for channel, send_at in plan.channels
        )
        expires_ms = to_ms(c.triggered_at + plan.campaign.ttl)
        keep = max(expires_ms - now_ms, 0) + self.horizon_ms
        return Reservation(c.offer_id, c.customer_id, now_ms, options, keep_ms=keep)

    def _checks(
        self,
        c: Candidate,
        campaign: Campaign,
        channel: str,
        send_at: datetime,
        tz: ZoneInfo,
        now_ms: int,
    ) -> tuple[Check, ...]:
        checks = []
        slot_ms = to_ms(send_at)
        for cap, window_ms in self.caps:
            scope = scope_value(cap, c, campaign, channel)
            if scope is not None:
                key = cap_key(c.customer_id, cap.id, scope)
                checks.append(self._check(cap, window_ms, key, send_at, slot_ms, tz, now_ms))
        return tuple(checks)

    def _check(
        self,
        cap: Cap,
        window_ms: int,
        key: str,
        send_at: datetime,
        slot_ms: int,
        tz: ZoneInfo,
        now_ms: int,
    ) -> Check:
        floor_ms = now_ms - self.horizon_ms
        if window_ms == 0:
            start_ms, end_ms = period_ms(send_at, cap.window, tz)
            return Check(
                cap.id,
                key,
                "calendar",
                cap.limit,
                start_ms=start_ms,
                end_ms=end_ms,
                keep_ms=max(end_ms - floor_ms, 1),
                prune_before_ms=floor_ms - CALENDAR_SPAN_MS,
            )
        return Check(
            cap.id,
            key,
            "rolling",
            cap.limit,
            window_ms=window_ms,
            keep_ms=max(slot_ms + window_ms - floor_ms, 1),
            prune_before_ms=floor_ms - window_ms,
        )


def period_ms(at: datetime, window: str, tz: ZoneInfo) -> tuple[int, int]:
    """`period` in store milliseconds, cached per zone, window and local date."""
    return _period_ms(tz, window, at.astimezone(tz).date())


@lru_cache(maxsize=65536)
def _period_ms(tz: ZoneInfo, window: str, day: date) -> tuple[int, int]:
    start, end = period(datetime.combine(day, time(12), tzinfo=tz), window, tz)
    return to_ms(start), to_ms(end)


def scope_value(cap: Cap, c: Candidate, campaign: Campaign, channel: str) -> str | None:
    """The part of the key that separates this cap's counters, or None when it does not apply."""
    if cap.scope == "customer":
        return ""
    own, named = {
        "customer_channel": (channel, cap.channel),
        "customer_campaign": (campaign.campaign_id, cap.campaign),
        "customer_rule": (c.rule_id, cap.rule),
    }[cap.scope]
    if named is not None and named != own:
        return None
    return own
