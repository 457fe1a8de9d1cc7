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

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo

from keymoment.state.caps import DAY_MS, Check, Option, Reservation, customer_tag
from keymoment.triggers.candidate import Candidate
from keymoment.triggers.events import CustomerProfile

from .config import Campaign, Cap, SendHours
from .decision import offer_id_of
from .localtime import minute_table, opening, period, zone

CALENDAR_SPAN_MS = 32 * DAY_MS  # longest calendar period plus a DST hour, rounded up
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS, _US = timedelta(milliseconds=1), timedelta(microseconds=1)
# `Check`, `Option` and `Reservation` are NamedTuples; `tuple.__new__(cls, (every field))`
# is what their generated `__new__` does, without its Python frame: 0.56 us against 1.5 us
# per `Check` on this machine (round 4), and the planner builds about four per candidate.
_new = tuple.__new__
# a tag's `.<us>` part for each microsecond within the ms: one index instead of a `:03d`
# format spec (0.65 against 1.7 us per tag on this machine, round 5)
_FRACTIONS = tuple(f".{us:03d}" for us in range(1000))

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
    return f"{channel}|{ms}{_FRACTIONS[span.microseconds % 1000]}"


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
    after: Sequence[str] = ()  # the campaign's channels after it
    partial: bool = False  # `reservation` holds the first channel only (`Planner.complete`)
    rest: int = 0  # where `Planner.complete` goes on in the campaign's channels


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


@dataclass(frozen=True, slots=True)
class _Route:
    """What planning one candidate of a campaign view and rule needs from the rules file.

    `channels` in campaign order: name, allowed hours (None: any hour), the channels
    after it for a human channel (None: not human), its caps, and the allowed hours per
    minute of the day (`localtime.minute_table`, None when they cannot be tabled).
    """

    campaign: Campaign
    limit: timedelta  # min(deferral limit, ttl)
    ttl_us: int
    caps: dict[str, tuple[_CapRule, ...]]
    channels: tuple[_Channel, ...]


_Channel = tuple[
    str, SendHours | None, tuple[str, ...] | None, tuple[_CapRule, ...], tuple[bool, ...] | None
]


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
        self._by_campaign: dict[tuple[int, str], _Route] = {}
        self._periods: dict[tuple[ZoneInfo, str, date], tuple[int, int]] = {}
        self._days: dict[tuple[datetime, ZoneInfo], date] = {}

    def plan(
        self,
        candidate: Candidate,
        campaign: Campaign,
        profile: CustomerProfile | None,
        clock_at: datetime,
        *,
        reserve: bool = True,
        first_only: bool = False,
    ) -> Plan:
        """The channels consent and quiet hours allow and, if `reserve`, the store's request.

        A control-group candidate only needs its first channel (it takes no slot), so it
        passes `reserve=False`: no checks are built, no later channel is looked at. With
        `first_only` the plan holds only the first usable channel (`plan.partial` says
        when there may be more): an in-process store that admits it never needed the
        others. The hot loop of the policy: what depends only on the rules is in the
        campaign's `_Route`, and the customer's local time is found once (`local`), not
        once per channel and cap.
        """
        triggered = candidate.triggered_at
        earliest = clock_at if clock_at > triggered else triggered
        plan = Plan(candidate, campaign, earliest, [])
        if profile is None:  # no reference data: no consent to any channel
            plan.has_profile = False
            return plan
        route = self._by_campaign.get((id(campaign), candidate.rule_id))
        if route is None or route.campaign is not campaign:
            route = self._route_of(campaign, candidate.rule_id)
        tz = self._zones.get(profile.timezone) or self.zone_of(profile)
        local = self._walk(plan, route, profile, tz, 0, first_only or not reserve)
        if plan.channels and reserve:
            plan.reservation = self._reservation(plan, route, tz, local, clock_at)
        return plan

    def _walk(
        self,
        plan: Plan,
        route: _Route,
        profile: CustomerProfile,
        tz: ZoneInfo,
        start: int,
        first: bool,
    ) -> datetime | None:
        """Channels from `start` in campaign order: consent, send hours, the deferral limit.

        With `first` it stops at the first usable channel and `plan.rest` says where to
        go on (`complete`): a store that admits it, or a control candidate (only its
        first channel is logged), never needed the others (round 5). Returns `earliest`
        in `tz` when send hours needed it, else None.
        """
        earliest, triggered, local = plan.earliest, plan.candidate.triggered_at, None
        channels = route.channels
        for i in range(start, len(channels)):
            channel, hours, after, _caps, minutes = channels[i]
            if not profile.consents_to(channel):
                continue
            plan.consented = True
            if after is not None:  # a human channel: the channels before it are tried first
                plan.human, plan.after = channel, after
                break
            send_at = earliest
            if hours is not None:
                if local is None:
                    local = earliest.astimezone(tz)
                if minutes is None or not minutes[local.hour * 60 + local.minute]:
                    send_at = opening(earliest, local, hours, tz)
                if send_at > earliest and send_at - triggered > route.limit:
                    plan.deferral_blocked = True
                    continue
            plan.channels.append((channel, send_at))
            if first and i + 1 < len(channels):
                plan.rest, plan.partial = i + 1, True
                break
        return local

    def complete(self, plan: Plan, profile: CustomerProfile | None, clock_at: datetime) -> bool:
        """The channels after a partial plan's first, and the request with every option.

        False when no other channel is usable: the request stays the one already asked.
        """
        plan.partial = False
        if profile is None:
            return False
        route = self._route_of(plan.campaign, plan.candidate.rule_id)
        tz = self.zone_of(profile)
        self._walk(plan, route, profile, tz, plan.rest, False)
        if len(plan.channels) < 2:
            return False
        plan.reservation = self._reservation(plan, route, tz, None, clock_at)
        return True

    def _route_of(self, campaign: Campaign, rule_id: str) -> _Route:
        """The campaign's channels with their hours and caps, built once per campaign view.

        Keyed by the campaign object (a variant's view or a lead's rest-of-channels view
        is another object); the entry holds the campaign, so its id is never reused.
        """
        key = (id(campaign), rule_id)
        route = self._by_campaign.get(key)
        if route is None or route.campaign is not campaign:
            if len(self._by_campaign) > 4096:  # leads build a view per call: stay bounded
                self._by_campaign.clear()
            route = self._by_campaign[key] = self._new_route(campaign, rule_id)
        return route

    def _new_route(self, campaign: Campaign, rule_id: str) -> _Route:
        names = campaign.channels
        channels = tuple(
            (
                name,
                hours := self._hours.get(name),
                tuple(names[i + 1 :]) if name in self._human else None,
                self._route(campaign, name, rule_id),
                minute_table(hours) if hours is not None else None,
            )
            for i, name in enumerate(names)
        )
        limit = min(campaign.deferral_limit, campaign.ttl)
        ttl_us = campaign.ttl // _US
        return _Route(campaign, limit, ttl_us, {c[0]: c[3] for c in channels}, channels)

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
        us = (send_at - _EPOCH) // _US
        tz, floor_ms = self.zone_of(profile), now_ms - self.horizon_ms
        option = self._option(rules, channel, send_at, us, tz, head, floor_ms)
        option = _new(Option, (option.tag, option.slot_ms, (first, *option.checks)))
        keep = max(to_ms(c.triggered_at + campaign.ttl) - now_ms, 0) + self.horizon_ms
        return Reservation(offer_id_of(c), c.customer_id, now_ms, (option,), keep)

    def _resolve_zone(self, name: str | None) -> ZoneInfo:
        try:
            return zone(name or self.default_zone)
        except (KeyError, ValueError, OSError):
            return zone(self.default_zone)

    def _reservation(
        self, plan: Plan, route: _Route, tz: ZoneInfo, local: datetime | None, clock_at: datetime
    ) -> Reservation:
        """Every channel option of `plan`, in integer ms (`local`: `earliest` in `tz`, or None).

        The clock, `triggered_at` and `earliest` (one of them) go to integer microseconds
        with one datetime subtraction when the candidate fired at the clock (an event's
        candidate at its watermark), two otherwise: the rest is integer arithmetic.
        """
        c = plan.candidate
        clock_us = (clock_at - _EPOCH) // _US
        triggered = c.triggered_at
        triggered_us = clock_us if triggered == clock_at else (triggered - _EPOCH) // _US
        earliest_us = clock_us if clock_us > triggered_us else triggered_us  # plan.earliest's
        now_ms = clock_us // 1000
        head = "cap:" + customer_tag(c.customer_id)
        floor_ms = now_ms - self.horizon_ms
        options: tuple[Option, ...]
        if len(plan.channels) == 1:  # one option: nothing to share
            channel, send_at = plan.channels[0]
            if send_at is plan.earliest:
                us, day = earliest_us, local.date() if local is not None else None
            else:
                us, day = (send_at - _EPOCH) // _US, None
            caps = route.caps[channel]
            options = (self._option(caps, channel, send_at, us, tz, head, floor_ms, day),)
        else:
            options = self._options(plan, route, tz, local, earliest_us, head, floor_ms)
        keep = (triggered_us + route.ttl_us) // 1000 - now_ms  # until the candidate expires
        keep = (keep if keep > 0 else 0) + self.horizon_ms
        return _new(Reservation, (offer_id_of(c), c.customer_id, now_ms, options, keep))

    def _options(
        self,
        plan: Plan,
        route: _Route,
        tz: ZoneInfo,
        local: datetime | None,
        earliest_us: int,
        head: str,
        floor_ms: int,
    ) -> tuple[Option, ...]:
        """Several channels' options: a cap the previous option checked at the same `send_at`
        (a customer-wide cap, typically) reuses that `Check`."""
        options: list[Option] = []
        shared: dict[str, Check] = {}
        shared_at: datetime | None = None
        for channel, send_at in plan.channels:
            if send_at != shared_at:  # a check is the same in every option with this send_at
                shared, shared_at = {}, send_at
            if send_at is plan.earliest:
                us, day = earliest_us, local.date() if local is not None else None
            else:
                us, day = (send_at - _EPOCH) // _US, None
            caps = route.caps[channel]
            options.append(
                self._option(caps, channel, send_at, us, tz, head, floor_ms, day, shared)
            )
        return tuple(options)

    def _option(
        self,
        rules: tuple[_CapRule, ...],
        channel: str,
        send_at: datetime,
        us: int,
        tz: ZoneInfo,
        head: str,
        floor: int,
        day: date | None = None,
        shared: dict[str, Check] | None = None,
    ) -> Option:
        """One channel's `Option` at `send_at` (`us`: the same in microseconds since the epoch).

        A `Check` per cap (positional arguments: see state/caps.py), written as one loop
        rather than a call per cap: this is the policy's innermost
        loop (about five checks per candidate). The local date is found at most once
        per option (`day`, when the caller already knows it; a deferred `send_at`, an
        opening shared by many candidates, through `_day`), a calendar period once per
        (zone, window, date) for the planner's life, and with `shared` a check already
        built for an earlier option at the same `send_at` is reused.
        """
        slot_ms = us // 1000
        checks = []
        for rule in rules:
            key = head + rule.suffix
            check = shared.get(key) if shared else None
            if check is None:
                window_ms = rule.window_ms
                if window_ms:
                    keep = slot_ms + window_ms - floor
                    check = _new(Check, (
                        rule.cap_id, key, "rolling", rule.limit, window_ms, 0, 0,
                        keep if keep > 1 else 1, floor - window_ms,
                    ))  # fmt: skip
                else:
                    if day is None:
                        day = self._day(send_at, tz)
                    start_ms, end_ms = self._period(tz, rule.window, day)
                    keep = end_ms - floor
                    check = _new(Check, (
                        rule.cap_id, key, "calendar", rule.limit, 0, start_ms, end_ms,
                        keep if keep > 1 else 1, floor - CALENDAR_SPAN_MS,
                    ))  # fmt: skip
                if shared is not None:
                    shared[key] = check
            checks.append(check)
        return _new(Option, (f"{channel}|{slot_ms}{_FRACTIONS[us % 1000]}", slot_ms, tuple(checks)))

    def _day(self, at: datetime, tz: ZoneInfo) -> date:
        """The local date of `at`: a plain dict, for the openings that many candidates share."""
        key = (at, tz)
        day = self._days.get(key)
        if day is None:
            if len(self._days) > 65536:
                self._days.clear()
            day = self._days[key] = at.astimezone(tz).date()
        return day

    def _period(self, tz: ZoneInfo, window: str, day: date) -> tuple[int, int]:
        """`_period_ms` through a plain dict: a hit is one lookup, no lru_cache wrapper."""
        key = (tz, window, day)
        found = self._periods.get(key)
        if found is None:
            if len(self._periods) > 65536:
                self._periods.clear()
            found = self._periods[key] = _period_ms(tz, window, day)
        return found

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
