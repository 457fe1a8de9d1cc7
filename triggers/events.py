"""Domain events and customer reference data (docs/semantics.md section 1).

These models are the engine's input. They are validated once, at the edge
(`keymoment.connectors.wire`), and then trusted: the engine never re-checks
them. Money is kept as integer minor units (cents) so no float ever reaches
rule state; times are timezone-aware UTC datetimes.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)

MAX_AMOUNT_MINOR = 10**12 * 100  # 1e12 in major units
_DECIMAL_TEXT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)

TRANSACTION_KINDS = (
    "cash_deposit",
    "cash_withdrawal",
    "transfer_in",
    "transfer_out",
    "card_payment",
    "payroll",
    "pension",
    "interest",
    "fee",
    "loan_repayment",
    "standing_order",
    "other",
)
Kind = Literal[
    "cash_deposit",
    "cash_withdrawal",
    "transfer_in",
    "transfer_out",
    "card_payment",
    "payroll",
    "pension",
    "interest",
    "fee",
    "loan_repayment",
    "standing_order",
    "other",
]
Action = Literal["login", "page_view", "click", "search", "apply_start", "apply_submit", "logout"]
Initiator = Literal["customer", "bank", "third_party"]

DEFAULT_INITIATOR: dict[str, Initiator] = {
    "interest": "bank",
    "fee": "bank",
    "standing_order": "bank",
    "loan_repayment": "bank",
    "payroll": "third_party",
    "pension": "third_party",
    "transfer_in": "third_party",
}
ACTIVITY_ACTIONS = frozenset(
    {"login", "page_view", "click", "search", "apply_start", "apply_submit"}
)


class AmountError(ValueError):
    """An amount that is not a positive decimal with at most 2 places (reason `bad_amount`)."""


def to_minor(value: object, *, allow_negative: bool = False) -> int:
    """Convert a wire amount (decimal string or JSON number) to integer minor units.

    Floats go through their shortest repr, so 0.1 is 10 cents, not
    0.1000000000000000055...; anything with more than two decimals is refused
    rather than rounded, because silently rounding money is worse than
    rejecting it.
    """
    if type(value) is str and _PLAIN_AMOUNT.fullmatch(value):
        minor = int(value.replace(".", "")) if value[-3:-2] == "." else int(value) * 100
    elif isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise AmountError("not a number")
    elif isinstance(value, int):
        minor = value * 100
    else:
        if isinstance(value, str) and not _DECIMAL_TEXT.fullmatch(value):
            raise AmountError("not a decimal number")  # Decimal() would take "1_000", " 5", "١٢"
        try:
            dec = Decimal(value if isinstance(value, str | Decimal) else repr(value))
        except InvalidOperation:
            raise AmountError("not a decimal number") from None
        if not dec.is_finite():
            raise AmountError("not a finite number")
        scaled = dec.scaleb(2)
        if scaled != scaled.to_integral_value():
            raise AmountError("more than 2 decimals")
        minor = int(scaled)
    if not allow_negative and minor <= 0:
        raise AmountError("must be > 0")
    if abs(minor) > MAX_AMOUNT_MINOR:
        raise AmountError("above 1e12")
    return minor


def balance_to_minor(value: object) -> int:
    """`to_minor` for balances, which may be zero or negative."""
    return to_minor(value, allow_negative=True)


# The common wire shapes, `[-]digits[.dd]` with at most 16 ASCII digits before the
# point: one C-level match, then int(), without building a Decimal. Anything
# else (one decimal, exponents, a `+`, non-ASCII digits) takes the Decimal path,
# which gives the same value [`test_wire.py::test_plain_amount_fast_path_is_exact`].
_PLAIN_AMOUNT = re.compile(r"-?\d{1,16}(?:\.\d\d)?", re.ASCII)


def _to_utc(value: datetime) -> datetime:
    """Always the one `UTC` tzinfo: comparisons between equal tzinfos skip utcoffset() calls.

    Years outside 1900..9000 are refused: the engine adds durations of up
    to years to event times, and datetime.max + 400 days would overflow.
    """
    if not 1900 <= value.year <= 9000:
        raise ValueError("year out of range 1900..9000")
    if value.tzinfo is UTC:
        return value
    return value.replace(tzinfo=UTC) if value.utcoffset() == _ZERO else value.astimezone(UTC)


# The shape producers send (`2026-01-01T08:30:00Z`, optional 1-6 fraction digits).
_PLAIN_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?Z", re.ASCII)


def _utc_time(value: object, parse: ValidatorFunctionWrapHandler) -> datetime:
    """Parse an event time to an aware UTC datetime; the common `...Z` shape without pydantic.

    For strings of the `_PLAIN_UTC` shape, `datetime.fromisoformat` gives the
    same instant as pydantic's parser, already carrying `datetime.UTC`, so
    the pydantic `TzInfo` and its utcoffset()/replace() round trip (a third
    of the decoder's time) are skipped. Anything else, including a plain
    string fromisoformat refuses (an impossible date), goes through pydantic
    (`AwareDatetime`), so what is accepted and how a rejection is worded are
    unchanged [`test_wire.py::test_fast_time_path_agrees_with_pydantic`].
    """
    if type(value) is str and _PLAIN_UTC.fullmatch(value):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = parse(value)
    else:
        parsed = parse(value)
    return _to_utc(parsed)


_ZERO = timedelta(0)
UtcTime = Annotated[AwareDatetime, WrapValidator(_utc_time)]
EventId = Annotated[str, Field(min_length=1, max_length=128)]
CustomerId = Annotated[str, Field(min_length=1, max_length=64)]
Amount = Annotated[int, BeforeValidator(to_minor)]
Balance = Annotated[int, BeforeValidator(balance_to_minor)]

_EVENT_CONFIG = ConfigDict(extra="ignore", frozen=True, strict=False, coerce_numbers_to_str=False)


class TransactionEvent(BaseModel):
    """A posting on one of the customer's accounts; `amount` is in minor units."""

    model_config = _EVENT_CONFIG
    type: Literal["transaction"]
    event_id: EventId
    customer_id: CustomerId
    occurred_at: UtcTime
    account_id: Annotated[str, Field(min_length=1, max_length=64)]
    direction: Literal["credit", "debit"]
    amount: Amount
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] | None = None
    kind: Kind
    initiated_by: Initiator | None = None
    counterparty: Annotated[str, Field(max_length=128)] | None = None
    balance_after: Balance | None = None
    channel: Annotated[str, Field(max_length=32)] | None = None

    @property
    def initiator(self) -> Initiator:
        """Who started the posting: the explicit field, else the default for its kind."""
        return self.initiated_by or DEFAULT_INITIATOR.get(self.kind, "customer")


class AppEvent(BaseModel):
    """A mobile-app interaction."""

    model_config = _EVENT_CONFIG
    type: Literal["app"]
    event_id: EventId
    customer_id: CustomerId
    occurred_at: UtcTime
    action: Action
    page: Annotated[str, Field(max_length=256)] | None = None
    product: Annotated[str, Field(max_length=64)] | None = None
    session_id: Annotated[str, Field(max_length=128)] | None = None


class ConversionEvent(BaseModel):
    """The customer took up a product; used for attribution, never for triggering by default."""

    model_config = _EVENT_CONFIG
    type: Literal["conversion"]
    event_id: EventId
    customer_id: CustomerId
    occurred_at: UtcTime
    product: Annotated[str, Field(min_length=1, max_length=64)]
    offer_id: Annotated[str, Field(max_length=64)] | None = None


Event = TransactionEvent | AppEvent | ConversionEvent
AnyEvent = Annotated[Event, Field(discriminator="type")]


def is_activity(event: Event) -> bool:
    """Customer-initiated activity (section 2): what dormancy and reactivation watch."""
    if event.type == "transaction":
        return event.initiator == "customer"
    if event.type == "app":
        return event.action in ACTIVITY_ACTIONS
    return False


class CustomerProfile(BaseModel):
    """Reference data for one customer: onboarding date, timezone, segment, consent."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    customer_id: CustomerId
    opened_at: UtcTime | None = None
    timezone: str | None = None
    segment: str | None = None
    tags: tuple[str, ...] = ()
    consent: dict[str, bool] = Field(default_factory=dict)
    rm_id: str | None = None  # relationship manager, for human channels (policy/human.py)
    branch: str | None = None

    def consents_to(self, channel: str) -> bool:
        """A channel missing from `consent` means no consent for marketing on it."""
        return self.consent.get(channel, False) is True
