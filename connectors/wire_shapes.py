"""The JSON wire shapes of input events (docs/semantics.md section 1), as msgspec structs.

msgspec checks these in one pass while it parses the JSON: the `type` tag,
required fields, string lengths, the enumerations. What it cannot say on
its own is converted by `wire.py` afterwards, each with its own reason:
`occurred_at` (strict RFC 3339, to UTC) and the amounts (exact minor units).
Unknown fields are skipped by the parser and never reach an event. The
structs hold only strings and numbers and live for one call: `gc=False`
keeps them out of the cyclic collector's count.
"""

from __future__ import annotations

from typing import Annotated, Literal, final

import msgspec

from keymoment.triggers.events import Action, Initiator, Kind

EventId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
CustomerId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Short = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Currency = Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$")]
Upto32 = Annotated[str, msgspec.Meta(max_length=32)]
Upto64 = Annotated[str, msgspec.Meta(max_length=64)]
Upto128 = Annotated[str, msgspec.Meta(max_length=128)]
Upto256 = Annotated[str, msgspec.Meta(max_length=256)]
# Amounts and times are taken as JSON gives them and converted by wire.py.
Money = str | int | float


@final  # nothing derives from the three: mypy narrows `type(wire) is` both ways
class TransactionWire(msgspec.Struct, tag_field="type", tag="transaction", gc=False):
    event_id: EventId
    customer_id: CustomerId
    occurred_at: str
    account_id: Short
    direction: Literal["credit", "debit"]
    amount: Money
    kind: Kind
    currency: Currency | None = None
    initiated_by: Initiator | None = None
    counterparty: Upto128 | None = None
    balance_after: Money | None = None
    channel: Upto32 | None = None


@final
class AppWire(msgspec.Struct, tag_field="type", tag="app", gc=False):
    event_id: EventId
    customer_id: CustomerId
    occurred_at: str
    action: Action
    page: Upto256 | None = None
    product: Upto64 | None = None
    session_id: Upto128 | None = None


@final
class ConversionWire(msgspec.Struct, tag_field="type", tag="conversion", gc=False):
    event_id: EventId
    customer_id: CustomerId
    occurred_at: str
    product: Short
    offer_id: Upto64 | None = None


WIRE_TYPES = TransactionWire | AppWire | ConversionWire
