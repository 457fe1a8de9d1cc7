"""The contact policy: from candidates to decisions (docs/semantics.md section 4).

`ContactPolicy.decide` takes the candidates of one engine call (one event
and the timers it made due), so candidates that compete in arbitration
always arrive together.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Protocol

from keymoment.triggers.candidate import Candidate
from keymoment.triggers.events import CustomerProfile

from .decision import Decision


class ContactPolicy(Protocol):
    """Decides every candidate exactly once: one outcome and a reason each."""

    def decide(
        self,
        candidates: Sequence[Candidate],
        profiles: Mapping[str, CustomerProfile],
        clock_at: datetime,
    ) -> list[Decision]:
        """`clock_at` is the engine clock that `ttl` is measured against."""
        ...


def wall_clock() -> datetime:
    return datetime.now(UTC)


class FirstChannelPolicy:
    """Placeholder until the full policy lands: every candidate `sent` on its first channel."""

    def __init__(self, rules, clock: Callable[[], datetime] = wall_clock) -> None:  # type: ignore[no-untyped-def]
        self.rules = rules
        self.campaigns = {c.campaign_id: c for c in rules.campaigns}
        self.clock = clock

    def decide(
        self,
        candidates: Sequence[Candidate],
        profiles: Mapping[str, CustomerProfile],
        clock_at: datetime,
    ) -> list[Decision]:
        decided_at = self.clock()
        out = []
        for c in candidates:
            campaign = self.campaigns[c.campaign]
            out.append(
                Decision(
                    candidate=c,
                    outcome="sent",
                    reason=None,
                    campaign_id=campaign.campaign_id,
                    offer_code=campaign.offer_code,
                    rule_version=self.rules.version,
                    decided_at=decided_at,
                    channel=campaign.channels[0],
                    send_at=c.triggered_at,
                    expires_at=c.triggered_at + campaign.ttl,
                )
            )
        return out
