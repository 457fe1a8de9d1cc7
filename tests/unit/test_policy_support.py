"""Builders shared by the policy tests: small rules files, candidates and profiles.

No tests here; the policy unit, contract and integration tests import these helpers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from keymoment.config import RulesFile
from keymoment.triggers.candidate import Candidate
from keymoment.triggers.events import CustomerProfile

T0 = datetime(2026, 3, 2, 12, tzinfo=UTC)  # a Monday, noon UTC


def campaign(campaign_id: str, **fields: Any) -> dict[str, Any]:
    base = {"campaign_id": campaign_id, "offer_code": f"OC-{campaign_id}", "channels": ["sms"]}
    return base | fields


def rules_file(
    campaigns: Sequence[dict[str, Any]],
    *,
    rules: Iterable[tuple[str, str]] | None = None,
    caps: Sequence[dict[str, Any]] = (),
    channels: dict[str, Any] | None = None,
    lists: dict[str, Path] | None = None,
    timezone: str = "UTC",
    max_offers: int = 1,
) -> RulesFile:
    """A valid rules file; by default one dormancy rule `r-<campaign>` per campaign."""
    pairs = (
        list(rules)
        if rules is not None
        else [(f"r-{c['campaign_id']}", c["campaign_id"]) for c in campaigns]
    )
    return RulesFile.model_validate(
        {
            "version": 3,
            "timezone": timezone,
            "rules": [{"rule_id": r, "trigger": "dormancy", "campaign": c} for r, c in pairs],
            "campaigns": list(campaigns),
            "caps": list(caps),
            "channels": channels or {},
            "lists": {k: str(v) for k, v in (lists or {}).items()},
            "policy": {"max_offers_per_event": max_offers},
        }
    )


def candidate(
    rule_id: str,
    campaign_id: str,
    customer_id: str = "C1",
    at: datetime = T0,
    event_id: str | None = None,
    timer: bool = False,
) -> Candidate:
    return Candidate(
        rule_id=rule_id,
        trigger="dormancy",
        campaign=campaign_id,
        customer_id=customer_id,
        triggered_at=at,
        event_id=event_id or f"e-{rule_id}-{customer_id}-{at.isoformat()}",
        timer=timer,
    )


def profile(
    customer_id: str = "C1",
    timezone: str | None = None,
    consent: Iterable[str] = ("sms", "app_push", "email"),
) -> CustomerProfile:
    return CustomerProfile(
        customer_id=customer_id, timezone=timezone, consent={channel: True for channel in consent}
    )


def profiles(*items: CustomerProfile) -> dict[str, CustomerProfile]:
    return {p.customer_id: p for p in items}


def fixed_clock() -> datetime:
    """`decided_at` for tests: processing time does not matter to any outcome."""
    return datetime(2030, 1, 1, tzinfo=UTC)
