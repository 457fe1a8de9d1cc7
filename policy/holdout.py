"""Deterministic control groups (semantics section 4.2), recomputable by any other system.

`bucket = int.from_bytes(sha256(f"{campaign_id}:{customer_id}")[:8], "big") % 10000`;
the customer is in the control group of the campaign when `bucket < holdout * 10000`.
The threshold is computed in decimal (`0.07 * 10000` is 700, not 700.0000000000001),
so a share written with up to four decimals holds out exactly that many buckets.
"""

from __future__ import annotations

import hashlib
import math
from decimal import Decimal
from functools import lru_cache

BUCKETS = 10_000


def bucket(campaign_id: str, customer_id: str) -> int:
    """The customer's bucket in `0..9999` for this campaign (the formula above)."""
    return draw(campaign_id + ":", customer_id)


def draw(prefix: str, customer_id: str) -> int:
    """`int.from_bytes(sha256(prefix + customer_id)[:8], "big") % 10000`, the prefix hashed once.

    Not cached per customer: at 100k customers and a few campaigns nearly every
    (campaign, customer) pair is new, so a cache of them only missed (round 4).
    """
    return _draw(_hashed(prefix), customer_id)


def _draw(hashed: hashlib._Hash, customer_id: str) -> int:
    digest = hashed.copy()
    digest.update(customer_id.encode())
    return int.from_bytes(digest.digest()[:8], "big") % BUCKETS


@lru_cache(maxsize=1024)
def _hashed(prefix: str) -> hashlib._Hash:
    """sha256 fed `prefix`: a `.copy()` of it then fed the rest gives the whole string's digest."""
    return hashlib.sha256(prefix.encode())


class Holdout:
    """One campaign's control group, for the policy's per-candidate check (one call).

    The same answer as `in_control`, with the prefix's hash and the threshold found
    once per rules version.
    """

    __slots__ = ("_prefix", "_first_kept")

    def __init__(self, campaign_id: str, holdout: float) -> None:
        self._prefix = _hashed(campaign_id + ":")
        self._first_kept = first_kept_bucket(holdout) if holdout > 0 else 0

    def holds(self, customer_id: str) -> bool:
        """Whether the customer is in the control group (never when the share is 0)."""
        return bool(self._first_kept) and _draw(self._prefix, customer_id) < self._first_kept


@lru_cache(maxsize=256)
def threshold(holdout: float) -> Decimal:
    """`holdout * 10000` in exact decimal arithmetic on the share as written."""
    return Decimal(repr(holdout)) * BUCKETS


@lru_cache(maxsize=256)
def first_kept_bucket(holdout: float) -> int:
    """The smallest bucket not held out: for an integer bucket, `b < t` iff `b < ceil(t)`.

    Comparing two ints is what the per-candidate check does, instead of an int
    against a Decimal.
    """
    return math.ceil(threshold(holdout))


def in_control(campaign_id: str, customer_id: str, holdout: float) -> bool:
    return Holdout(campaign_id, holdout).holds(customer_id)
