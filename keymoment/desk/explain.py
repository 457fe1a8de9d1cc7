"""Everything the engine decided for one customer, in time order and plain words.

`explain(customer_id, records, ...)` is pure: decision-log records (dicts,
as the JSONL holds them), optionally the rules file, the customer's decoded
events and profile, in; an `Explanation` out, as text lines (`keymoment
explain`) or JSON (the console's page). With events and rules it also says
which events armed or cancelled timers (replayed through the engine,
`desk.timers`) and how near each rule without a candidate came (`desk.near`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from keymoment.config import RulesFile
from keymoment.triggers.events import CustomerProfile, Event, TransactionEvent
from keymoment.triggers.follow_up import SentOffer

from . import near, timers
from .reasons import clock, spell
from .records import when


@dataclass
class Explanation:
    """One customer's candidates, timer events and near misses, each already in words."""

    customer_id: str
    candidates: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    near_misses: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            "candidates": self.candidates,
            "events": self.events,
            "near_misses": self.near_misses,
            "notes": self.notes,
        }

    def lines(self) -> list[str]:
        """The text `keymoment explain` prints: a headline, the timeline, near misses, notes."""
        out = [self._headline()]
        timeline = [(c["at"], 1, _candidate_line(c)) for c in self.candidates]
        timeline += [  # at one time: events, then candidates, then the offers they became
            (
                e["at"],
                2 if e["kind"] == "offer" else 0,
                f"{clock(e['at'])}  {e['kind']:<9}  {e['text']}",
            )
            for e in self.events
        ]
        out += [f"  {text}" for _, _, text in sorted(timeline, key=lambda t: (t[0], t[1]))]
        if self.near_misses:
            out.append("rules without a candidate for this customer:")
            out += [f"  {m['rule_id']} ({m['trigger']}): {m['text']}" for m in self.near_misses]
        out += [f"note: {n}" for n in self.notes]
        return out

    def _headline(self) -> str:
        if not self.candidates:
            return f"customer {self.customer_id}: no candidate at all in the decision log"
        counts = Counter(c["outcome"] for c in self.candidates)
        said = ", ".join(f"{n} {o}" for o, n in counts.most_common())
        n = len(self.candidates)
        return f"customer {self.customer_id}: {n} candidate{'s' if n != 1 else ''} ({said})"


def _candidate_line(c: dict[str, Any]) -> str:
    on = f" on {c['event']}" if c.get("event") else ""
    return f"{clock(c['at'])}  candidate  {c['rule_id']} ({c['trigger']}){on}: {c['text']}"


def explain(
    customer_id: str,
    records: Iterable[dict[str, Any]],
    rules: RulesFile | None = None,
    events: Sequence[Event] | None = None,
    profile: CustomerProfile | None = None,
    until: datetime | None = None,
) -> Explanation:
    """What the decision log says about `customer_id`, in words (see the module docstring)."""
    mine = sorted(
        (r for r in records if r.get("customer_id") == customer_id),
        key=lambda r: (when(r["triggered_at"]), r.get("decided_at") or ""),
    )
    result = Explanation(customer_id)
    by_id = {e.event_id: e for e in events or ()}
    for record in mine:
        result.candidates.append(_candidate(record, mine, rules, by_id))
    if rules is not None and events is not None:
        _with_events(result, mine, rules, events, profile, until)
    elif events is not None:
        result.notes.append("give --rules too to see which events armed or cancelled timers")
    return result


def _candidate(
    record: dict[str, Any],
    history: Sequence[dict[str, Any]],
    rules: RulesFile | None,
    events: dict[str, Event],
) -> dict[str, Any]:
    event = events.get(record.get("event_id") or "")
    return {
        "at": record["triggered_at"],
        "rule_id": record["rule_id"],
        "trigger": record.get("trigger"),
        "campaign_id": record["campaign_id"],
        "event_id": record.get("event_id"),
        "event": describe(event) if event is not None else None,
        "outcome": record["outcome"],
        "reason": record.get("reason"),
        "channel": record.get("channel"),
        "text": spell(record, history, rules),
    }


def describe(event: Event) -> str:
    """An event in a few words, amounts as bands: `credit cash_deposit 20k-50k (E1)`."""
    if isinstance(event, TransactionEvent):
        what = f"{event.direction} {event.kind} {near.band(event.amount)}"
    elif event.type == "app":
        what = f"app {event.action}" + (f" {event.product}" if event.product else "")
    else:
        what = f"conversion {event.product}"
    return f"{what} ({event.event_id})"


def _with_events(
    result: Explanation,
    mine: Sequence[dict[str, Any]],
    rules: RulesFile,
    events: Sequence[Event],
    profile: CustomerProfile | None,
    until: datetime | None,
) -> None:
    changes, replayed = timers.replay(rules, events, profile, until, sent=mine)
    arming = {r.get("event_id") for r in mine}
    for change in changes:
        cause = change.event
        if isinstance(cause, SentOffer):  # a follow-up armed on it
            key, kind, text = "offer_id", "offer", _timer_text(change, False)
            cause_id = cause.offer_id
        else:
            key, kind, text = "event_id", "event", _timer_text(change, cause.event_id in arming)
            cause_id = cause.event_id
        if text:
            result.events.append({"at": _iso(change.at), "kind": kind, key: cause_id, "text": text})
    fired = {r["rule_id"] for r in mine} | {c.rule_id for c in replayed}
    for rule in rules.rules:
        if rule.rule_id not in fired:
            text = near.why_not(rule, events, profile)
            result.near_misses.append(
                {"rule_id": rule.rule_id, "trigger": rule.trigger, "text": text}
            )
    _check_replay(result, mine, replayed)


def _timer_text(change: timers.TimerChange, armed_a_candidate: bool) -> str | None:
    parts = [f"armed {rule} (due {clock(_iso(at))})" for rule, at in change.armed]
    parts += [f"cancelled {rule}" for rule in change.cancelled]
    if armed_a_candidate:
        parts += [f"moved {rule} to {clock(_iso(at))}" for rule, at in change.moved]
    if not parts:
        return None
    cause = change.event
    if isinstance(cause, SentOffer):
        return f"{cause.campaign_id} offer {cause.offer_id} sent: {'; '.join(parts)}"
    return f"{describe(cause)}: {'; '.join(parts)}"


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _check_replay(result: Explanation, mine: Sequence[dict[str, Any]], replayed: list) -> None:
    """Say so when these rules and events do not give the candidates the log holds."""
    logged = Counter((r["rule_id"], when(r["triggered_at"])) for r in mine)
    again = Counter((c.rule_id, c.triggered_at) for c in replayed)
    if logged != again:
        extra, missing = sum((again - logged).values()), sum((logged - again).values())
        result.notes.append(
            f"replaying these events with these rules gives {extra} candidate(s) the log does "
            f"not have and misses {missing} it has: another rules version, --until or input?"
        )
