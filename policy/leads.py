"""Leads on human channels: capacity per owner, allocation by rank, waiting for a working day.

A candidate reaches a human channel (policy/human.py) when the campaign's
channels before it could not take it. Then, on the event clock:

- inside working time, the lead is reserved at once, its owner's capacity
  with the customer's caps in one atomic reservation (the capacity is one
  more calendar `Check` on the owner's key `lead:{rm:R1}:rm_task`, so the
  Redis script holds it under concurrent reservers exactly like a cap);
- outside working time it waits for the next working period's start;
- when the owner's window is full it waits for the next working day if that
  is within the campaign's deferral limit (`min(max_delay, ttl)`), else the
  campaign's next channels are tried, else it ends `capped` with reason
  `capacity:<channel>`.

Waiting leads are allocated when the engine clock reaches their period's
start, before any candidate decided at or after that time: per (channel,
owner), by campaign priority desc, value desc, then age (triggered_at asc)
and offer_id, as many as the capacity takes. A lead not allocated waits for
the next working day while that is within its limit, else ends `expired`
with reason `not_allocated`. Everything depends on the candidates and the
clock values the policy is called with, never on processing time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import groupby
from typing import TYPE_CHECKING, Any, NamedTuple
from zoneinfo import ZoneInfo

from keymoment.state.caps import Check, Result
from keymoment.triggers.candidate import Candidate
from keymoment.triggers.events import CustomerProfile

from .config import Campaign, ChannelPolicy
from .decision import Decision, offer_id_of
from .human import Owner, WorkingTime, owner_of
from .planning import Plan, parse_tag, period_ms, span_ms, to_ms

if TYPE_CHECKING:
    from .contact import RulesContactPolicy


class LeadTag(NamedTuple):
    """What an offer on a human channel carries: who owns it and when it is due."""

    rm_id: str | None
    pool: str | None
    due_at: datetime | None


@dataclass(slots=True)
class Lead:
    """A lead waiting for its owner's next working period (plain data: it is snapshotted)."""

    candidate: Candidate
    campaign: Campaign  # as the customer's variant sees it
    channel: str
    owner: Owner
    profile: CustomerProfile
    alloc_at: datetime  # when it is next considered
    limit_at: datetime  # the last instant it may still be handed over

    def rank(self) -> tuple[int, float, datetime, str]:
        c = self.candidate
        return (-self.campaign.priority, -self.campaign.value, c.triggered_at, offer_id_of(c))


class LeadDesk:
    """The policy's leads: routed on arrival, allocated when a working period starts."""

    def __init__(self, policy: RulesContactPolicy) -> None:
        self.policy = policy
        self.waiting: list[Lead] = []
        self.counts = {"leads_allocated": 0, "leads_not_allocated": 0, "leads_waited": 0}
        # after a call that found nothing due: that list, its length and its soonest period
        self._none_due: tuple[list[Lead], int, datetime] | None = None
        # (campaign view, channels after the human one) -> the view with only those channels
        self._rests: dict[tuple[int, tuple[str, ...]], tuple[Campaign, Campaign]] = {}
        self._channels: tuple[object, dict[str, ChannelPolicy]] = (None, {})

    def channels(self) -> dict[str, ChannelPolicy]:
        """The human channels of the rules in force (built once per rules version)."""
        rules = self.policy.rules
        if self._channels[0] is not rules:
            self._channels = (rules, {n: c for n, c in rules.channels.items() if c.human})
        return self._channels[1]

    # -- on arrival -------------------------------------------------------------------------
    def route(self, plan: Plan, profile: CustomerProfile, clock_at: datetime, refusal: str | None):
        """The decisions for a plan that reached its human channel (empty: the lead waits).

        Raises `CapStoreUnavailable` when the store cannot answer; nothing was decided.
        """
        assert plan.human is not None
        c, channel = plan.candidate, plan.human
        spec = self.channels()[channel]
        owner = owner_of(channel, spec.capacity, spec.fallback, profile)  # type: ignore[arg-type]
        if owner is None:
            return self._rest(plan, profile, clock_at, refusal)
        tz, work = self._zone(spec, profile), spec.working
        limit_at = c.triggered_at + min(plan.campaign.deferral_limit, plan.campaign.ttl)
        opening = work.next_start(plan.earliest, tz)
        if opening is None or opening > limit_at:
            return self._rest(plan, profile, clock_at, refusal, blocked=True)
        lead = Lead(c, plan.campaign, channel, owner, profile, opening, limit_at)
        if opening > plan.earliest:
            return self._wait(lead)
        result = self.policy.store.reserve(self._reservation(lead, spec, tz, opening))
        if result.tag is not None:
            return [self._sent(lead, result, "admitted", spec)]
        if result.refused[0] == capacity_id(channel):
            again = work.next_day_start(opening, tz)
            if again is not None and again <= limit_at:
                lead.alloc_at = again
                return self._wait(lead)
        return self._rest(plan, profile, clock_at, refusal or result.refused[0])

    def _wait(self, lead: Lead) -> list[Decision]:
        self.waiting.append(lead)
        self.counts["leads_waited"] += 1
        return []

    def _rest(
        self,
        plan: Plan,
        profile: CustomerProfile,
        clock_at: datetime,
        refusal: str | None,
        blocked: bool = False,
    ) -> list[Decision]:
        """The campaign's channels after this human one; the first refusal names a final cap."""
        policy, c = self.policy, plan.candidate
        view = self._rest_view(plan.campaign, plan.after)
        rest = policy.planner.plan(c, view, profile, clock_at) if plan.after else None
        if rest is not None and rest.reservation is not None:
            result = policy.store.reserve(rest.reservation)
            if result.tag is not None:
                return [policy._placed(rest, result)]
            refusal = refusal or result.refused[0]
        if rest is not None and rest.human is not None:
            return self.route(rest, profile, clock_at, refusal)
        if refusal is not None:
            return [policy._final(c, "capped", refusal)]
        if blocked or (rest is not None and rest.deferral_blocked):
            return [policy._final(c, "expired", "max_delay")]
        return [policy._final(c, "no_channel", "no_owner" if rest is None else "no_consent")]

    def _rest_view(self, campaign: Campaign, after: Sequence[str]) -> Campaign:
        """The campaign with only the channels `after` its human one, built once per view.

        A pydantic copy costs more than planning the candidate; the planner also caches
        its channel routes per campaign object, so the same view object must come back.
        """
        key = (id(campaign), tuple(after))
        found = self._rests.get(key)
        if found is None or found[0] is not campaign:
            if len(self._rests) > 1024:
                self._rests.clear()
            view = campaign.model_copy(update={"channels": list(after)})
            found = self._rests[key] = (campaign, view)
        return found[1]

    # -- at the start of a working period ---------------------------------------------------
    def allocate(self, clock_at: datetime) -> list[Decision]:
        """Allocate every waiting lead whose period started by `clock_at`, oldest period first.

        The policy calls this on every `decide` while a lead waits, so a call that finds
        nothing due remembers the soonest period: until the clock reaches it, and while
        `waiting` is the same list with the same length (leads only join by `append`,
        and leave by a new list), the next calls return at once instead of scanning.
        """
        out: list[Decision] = []
        seen = self._none_due
        if seen and seen[0] is self.waiting and seen[1] == len(self.waiting) and clock_at < seen[2]:
            return out
        while True:
            due = sorted(
                (lead for lead in self.waiting if lead.alloc_at <= clock_at),
                key=lambda lead: (lead.alloc_at, lead.channel, lead.owner.key, lead.rank()),
            )
            if not due:
                soonest = min((lead.alloc_at for lead in self.waiting), default=None)
                if soonest is not None:
                    self._none_due = (self.waiting, len(self.waiting), soonest)
                return out
            first = due[0].alloc_at
            batch = [lead for lead in due if lead.alloc_at == first]
            for _, group in groupby(batch, key=lambda lead: (lead.channel, lead.owner.key)):
                out += self._allocate_group(list(group))

    def _allocate_group(self, leads: list[Lead]) -> list[Decision]:
        spec = self.channels().get(leads[0].channel)
        if spec is None:  # a rules update removed the channel while they waited
            self._drop(leads)
            return [self.policy._final(x.candidate, "no_channel", "unknown_channel") for x in leads]
        requests = [
            self._reservation(x, spec, self._zone(spec, x.profile), x.alloc_at) for x in leads
        ]
        results = self.policy.store.reserve_many(requests)  # raises before anything changed
        self._drop(leads)
        out = []
        for lead, result in zip(leads, results, strict=True):
            out += self._after_allocation(lead, result, spec)
        return out

    def _after_allocation(self, lead: Lead, result: Result, spec: ChannelPolicy) -> list[Decision]:
        if result.tag is not None:
            return [self._sent(lead, result, "allocated", spec)]
        if result.refused[0] != capacity_id(lead.channel):
            return [self.policy._final(lead.candidate, "capped", result.refused[0])]
        again = spec.working.next_day_start(lead.alloc_at, self._zone(spec, lead.profile))
        if again is not None and again <= lead.limit_at:
            lead.alloc_at = again
            self.waiting.append(lead)
            return []
        self.counts["leads_not_allocated"] += 1
        owner = tag(lead.owner, None)
        return [self.policy._final(lead.candidate, "expired", "not_allocated", lead=owner)]

    def _drop(self, leads: list[Lead]) -> None:
        gone = {id(x) for x in leads}
        self.waiting = [x for x in self.waiting if id(x) not in gone]

    # -- pieces -----------------------------------------------------------------------------
    def _sent(self, lead: Lead, result: Result, reason: str, spec: ChannelPolicy) -> Decision:
        channel, send_at = parse_tag(result.tag or "")
        if result.replayed:
            reason = "already_reserved"
        self.counts["leads_allocated"] += 1
        due_at = send_at + spec.sla if spec.sla is not None else None
        return self.policy._final(
            lead.candidate, "sent", reason, channel=channel, send_at=send_at,
            lead=tag(lead.owner, due_at),
        )  # fmt: skip

    def _reservation(self, lead: Lead, spec: ChannelPolicy, tz: ZoneInfo, at: datetime) -> Any:
        """The customer's caps on this channel plus the owner's capacity, checked first."""
        capacity = spec.capacity
        assert capacity is not None
        start, end = period_ms(at, capacity.window, tz)
        now_ms = to_ms(at)
        horizon = span_ms(lead.campaign.ttl)
        check = Check(
            capacity_id(lead.channel),
            f"lead:{{{lead.owner.key}}}:{lead.channel}",
            "calendar",
            lead.owner.limit,
            0,
            start,
            end,
            max(end - now_ms, 1) + horizon,
            now_ms - 40 * 86_400_000,  # a period never starts more than a month and a bit back
        )
        return self.policy.planner.one_option(lead.candidate, lead.campaign, lead.channel, at,
                                              lead.profile, check)  # fmt: skip

    def _zone(self, spec: ChannelPolicy, profile: CustomerProfile) -> ZoneInfo:
        if spec.timezone:
            return self.policy.planner.zone_named(spec.timezone)
        return self.policy.planner.zone_of(profile)

    # -- recovery ---------------------------------------------------------------------------
    def snapshot(self) -> list[Lead]:
        return list(self.waiting)

    def restore(self, leads: list[Lead]) -> None:
        self.waiting = list(leads)


def capacity_id(channel: str) -> str:
    """The refusal reason of a full owner: `capacity:<channel>`."""
    return f"capacity:{channel}"


def tag(owner: Owner, due_at: datetime | None) -> LeadTag:
    if owner.kind == "rm":
        return LeadTag(owner.id, None, due_at)
    return LeadTag(None, owner.key, due_at)


__all__ = ["Lead", "LeadDesk", "LeadTag", "WorkingTime", "capacity_id"]
