"""Shard placement for human channels: every lead of one owner on one shard.

A human channel's capacity belongs to an RM or a branch, not to a customer.
Each shard has its own policy (and, with the default memory store, its own
cap store), so the customers of one branch must share a shard: then the
branch's RMs and its pool see their leads in stream order, exactly as the
one-shard backtest does, whatever the shard count or the number of
processes. With branch-local human channels in the rules, a customer is
placed by `branch` (else `rm_id`, else their own id); otherwise by id as
before. Placement only changes when reference data does: a customer who
moves branch between two runs of one recovery directory starts afresh on
the new shard (their old state stays behind until it expires).

`per: pool` capacity (one call centre for everyone) cannot be shard-local:
it is exact with a shared Redis cap store, but its allocation order across
shards is not the backtest's (docs/policy.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from keymoment.triggers.events import CustomerProfile


def placement_for(
    rules: object, profiles: Mapping[str, CustomerProfile]
) -> Callable[[str], str] | None:
    """The customer -> placement key function, or None to place by customer id."""
    channels = getattr(rules, "channels", {}) or {}
    local = any(
        c.human and c.capacity is not None and c.capacity.per in ("rm", "branch")
        for c in channels.values()
    )
    if not local:
        return None

    def key(customer_id: str) -> str:
        p = profiles.get(customer_id)
        if p is None:
            return customer_id
        if p.branch:
            return f"branch:{p.branch}"
        return f"rm:{p.rm_id}" if p.rm_id else customer_id

    return key
