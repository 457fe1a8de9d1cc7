"""The one driver: an `Engine` and a contact policy for the customers of one shard.

Plain Python, no Bytewax. Everything that turns decoded events into
decisions goes through `Shard`: each Bytewax shard (`flows.dataflow` wraps
it in a `StatefulBatchLogic`), the backtest (`flows.replay`, one shard over
the merged input), `compare` and the benchmarks. So "the flow decides what
the backtest decides" holds by construction.

A shard processes one `Batch` per input batch. Between its own events it
replays the batch's watermark rises (`flows.stamp`), so a timer fires at the
first position where the stream's single watermark reaches its deadline, and
is decided with the same clock. Only rises at or past the shard's next timer
deadline cost anything: the search is a bisect over the rises, so a shard
with nothing due pays one comparison per batch, not one per event.

On the wall clock the shard first advances to `now - allowed_lateness` and
decides every candidate with `now` as the clock; a periodic tick does the
same when no input arrives (dormancy, salary_missed and absence fire while
traffic is quiet).

A rollout (`flows.versioning`) switches the rules at a watermark W: the
batch is split at its first rise at or past W, timers due before W fire on
the old version, then the engine and the policy take the new one. While a
switch is pending, the wall clock moves the watermark only up to just before
W, so the switch itself happens at a rise of the stream that every shard
sees (or, with no traffic, at the tick that passes W).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from keymoment.connectors.lines import dumps_line
from keymoment.connectors.wire import DeadLetter
from keymoment.policy import ContactPolicy
from keymoment.policy.decision import Decision
from keymoment.rollout.diff import diff
from keymoment.rollout.versions import Switch
from keymoment.triggers.candidate import Candidate
from keymoment.triggers.engine import Engine
from keymoment.triggers.events import CustomerProfile
from keymoment.triggers.switch import switched

from .feedback import Feedback, Logged
from .partitions import PartitionClock
from .stamp import Batch, Clock
from .versioning import TICK, Versions, split

SNAPSHOT_VERSION = 1


class ShardOutput:
    """What one call produced, in the order it was decided.

    The offers of the sent decisions are built when first asked for
    (`offers`), so a backtest, which attaches no offer sink, never builds
    them; the decision log's records likewise (`decision_records`).
    """

    __slots__ = ("decisions", "_offers", "dead_letters", "lines", "events", "watermark")

    def __init__(
        self,
        decisions: list[Decision],
        offers: list[dict] | None,
        dead_letters: list[dict],
        lines: int,
        events: int,
    ) -> None:
        self.decisions = decisions  # every candidate decided by this call
        self._offers = offers  # None: the sent decisions' offers, built on first use
        self.dead_letters = dead_letters  # decode rejects passed through, and duplicates
        self.lines = lines  # input records behind this call (shard 0 only), for the live view
        self.events = events  # own events this call evaluated
        self.watermark: datetime | None = None  # the shard's after this call (the live view)

    @property
    def offers(self) -> list[dict]:
        """The sent ones, as offers for the channel sinks (built once, on first use)."""
        if self._offers is None:
            self._offers = [d.offer() for d in self.decisions if d.outcome == "sent"]
        return self._offers

    def offer_lines(self) -> bytes:
        """The sent decisions' offers as JSONL lines, without their dicts (`Decision.offer_line`)
        when nothing built them yet."""
        if self._offers is not None:
            return b"".join([dumps_line(offer) for offer in self._offers])
        return b"".join([d.offer_line() for d in self.decisions if d.outcome == "sent"])

    def decision_records(self) -> list[dict]:
        """The decision log's records (built only when a decision log is attached)."""
        return [d.log_record() for d in self.decisions]

    def decision_lines(self) -> bytes:
        """The decision log's JSONL lines, without building the records (`Decision.log_line`)."""
        return b"".join([d.log_line() for d in self.decisions])


def _joined(first: ShardOutput, then: ShardOutput) -> ShardOutput:
    return ShardOutput(
        first.decisions + then.decisions,
        None,
        first.dead_letters + then.dead_letters,
        first.lines + then.lines,
        first.events + then.events,
    )


def _output(dead_letters: list[dict] | None = None, lines: int = 0, events: int = 0) -> ShardOutput:
    return ShardOutput([], None, list(dead_letters) if dead_letters else [], lines, events)


class Shard:
    """Engine + policy for one shard of customers (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        policy: ContactPolicy,
        profiles: Mapping[str, CustomerProfile],
        clock: Clock | None = None,
        versions: Versions | None = None,
        partitions: int | None = None,
    ) -> None:
        """`clock` is the wall clock of a live run; None runs on the event clock (a replay).

        `versions` holds the rules version the engine runs and the switches
        scheduled after it; without it the rules never change. `partitions`: how
        many input partitions the flow reads, when batches carry per-partition rises
        (`flows.partitions`); the engine then fires a customer's own due timers
        before its next event, as the minimum may lag that partition.
        """
        self.engine, self.policy, self.profiles, self.clock = engine, policy, profiles, clock
        self.versions = versions
        self.parts = PartitionClock(partitions) if partitions else None
        engine.lagging = self.parts is not None
        self.lateness = engine.lateness
        self.last_at: datetime | None = None  # newest occurred_at seen: the end of input
        self.feedback = Feedback(engine, profiles)
        # A replay's warm-up (`backtest --from`): candidates triggered before it are counted
        # in `warmed_up`, not decided; the events before it only build the engine's state.
        self.decide_from: datetime | None = None
        self.warmed_up = 0
        # With it (`--sent-log`), a warm-up candidate the live decision log says was sent goes
        # back to the engine as the live driver fed it back: follow-ups arm on it.
        self.warm_sent: Logged | None = None
        self.fed_back = 0  # such offers found

    # -- the three entry points ------------------------------------------

    def process(self, batch: Batch) -> ShardOutput:
        """One input batch: replay its watermark rises around this shard's own events."""
        at = self.versions.next_at() if self.versions is not None else None
        parts = split(batch, at) if at is not None else None
        if parts is None:
            out = self._process(batch)
        else:
            out = self._process(parts[0])
            self._switch(out)
            out = _joined(out, self.process(parts[1]))
        out.watermark = self.engine.watermark
        return out

    def _process(self, batch: Batch) -> ShardOutput:
        out = _output(batch.dead_letters, batch.lines, len(batch.positions))
        now = self.clock() if self.clock is not None else None
        if now is not None:
            self._decide(self.engine.advance(self._wall_mark(now)), now, out)
        rise_pos, rise_wm = batch.rise_pos, batch.rise_wm
        if batch.rise_part and self.parts is not None:
            rise_pos, rise_wm = self.parts.rises(rise_pos, rise_wm, batch.rise_part)
        engine, profiles, evaluate = self.engine, self.profiles, self.engine.evaluate
        reads = engine.reads_profiles  # else no lookup per event: no rule reads the profile
        rises, k = len(rise_pos), 0  # k: the first rise not yet in force
        # Hot loop, one pass per event (kept in one piece on purpose). Only an event at
        # which a new rise comes into force looks at the timers: after every engine call
        # nothing is due at the engine's watermark any more, so until the next rise
        # nothing can come due (the bisect of the old loop ran per event).
        # Per event, no list is built unless a timer fired (`fired` stays None), and a rise
        # with nothing due by it is one engine call (`move_if_idle`), not two.
        for pos, event in zip(batch.positions, batch.own.events, strict=True):
            fired = None
            if k < rises and rise_pos[k] <= pos:
                k += 1
                if k < rises and rise_pos[k] <= pos:  # several rises since the last own event
                    k = bisect_right(rise_pos, pos, k)
                wm = rise_wm[k - 1]
                if not engine.move_if_idle(wm):  # something fires at or before pos
                    self._fire_before(rise_pos, rise_wm, pos, now, out)
                    fired = engine.advance(wm)
            own = evaluate(event, profiles.get(event.customer_id) if reads else None)
            if own is None:
                where = batch.where(bisect_left(batch.positions, pos))  # rare: looked up
                out.dead_letters.append(DeadLetter("duplicate", where, event.event_id).record())
                own = fired
            elif fired:
                own = fired + own  # one call: the policy sees the timers' and the event's together
            if own:
                self._decide(own, now, out)
        self._fire_before(rise_pos, rise_wm, len(rise_pos) and rise_pos[-1] + 1, now, out)
        if rise_wm:
            self._decide(self.engine.advance(rise_wm[-1]), now, out)
        if batch.last_at is not None and (self.last_at is None or batch.last_at > self.last_at):
            self.last_at = batch.last_at
        return out

    def tick(self) -> ShardOutput:
        """Wall clock only: advance to `now - lateness` and retry what the policy parked."""
        assert self.clock is not None, "a replay has no wall-clock tick"
        out, now = _output(), self.clock()
        self._switches_until(now - self.lateness, out)
        self._decide(self.engine.advance(now - self.lateness), now, out)
        self._record(self.policy.retry_pending(now), out, now)
        out.watermark = self.engine.watermark
        return out

    def finish(self, until: datetime | None) -> ShardOutput:
        """End of input: advance to `until` or the newest event, and settle what was parked."""
        if self.clock is not None:  # wall clock: one last tick, then nothing may stay parked
            out = self.tick()
            now = self.clock()
            self._record(self.policy.settle(now), out, now)
            return out
        out = _output()
        end = until or self.last_at
        if end is not None:
            self._switches_until(end, out)
            self._decide(self.engine.advance(end), None, out)
        if self.engine.watermark is not None:  # every parked candidate is decided now
            self._record(self.policy.settle(self.engine.watermark), out, None)
        out.watermark = self.engine.watermark
        return out

    # -- rollout -----------------------------------------------------------

    def schedule(self, switch: Switch) -> None:
        """A switch that came through the dataflow (the rules source); see `flows.versioning`."""
        assert self.versions is not None, "a shard without versions cannot switch"
        self.versions.schedule(switch, self.engine.watermark)

    def _wall_mark(self, now: datetime) -> datetime:
        """The wall clock's watermark, held just before a pending switch (module docstring)."""
        mark = now - self.lateness
        at = self.versions.next_at() if self.versions is not None else None
        return at - TICK if at is not None and mark >= at else mark

    def _switches_until(self, mark: datetime, out: ShardOutput) -> None:
        while self.versions is not None and (at := self.versions.next_at()) is not None:
            if at > mark:
                return
            self._switch(out)

    def _switch(self, out: ShardOutput) -> None:
        """Timers and policy work due before W on the old version, then the new rules."""
        assert self.versions is not None
        now = self.clock() if self.clock is not None else None
        at = self.versions.pending[0].effective_at
        self._decide(self.engine.advance(at - TICK), now, out)
        # leads whose working day began before W are allocated on the old version too
        self._record(self.policy.retry_pending(now or at - TICK), out, now)
        old, new = self.versions.current.rules, self.versions.pop().version.rules
        change = diff(old, new)
        self.engine = switched(self.engine, new, change.carry, change.reset_salary)
        self.engine.lagging = self.parts is not None
        self.feedback = Feedback(self.engine, self.profiles)
        self.lateness = self.engine.lateness
        self.policy.update_rules(new)

    # -- internals ---------------------------------------------------------

    def _fire_before(
        self,
        rise_pos: Sequence[int],
        rise_wm: Sequence[datetime],
        before: int,
        now: datetime | None,
        out: ShardOutput,
    ) -> None:
        """Fire timers at the rises before batch position `before` where they come due."""
        while (deadline := self.engine.next_deadline()) is not None:
            j = bisect_left(rise_wm, deadline)
            if j >= len(rise_wm) or rise_pos[j] >= before:
                return
            self._decide(self.engine.advance(rise_wm[j]), now, out)

    def _decide(self, candidates: list[Candidate], now: datetime | None, out: ShardOutput) -> None:
        """`now` is the wall clock of a live run; on the event clock each candidate is decided
        at its own `triggered_at` (a timer at its deadline), never at a watermark that depends
        on how partitions interleave: runs of candidates sharing a time go together."""
        if not candidates:
            return
        if now is not None:
            self._record(self.policy.decide(candidates, self.profiles, now), out, now)
            return
        start, before = 0, self.decide_from
        for end in range(1, len(candidates) + 1):
            at = candidates[start].triggered_at
            if end == len(candidates) or candidates[end].triggered_at != at:
                if before is not None and at < before:
                    self.warmed_up += end - start
                    if self.warm_sent:
                        self._fed_back(candidates[start:end], out)
                else:
                    group = candidates[start:end]
                    self._record(self.policy.decide(group, self.profiles, at), out, None)
                start = end

    def _fed_back(self, warm: list[Candidate], out: ShardOutput) -> None:
        """Warm-up candidates the live log says were sent, fed back (`warm_sent`); the
        follow-ups already due are decided like any others (counted, before `decide_from`)."""
        assert self.warm_sent is not None
        sent = [c for c in warm if (c.rule_id, c.triggered_at, c.event_id) in self.warm_sent]
        self.fed_back += len(sent)
        self._decide(self.feedback.logged(sent, self.warm_sent), None, out)

    def _record(self, decisions: list[Decision], out: ShardOutput, now: datetime | None) -> None:
        """Emit decisions, then feed the sent ones back (follow-ups due at once are decided too)."""
        if not decisions:
            return
        out.decisions.extend(decisions)
        if self.feedback.active:  # follow-up rules: sent offers may arm (or fire) their timers
            self._decide(self.feedback.sent(decisions), now, out)

    # -- recovery ----------------------------------------------------------

    def snapshot(self, store: bool = True) -> dict[str, Any]:
        """Plain data: the engine's snapshot, the last event time, the policy's own state.

        A Redis cap store keeps its reservations itself, idempotent by
        offer_id, so a replayed epoch gets the same answers; the policy's own
        snapshot holds its in-memory cap store (unless `store` is False: an
        incremental snapshot's segment holds its changes) and its parked candidates.
        """
        return {
            "v": SNAPSHOT_VERSION,
            "engine": self.engine.snapshot(),
            "last_at": self.last_at,
            "policy": self.policy.snapshot(store),
            "versions": self.versions.snapshot() if self.versions is not None else None,
        }

    def restore(self, snap: dict[str, Any]) -> None:
        """Resume on the version in force at the snapshot (its engine state is shaped by it)."""
        if snap.get("v") != SNAPSHOT_VERSION:
            raise ValueError(f"unknown shard snapshot version {snap.get('v')!r}")
        if snap.get("versions") is not None:
            self.versions = Versions.restored(snap["versions"])
            if self.versions.current.rules != self.engine.ruleset:
                self.engine = Engine(self.versions.current.rules)
                self.engine.lagging = self.parts is not None
                self.feedback = Feedback(self.engine, self.profiles)
                self.policy.update_rules(self.versions.current.rules)
        self.engine.restore(snap["engine"])
        self.last_at = snap["last_at"]
        if snap["policy"] is not None:
            self.policy.restore(snap["policy"])
