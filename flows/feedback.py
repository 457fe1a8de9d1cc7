"""The policy's own `sent` decisions back into the engine, for follow-up journeys.

`Shard` (the one driver) calls `Feedback.sent(decisions)` each time the
policy returns decisions, before it evaluates anything else: every `sent`
decision becomes a `SentOffer` event of its customer at that point of the
customer's order (docs/engine.md, "Feedback"). The same code runs in the
backtest, each Bytewax shard and the benchmarks, so the point is the same in
replay and live. Without `follow_up` rules this is one truth test per call.

A warm-up (`backtest --from TIME --sent-log LIVE_LOG`) decides nothing before
TIME, so there the offers come from the live run's decision log instead
(`sent_in_log`, `Feedback.logged`), at the same point: its candidate's.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping, Sequence
from datetime import datetime

from keymoment.config import RulesFile
from keymoment.policy.decision import Decision
from keymoment.triggers.candidate import Candidate
from keymoment.triggers.engine import Engine
from keymoment.triggers.events import CustomerProfile
from keymoment.triggers.follow_up import SentOffer, sent_offer


class Feedback:
    """Turns sent decisions into engine feedback; returns the candidates that made due."""

    def __init__(self, engine: Engine, profiles: Mapping[str, CustomerProfile]) -> None:
        self.engine, self.profiles = engine, profiles
        self.active = bool(engine.follow_ups)
        rules = engine.ruleset  # a bare RuleSet (engine-only tests) has no campaigns
        campaigns = rules.campaigns if isinstance(rules, RulesFile) else []
        self.products = {c.campaign_id: c.product for c in campaigns}

    def sent(self, decisions: Sequence[Decision]) -> list[Candidate]:
        if not self.active:
            return []
        out: list[Candidate] = []
        for d in decisions:
            if d.outcome == "sent" and d.send_at is not None:
                out += self.engine.feedback(
                    self.offer(d), self.profiles.get(d.candidate.customer_id)
                )
        return out

    def logged(self, candidates: Sequence[Candidate], log: Logged) -> list[Candidate]:
        """The candidates a decision log says were sent, fed back as if this run had sent
        them (`backtest --from` with `--sent-log`); returns the candidates that made due."""
        out: list[Candidate] = []
        for c in candidates:
            record = log.get((c.rule_id, c.triggered_at, c.event_id))
            if record is not None:
                offer = offer_in_log(c, record, self.products)
                out += self.engine.feedback(offer, self.profiles.get(c.customer_id))
        return out

    def offer(self, d: Decision) -> SentOffer:
        send_at = d.send_at or d.candidate.triggered_at  # `sent` decisions always have one
        product = self.products.get(d.campaign_id)
        return sent_offer(d.candidate, d.campaign_id, d.offer_id, send_at, product)


Logged = dict[tuple[str, datetime, str | None], dict]  # (rule_id, triggered_at, event_id)


def sent_in_log(records: Iterable[dict], campaigns: Container[str] | None = None) -> Logged:
    """The `sent` decisions of decision-log records (`campaigns`: of those only), by their
    candidate: rule, `triggered_at` and event, as a replay finds the candidate again."""
    return {
        (r["rule_id"], _when(r["triggered_at"]), r.get("event_id")): r
        for r in records
        if r.get("outcome") == "sent"
        and r.get("send_at")
        and r.get("offer_id")
        and (campaigns is None or r["campaign_id"] in campaigns)
    }


def offer_in_log(c: Candidate, record: dict, products: Mapping[str, str | None]) -> SentOffer:
    """Candidate `c` as the log's `sent` record of it says it went out."""
    campaign = record["campaign_id"]
    send_at = _when(record["send_at"])
    return sent_offer(c, campaign, record["offer_id"], send_at, products.get(campaign))


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
