"""Seeded responses to a decision log: lead outcomes and conversions with a true uplift per variant.

The synthetic generator makes the events that trigger candidates; what the
customers and the RMs then do depends on what the policy decided, so these
are drawn from the decision log (like `connectors/conversions.py`). Each draw
has its own generator seeded by (seed, what, id), so results do not depend
on the order of the log, and the same log always gives the same responses.

- `variant_conversions`: each customer's first `sent` or `control` candidate
  of a campaign converts with probability `base` under control and `base +
  uplift[campaign][variant]` when sent (a campaign without variants uses the
  key `"sent"`), within `within` of `triggered_at`. A share `ignore` of
  customers never answers a first offer (step 0) at all: they are the ones a
  follow-up can still reach, and a follow-up's own uplift is
  `uplift[its campaign]`.
- `lead_outcomes`: for every `sent` offer that carries an `rm_id` or `pool`,
  a `type: lead` record per status the RM reached. Each RM has a seeded
  diligence in 0.3..1.0: the chance of acting at all; an RM that acts does
  so within 1.5 x the SLA (so some act late); a contacted lead converts with
  probability `convert`, or is rejected with 0.2.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

from .generator import Rng


def _rng(seed: int, *parts: str) -> tuple[Rng, bytes]:
    digest = hashlib.sha256(":".join((str(seed), *parts)).encode()).digest()
    return Rng(int.from_bytes(digest[:8], "big")), digest


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def variant_conversions(
    decisions: Iterable[dict[str, Any]],
    uplift: dict[str, dict[str, float]],
    *,
    base: float = 0.05,
    ignore: float = 0.0,
    within: timedelta = timedelta(days=7),
    seed: int = 7,
) -> Iterator[dict[str, Any]]:
    """Conversion wire records in occurred_at order (see the module docstring)."""
    first: dict[tuple[str, str], dict[str, Any]] = {}
    for d in decisions:
        key = (d["campaign_id"], d["customer_id"])
        if d["outcome"] in ("sent", "control") and (
            key not in first or d["triggered_at"] < first[key]["triggered_at"]
        ):
            first[key] = d
    out = [_convert(d, uplift, base, ignore, within, seed) for d in first.values()]
    yield from sorted((r for r in out if r), key=lambda r: (r["occurred_at"], r["event_id"]))


def ignores_first_offers(customer_id: str, ignore: float, seed: int = 7) -> bool:
    """Whether this customer is one of the `ignore` share who never answer a first offer."""
    rng, _ = _rng(seed, "ignore", customer_id)
    return rng.chance(ignore)


def _convert(
    d: dict[str, Any],
    uplift: dict[str, dict[str, float]],
    base: float,
    ignore: float,
    within: timedelta,
    seed: int,
) -> dict[str, Any] | None:
    campaign, customer = d["campaign_id"], d["customer_id"]
    first_touch = int((d.get("attributes") or {}).get("journey_step", 0)) == 0
    if first_touch and ignores_first_offers(customer, ignore, seed):
        return None
    rng, digest = _rng(seed, campaign, customer)
    arms = uplift.get(campaign, {})
    lift = arms.get(d.get("variant") or "sent", 0.0) if d["outcome"] == "sent" else 0.0
    if not rng.chance(base + lift):
        return None
    at = _time(d["triggered_at"]) + timedelta(seconds=int(rng.uniform(0, within.total_seconds())))
    return {
        "type": "conversion",
        "event_id": f"conv-{digest[8:16].hex()}",
        "customer_id": customer,
        "occurred_at": _iso(at),
        "product": d.get("product") or campaign,
        "offer_id": d["offer_id"],
    }


def lead_outcomes(
    decisions: Iterable[dict[str, Any]], *, convert: float = 0.3, seed: int = 7
) -> Iterator[dict[str, Any]]:
    """`type: lead` records (offer_id, status) for the sent leads, in occurred_at order."""
    out: list[dict[str, Any]] = []
    for d in decisions:
        owner = d.get("rm_id") or d.get("pool")
        if d["outcome"] != "sent" or not owner or not d.get("due_at"):
            continue
        out += _lead(d, owner, convert, seed)
    yield from sorted(out, key=lambda r: (r["occurred_at"], r["event_id"]))


def _lead(d: dict[str, Any], owner: str, convert: float, seed: int) -> list[dict[str, Any]]:
    diligence = 0.3 + 0.7 * _rng(seed, "rm", owner)[0].random()
    rng, digest = _rng(seed, "lead", d["offer_id"])
    if not rng.chance(diligence):
        return []  # never acted on: lapsed once past due_at
    sent_at, due_at = _time(d["send_at"]), _time(d["due_at"])
    acted = sent_at + (due_at - sent_at) * rng.uniform(0.05, 1.5)
    statuses = [("accepted", acted), ("contacted", acted + timedelta(hours=2))]
    if rng.chance(convert):
        statuses.append(("converted", acted + timedelta(days=1)))
    elif rng.chance(0.2):
        statuses.append(("rejected", acted + timedelta(days=1)))
    return [
        {
            "type": "lead",
            "event_id": f"lead-{digest[8:14].hex()}-{status}",
            "customer_id": d["customer_id"],
            "occurred_at": _iso(at),
            "offer_id": d["offer_id"],
            "status": status,
        }
        for status, at in statuses
    ]
