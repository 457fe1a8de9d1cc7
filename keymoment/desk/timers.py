"""Which of one customer's events and sent offers armed, moved or cancelled a timer: the
engine, replayed.

The customer's events alone go through a fresh `Engine` with the same
rules. A customer's state depends only on their own events and on the offers
sent to them, and a timer's candidate carries its deadline as `triggered_at`,
so this replay finds the same timers as the full one. After each event the
customer's armed timers are read the way the engine itself reads them
(`Trigger.deadline` for each queued slot) and compared with those before it.

Follow-up rules arm on sent offers, which only the policy decides. So each
candidate the replay produces that the decision log says was `sent` goes
back to the engine as the driver feeds it back (`flows.feedback`): right
after the event that triggered it, and a timer's before the customer's next
event. That is the full run's order whenever some other customer's event
moved the watermark past the timer's deadline first, as in any busy stream;
when this customer's own next event is the first past it, the full run
evaluates that event before the offer comes back (the explanation's replay
check then names the difference).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from keymoment.config import RulesFile
from keymoment.flows.feedback import offer_in_log, sent_in_log
from keymoment.triggers.candidate import Candidate
from keymoment.triggers.engine import Engine
from keymoment.triggers.events import CustomerProfile, Event
from keymoment.triggers.follow_up import SentOffer

Timers = dict[tuple[str, str], datetime]  # (rule_id, key) -> deadline


@dataclass(frozen=True)
class TimerChange:
    """What one event or sent offer did to the customer's timers, and what it led to."""

    event: Event | SentOffer
    armed: list[tuple[str, datetime]]
    moved: list[tuple[str, datetime]]
    cancelled: list[str]
    candidates: list[Candidate]

    @property
    def at(self) -> datetime:
        """The event's time, or the offer's `send_at`."""
        event = self.event
        return event.send_at if isinstance(event, SentOffer) else event.occurred_at


def replay(
    rules: RulesFile,
    events: Iterable[Event],
    profile: CustomerProfile | None,
    until: datetime | None = None,
    sent: Iterable[dict] = (),
) -> tuple[list[TimerChange], list[Candidate]]:
    """Every event's and sent offer's timer changes, and every candidate the customer's events
    produce; `sent`: the customer's decision-log records (the `sent` ones come back)."""
    return _Replay(rules, profile, sent).run(events, until)


class _Replay:
    def __init__(self, rules: RulesFile, profile: CustomerProfile | None, sent: Iterable[dict]):
        self.engine, self.profile = Engine(rules), profile
        self.products = {c.campaign_id: c.product for c in rules.campaigns}
        self.sent = sent_in_log(sent)
        self.changes: list[TimerChange] = []
        self.candidates: list[Candidate] = []

    def run(
        self, events: Iterable[Event], until: datetime | None
    ) -> tuple[list[TimerChange], list[Candidate]]:
        engine, last = self.engine, None
        timers: Timers = {}
        for event in sorted(events, key=lambda e: e.occurred_at):
            timers = self._decided(engine.advance(event.occurred_at - engine.lateness), timers)
            own = engine.evaluate(event, self.profile) or []
            after = armed_timers(engine, event.customer_id)
            self.changes.append(_diff(event, timers, after, own))
            timers = self._decided(own, after)
            last = max(last, event.occurred_at) if last else event.occurred_at
        end = until or last
        if end is not None:
            self._decided(engine.advance(end), timers)
        return self.changes, self.candidates

    def _decided(self, found: list[Candidate], timers: Timers) -> Timers:
        """Candidates the policy decided: the sent ones back to the engine, one by one, with
        what each did to the timers (and the candidates due at once that it led to)."""
        queue = list(found)
        while queue:
            c = queue.pop(0)
            self.candidates.append(c)
            record = self.sent.get((c.rule_id, c.triggered_at, c.event_id))
            if record is None:
                continue
            offer = offer_in_log(c, record, self.products)
            due = self.engine.feedback(offer, self.profile)
            after = armed_timers(self.engine, c.customer_id)
            self.changes.append(_diff(offer, timers, after, due))
            queue += due
            timers = after
        return timers


def armed_timers(engine: Engine, customer_id: str) -> Timers:
    """The customer's armed timers by rule id, as `Engine._fire_own_due` reads them."""
    state = engine.customers.get(customer_id)
    if state is None:
        return {}
    out: Timers = {}
    for slot, _ in state.queued_items():
        index, key = (slot, "") if isinstance(slot, int) else slot
        trigger = engine.triggers[index]
        deadline = trigger.deadline(state, key)
        if deadline is not None:
            out[(trigger.rule_id, key)] = deadline
    return out


def _diff(
    cause: Event | SentOffer, before: Timers, after: Timers, fired: list[Candidate]
) -> TimerChange:
    now = cause.send_at if isinstance(cause, SentOffer) else cause.occurred_at
    armed = [(rule, at) for (rule, key), at in after.items() if (rule, key) not in before]
    moved = [
        (rule, at)
        for (rule, key), at in after.items()
        if (rule, key) in before and before[(rule, key)] != at
    ]
    fired_rules = {(c.rule_id, c.triggered_at) for c in fired}
    cancelled = [
        rule
        for (rule, key), due in before.items()
        if (rule, key) not in after and (rule, due) not in fired_rules and due > now
    ]
    return TimerChange(cause, armed, moved, cancelled, fired)
