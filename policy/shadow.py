"""Shadow candidates: decided by the whole policy, never sent, never counted (docs/rollout.md).

A rule or campaign in `mode: shadow` is how an operator tries a change on
live traffic first. Its candidates pass suppression, holdout, arbitration,
ttl, consent, send hours and caps like any other, but read-only: they take no
cap slot and never make a live candidate lose arbitration (they are ranked
against the live candidates of their moment without taking part in the
live ranking). Each ends with outcome `shadow`; the reason is what a live
candidate would have got (`sent`, `capped:daily-any`, `suppressed:blacklist`,
...), with the channel and `send_at` it would have had when that is `sent`.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from keymoment.state.caps import CapStore, CapStoreUnavailable, Check, Reservation, rolling_admits
from keymoment.triggers.candidate import Candidate

from .arbitration import moment, rank
from .config import Campaign
from .decision import Decision
from .planning import parse_tag, unplaced

if TYPE_CHECKING:
    from keymoment.triggers.events import CustomerProfile

    from .contact import RulesContactPolicy


def decide_shadow(
    policy: RulesContactPolicy,
    items: list[tuple[Candidate, str | None]],
    live: Sequence[Candidate],
    profiles: Mapping[str, CustomerProfile],
    clock_at: datetime,
) -> list[Decision]:
    """One `shadow` decision per (candidate, verdict so far); the verdict is None when it
    passed suppression and holdout."""
    out = []
    for c, verdict in items:
        channel, send_at = None, None
        if verdict is None:
            winner = would_win(c, live, policy._campaign, policy.rules.policy.max_offers_per_event)
            verdict = f"arbitration_lost:{winner}" if winner else None
        if verdict is None:
            verdict, channel, send_at = _placed(policy, c, profiles, clock_at)
        out.append(policy._final(c, "shadow", verdict, channel=channel, send_at=send_at))
    return out


def _placed(
    policy: RulesContactPolicy,
    c: Candidate,
    profiles: Mapping[str, CustomerProfile],
    clock_at: datetime,
) -> tuple[str, str | None, datetime | None]:
    """ttl, consent, send hours and caps, read-only: (verdict, channel, send_at)."""
    campaign = policy._campaign(c)
    if clock_at - c.triggered_at > campaign.ttl:
        return "expired:ttl", None, None
    plan = policy.planner.plan(c, campaign, profiles.get(c.customer_id), clock_at)
    if plan.reservation is None:
        return ":".join(unplaced(plan)), None, None
    tag, refused = would_place(policy.store, plan.reservation)
    if tag is None:
        return f"capped:{refused}", None, None
    channel, send_at = parse_tag(tag)
    return "sent", channel, send_at


def would_win(
    candidate: Candidate,
    live: Sequence[Candidate],
    campaign_of: Callable[[Candidate], Campaign],
    max_offers: int,
) -> str | None:
    """None when the shadow candidate would have been among the winners, else the winner's rule."""
    key = moment(candidate)
    rivals = [c for c in live if moment(c) == key]
    ranked = sorted([*rivals, candidate], key=lambda c: rank(c, campaign_of(c)))
    return None if ranked.index(candidate) < max_offers else ranked[0].rule_id


def would_place(store: CapStore, reservation: Reservation) -> tuple[str | None, str | None]:
    """(tag of the first option every cap admits, None) or (None, first refusing cap id).

    Reads the store's slots and reserves nothing; a store that cannot answer
    gives (None, "cap_store_unavailable"): a shadow verdict is never guessed.
    """
    first_refusal = None
    try:
        for option in reservation.options:
            refused = next(
                (c.cap_id for c in option.checks if not _admits(store, c, option.slot_ms)), None
            )
            if refused is None:
                return option.tag, None
            first_refusal = first_refusal or refused
    except CapStoreUnavailable:
        return None, "cap_store_unavailable"
    return None, first_refusal


def _admits(store: CapStore, check: Check, slot_ms: int) -> bool:
    times = sorted(at for _, at in store.slots(check.key))
    if check.kind == "calendar":
        start = bisect.bisect_left(times, check.start_ms)
        return bisect.bisect_left(times, check.end_ms, start) - start < check.limit
    return rolling_admits(times, slot_ms, check.window_ms, check.limit)
