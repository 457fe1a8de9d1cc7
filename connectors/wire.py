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

from keymoment.triggers.events import (
    ACTIONS,
    INITIATORS,
    MAX_AMOUNT_MINOR,
    TRANSACTION_KINDS,
    AnyEvent,
    AppEvent,
    ConversionEvent,
    Event,
    TransactionEvent,
    fast_minor,
    trusted,
)

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
    event = plain_event(data)
    if event is None:
        try:
            event = _EVENTS.validate_python(data)
        except ValidationError as exc:
            return _rejection(exc, source, data)
    if now is not None and event.occurred_at - now > max_future:
        return DeadLetter("clock_skew", source, event.event_id, detail="occurred_at ahead of clock")
    return event


# -- the fast path ---------------------------------------------------------
#
# Most traffic is plain: strings where strings belong, `...Z` times, decimal
# string amounts. `plain_event` recognises exactly that shape with a few
# dictionary reads and builds the model without re-validating; anything
# else (a wrong value, an offset other than UTC, a JSON number amount)
# returns None and goes through pydantic, which also names the problem.
# tests/unit/test_wire.py checks that both paths agree.

_KINDS = frozenset(TRANSACTION_KINDS)
_TYPES = {"transaction": TransactionEvent, "app": AppEvent, "conversion": ConversionEvent}
_OPTIONAL_TEXT = {
    "transaction": (("counterparty", 128), ("channel", 32)),
    "app": (("page", 256), ("product", 64), ("session_id", 128)),
    "conversion": (("offer_id", 64),),
}


def plain_event(data: dict[str, Any]) -> Event | None:
    """The event for a plain, valid payload; None when pydantic must decide."""
    family = data.get("type")
    cls = _TYPES.get(family) if type(family) is str else None
    if cls is None or not (_text(data.get("event_id"), 128) and _text(data.get("customer_id"), 64)):
        return None
    at = _utc(data.get("occurred_at"))
    if at is None:
        return None
    fields = {"type": family, "event_id": data["event_id"], "customer_id": data["customer_id"],
              "occurred_at": at}  # fmt: skip
    for name, limit in _OPTIONAL_TEXT[family]:
        value = data.get(name)
        if value is not None and not (type(value) is str and len(value) <= limit):
            return None
        fields[name] = value
    if not _family_fields(family, data, fields):
        return None
    return trusted(cls, fields, data.keys())


def _family_fields(family: str, data: dict[str, Any], fields: dict[str, Any]) -> bool:
    if family == "app":
        fields["action"] = action = data.get("action")
        return type(action) is str and action in ACTIONS
    if family == "conversion":
        fields["product"] = product = data.get("product")
        return _text(product, 64)
    return _transaction_fields(data, fields)


def _transaction_fields(data: dict[str, Any], fields: dict[str, Any]) -> bool:
    account, direction, kind = data.get("account_id"), data.get("direction"), data.get("kind")
    initiated_by, currency = data.get("initiated_by"), data.get("currency")
    if not (_text(account, 64) and direction in ("credit", "debit") and type(kind) is str and kind in _KINDS):
        return False
    if initiated_by is not None and not (type(initiated_by) is str and initiated_by in INITIATORS):
        return False
    if currency is not None and not (type(currency) is str and len(currency) == 3
                                     and currency.isascii() and currency.isalpha() and currency.isupper()):
        return False  # fmt: skip
    amount, balance = _money(data.get("amount")), data.get("balance_after")
    if amount is None or amount <= 0:
        return False
    if balance is not None and (balance := _money(balance)) is None:
        return False
    fields.update(account_id=account, direction=direction, kind=kind, initiated_by=initiated_by,
                  currency=currency, amount=amount, balance_after=balance)  # fmt: skip
    return True


def _text(value: object, limit: int) -> bool:
    return type(value) is str and 0 < len(value) <= limit


def _money(value: object) -> int | None:
    if type(value) is not str:
        return None
    minor = fast_minor(value)
    return minor if minor is not None and abs(minor) <= MAX_AMOUNT_MINOR else None


def _utc(value: object) -> datetime | None:
    """`YYYY-MM-DDTHH:MM:SSZ` (or `+00:00`) only: the shape both parsers read alike."""
    if type(value) is not str or value[10:11] != "T" or value[4:5] != "-":
        return None
    if not ((len(value) == 20 and value[19] == "Z") or (len(value) == 25 and value.endswith("+00:00"))):
        return None
    if not value[:4].isdigit() or not 1900 <= int(value[:4]) <= 9000:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _rejection(exc: ValidationError, source: str, data: dict[str, Any]) -> DeadLetter:
    error = exc.errors(include_url=False, include_input=False)[0]
    loc = [part for part in error["loc"] if isinstance(part, str)]
    if error["type"] in ("union_tag_not_found", "union_tag_invalid") or not loc:
        field = "type"
    else:
        field = loc[1] if loc[0] in ("transaction", "app", "conversion") and len(loc) > 1 else loc[0]
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
    if "amount" in data:
        data["amount"] = minor_to_text(event.amount)  # type: ignore[union-attr]
    if "balance_after" in data:
        data["balance_after"] = minor_to_text(event.balance_after)  # type: ignore[union-attr]
    return orjson.dumps(data)


def minor_to_text(minor: int) -> str:
    """Minor units as a decimal string with two places: 70050 -> "700.50"."""
    sign = "-" if minor < 0 else ""
    whole, cents = divmod(abs(minor), 100)
    return f"{sign}{whole}.{cents:02d}"
