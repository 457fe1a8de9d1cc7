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


@lru_cache(maxsize=1 << 16)
def bucket(campaign_id: str, customer_id: str) -> int:
    """Cached: a customer's bucket never changes, and a cache hit costs a sixth of the hash."""
    digest = hashlib.sha256(f"{campaign_id}:{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


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
