"""Bytes on the wire -> domain events, or a dead letter with its reason (section 1).

The only place that knows the JSON wire format of input events. It never
raises on bad input: every payload becomes an `Event` or a `DeadLetter`,
and a dead letter carries a reason code and where the payload came from,
never the payload itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from keymoment.triggers.events import AnyEvent, Event, TransactionEvent

MAX_PAYLOAD = 64 * 1024
REASONS = ("oversize", "malformed_json", "schema", "bad_amount", "clock_skew", "duplicate")
_EVENTS: TypeAdapter[Event] = TypeAdapter(AnyEvent)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A rejected input: `reason` is a section-1 code such as `schema:occurred_at`."""

    reason: str
    source: str
    event_id: str | None = None
    detail: str | None = None

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"reason": self.reason, "source": self.source}
        if self.event_id is not None:
            out["event_id"] = self.event_id
        if self.detail:
            out["detail"] = self.detail
        return out

    @property
    def family(self) -> str:
        """The reason without its field: `schema` for `schema:amount`."""
        return self.reason.partition(":")[0]


def decode(
    raw: bytes | str,
    source: str,
    *,
    now: datetime | None = None,
    max_future: timedelta = timedelta(minutes=5),
) -> Event | DeadLetter:
    """Decode one message; `now` (the wall clock) enables the `clock_skew` check."""
    if len(raw) > MAX_PAYLOAD:
        return DeadLetter("oversize", source, detail=f"over {MAX_PAYLOAD} bytes")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return DeadLetter("malformed_json", source)
    if not isinstance(data, dict):
        return DeadLetter("malformed_json", source, detail="not a JSON object")
    try:
        event = _EVENTS.validate_python(data)
    except ValidationError as exc:
        return _rejection(exc, source, data)
    if now is not None and event.occurred_at - now > max_future:
        return DeadLetter("clock_skew", source, event.event_id, detail="occurred_at ahead of clock")
    return event


def _rejection(exc: ValidationError, source: str, data: dict[str, Any]) -> DeadLetter:
    error = exc.errors(include_url=False, include_input=False)[0]
    loc = [part for part in error["loc"] if isinstance(part, str)]
    if error["type"] in ("union_tag_not_found", "union_tag_invalid") or not loc:
        field = "type"
    else:
        field = (
            loc[1] if loc[0] in ("transaction", "app", "conversion") and len(loc) > 1 else loc[0]
        )
    event_id = data.get("event_id")
    readable = event_id if isinstance(event_id, str) and 0 < len(event_id) <= 128 else None
    if field == "amount" and error["type"] != "missing":
        return DeadLetter("bad_amount", source, readable, detail=_short(error["msg"]))
    return DeadLetter(f"schema:{field}", source, readable, detail=error["type"])


def _short(message: str) -> str:
    return message.removeprefix("Value error, ")[:80]


def encode(event: Event) -> bytes:
    """The wire form of an event (amounts back in major units), for generators and tests."""
    data = event.model_dump(exclude_none=True, mode="json")
    if isinstance(event, TransactionEvent):
        data["amount"] = minor_to_text(event.amount)
        if event.balance_after is not None:
            data["balance_after"] = minor_to_text(event.balance_after)
    return orjson.dumps(data)


def minor_to_text(minor: int) -> str:
    """Minor units as a decimal string with two places: 70050 -> "700.50"."""
    sign = "-" if minor < 0 else ""
    whole, cents = divmod(abs(minor), 100)
    return f"{sign}{whole}.{cents:02d}"
