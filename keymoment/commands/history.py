"""`--history URL` of `backtest` and `compare`: replay on top of the live contact history.

The live cap store's history (and, with `?lists=1`, its suppression sets) is
copied once, read-only, into memory (state/history_copy.py); each replay gets its
own copy of that, so nothing a replay reserves ever reaches the live store.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from keymoment.cli import UserError
from keymoment.config import RulesFile
from keymoment.connectors.urlparts import where
from keymoment.connectors.urls import cap_store_from_url
from keymoment.policy import ContactPolicy, build_policy
from keymoment.policy.suppression import DO_NOT_CONTACT, FileLists, FixedLists
from keymoment.state import CapStoreUnavailable

HELP = (
    "replay on top of a read-only copy of the live contact history: the cap store at "
    "redis://host:port/0[?prefix=km&lists=1&cluster=1&timeout=S] (never written to)"
)


def history_policies(
    url: str, rules: Sequence[RulesFile]
) -> tuple[Callable[[RulesFile], ContactPolicy], dict[str, Any]]:
    """Copy the history at `url` once: what builds each replay's policy on it, and what
    was copied (for `--json`).

    Prints one line saying what was copied; every problem is one `UserError` line.
    """
    from keymoment.state.history_copy import copy_history  # imports redis-py: only when asked
    from keymoment.state.redis_caps import RedisCapStore

    try:
        source = cap_store_from_url(url)
    except ValueError as exc:
        raise UserError(f"--history: {exc}") from None
    if not isinstance(source, RedisCapStore):
        raise UserError("--history takes the live cap store's redis:// URL")
    names = sorted({DO_NOT_CONTACT, *(n for r in rules for c in r.campaigns for n in c.lists)})
    try:
        copy = copy_history(source, names)
    except CapStoreUnavailable as exc:
        raise UserError(f"--history: {exc}") from None
    finally:
        source.close()
    origin = f"{where(url)} prefix {source.prefix}"
    print(copy.describe(origin), file=sys.stderr)
    copied_at = datetime.fromtimestamp(copy.server_ms / 1000, UTC).isoformat()
    about = {
        "source": origin,
        "copied_at": copied_at.replace("+00:00", "Z"),
        "offers": copy.offers,
        "keys": copy.keys,
        "slots": copy.slots,
        "lists": {name: len(ids) for name, ids in copy.lists.items()},
    }

    def policy(rules: RulesFile) -> ContactPolicy:
        lists = [FileLists(rules.lists), FixedLists(copy.lists)] if copy.lists else None
        return build_policy(rules, store=copy.store(), lists=lists)

    return policy, about
