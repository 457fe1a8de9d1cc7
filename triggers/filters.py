"""Event and customer filters that operators write in the rules file.

A filter is data (a pydantic model) and compiles once into a plain predicate,
so the per-event cost is a few attribute reads, not model traversal.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

from .events import CustomerProfile, Event

OneOrMany = str | list[str]


def _as_set(value: OneOrMany | None) -> frozenset[str] | None:
    if value is None:
        return None
    return frozenset([value] if isinstance(value, str) else value)


def major_to_minor(value: Decimal) -> int:
    """Rules-file amounts are major units; state and events use minor units."""
    return int((value * 100).to_integral_value())


class EventFilter(BaseModel):
    """Which events a rule looks at; every field given must match (AND); lists mean "any of"."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["transaction", "app", "conversion"] | None = None
    direction: Literal["credit", "debit"] | None = None
    kind: OneOrMany | None = None
    action: OneOrMany | None = None
    product: OneOrMany | None = None
    page_prefix: str | None = None
    amount_gte: Decimal | None = None
    amount_lte: Decimal | None = None

    @field_validator("kind", "action", "product")
    @classmethod
    def _non_empty(cls, value: OneOrMany | None) -> OneOrMany | None:
        if isinstance(value, list) and not value:
            raise ValueError("an empty list matches nothing")
        return value

    def values(self, name: Literal["kind", "action"]) -> frozenset[str] | None:
        """The kinds or actions this filter admits, None when it does not restrict them."""
        return _as_set(getattr(self, name))

    def compile(self, passed: frozenset[str] = frozenset()) -> Callable[[Event], bool]:
        """A predicate over events equal to this filter, built from only the fields given.

        Field tests become one tuple of (attribute, allowed values) checked in a
        plain loop; amounts and page prefixes, rarer, get their own checks.
        `passed` are the event types the caller ever passes (the engine calls a
        trigger only for its `event_types`): when they are just the filter's
        type, the type test is left out.
        """
        typed = passed == {self.type}
        tests: list[tuple[str, frozenset[str | None] | None]] = [
            ("type", frozenset([None if typed else self.type])),
            ("direction", frozenset([self.direction])),
        ]
        tests += [(name, _as_set(getattr(self, name))) for name in ("kind", "action", "product")]
        fields = tuple(
            (name, allowed) for name, allowed in tests if allowed != frozenset([None]) and allowed
        )
        low = major_to_minor(self.amount_gte) if self.amount_gte is not None else None
        high = major_to_minor(self.amount_lte) if self.amount_lte is not None else None
        prefix = self.page_prefix

        def matches(event: Event) -> bool:
            for name, allowed in fields:
                if getattr(event, name, None) not in allowed:
                    return False
            if prefix is not None and not (getattr(event, "page", None) or "\0").startswith(prefix):
                return False
            amount = getattr(event, "amount", None) if low is not None or high is not None else 0
            if low is not None and (amount is None or amount < low):
                return False
            return high is None or (amount is not None and 0 < amount <= high)

        return matches


class CustomerFilter(BaseModel):
    """Which customers a rule applies to, from their reference data."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    segments: list[str] | None = None
    segments_none: list[str] | None = None
    tags_any: list[str] | None = None
    tags_none: list[str] | None = None

    def admits(self, profile: CustomerProfile | None) -> bool:
        """True when the customer passes every part given; no profile means no segment, no tags."""
        segment = profile.segment if profile else None
        tags = set(profile.tags) if profile else set()
        if self.segments is not None and segment not in self.segments:
            return False
        if self.segments_none is not None and segment in self.segments_none:
            return False
        if self.tags_any is not None and not tags.intersection(self.tags_any):
            return False
        return not (self.tags_none is not None and tags.intersection(self.tags_none))
