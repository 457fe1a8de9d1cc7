"""Channel choice (semantics section 4.4): consent, quiet hours, and the caps to check.

For one candidate the planner walks the campaign's channels in order and
turns each usable one into an `Option` for the cap store: the channel, the
`send_at` that quiet hours allow, and one `Check` per matching cap. The store
then reserves the first option every cap admits, so a whole channel fallback
costs one atomic step (and one round trip on Redis).

Everything that depends only on the rules file is worked out once per rules
version and reused: which caps apply to a (campaign, channel, rule) and the
tail of their keys (`_CapRule`), each channel's quiet hours, and the timezone
objects. Per candidate only the customer's key prefix, the times and the
`Check`s themselves are built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo

from keymoment.state.caps import DAY_MS, Check, Kind, Option, Reservation, customer_tag
from keymoment.triggers.candidate import Candidate
from keymoment.triggers.events import CustomerProfile

from .config import Campaign, Cap, SendHours
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


def slot_tag(channel: str, send_at: datetime) -> str:
    """`<channel>|<slot ms>.<us>`: the store counts slots in ms, decisions keep every us.

    The tag is what a replayed reservation gives back, so it carries the exact
    `send_at` (a tag without the `.<us>` part, written before, reads as whole ms).
    """
    span = send_at - _EPOCH
    ms = (span.days * 86_400 + span.seconds) * 1000 + span.microseconds // 1000
    return f"{channel}|{ms}.{span.microseconds % 1000:03d}"


def parse_tag(tag: str) -> tuple[str, datetime]:
    """The channel and exact `send_at` of a tag made by `slot_tag`."""
    channel, _, slot = tag.partition("|")
    ms, _, us = slot.partition(".")
    return channel, _EPOCH + timedelta(milliseconds=int(ms), microseconds=int(us or 0))


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
    human: str | None = None  # the first consented human channel: the lead desk's (leads.py)
    after: list[str] = field(default_factory=list)  # the campaign's channels after it


def unplaced(plan: Plan) -> tuple[Literal["expired", "no_channel"], str]:
    """Why a plan has no reservation: every consented channel deferred too far, or none."""
    if plan.deferral_blocked:
        return "expired", "max_delay"
    return "no_channel", "no_consent" if plan.has_profile else "no_profile"


@dataclass(frozen=True, slots=True)
class _CapRule:
    """One cap as it applies to one (campaign, channel, rule): all but the customer and time.

    `suffix` is the key after the customer's hash tag, so a key is one concatenation
    (the same string `cap_key` builds). `window_ms` is 0 for a calendar cap.
    """

    cap_id: str
    suffix: str
    limit: int
    window: str
    window_ms: int


class Planner:
    """Builds `Plan`s from the rules file; pure, so it is tested without any store."""

    def __init__(self, rules: RulesFile) -> None:
        self.rules = rules
        self.default_zone = rules.timezone
        # how far behind the clock a slot can ever be asked for: the longest ttl
        self.horizon_ms = max((span_ms(c.ttl) for c in rules.campaigns), default=DAY_MS)
        self.caps = [(cap, 0 if cap.calendar else span_ms(cap.rolling)) for cap in rules.caps]
        self._hours: dict[str, SendHours | None] = {
            name: policy.allowed_hours for name, policy in rules.channels.items()
        }
        self._routes: dict[tuple[str, str, str], tuple[_CapRule, ...]] = {}
        self._zones: dict[str | None, ZoneInfo] = {}
        self._human = {name for name, policy in rules.channels.items() if policy.human}

    def plan(
        self,
        candidate: Candidate,
        campaign: Campaign,
        profile: CustomerProfile | None,
        clock_at: datetime,
        *,
        reserve: bool = True,
    ) -> Plan:
        """The channels consent and quiet hours allow and, if `reserve`, the store's request.

        A control-group candidate only needs the channels (it takes no slot), so it
        passes `reserve=False` and skips building the checks.
        """
        earliest = max(candidate.triggered_at, clock_at)
        plan = Plan(candidate, campaign, earliest, has_profile=profile is not None)
        if profile is None:  # no reference data: no consent to any channel
            return plan
        tz = self.zone_of(profile)
        limit = min(campaign.deferral_limit, campaign.ttl)
        for i, channel in enumerate(campaign.channels):
            if not profile.consents_to(channel):
                continue
            plan.consented = True
            if channel in self._human:  # the channels before it are tried first
                plan.human, plan.after = channel, campaign.channels[i + 1 :]
                break
            send_at = next_opening(earliest, self._hours.get(channel), tz)
            if send_at > earliest and send_at - candidate.triggered_at > limit:
                plan.deferral_blocked = True
                continue
            plan.channels.append((channel, send_at))
        if plan.channels and reserve:
            plan.reservation = self._reservation(plan, tz, to_ms(clock_at))
        return plan

    def zone_of(self, profile: CustomerProfile | None) -> ZoneInfo:
        """The customer's own timezone, else the rules file's (an unknown name falls back too)."""
        name = profile.timezone if profile else None
        tz = self._zones.get(name)
        if tz is None:
            tz = self._zones[name] = self._resolve_zone(name)
        return tz

    def zone_named(self, name: str) -> ZoneInfo:
        """A channel's own timezone (a branch's), resolved like a customer's."""
        tz = self._zones.get(name)
        if tz is None:
            tz = self._zones[name] = self._resolve_zone(name)
        return tz

    def one_option(
        self,
        c: Candidate,
        campaign: Campaign,
        channel: str,
        send_at: datetime,
        profile: CustomerProfile,
        first: Check,
    ) -> Reservation:
        """A reservation of one channel at `send_at`: `first`, then the customer's caps on it.

        The lead desk's request (leads.py): the owner's capacity is `first`, so a
        full owner is told apart from a customer cap.
        """
        now_ms = to_ms(send_at)
        head = f"cap:{{{c.customer_id}}}"
        rules = self._route(campaign, channel, c.rule_id)
        option = _option(
            rules, channel, send_at, self.zone_of(profile), head, now_ms - self.horizon_ms, {}
        )
        option = option._replace(checks=(first, *option.checks))
        keep = max(to_ms(c.triggered_at + campaign.ttl) - now_ms, 0) + self.horizon_ms
        return Reservation(c.offer_id, c.customer_id, now_ms, (option,), keep)

    def _resolve_zone(self, name: str | None) -> ZoneInfo:
        try:
            return zone(name or self.default_zone)
        except (KeyError, ValueError, OSError):
            return zone(self.default_zone)

    def _reservation(self, plan: Plan, tz: ZoneInfo, now_ms: int) -> Reservation:
        c, campaign = plan.candidate, plan.campaign
        head = "cap:" + customer_tag(c.customer_id)
        floor_ms = now_ms - self.horizon_ms
        options: list[Option] = []
        shared: dict[str, Check] = {}
        shared_at: datetime | None = None
        for channel, send_at in plan.channels:
            if send_at != shared_at:  # a check is the same in every option with this send_at
                shared, shared_at = {}, send_at
            rules = self._route(campaign, channel, c.rule_id)
            options.append(_option(rules, channel, send_at, tz, head, floor_ms, shared))
        expires_ms = to_ms(c.triggered_at + campaign.ttl)
        keep = max(expires_ms - now_ms, 0) + self.horizon_ms
        return Reservation(c.offer_id, c.customer_id, now_ms, tuple(options), keep)

    def _route(self, campaign: Campaign, channel: str, rule_id: str) -> tuple[_CapRule, ...]:
        """The caps that apply to this campaign, channel and rule, in rules-file order."""
        route = (campaign.campaign_id, channel, rule_id)
        rules = self._routes.get(route)
        if rules is None:
            rules = self._routes[route] = tuple(
                _CapRule(cap.id, f":{cap.id}:{scope}", cap.limit, cap.window, window_ms)
                for cap, window_ms in self.caps
                if (scope := scope_value(cap, rule_id, campaign, channel)) is not None
            )
        return rules


def _option(
    rules: tuple[_CapRule, ...],
    channel: str,
    send_at: datetime,
    tz: ZoneInfo,
    head: str,
    floor: int,
    shared: dict[str, Check],
) -> Option:
    """One channel's `Option`: a `Check` per cap (positional arguments: see state/caps.py).

    Written as one loop rather than a call per cap: this is the policy's innermost
    loop (about five checks per candidate). The local date is found once per option,
    and a cap the previous option already checked at the same `send_at` (a
    customer-wide cap, typically) reuses that `Check` from `shared`.
    """
    slot_ms = to_ms(send_at)
    day = None
    checks = []
    for rule in rules:
        key = head + rule.suffix
        check = shared.get(key)
        if check is not None:
            checks.append(check)
            continue
        window_ms = rule.window_ms
        if window_ms:
            kind: Kind
            kind, start_ms, end_ms = "rolling", 0, 0
            keep_ms, prune_ms = slot_ms + window_ms - floor, floor - window_ms
        else:
            day = day or send_at.astimezone(tz).date()
            kind, (start_ms, end_ms) = "calendar", _period_ms(tz, rule.window, day)
            keep_ms, prune_ms = end_ms - floor, floor - CALENDAR_SPAN_MS
        keep_ms = max(keep_ms, 1)
        check = Check(
            rule.cap_id, key, kind, rule.limit, window_ms, start_ms, end_ms, keep_ms, prune_ms
        )
        checks.append(check)
        shared[key] = check
    return Option(slot_tag(channel, send_at), slot_ms, tuple(checks))


def period_ms(at: datetime, window: str, tz: ZoneInfo) -> tuple[int, int]:
    """`period` in store milliseconds, cached per zone, window and local date."""
    return _period_ms(tz, window, at.astimezone(tz).date())


@lru_cache(maxsize=65536)
def _period_ms(tz: ZoneInfo, window: str, day: date) -> tuple[int, int]:
    start, end = period(datetime.combine(day, time(12), tzinfo=tz), window, tz)
    return to_ms(start), to_ms(end)


def scope_value(cap: Cap, rule_id: str, campaign: Campaign, channel: str) -> str | None:
    """The part of the key that separates this cap's counters, or None when it does not apply."""
    if cap.scope == "customer":
        return ""
    own, named = {
        "customer_channel": (channel, cap.channel),
        "customer_campaign": (campaign.campaign_id, cap.campaign),
        "customer_rule": (rule_id, cap.rule),
    }[cap.scope]
    if named is not None and named != own:
        return None
    return own
