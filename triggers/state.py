"""Per-customer engine state.

Plain slotted objects holding only what the active rules need; every field
that a rule set does not use stays None, so a customer costs what its rules
cost. Pickles as plain data for Bytewax snapshots.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any


class CustomerState:
    """Everything the engine remembers about one customer."""

    __slots__ = (
        "last_seen_at",
        "first_seen_at",
        "last_activity_at",
        "last_activity_id",
        "seen",
        "rules",
        "payers",
        "queued",
    )

    def __init__(self, first_seen_at: datetime, rule_count: int) -> None:
        self.last_seen_at = first_seen_at  # newest occurred_at of this customer
        self.first_seen_at = first_seen_at  # onboarding start when reference data has none
        self.last_activity_at: datetime | None = None  # newest customer-initiated activity
        self.last_activity_id = ""  # its event id: what armed the dormancy timer
        self.seen: dict[str, datetime] = {}  # event ids inside the dedupe window
        self.rules: list[Any] = [None] * rule_count  # one slot per rule, owned by its trigger
        self.payers: dict[str, Any] | None = None  # salary tracking, keyed by counterparty
        self.queued: dict[Any, datetime] = {}  # earliest heap entry per timer (engine.timer_slot)

    def __getstate__(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __setstate__(self, values: tuple[Any, ...]) -> None:
        for name, value in zip(self.__slots__, values, strict=True):
            setattr(self, name, value)
