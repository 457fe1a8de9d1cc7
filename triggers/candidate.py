"""What a trigger produces: a candidate for an offer, before the contact policy decides."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import msgspec


class Candidate(msgspec.Struct, frozen=True):
    """One rule firing for one customer (docs/semantics.md section 3).

    `event_id` is the triggering event, or for a timer the event that armed
    it; `timer` says which, because a timer's offer id also covers its
    deadline (the same arming event can arm a later timer after a cancel).
    `attributes` hold only small non-sensitive facts: never an amount, an
    account or a counterparty.

    A frozen msgspec struct, like the events: immutable as a frozen dataclass
    is, but built in C (0.16 us against 1.8 us for the dataclass, whose
    `__init__` sets each field through `object.__setattr__`; round 6).
    """

    rule_id: str
    trigger: str
    campaign: str
    customer_id: str
    triggered_at: datetime
    event_id: str
    attributes: Mapping[str, Any] = msgspec.field(default_factory=dict)
    timer: bool = False

    @property
    def offer_key(self) -> str:
        """The id of what fired: the event id, plus the deadline for timers."""
        if self.timer:
            return f"{self.event_id}@{self.triggered_at.isoformat()}"
        return self.event_id

    @property
    def offer_id(self) -> str:
        """Deterministic offer id, so replays and restarts produce the same one (section 4.5)."""
        return offer_id(self.rule_id, self.customer_id, self.offer_key)


def offer_id(rule_id: str, customer_id: str, key: str) -> str:
    """`hex(sha256(rule_id + ":" + customer_id + ":" + key))[:32]`."""
    digest = hashlib.sha256(f"{rule_id}:{customer_id}:{key}".encode())
    return digest.hexdigest()[:32]
