"""`window_threshold`: an operator-defined aggregate over a sliding window (section 3, item 7)."""

from __future__ import annotations

import operator
from bisect import bisect_right
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationInfo, field_validator

from .base import RuleBase, RuleContext, Trigger
from .durations import Duration, format_duration
from .events import Event
from .filters import EventFilter, major_to_minor
from .state import RuleState
from .windows import slide

if TYPE_CHECKING:
    from .ruleset import RuleSet

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "gte": operator.ge,
    "gt": operator.gt,
    "lte": operator.le,
    "lt": operator.lt,
}
AMOUNT_AGGREGATES = frozenset({"sum", "avg", "max"})
DISTINCT_FIELDS = frozenset(
    {"kind", "action", "product", "page", "channel", "account_id", "counterparty", "session_id"}
)


class WindowThresholdRule(RuleBase):
    trigger: Literal["window_threshold"]
    filter: EventFilter
    aggregate: str = "count"
    window: Duration
    op: Literal["gte", "gt", "lte", "lt"] = "gte"
    value: Decimal

    @field_validator("aggregate")
    @classmethod
    def _known_aggregate(cls, value: str, info: ValidationInfo) -> str:
        if value in AMOUNT_AGGREGATES:
            event_filter = info.data.get("filter")
            if event_filter is not None and event_filter.type != "transaction":
                raise ValueError(f"{value} needs filter.type: transaction")
            return value
        if value == "count":
            return value
        field = value.removeprefix("distinct:")
        if value.startswith("distinct:") and field in DISTINCT_FIELDS:
            return value
        raise ValueError(
            "expected count, sum, avg, max or distinct:<field> with field one of "
            + ", ".join(sorted(DISTINCT_FIELDS))
        )


class WindowState(RuleState):
    """The matching events in the window (times sorted, with the values aggregated).

    `was_true` is the condition at the latest matching event: the edge the
    rule fires on.
    """

    __slots__ = ("times", "values", "was_true")

    def __init__(self) -> None:
        self.times: list[datetime] = []
        self.values: list[Any] = []  # 1 for count, minor units, or the distinct field's value
        self.was_true = False


class WindowThreshold(Trigger[WindowState]):
    """State: `WindowState`.

    Entries older than the newest matching event minus `window` are dropped:
    no later window ending at or after the newest event can hold them.
    """

    name = "window_threshold"

    def __init__(self, rule: WindowThresholdRule, index: int, ruleset: RuleSet) -> None:
        super().__init__(rule, index, ruleset)
        self.event_types = frozenset(
            [rule.filter.type] if rule.filter.type else ["transaction", "app", "conversion"]
        )
        self.matches = rule.filter.compile(self.event_types)
        self.only_kinds, self.only_actions = (
            rule.filter.values("kind"),
            rule.filter.values("action"),
        )
        self.window = rule.window
        self.compare = _OPS[rule.op]
        self.aggregate = rule.aggregate
        self.counting = rule.aggregate == "count"
        self.field = rule.aggregate.removeprefix("distinct:")
        in_minor = rule.aggregate in AMOUNT_AGGREGATES
        self.value = major_to_minor(rule.value) if in_minor else _exact(rule.value)
        self.label = format_duration(rule.window)

    @property
    def horizon(self) -> timedelta:
        return self.window

    def on_event(self, ctx: RuleContext, event: Event) -> None:
        if not self.matches(event) or not self.admits(ctx):
            return
        states = ctx.customer.rule_states  # `state_of`, inlined: this runs per matching event
        state = states[self.index]
        if state is None:
            state = states[self.index] = WindowState()
        times, values, was_true = state.times, state.values, state.was_true
        at = event.occurred_at
        first, pos = slide(times, values, at, self.window)
        if first == pos:
            was_true = False  # nothing earlier in this window: a new episode (docs/engine.md)
        times.insert(pos, at)
        if self.counting:  # the common aggregate, without the calls and the slice
            values.insert(pos, 1)
            total: Any = pos + 1 - first
        else:
            values.insert(pos, self._value_of(event))
            total = self._aggregate(values[first : pos + 1])
        now_true = self.compare(total, self.value)
        state.was_true = now_true
        if now_true and not was_true:
            self.emit(ctx, at, event.event_id, aggregate=self.aggregate, window=self.label)

    def timing(self) -> tuple[Any, ...]:
        return (self.value, self.compare)

    def adopt(self, old: Trigger[WindowState], state: WindowState | None) -> WindowState | None:
        """The window carries over; the edge state is re-read under the new condition (rollout).

        So a changed `value` or `op` holds what a replay on the new version would
        hold at the newest matching event (for an in-order stream).
        """
        if state is None or not state.times or old.timing() == self.timing():
            return state
        times, values = state.times, state.values
        first = bisect_right(times, times[-1] - self.window)
        adopted = WindowState()
        adopted.times, adopted.values = times, values
        adopted.was_true = self.compare(self._aggregate(values[first:]), self.value)
        return adopted

    def _value_of(self, event: Event) -> Any:
        if self.aggregate == "count":
            return 1
        if self.aggregate in AMOUNT_AGGREGATES:  # validated: the filter takes transactions only
            return event.amount if event.type == "transaction" else None
        return getattr(event, self.field, None)

    def _aggregate(self, window: list[Any]) -> Any:
        kind = self.aggregate
        if kind == "count":
            return len(window)
        if kind == "sum":
            return sum(window)
        if kind == "avg":
            return Fraction(sum(window), len(window))
        if kind == "max":
            return max(window)
        return len({v for v in window if v is not None})


def _exact(value: Decimal) -> int | Fraction:
    """Counts compare faster and exactly against an int (or a Fraction) than a Decimal."""
    return int(value) if value == value.to_integral_value() else Fraction(value)
