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

import msgspec
from pydantic import AwareDatetime, BeforeValidator

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


# RFC 3339 section 5.6 date-time with an offset, and nothing else: `T` between date
# and time, seconds present, 1-9 fraction digits, `Z` or `+hh:mm`/`-hh:mm`. No
# epoch numbers, no space separator, no `+hhmm`, no naive times (issue 8, part 3).
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:\d\d)", re.ASCII)


class TimeError(ValueError):
    """A time that is not an RFC 3339 date-time with an offset (reason `schema:<field>`)."""


def parse_time(value: object) -> datetime:
    """An RFC 3339 date-time with an offset -> aware datetime in `datetime.UTC`.

    Beyond six fraction digits the extra ones are cut (datetime holds
    microseconds), never rounded, so a time never moves past a later one.
    """
    if type(value) is not str or not RFC3339.fullmatch(value):
        raise TimeError("not an RFC 3339 date-time with Z or +hh:mm")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise TimeError("not a valid date-time") from None
    return _to_utc(parsed)


def _strict_time(value: object) -> object:
    """pydantic's form of `parse_time`: also takes an aware datetime object built in Python."""
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise TimeError("naive datetime")
        return _to_utc(value)
    return parse_time(value)


_ZERO = timedelta(0)
UtcTime = Annotated[AwareDatetime, BeforeValidator(_strict_time)]


class TransactionEvent(msgspec.Struct, frozen=True, gc=False):
    """A posting on one of the customer's accounts; `amount` is in minor units.

    Events are msgspec structs, not pydantic models: the wire decoder
    (`keymoment.connectors.wire`) validates the JSON in one pass and builds
    them directly, which is several times cheaper per event (README,
    "Libraries and why"). They are trusted after that and hold no logic.
    `gc=False` on all three: they hold only strings, numbers and datetimes, so no
    cycle can run through one, and a million of them a second need not be
    tracked by the cyclic collector (16 bytes and a list insertion each).
    """

    event_id: str
    customer_id: str
    occurred_at: datetime
    account_id: str
    direction: Literal["credit", "debit"]
    amount: int
    kind: Kind
    currency: str | None = None
    initiated_by: Initiator | None = None
    counterparty: str | None = None
    balance_after: int | None = None
    channel: str | None = None
    type: Literal["transaction"] = "transaction"

    @property
    def initiator(self) -> Initiator:
        """Who started the posting: the explicit field, else the default for its kind."""
        return self.initiated_by or DEFAULT_INITIATOR.get(self.kind, "customer")


class AppEvent(msgspec.Struct, frozen=True, gc=False):
    """A mobile-app interaction."""

    event_id: str
    customer_id: str
    occurred_at: datetime
    action: Action
    page: str | None = None
    product: str | None = None
    session_id: str | None = None
    type: Literal["app"] = "app"


class ConversionEvent(msgspec.Struct, frozen=True, gc=False):
    """The customer took up a product; used for attribution, never for triggering by default."""

    event_id: str
    customer_id: str
    occurred_at: datetime
    product: str
    offer_id: str | None = None
    type: Literal["conversion"] = "conversion"


Event = TransactionEvent | AppEvent | ConversionEvent


def is_activity(event: Event) -> bool:
    """Customer-initiated activity (section 2): what dormancy and reactivation watch."""
    if event.type == "transaction":
        return event.initiator == "customer"
    if event.type == "app":
        return event.action in ACTIVITY_ACTIONS
    return False


class CustomerProfile(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Reference data for one customer: onboarding date, timezone, segment, consent.

    Validated once, at the edge (`keymoment.connectors.customers.parse_profile`),
    like events. A compact struct, not a pydantic model, because a bank loads
    millions of them (README, "Libraries and why"): no instance dict, no
    fields-set, and `gc=False` keeps them out of the cyclic collector (they
    hold only strings, a tuple, a datetime and a dict: no cycle can run
    through one). The edge shares equal values between the profiles it loads
    (times, strings, tags, consent maps): treat `consent` as read-only.
    """

    customer_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    opened_at: datetime | None = None
    timezone: str | None = None
    segment: str | None = None
    tags: tuple[str, ...] = ()
    consent: dict[str, bool] = msgspec.field(default_factory=dict)
    rm_id: str | None = None  # relationship manager, for human channels (policy/human.py)
    branch: str | None = None

    def consents_to(self, channel: str) -> bool:
        """A channel missing from `consent` means no consent for marketing on it."""
        return self.consent.get(channel, False) is True

    @classmethod
    def model_validate(cls, data: object) -> CustomerProfile:
        """A profile from its wire dict, for tests and benchmarks that build profiles in Python.

        Types are checked (msgspec) and `opened_at` moved to UTC; input files
        and Redis hashes go through the edge instead, which also gives the
        dead-letter reasons (`connectors.customers.parse_profile`).
        """
        profile = msgspec.convert(data, cls)
        at = profile.opened_at
        if at is None or at.tzinfo is UTC:
            return profile
        if at.utcoffset() is None:
            raise TimeError("naive datetime")
        return msgspec.structs.replace(profile, opened_at=_to_utc(at))
