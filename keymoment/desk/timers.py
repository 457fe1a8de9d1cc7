"""Which of one customer's events armed, moved or cancelled a timer: the engine, replayed.

The customer's events alone go through a fresh `Engine` with the same
rules. A customer's state depends only on their own events, and a timer's
candidate carries its deadline as `triggered_at`, so this replay finds the
same timers as the full one. After each event the customer's armed timers
are read the way the engine itself reads them (`Trigger.deadline` for each
queued slot) and compared with those before it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from keymoment.config import RulesFile
from keymoment.triggers.candidate import Candidate
from keymoment.triggers.engine import Engine
from keymoment.triggers.events import CustomerProfile, Event

Timers = dict[tuple[str, str], datetime]  # (rule_id, key) -> deadline


@dataclass(frozen=True)
class TimerChange:
    """What one event did to the customer's timers, and the candidates it led to."""

    event: Event
    armed: list[tuple[str, datetime]]
    moved: list[tuple[str, datetime]]
    cancelled: list[str]
    candidates: list[Candidate]


def replay(
    rules: RulesFile,
    events: Iterable[Event],
    profile: CustomerProfile | None,
    until: datetime | None = None,
) -> tuple[list[TimerChange], list[Candidate]]:
    """Every event's timer changes, and every candidate the customer's events produce."""
    engine = Engine(rules)
    changes: list[TimerChange] = []
    candidates: list[Candidate] = []
    before: Timers = {}
    last: datetime | None = None
    for event in sorted(events, key=lambda e: e.occurred_at):
        fed = engine.feed(event, profile)
        candidates += fed.candidates
        last = max(last, event.occurred_at) if last else event.occurred_at
        after = armed_timers(engine, event.customer_id)
        changes.append(_diff(event, before, after, fed.candidates))
        before = after
    end = until or last
    if end is not None:
        candidates += engine.advance(end)
    return changes, candidates


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


def _diff(event: Event, before: Timers, after: Timers, fired: list[Candidate]) -> TimerChange:
    armed = [(rule, at) for (rule, key), at in after.items() if (rule, key) not in before]
    moved = [
        (rule, at)
        for (rule, key), at in after.items()
        if (rule, key) in before and before[(rule, key)] != at
    ]
    fired_rules = {(c.rule_id, c.triggered_at) for c in fired}
    cancelled = [
        rule
        for (rule, key), at in before.items()
        if (rule, key) not in after and (rule, at) not in fired_rules and at > event.occurred_at
    ]
    return TimerChange(event, armed, moved, cancelled, fired)
