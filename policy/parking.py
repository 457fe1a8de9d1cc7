"""The queue of candidates waiting for the cap store (or for Redis-held lists).

Two kinds of work wait: `screened` candidates passed every step that needs no
store (suppression by file lists, holdout, arbitration, ttl, consent and quiet
hours) and only wait for their reservation; unscreened ones wait for a
suppression lookup that needs Redis (only when Redis-held lists are in use).
The queue keeps the order in which work was parked, so a customer's
reservations reach the store in the order the customer's candidates came.
"""

from __future__ import annotations

from dataclasses import dataclass

from keymoment.triggers.candidate import Candidate
from keymoment.triggers.events import CustomerProfile

from .arbitration import moment


class EndWait:
    """How long end of input may wait for the store: one budget for every policy sharing it.

    A process runs one policy per shard; if each waited its own `seconds` at end of
    input, eight shards facing a dead store would wait eight times as long. The
    deadline is fixed by the first policy that asks.
    """

    def __init__(self, seconds: float = 10.0) -> None:
        self.seconds = seconds
        self._deadline: float | None = None

    def deadline(self, now: float) -> float:
        if self._deadline is None:
            self._deadline = now + self.seconds
        return self._deadline


@dataclass(slots=True)
class Parked:
    """Work the store could not take yet; `screened` ones already passed steps 1-3."""

    candidates: list[Candidate]
    profiles: dict[str, CustomerProfile]
    screened: bool


def merged(items: list[Parked]) -> list[Parked]:
    """Consecutive parked batches at the same step as one, so a retry is one store round trip.

    The store still sees the reservations in the order they were parked. One caveat,
    as for any large `decide`: a Redis store sends at most `BATCH` reservations per
    pipeline, and if a later pipeline fails the whole retry is parked again, so the
    reservations an earlier pipeline made come back as `already_reserved`.
    """
    out: list[Parked] = []
    for item in items:
        last = out[-1] if out else None
        if last is not None and _joinable(last, item):
            last.candidates += item.candidates
            last.profiles.update(item.profiles)
        else:
            out.append(Parked(list(item.candidates), dict(item.profiles), item.screened))
    return out


def _joinable(first: Parked, then: Parked) -> bool:
    """Same step, no customer with two profiles, and (before arbitration) no moment in both.

    Those are the only ways deciding two parked batches together could differ from
    deciding them one after the other.
    """
    if first.screened != then.screened:
        return False
    if any(first.profiles.get(k, v) != v for k, v in then.profiles.items()):
        return False
    if first.screened:
        return True
    moments = {moment(c) for c in first.candidates}
    return not any(moment(c) in moments for c in then.candidates)
