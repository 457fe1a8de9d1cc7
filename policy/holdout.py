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
    """The hash of `<campaign_id>:` is taken once and copied, then fed the customer id.

    Not cached per customer: at 100k customers and a few campaigns nearly every
    (campaign, customer) pair is new, so a cache of them only missed (measured, round 4).
    """
    return draw(campaign_id + ":", customer_id)


def draw(prefix: str, customer_id: str) -> int:
    """`int.from_bytes(sha256(prefix + customer_id)[:8], "big") % 10000`, the prefix hashed once."""
    digest = _hashed(prefix).copy()
    digest.update(customer_id.encode())
    return int.from_bytes(digest.digest()[:8], "big") % BUCKETS


@lru_cache(maxsize=1024)
def _hashed(prefix: str) -> hashlib._Hash:
    """sha256 fed `prefix`: a `.copy()` of it then fed the rest gives the whole string's digest."""
    return hashlib.sha256(prefix.encode())


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
    if holdout <= 0:
        return False
    return bucket(campaign_id, customer_id) < first_kept_bucket(holdout)
