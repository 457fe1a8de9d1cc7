"""Arbitration between candidates that compete for one moment (semantics section 4.3).

Candidates of one customer compete when they share the triggering `event_id`
(timers: the same `triggered_at`). They are ranked by campaign priority desc,
value desc, rule_id asc; the first `max_offers` go on and the others lose to
the top-ranked rule. Timer and event candidates never compete with each other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from keymoment.triggers.candidate import Candidate

from .config import Campaign


def moment(candidate: Candidate) -> tuple[str, str, str | datetime]:
    """What a candidate competes over (a timer's instant as a datetime: no string to build)."""
    if candidate.timer:
        return (candidate.customer_id, "timer", candidate.triggered_at)
    return (candidate.customer_id, "event", candidate.event_id)


def arbitrate(
    candidates: Sequence[Candidate], campaign_of: Callable[[Candidate], Campaign], max_offers: int
) -> tuple[list[Candidate], list[tuple[Candidate, str]]]:
    """Split into winners (in input order) and `(loser, winner's rule_id)` pairs."""
    if len(candidates) <= max_offers:  # no group can exceed max_offers: nobody loses
        return list(candidates), []
    groups: dict[tuple[str, str, str | datetime], list[Candidate]] = {}
    for candidate in candidates:
        groups.setdefault(moment(candidate), []).append(candidate)
    keep: set[int] = set()
    losers: list[tuple[Candidate, str]] = []
    for group in groups.values():
        ranked = sorted(group, key=lambda c: rank(c, campaign_of(c)))
        keep.update(id(c) for c in ranked[:max_offers])
        losers += [(c, ranked[0].rule_id) for c in ranked[max_offers:]]
    return [c for c in candidates if id(c) in keep], losers


def rank(candidate: Candidate, campaign: Campaign) -> tuple[int, float, str]:
    return (-campaign.priority, -campaign.value, candidate.rule_id)
