"""What the contact policy decides for each candidate (docs/semantics.md sections 4-5)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from keymoment.triggers.candidate import Candidate, offer_id

Outcome = Literal[
    "sent", "control", "suppressed", "arbitration_lost", "capped", "expired", "no_channel", "shadow"
]
OUTCOMES: tuple[Outcome, ...] = (
    "sent",
    "control",
    "suppressed",
    "arbitration_lost",
    "capped",
    "expired",
    "no_channel",
    "shadow",  # a shadow rule's candidate: decided read-only, never sent (policy.shadow)
)
# a decision-log line: `connectors.files.dumps_line`'s options, and `log_line`'s own
_LINE = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS
_LINE_UTC_Z = orjson.OPT_APPEND_NEWLINE | orjson.OPT_UTC_Z
# attribute values that orjson writes the same with or without `OPT_UTC_Z`
_SCALARS = frozenset({str, int, float, bool, type(None)})
Stamp = str | datetime | None  # a time in a record: its text (`_iso`), or the datetime itself


@dataclass(slots=True, unsafe_hash=True)
class Decision:
    """One candidate's single outcome, with everything an offer or the decision log needs.

    Treat it as immutable (nothing assigns to a decision after the policy made it). It
    is not a frozen dataclass because a frozen one's `__init__` sets each of its 15
    fields through `object.__setattr__`: 4.4 us per decision against 0.7 us here
    (measured, round 4), paid for every candidate by both `--policy on` and `off`.
    `unsafe_hash` keeps the hash a frozen dataclass had.
    """

    candidate: Candidate
    outcome: Outcome
    reason: str | None
    campaign_id: str
    offer_code: str
    rule_version: int | str
    decided_at: datetime
    channel: str | None = None
    send_at: datetime | None = None
    expires_at: datetime | None = None
    variant: str | None = None  # the A/B arm (policy/variants.py); None: no variants, or control
    variant_attributes: Mapping[str, Any] | None = None  # the arm's attributes, over the rule's
    lead: Any = None  # a human channel's `LeadTag(rm_id, pool, due_at)` (policy/leads.py)
    # the candidate's offer id when the policy already hashed it for the cap store
    known_id: str | None = field(default=None, repr=False, compare=False)
    # the offer's fields, built on first use: a sent decision gives both an offer and a log line
    _fields: dict[str, Any] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def offer_id(self) -> str:
        return self.known_id or offer_id_of(self.candidate)

    def offer(self) -> dict[str, Any]:
        """The offer a channel connector receives (only for `sent`): no personal data."""
        return dict(self._offer_fields())

    def log_record(self) -> dict[str, Any]:
        """One decision-log line: the offer fields plus why, when and from which event.

        Copies the offer's fields when `offer()` already built them, else builds its
        own without keeping them (a backtest asks for no offers).
        """
        fields = self._fields
        record = dict(fields) if fields is not None else self._build_offer()
        return self._logged(record, _iso(self.decided_at))

    def log_line(self) -> bytes:
        """`log_record()` as its JSONL line (`connectors.files.dumps_line`), byte for byte.

        The record keeps its datetimes and orjson writes them within the line's one
        `dumps` (`OPT_UTC_Z`: `_iso`'s text), instead of four `_iso` strings first: they
        were about 40% of a record's and its line's instructions (round 6). That is
        exact when every time is in UTC and the attributes hold only scalars (orjson
        would write a datetime in them with `Z`, `dumps_line` with `+00:00`); anything
        else, which neither the engine nor the policy makes, takes `log_record()`.
        """
        c, extra, lead = self.candidate, self.variant_attributes, self.lead
        attributes = {**c.attributes, **extra} if extra else c.attributes  # only read here
        if not self._utc_scalars(attributes):
            return orjson.dumps(self.log_record(), option=_LINE)
        due_at = lead.due_at if lead is not None else None
        record = self._offer_record(
            attributes, c.triggered_at, self.send_at, self.expires_at, due_at
        )
        try:  # keys are str (keyword arguments, validated variants): no OPT_NON_STR_KEYS needed
            return orjson.dumps(self._logged(record, self.decided_at), option=_LINE_UTC_Z)
        except TypeError:  # a non-str key in the attributes after all: `dumps_line`'s own way
            return orjson.dumps(self.log_record(), option=_LINE)

    def offer_line(self) -> bytes:
        """`offer()` as its JSONL line (`connectors.files.dumps_line`), byte for byte.

        For an offers file: the line made as `log_line` makes its own (the times left to
        orjson when that is exact), without the offer's dict of `_iso` strings, which a
        file sink would only serialise again (28k instructions per offer, of which the
        times were about half). Anything `log_line` would not write this way takes
        `offer()`.
        """
        c, extra, lead = self.candidate, self.variant_attributes, self.lead
        attributes = {**c.attributes, **extra} if extra else c.attributes
        if self._fields is not None or not self._utc_scalars(attributes):
            return orjson.dumps(self._offer_fields(), option=_LINE)
        due_at = lead.due_at if lead is not None else None
        record = self._offer_record(
            attributes, c.triggered_at, self.send_at, self.expires_at, due_at
        )
        try:
            return orjson.dumps(record, option=_LINE_UTC_Z)
        except TypeError:
            return orjson.dumps(self._offer_fields(), option=_LINE)

    def _utc_scalars(self, attributes: Mapping[str, Any]) -> bool:
        """Whether `log_line` may leave the times to orjson: see there."""
        send_at, expires_at, lead = self.send_at, self.expires_at, self.lead
        return (
            self.candidate.triggered_at.tzinfo is UTC
            and self.decided_at.tzinfo is UTC
            and (send_at is None or send_at.tzinfo is UTC)
            and (expires_at is None or expires_at.tzinfo is UTC)
            and (lead is None or lead.due_at is None or lead.due_at.tzinfo is UTC)
            and _SCALARS.issuperset(map(type, attributes.values()))
        )

    def _logged(self, record: dict[str, Any], decided_at: Stamp) -> dict[str, Any]:
        """The offer's fields plus the decision log's own four, in the log's key order."""
        record["event_id"] = self.candidate.event_id
        record["outcome"] = self.outcome
        record["reason"] = self.reason
        record["decided_at"] = decided_at
        return record

    def _offer_fields(self) -> dict[str, Any]:
        """Built once per decision (the offer id's hash, four timestamps), kept, copied."""
        fields = self._fields
        if fields is None:
            fields = self._build_offer()
            self._fields = fields
        return fields

    def _build_offer(self) -> dict[str, Any]:
        """The offer's fields, its times as text (`_iso`)."""
        c, extra, lead = self.candidate, self.variant_attributes, self.lead
        attributes = {**c.attributes, **extra} if extra else dict(c.attributes)
        triggered_at = _iso(c.triggered_at)
        # usually the very same datetime (sent at once, clock at the event): format it once
        send_at = triggered_at if self.send_at is c.triggered_at else _iso(self.send_at)
        due_at = _iso(lead.due_at) if lead is not None else None
        return self._offer_record(attributes, triggered_at, send_at, _iso(self.expires_at), due_at)

    def _offer_record(
        self,
        attributes: Mapping[str, Any],
        triggered_at: Stamp,
        send_at: Stamp,
        expires_at: Stamp,
        due_at: Stamp,
    ) -> dict[str, Any]:
        """The offer's fields in their order, with the times given (text, or datetimes).

        A variant's attributes win over the rule's (`attributes` is their merge); only
        offers on human channels carry `rm_id` or `pool`, and `due_at` (the SLA).
        """
        c = self.candidate
        record = {
            "offer_id": self.offer_id,
            "customer_id": c.customer_id,
            "channel": self.channel,
            "campaign_id": self.campaign_id,
            "offer_code": self.offer_code,
            "rule_id": c.rule_id,
            "trigger": c.trigger,
            "triggered_at": triggered_at,
            "send_at": send_at,
            "expires_at": expires_at,
            "rule_version": self.rule_version,
            "attributes": attributes,
            "variant": self.variant,
        }
        lead = self.lead
        if lead is not None:
            record["rm_id"], record["pool"], record["due_at"] = lead.rm_id, lead.pool, due_at
        return record


def offer_id_of(c: Candidate) -> str:
    """`c.offer_id`, with a timer's deadline written by `isoformat` below (the same text).

    The engine's `Candidate.offer_key` formats it with `datetime.isoformat` (triggers/
    stays free of orjson): 2.1 us of the offer id's 3 us for a timer (round 5).
    """
    key = f"{c.event_id}@{isoformat(c.triggered_at)}" if c.timer else c.event_id
    return offer_id(c.rule_id, c.customer_id, key)


def isoformat(at: datetime) -> str:
    """`at.isoformat()`, by orjson for a UTC datetime: the same text (a Hypothesis test)."""
    if at.tzinfo is UTC:
        return orjson.dumps(at)[1:-1].decode()
    return at.isoformat()


def _iso(at: datetime | None) -> str | None:
    """RFC 3339 in UTC with a `Z`, the form every output uses: `isoformat()`'s text.

    A UTC datetime (every time the engine and the policy make) is formatted by orjson,
    which writes the same characters as `at.isoformat().replace("+00:00", "Z")`
    (microseconds only when not 0; a Hypothesis test compares them) in about a quarter
    of the time: 0.5 against 2.1 us, three to four times per decision (round 5).
    """
    if at is None:
        return None
    if at.tzinfo is UTC:
        return orjson.dumps(at, option=orjson.OPT_UTC_Z)[1:-1].decode()
    return at.isoformat().replace("+00:00", "Z")
