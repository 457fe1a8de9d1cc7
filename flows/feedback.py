"""The policy's own `sent` decisions back into the engine, for follow-up journeys.

`Shard` (the one driver) calls `Feedback.sent(decisions)` each time the
policy returns decisions, before it evaluates anything else: every `sent`
decision becomes a `SentOffer` event of its customer at that point of the
customer's order (docs/engine.md, "Feedback"). The same code runs in the
backtest, each Bytewax shard and the benchmarks, so the point is the same in
replay and live. Without `follow_up` rules this is one truth test per call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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

    def offer(self, d: Decision) -> SentOffer:
        send_at = d.send_at or d.candidate.triggered_at  # `sent` decisions always have one
        product = self.products.get(d.campaign_id)
        return sent_offer(d.candidate, d.campaign_id, d.offer_id, send_at, product)
