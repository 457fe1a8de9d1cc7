"""One shard: an `Engine` and a contact policy for the customers hashed to it.

Plain Python, no Bytewax: `flows.dataflow` wraps it in a `StatefulBatchLogic`.
A shard processes one `Message` per input batch. Between its own events it
replays the batch's watermark steps (`flows.stamp`), so a timer fires at the
first position where the backtest's single watermark reaches its deadline,
and is decided with the same clock. Only steps at or past the shard's next
timer deadline cost anything: the search is a bisect over the steps, so a
shard with nothing due pays one comparison per batch, not one per event.

On the wall clock the shard first advances to `now - allowed_lateness` and
decides every candidate with `now` as the clock; a periodic tick does the
same when no input arrives (dormancy, salary_missed and absence fire while
traffic is quiet).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from keymoment.connectors.wire import DeadLetter
from keymoment.policy import ContactPolicy
from keymoment.triggers.candidate import Candidate
from keymoment.triggers.engine import Engine
from keymoment.triggers.events import CustomerProfile

from .stamp import Message

SNAPSHOT_VERSION = 1


class Output:
    """What one call produced: decision-log records, sent offers by channel, dead letters."""

    __slots__ = ("decisions", "offers", "dead", "lines")

    def __init__(self) -> None:
        self.decisions: list[dict] = []
        self.offers: list[dict] = []
        self.dead: list[dict] = []
        self.lines = 0

    def as_tuple(self) -> tuple[list[dict], list[dict], list[dict], int]:
        return (self.decisions, self.offers, self.dead, self.lines)


class Shard:
    """Engine + policy for one shard of customers (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        policy: ContactPolicy,
        profiles: Mapping[str, CustomerProfile],
        wall: bool,
    ) -> None:
        self.engine, self.policy, self.profiles, self.wall = engine, policy, profiles, wall
        self.lateness = engine.lateness
        self.last_at: datetime | None = None  # newest occurred_at seen: the end of input

    # -- the three entry points ------------------------------------------

    def process(self, msg: Message, now: datetime) -> Output:
        """One input batch: replay its watermark steps around this shard's own events."""
        out = Output()
        out.dead.extend(msg.dead)
        out.lines = msg.lines
        if self.wall:
            self._decide(self.engine.advance(now - self.lateness), now, out)
        step_pos, step_wm = msg.step_pos, msg.step_wm
        engine, profiles = self.engine, self.profiles
        in_force = -1  # the step in force at the last event
        for pos, event, position, _raw in msg.events:
            j = bisect_right(step_pos, pos) - 1  # the step in force at this event
            fired: list[Candidate] = []
            if j >= 0:
                wm = step_wm[j]
                due = engine.next_deadline()
                if due is not None and due <= wm:  # something fires at or before pos
                    self._catch_up(step_pos, step_wm, pos, now, out)
                    fired = engine.advance(wm)
                elif j != in_force:  # nothing due: only the watermark moves, once per step
                    fired = engine.advance(wm)
                in_force = j
            own = engine.step(event, profiles.get(event.customer_id))
            if own is None:
                out.dead.append(DeadLetter("duplicate", position, event.event_id).record())
            elif own:
                fired = fired + own if fired else own
            if fired:
                self._decide(fired, now, out)
        self._catch_up(step_pos, step_wm, len(step_pos) and step_pos[-1] + 1, now, out)
        if step_wm:
            self._decide(self.engine.advance(step_wm[-1]), now, out)
        if msg.last_at is not None and (self.last_at is None or msg.last_at > self.last_at):
            self.last_at = msg.last_at
        return out

    def tick(self, now: datetime) -> Output:
        """Wall clock only: advance to `now - lateness` and retry what the policy parked."""
        out = Output()
        self._decide(self.engine.advance(now - self.lateness), now, out)
        retry: Callable[[datetime], list] | None = getattr(self.policy, "retry_pending", None)
        if retry is not None:
            self._record(retry(now), out)
        return out

    def finish(self, until: datetime | None, now: datetime) -> Output:
        """End of input: advance to `until` or the newest event, as the backtest does."""
        if self.wall:
            return self.tick(now)
        out = Output()
        end = until or self.last_at
        if end is not None:
            self._decide(self.engine.advance(end), now, out)
        retry = getattr(self.policy, "retry_pending", None)
        if retry is not None and self.engine.watermark is not None:
            self._record(retry(self.engine.watermark), out)  # as the backtest settles at the end
        return out

    # -- internals ---------------------------------------------------------

    def _catch_up(
        self, step_pos: list[int], step_wm: list[datetime], before: int, now: datetime, out: Output
    ) -> None:
        """Fire timers at the steps before position `before` where they come due."""
        while (deadline := self.engine.next_deadline()) is not None:
            j = bisect_left(step_wm, deadline)
            if j >= len(step_wm) or step_pos[j] >= before:
                return
            self._decide(self.engine.advance(step_wm[j]), now, out)

    def _decide(self, candidates: list[Candidate], now: datetime, out: Output) -> None:
        if not candidates:
            return
        # Candidates exist only once an event (and so a watermark) was seen.
        clock_at = now if self.wall or self.engine.watermark is None else self.engine.watermark
        self._record(self.policy.decide(candidates, self.profiles, clock_at), out)

    @staticmethod
    def _record(decisions: list, out: Output) -> None:
        for decision in decisions:
            out.decisions.append(decision.log_record())
            if decision.outcome == "sent":
                out.offers.append(decision.offer())

    # -- recovery ----------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Plain data: the engine's snapshot, the last event time, the policy's own state."""
        return {
            "v": SNAPSHOT_VERSION,
            "engine": self.engine.snapshot(),
            "last_at": self.last_at,
            "policy": policy_state(self.policy),
        }

    def restore(self, snap: dict[str, Any]) -> None:
        if snap.get("v") != SNAPSHOT_VERSION:
            raise ValueError(f"unknown shard snapshot version {snap.get('v')!r}")
        self.engine.restore(snap["engine"])
        self.last_at = snap["last_at"]
        if snap["policy"] is not None:
            restore_policy(self.policy, snap["policy"])


def policy_state(policy: Any) -> Any:
    """The policy's own plain-data snapshot (its in-memory cap store, its parked candidates).

    A Redis cap store keeps its reservations itself, idempotent by offer_id,
    so a replayed epoch gets the same answers; a policy without `snapshot()`
    (the placeholder) holds nothing worth keeping.
    """
    own = getattr(policy, "snapshot", None)
    return own() if own is not None else None


def restore_policy(policy: Any, state: Any) -> None:
    policy.restore(state)
