"""The contact policy: from candidates to decisions (docs/semantics.md section 4).

`ContactPolicy.decide` takes the candidates of one engine call (one event
and the timers it made due), or several such calls at once, so candidates
that compete in arbitration always arrive together. `build_policy` is what
the backtest, `run` and `demo` call; docs/policy.md describes the API.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from keymoment.state import CapStore, MemoryCapStore
from keymoment.triggers.candidate import Candidate
from keymoment.triggers.events import CustomerProfile

if TYPE_CHECKING:
    from keymoment.config import RulesFile
    from keymoment.state.redis_caps import RedisCapStore

from .contact import RulesContactPolicy
from .decision import Decision
from .suppression import FileLists, ListSource, Suppression

__all__ = ["ContactPolicy", "Decision", "FileLists", "RulesContactPolicy", "build_policy"]


class ContactPolicy(Protocol):
    """Decides every candidate exactly once: one outcome and a reason each.

    `decide` returns the decisions that are final now; candidates the cap
    store could not take yet are parked, and come back from a later
    `decide` or `retry_pending` (which the live flow calls on a timer tick).
    """

    def decide(
        self,
        candidates: Sequence[Candidate],
        profiles: Mapping[str, CustomerProfile],
        clock_at: datetime,
    ) -> list[Decision]:
        """`clock_at` is the engine clock that `ttl` is measured against."""
        ...

    def retry_pending(self, clock_at: datetime) -> list[Decision]:
        """Decisions for parked candidates that became final (sent, or expired while waiting)."""
        ...

    def settle(self, clock_at: datetime) -> list[Decision]:
        """End of input: decide every parked candidate now (sent, or expired), leave none."""
        ...

    @property
    def pending(self) -> int:
        """How many candidates wait for the cap store."""
        ...

    def snapshot(self, store: bool = True) -> Any:
        """Plain data for a recovery snapshot (None when there is nothing to keep).

        `store=False`: without an in-memory cap store, which an incremental snapshot
        keeps as its changes (flows/snapshots.py).
        """
        ...

    def update_rules(self, rules: RulesFile) -> None:
        """A rollout: campaigns, caps, lists and channels of `rules` from now on (same store)."""
        ...

    def restore(self, snap: Any) -> None:
        """Load what `snapshot` returned."""
        ...

    @property
    def counters(self) -> dict[str, int]:
        """Counts for the live view and metrics: parked, store errors, timeouts, ..."""
        ...


def wall_clock() -> datetime:
    return datetime.now(UTC)


def build_policy(
    rules: RulesFile,
    *,
    store: CapStore | None = None,
    clock: Callable[[], datetime] = wall_clock,
    lists: Sequence[ListSource] | None = None,
    list_check_every: float = 5.0,
    **options: Any,
) -> RulesContactPolicy:
    """The rules file's policy over `store` (memory by default).

    Suppression reads the rules file's list files (re-read when they change,
    checked at most every `list_check_every` seconds) and, when `store` is a
    `RedisCapStore` made with `lists=True` (`?lists=1` on the state URL) and `lists`
    is not given, the Redis sets `<prefix>:list:<name>` on the same server. Redis-held
    lists are opt-in because a candidate whose suppression cannot be read must wait,
    so with them an outage delays every outcome, not only reservations; without the
    opt-in, a server that holds such a set makes the store fail closed (an operator's
    do-not-contact set must never be ignored in silence). `options` go to
    `RulesContactPolicy` (`max_pending`, `retry_interval`, `max_retry_interval`).
    """
    store = store if store is not None else MemoryCapStore()
    guard = lists is None
    if lists is None:
        lists = [FileLists(rules.lists, check_every=list_check_every), *_redis_lists(store)]
    campaign_lists = {c.campaign_id: c.lists for c in rules.campaigns}
    suppression = Suppression(lists, campaign_lists)
    if guard:
        _guard_unread_sets(store, suppression.names)
    return RulesContactPolicy(rules, store, suppression, clock=clock, **options)


def _guard_unread_sets(store: CapStore, names: Sequence[str]) -> None:
    """A Redis store not told `lists=1` still refuses to work beside sets it would ignore."""
    redis = _redis_store(store)
    if redis is not None and not redis.lists:
        redis.unread_lists = list(names)


def _redis_lists(store: CapStore) -> list[ListSource]:
    redis = _redis_store(store)
    if redis is None or not redis.lists:
        return []
    from keymoment.state.redis_lists import RedisListStore

    return [RedisListStore(redis.url, prefix=redis.prefix, client=redis.client)]


def _redis_store(store: CapStore) -> RedisCapStore | None:
    """`store` if it is a Redis cap store, found without importing redis-py.

    A store of that class exists only once its module was imported, so with the
    module not loaded the answer is no: the backtest and a run on the memory store
    never import redis-py (about 0.1 s of their start-up, with asyncio and ssl).
    """
    module = sys.modules.get("keymoment.state.redis_caps")
    return store if module is not None and isinstance(store, module.RedisCapStore) else None


class FirstChannelPolicy:
    """Every candidate `sent` on its first channel: `--policy off`, for raw rule volumes."""

    pending = 0
    counters: dict[str, int] = {}

    def __init__(self, rules: RulesFile, clock: Callable[[], datetime] = wall_clock) -> None:
        self.rules = rules
        self.campaigns = {c.campaign_id: c for c in rules.campaigns}
        self.clock = clock

    def retry_pending(self, clock_at: datetime) -> list[Decision]:
        return []

    def settle(self, clock_at: datetime) -> list[Decision]:
        return []

    def snapshot(self, store: bool = True) -> None:
        return None  # holds nothing between calls

    def update_rules(self, rules: RulesFile) -> None:
        self.rules = rules
        self.campaigns = {c.campaign_id: c for c in rules.campaigns}

    def restore(self, snap: Any) -> None:
        return None

    def decide(
        self,
        candidates: Sequence[Candidate],
        profiles: Mapping[str, CustomerProfile],
        clock_at: datetime,
    ) -> list[Decision]:
        decided_at = self.clock()
        out = []
        for c in candidates:
            campaign = self.campaigns[c.campaign]
            out.append(
                Decision(
                    candidate=c,
                    outcome="sent",
                    reason=None,
                    campaign_id=campaign.campaign_id,
                    offer_code=campaign.offer_code,
                    rule_version=self.rules.version,
                    decided_at=decided_at,
                    channel=campaign.channels[0],
                    send_at=c.triggered_at,
                    expires_at=c.triggered_at + campaign.ttl,
                )
            )
        return out
