"""Builders shared by the engine tests: events, rule sets and a replay that collects candidates.

No tests here; the trigger, engine and property tests import these helpers.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson

from keymoment.connectors.wire import DeadLetter, decode
from keymoment.triggers.candidate import Candidate
from keymoment.triggers.engine import Engine
from keymoment.triggers.events import AppEvent, CustomerProfile, Event, TransactionEvent
from keymoment.triggers.ruleset import RuleSet

T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)
CREDIT_KINDS = {"cash_deposit", "transfer_in", "payroll", "pension", "interest"}


def at(days: float = 0, hours: float = 0, minutes: float = 0, seconds: float = 0) -> datetime:
    """T0 plus an offset: tests read as "day 30", "day 35 plus one second"."""
    return T0 + timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def tx(
    event_id: str,
    when: datetime,
    amount: int | str | Decimal = 100,
    kind: str = "cash_deposit",
    *,
    customer: str = "c1",
    direction: str | None = None,
    counterparty: str | None = None,
    balance: int | str | None = None,
    initiated_by: str | None = None,
) -> TransactionEvent:
    """A transaction; `amount` and `balance` in major units, as on the wire."""
    return _event(
        {
            "type": "transaction",
            "event_id": event_id,
            "customer_id": customer,
            "occurred_at": when,
            "account_id": "acc-" + customer,
            "direction": direction or ("credit" if kind in CREDIT_KINDS else "debit"),
            "amount": str(amount),
            "kind": kind,
            "counterparty": counterparty,
            "balance_after": None if balance is None else str(balance),
            "initiated_by": initiated_by,
        }
    )


def app(
    event_id: str,
    when: datetime,
    action: str = "login",
    product: str | None = None,
    *,
    customer: str = "c1",
    page: str | None = None,
) -> AppEvent:
    return _event(
        {
            "type": "app",
            "event_id": event_id,
            "customer_id": customer,
            "occurred_at": when,
            "action": action,
            "product": product,
            "page": page,
        }
    )


def _event(fields: dict[str, Any]) -> Any:
    """Through the real wire decoder, as production events are built; None fields left out."""
    data = {k: v for k, v in fields.items() if v is not None}
    data["occurred_at"] = data["occurred_at"].isoformat()
    event = decode(orjson.dumps(data), "test")
    assert not isinstance(event, DeadLetter), event
    return event


def ruleset(*rules: dict[str, Any], **top: Any) -> RuleSet:
    """A rule set from rules-file dicts; `campaign` defaults to "c"."""
    return RuleSet.model_validate({"rules": [{"campaign": "c", **r} for r in rules], **top})


def profile(customer: str = "c1", **fields: Any) -> CustomerProfile:
    return CustomerProfile.model_validate({"customer_id": customer, **fields})


def run(
    rules: RuleSet | Engine,
    events: Iterable[Event],
    profiles: dict[str, CustomerProfile] | None = None,
    until: datetime | None = None,
) -> list[Candidate]:
    """Replay like the backtest: feed each event, then move the watermark to `until`."""
    engine = rules if isinstance(rules, Engine) else Engine(rules)
    out: list[Candidate] = []
    for event in events:
        out.extend(engine.feed(event, (profiles or {}).get(event.customer_id)).candidates)
    if until is not None:
        out.extend(engine.advance(until))
    return out


def brief(candidates: Iterable[Candidate]) -> list[tuple[str, datetime, str, dict[str, Any]]]:
    """What a test compares: rule, triggered_at, event_id and attributes."""
    return [(c.rule_id, c.triggered_at, c.event_id, dict(c.attributes)) for c in candidates]
