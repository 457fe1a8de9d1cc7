"""Each decision-log outcome and reason in plain words (what `explain` prints per candidate).

Pure: a decision record, the customer's other records and optionally the
rules file in, one sentence out. Reasons this module does not know (added
by later policy stages) are still shown, as `outcome (reason)`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from keymoment.config import RulesFile
from keymoment.policy.config import Cap
from keymoment.policy.holdout import bucket, first_kept_bucket
from keymoment.policy.localtime import period
from keymoment.triggers.durations import format_duration

from .records import when

Record = dict[str, Any]
LIST_NAMES = {"do_not_contact": "the do-not-contact list"}


def spell(record: Record, history: Sequence[Record], rules: RulesFile | None) -> str:
    """One sentence: what happened to this candidate and why."""
    handler = _BY_OUTCOME.get(record["outcome"])
    text = handler(record, history, rules) if handler else None
    return text or f"{record['outcome']} ({record.get('reason') or 'no reason given'})"


def clock(text: str | None) -> str:
    """`1994-03-02 09:12 UTC` from a log time: minutes are enough for an operator."""
    return "?" if not text else when(text).strftime("%Y-%m-%d %H:%M UTC")


def _sent(record: Record, history: Sequence[Record], rules: RulesFile | None) -> str:
    via = f"sent via {record.get('channel')}"
    reason = record.get("reason")
    if reason == "deferred_quiet_hours":
        return f"{via}, held until {clock(record.get('send_at'))} by the channel's send hours"
    if reason == "already_reserved":
        return f"{via} (a replay of an offer that already held its cap slots)"
    later = record.get("send_at") and record["send_at"] != record["triggered_at"]
    clocked = " (when the engine clock got there)" if later else ""
    return f"{via} at {clock(record.get('send_at'))}{clocked}"


def _control(record: Record, history: Sequence[Record], rules: RulesFile | None) -> str:
    campaign, customer = record["campaign_id"], record["customer_id"]
    b = bucket(campaign, customer)
    found = _campaign(rules, campaign)
    limit = f" < {first_kept_bucket(found.holdout)}" if found is not None else ""
    return f"held out as control for {campaign} (bucket {b}{limit}); never delivered"


def _suppressed(record: Record, history: Sequence[Record], rules: RulesFile | None) -> str:
    name = record.get("reason") or "?"
    return f"suppressed: the customer is on {LIST_NAMES.get(name, f'the {name} list')}"


def _arbitration(record: Record, history: Sequence[Record], rules: RulesFile | None) -> str:
    winner = record.get("reason") or "?"
    same = [
        r
        for r in history
        if r["rule_id"] == winner
        and r["outcome"] != "arbitration_lost"
        and (r.get("event_id"), r["triggered_at"])
        == (record.get("event_id"), record["triggered_at"])
    ]
    won = f", which ended {same[0]['outcome']}" if same else ""
    ranks = _priorities(rules, record["campaign_id"], same[0]["campaign_id"] if same else None)
    return f"lost arbitration to {winner} on the same event{ranks}{won}"


def _priorities(rules: RulesFile | None, loser: str, winner: str | None) -> str:
    mine, theirs = _campaign(rules, loser), _campaign(rules, winner) if winner else None
    if mine is None or theirs is None:
        return ""
    return f" (priority {theirs.priority} against {mine.priority})"


def _capped(record: Record, history: Sequence[Record], rules: RulesFile | None) -> str:
    cap_id = record.get("reason") or "?"
    cap = next((c for c in rules.caps if c.id == cap_id), None) if rules else None
    prior = _counted(record, history, cap, rules)
    if not prior:
        return f"capped by {cap_id}: its limit was reached"
    last = prior[-1]
    more = f" (and {len(prior) - 1} more in its window)" if len(prior) > 1 else ""
    return (
        f"capped by {cap_id}: already contacted {clock(last.get('send_at'))} by "
        f"{last['rule_id']} via {last.get('channel')}{more}"
    )


def _counted(
    record: Record, history: Sequence[Record], cap: Cap | None, rules: RulesFile | None
) -> list[Record]:
    """The customer's sent offers that count against `cap` at this candidate's time."""
    at = when(record["triggered_at"])
    sent = [r for r in history if r["outcome"] == "sent" and r is not record and r.get("send_at")]
    if cap is None:
        return [r for r in sent if when(r["send_at"]) <= at][-1:]
    inside = _window(cap, at, ZoneInfo(rules.timezone if rules else "UTC"))
    return [r for r in sent if _scoped(cap, r, record) and inside(when(r["send_at"]))]


def _window(cap: Cap, at: datetime, tz: ZoneInfo) -> Callable[[datetime], bool]:
    if cap.calendar:
        start, end = period(at, cap.window, tz)
        return lambda t: start <= t < end
    span = cap.rolling
    return lambda t: at - span < t < at + span


def _scoped(cap: Cap, other: Record, record: Record) -> bool:
    if cap.scope == "customer_channel":
        return cap.channel is None or other.get("channel") == cap.channel
    if cap.scope == "customer_campaign":
        return other["campaign_id"] == (cap.campaign or record["campaign_id"])
    if cap.scope == "customer_rule":
        return other["rule_id"] == (cap.rule or record["rule_id"])
    return True


def _expired(record: Record, history: Sequence[Record], rules: RulesFile | None) -> str | None:
    reason = record.get("reason")
    campaign = _campaign(rules, record["campaign_id"])
    if reason == "ttl":
        ttl = f" ({format_duration(campaign.ttl)})" if campaign else ""
        return f"expired: decided after the campaign's ttl{ttl} had passed"
    if reason == "max_delay":
        limit = f" ({format_duration(campaign.deferral_limit)})" if campaign else ""
        return f"expired: the next send hours on every channel were past max_delay{limit}"
    if reason == "cap_store_unavailable":
        return "expired: the cap store could not be reached before the ttl ran out"
    if reason == "pending_queue_full":
        return "expired: too many candidates were waiting for the cap store"
    return None


def _no_channel(record: Record, history: Sequence[Record], rules: RulesFile | None) -> str | None:
    reason = record.get("reason")
    campaign = _campaign(rules, record["campaign_id"])
    channels = f" ({', '.join(campaign.channels)})" if campaign else ""
    if reason == "no_consent":
        return f"no channel: the customer consented to none of the campaign's channels{channels}"
    if reason == "no_profile":
        return "no channel: no customer reference data, so no consent is known"
    if reason == "unknown_campaign":
        return f"no channel: campaign {record['campaign_id']} is not in the rules file"
    return None


def _campaign(rules: RulesFile | None, campaign_id: str | None):  # noqa: ANN202 - Campaign | None
    if rules is None or campaign_id is None:
        return None
    return next((c for c in rules.campaigns if c.campaign_id == campaign_id), None)


_BY_OUTCOME: dict[str, Callable[[Record, Sequence[Record], RulesFile | None], str | None]] = {
    "sent": _sent,
    "control": _control,
    "suppressed": _suppressed,
    "arbitration_lost": _arbitration,
    "capped": _capped,
    "expired": _expired,
    "no_channel": _no_channel,
}
