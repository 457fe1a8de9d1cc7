"""Why a rule did not fire for one customer: how close their events came (`explain --rules`).

Plain code over the customer's decoded events, one function per trigger
type, each saying the nearest the events got to the rule's condition.
Amounts are shown as bands, never as the amount itself; thresholds come
from the rules file and are shown as written there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from keymoment.triggers.durations import format_duration
from keymoment.triggers.events import CustomerProfile, Event, TransactionEvent, is_activity

_BANDS = (1_000, 5_000, 10_000, 20_000, 50_000, 100_000, 500_000, 1_000_000)


def band(minor: int) -> str:
    """An amount in minor units as a coarse band of major units (`20k-50k`)."""
    major = minor / 100
    low = 0
    for edge in _BANDS:
        if major < edge:
            return f"{_short(low)}-{_short(edge)}" if low else f"under {_short(edge)}"
        low = edge
    return f"{_short(low)} or more"


def _short(value: int) -> str:
    return f"{value // 1_000_000}m" if value >= 1_000_000 else f"{value // 1000}k"


def _amount(value: Decimal) -> str:
    return f"{value:,.0f}" if value == value.to_integral_value() else f"{value:,}"


def why_not(rule: Any, events: Sequence[Event], profile: CustomerProfile | None) -> str:
    """One sentence on how near this customer's events came to firing `rule`."""
    handler = _BY_TRIGGER.get(rule.trigger)
    return handler(rule, events, profile) if handler else "no candidate"


def _large_deposit(rule: Any, events: Sequence[Event], profile: CustomerProfile | None) -> str:
    kinds = set(rule.kinds)
    credits = [e.amount for e in _credits(events) if e.kind in kinds]
    if not credits:
        return f"no credit of kind {' or '.join(sorted(kinds))}"
    top = max(credits)
    if top < rule.min_amount * 100:
        return (
            f"largest qualifying credit is in {band(top)}, "
            f"below min_amount {_amount(rule.min_amount)}"
        )
    return (
        f"credits reached min_amount {_amount(rule.min_amount)}, "
        f"but none was {rule.multiple}x the median of the earlier ones"
    )


def _credits(events: Sequence[Event]) -> list[TransactionEvent]:
    return [e for e in events if isinstance(e, TransactionEvent) and e.direction == "credit"]


def _balance_milestone(rule: Any, events: Sequence[Event], profile: CustomerProfile | None) -> str:
    opened = (profile.opened_at if profile else None) or (events[0].occurred_at if events else None)
    if opened is None:
        return "no events"
    early = [
        e.balance_after
        for e in events
        if isinstance(e, TransactionEvent)
        and e.balance_after is not None
        and timedelta(0) <= e.occurred_at - opened <= rule.onboarding
    ]
    window = f"the first {format_duration(rule.onboarding)} after opening"
    if not early:
        return f"no transaction with balance_after in {window}"
    lowest = min(rule.thresholds)
    return f"highest balance in {window} is in {band(max(early))}, below {_amount(lowest)}"


def _gaps(rule: Any, events: Sequence[Event], profile: CustomerProfile | None) -> str:
    times = [e.occurred_at for e in events if is_activity(e)]
    if len(times) < 2:
        return f"{len(times)} customer-initiated activit{'y' if len(times) == 1 else 'ies'}"
    gap = max(b - a for a, b in zip(times, times[1:], strict=False))
    return (
        f"longest gap between activities is {gap.days} days, "
        f"under inactive {format_duration(rule.inactive)}"
    )


def _dormancy(rule: Any, events: Sequence[Event], profile: CustomerProfile | None) -> str:
    times = [e.occurred_at for e in events if is_activity(e)]
    if not times:
        return "no customer-initiated activity, so no quiet period to measure"
    return _gaps(rule, events, profile) + "; the last one was too recent to go quiet"


def _salary(rule: Any, events: Sequence[Event], profile: CustomerProfile | None) -> str:
    by_payer: dict[str, list[datetime]] = {}
    for e in _credits(events):
        if e.kind in ("payroll", "transfer_in") and e.counterparty:
            by_payer.setdefault(e.counterparty, []).append(e.occurred_at)
    if not by_payer:
        return "no payroll or transfer_in credit with a counterparty"
    most = max(len(times) for times in by_payer.values())
    return f"at most {most} payroll / transfer_in credits from one payer (section 3, item 2)"


def _salary_missed(rule: Any, events: Sequence[Event], profile: CustomerProfile | None) -> str:
    return "no salary was recognised, or every one was followed by the next in time"


def _window_threshold(rule: Any, events: Sequence[Event], profile: CustomerProfile | None) -> str:
    matches = rule.filter.compile()
    times = [e.occurred_at for e in events if matches(e)]
    if not times:
        return "no event matches its filter"
    if rule.aggregate != "count":
        return f"{len(times)} matching events; {rule.aggregate} never crossed {rule.value}"
    best = max(
        sum(1 for u in times[: i + 1] if t - rule.window < u <= t) for i, t in enumerate(times)
    )
    return (
        f"at most {best} matching events within {format_duration(rule.window)} "
        f"(needs {rule.op} {rule.value})"
    )


def _absence(rule: Any, events: Sequence[Event], profile: CustomerProfile | None) -> str:
    starts = sum(1 for e in events if rule.start.compile()(e))
    if not starts:
        return "no event matches its start filter"
    return (
        f"{starts} start event(s), each followed by a cancel within {format_duration(rule.within)}"
    )


_BY_TRIGGER: dict[str, Callable[[Any, Sequence[Event], CustomerProfile | None], str]] = {
    "large_deposit": _large_deposit,
    "balance_milestone": _balance_milestone,
    "reactivation": _gaps,
    "dormancy": _dormancy,
    "salary_credit": _salary,
    "salary_missed": _salary_missed,
    "window_threshold": _window_threshold,
    "absence": _absence,
}
