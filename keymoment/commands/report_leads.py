"""The lead part of `keymoment report`: per campaign and per RM (or pool), what became of leads.

A lead is a `sent` decision that carries `rm_id` or `pool` (a human channel,
docs/policy.md). Lead outcomes are `type: lead` records (`offer_id`,
`status`: accepted, contacted, converted, rejected) in the `--events` files.

- **leads**: leads handed to that owner;
- **in SLA**: its first outcome came at or before `due_at`;
- **converted**: it has a `converted` outcome;
- **lapsed**: `due_at` has passed (before the newest time in the inputs) with no
  outcome by then;
- **not allocated**: `expired` / `not_allocated` decisions for that owner (leads
  that never reached anyone).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

STATUSES = ("accepted", "contacted", "converted", "rejected")


@dataclass
class LeadRow:
    leads: int = 0
    in_sla: int = 0
    converted: int = 0
    lapsed: int = 0
    not_allocated: int = 0


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def lead_outcomes(records: Iterable[Mapping[str, Any]]) -> dict[str, list[tuple[datetime, str]]]:
    """offer_id -> [(occurred_at, status)] from `type: lead` records; bad ones are skipped."""
    out: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for r in records:
        if r.get("type") != "lead" or r.get("status") not in STATUSES:
            continue
        try:
            out[str(r["offer_id"])].append((_time(r["occurred_at"]), r["status"]))
        except (KeyError, TypeError, ValueError):
            continue
    return out


def tally_leads(
    decisions: Iterable[Mapping[str, Any]], outcomes: Mapping[str, list[tuple[datetime, str]]]
) -> dict[tuple[str, str], LeadRow]:
    """(campaign, owner) -> LeadRow."""
    rows: dict[tuple[str, str], LeadRow] = defaultdict(LeadRow)
    newest = max((t for events in outcomes.values() for t, _ in events), default=None)
    sent = []
    for d in decisions:
        owner = d.get("rm_id") or d.get("pool")
        if not owner:
            continue
        if d["outcome"] == "expired" and d.get("reason") == "not_allocated":
            rows[(d["campaign_id"], owner)].not_allocated += 1
        elif d["outcome"] == "sent" and d.get("due_at"):
            sent.append((d, owner))
            at = _time(d["send_at"])
            newest = at if newest is None or at > newest else newest
    for d, owner in sent:
        row = rows[(d["campaign_id"], owner)]
        due_at = _time(d["due_at"])
        events = sorted(outcomes.get(d["offer_id"], []))
        row.leads += 1
        row.in_sla += bool(events) and events[0][0] <= due_at
        row.converted += any(status == "converted" for _, status in events)
        lapsed = newest is not None and due_at < newest
        row.lapsed += lapsed and not (events and events[0][0] <= due_at)
    return rows


def render_leads(rows: Mapping[tuple[str, str], LeadRow]) -> str:
    """The table `report` prints; empty when the log has no lead."""
    if not rows:
        return ""
    lines = [
        "leads by campaign and owner (in SLA: first outcome by due_at; lapsed: past due_at, none):",
        f"  {'campaign':<20}{'owner':<18}{'leads':>7}{'in SLA':>8}{'converted':>10}"
        f"{'lapsed':>8}{'not allocated':>15}",
    ]
    for (campaign, owner), r in sorted(rows.items()):
        lines.append(
            f"  {campaign:<20}{owner:<18}{r.leads:>7,}{r.in_sla:>8,}{r.converted:>10,}"
            f"{r.lapsed:>8,}{r.not_allocated:>15,}"
        )
    return "\n".join(lines)
