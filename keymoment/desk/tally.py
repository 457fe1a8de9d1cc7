"""What a set of decisions adds up to: the figures `backtest`, `compare` and their pages show.

Built from decision-log records (dicts), so it reads a backtest's log
file as well as the records of a replay in memory; JSON-ready throughout.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from keymoment.policy.decision import OUTCOMES

FUNNEL = (
    "candidates",
    "suppressed",
    "control",
    "arbitration_lost",
    "capped",
    "expired",
    "no_channel",
    "sent",
)


@dataclass
class Tally:
    """Counts over decision records; `add` one record at a time, `as_json` at the end."""

    by_rule: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    sent: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    per_day: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    cap_refusals: Counter[str] = field(default_factory=Counter)
    arbitration_losses: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    contacted: set[str] = field(default_factory=set)

    def add(self, record: dict[str, Any]) -> None:
        outcome = record["outcome"]
        self.by_rule[record["rule_id"]][outcome] += 1
        self.outcomes[outcome] += 1
        if outcome == "sent":
            channel = record.get("channel") or "?"
            self.sent[record["campaign_id"]][channel] += 1
            day = (record.get("send_at") or record["triggered_at"])[:10]
            self.per_day[day][channel] += 1
            self.contacted.add(record["customer_id"])
        elif outcome == "capped":
            self.cap_refusals[record.get("reason") or "?"] += 1
        elif outcome == "arbitration_lost":
            self.arbitration_losses[record.get("reason") or "?"] += 1

    def as_json(self, rule_ids: Iterable[str] = ()) -> dict[str, Any]:
        """`rule_ids` lists rules that must appear even with no candidate (the rules file's)."""
        rules = list(dict.fromkeys([*rule_ids, *sorted(self.by_rule)]))
        return {
            "candidates": sum(self.outcomes.values()),
            "by_rule": {r: _outcomes(self.by_rule.get(r, Counter())) for r in rules},
            "sent_by_campaign": {c: dict(sorted(n.items())) for c, n in sorted(self.sent.items())},
            "sends_per_day": {d: dict(sorted(n.items())) for d, n in sorted(self.per_day.items())},
            "cap_refusals": dict(self.cap_refusals.most_common()),
            "arbitration_losses": dict(self.arbitration_losses.most_common()),
            "funnel": self.funnel(),
            "customers_contacted": len(self.contacted),
        }

    def funnel(self) -> dict[str, int]:
        """Candidates, then where each one ended: the policy's stages in order."""
        out = {"candidates": sum(self.outcomes.values())}
        out.update({o: self.outcomes[o] for o in FUNNEL[1:]})
        others = sum(n for o, n in self.outcomes.items() if o not in FUNNEL)
        if others:
            out["other"] = others  # outcomes added by later stages (shadow, delivery)
        return out


def _outcomes(counts: Counter[str]) -> dict[str, int]:
    known: dict[str, int] = {o: counts[o] for o in OUTCOMES}
    known.update({o: n for o, n in sorted(counts.items()) if o not in known})
    return known


def tally(records: Iterable[dict[str, Any]]) -> Tally:
    result = Tally()
    for record in records:
        result.add(record)
    return result
