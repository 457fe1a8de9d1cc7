"""Contact-history stores: caps in memory or in Redis, and suppression lists in Redis.

The `--state` URL forms are parsed with every other URL, in
`keymoment.connectors.urls.cap_store_from_url`.
"""

from __future__ import annotations

from .caps import (
    CapStore,
    CapStoreUnavailable,
    Check,
    Option,
    Reservation,
    Result,
    cap_key,
    customer_tag,
    rolling_admits,
)
from .memory_caps import MemoryCapStore

__all__ = [
    "CapStore",
    "CapStoreUnavailable",
    "Check",
    "MemoryCapStore",
    "Option",
    "Reservation",
    "Result",
    "cap_key",
    "customer_tag",
    "rolling_admits",
]
