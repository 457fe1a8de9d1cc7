"""Seeded conversion events with a known uplift per campaign, for demos and tests of `report`.

The synthetic generator (connectors/generator.py) makes the events that
trigger candidates; whether a candidate was sent or held out is the
contact policy's decision, so the response to it is drawn from the
decision log: each customer's first `sent` or `control` candidate of a
campaign converts with probability `base` when held out and `base +
uplift[campaign]` when sent, at a time uniformly within `within` after
`triggered_at`. `report` should then recover each campaign's uplift within
its interval. Each draw has its own generator seeded by (seed, campaign,
customer), so the result does not depend on the order of the log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

from .generator import Rng


def conversion_events(
    decisions: Iterable[dict[str, Any]],
    uplift: dict[str, float],
    *,
    base: float = 0.05,
    within: timedelta = timedelta(days=7),
    seed: int = 7,
) -> Iterator[dict[str, Any]]:
    """Conversion wire records (semantics section 1) in occurred_at order."""
    first: dict[tuple[str, str], tuple[str, str]] = {}
    for d in decisions:
        key = (d["campaign_id"], d["customer_id"])
        if key not in first or d["triggered_at"] < first[key][0]:
            first[key] = (d["triggered_at"], d["outcome"])
    out = [
        _conversion(campaign, customer, triggered, outcome, uplift, base, within, seed)
        for (campaign, customer), (triggered, outcome) in first.items()
        if outcome in ("sent", "control")
    ]
    yield from sorted((r for r in out if r), key=lambda r: (r["occurred_at"], r["event_id"]))


def _conversion(
    campaign: str,
    customer: str,
    triggered: str,
    outcome: str,
    uplift: dict[str, float],
    base: float,
    within: timedelta,
    seed: int,
) -> dict[str, Any] | None:
    digest = hashlib.sha256(f"{seed}:{campaign}:{customer}".encode()).digest()
    rng = Rng(int.from_bytes(digest[:8], "big"))
    p = base + (uplift.get(campaign, 0.0) if outcome == "sent" else 0.0)
    if not rng.chance(p):
        return None
    at = datetime.fromisoformat(triggered.replace("Z", "+00:00"))
    at += timedelta(seconds=int(rng.uniform(0, within.total_seconds())))
    return {
        "type": "conversion",
        "event_id": f"conv-{digest[8:16].hex()}",
        "customer_id": customer,
        "occurred_at": at.isoformat().replace("+00:00", "Z"),
        "product": campaign,
    }
