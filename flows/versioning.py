"""Which rules version a shard runs, and the switches scheduled after it (docs/rollout.md).

A switch takes effect when the shard's watermark reaches its `effective_at`
W. The shard splits an input batch at the first watermark rise at or past W
(`split`): the events before it, and every timer due before W, are decided
under the old version; then the engine adopts the new rule set
(`triggers.switch`), the policy takes the new campaigns, caps, lists and
channels (its cap store, and so the cap history by cap id, stays), and the
rest of the batch runs on the new version. Every shard sees the same rises,
so every shard of every process switches at the same rise.
"""

from __future__ import annotations

import sys
from bisect import bisect_left
from datetime import datetime, timedelta
from typing import Any

from keymoment.rollout.versions import RulesVersion, Switch

from .stamp import Batch

TICK = timedelta(microseconds=1)  # the last instant before a switch


class Versions:
    """The version in force (and since when) and the pending switches, in watermark order."""

    def __init__(self, current: RulesVersion, pending: list[Switch] | None = None) -> None:
        self.current = current
        self.since: datetime | None = None  # effective_at of the version in force
        self.pending = sorted(pending or [], key=lambda s: s.effective_at)
        self.late = 0  # switches that arrived after the watermark had passed their W
        # The versions switched to since an incremental snapshot chain last took them
        # (`taken`, flows/snapshots.py); None until one does. Not state: a restore starts
        # from a snapshot, where nothing is pending to be taken.
        self.switched: list[RulesVersion] | None = None

    def next_at(self) -> datetime | None:
        return self.pending[0].effective_at if self.pending else None

    def schedule(self, switch: Switch, watermark: datetime | None) -> None:
        """A switch from the rules source; one behind the watermark applies at once (late)."""
        if self.since == switch.effective_at and self.current.digest == switch.version.digest:
            return  # already in force: a resumed source re-emitting what the snapshot holds
        if any(s.version.digest == switch.version.digest for s in self.pending):
            return
        if watermark is not None and switch.effective_at <= watermark:
            self.late += 1
            print(
                f"rules version {switch.version.version}: reached a shard after its watermark"
                f" passed {switch.effective_at.isoformat()}; applied at once (raise --reload-lead)",
                file=sys.stderr,
                flush=True,
            )
        self.pending.append(switch)
        self.pending.sort(key=lambda s: s.effective_at)

    def pop(self) -> Switch:
        switch = self.pending.pop(0)
        self.current, self.since = switch.version, switch.effective_at
        if self.switched is not None:
            self.switched.append(switch.version)
        return switch

    def taken(self) -> list[RulesVersion]:
        """The versions switched to, in order, since the last call (none before the first)."""
        switched, self.switched = self.switched or [], []
        return switched

    def snapshot(self) -> dict[str, Any]:
        return {
            "current": self.current.plain(),
            "since": self.since,
            "pending": [s.plain() for s in self.pending],
            "late": self.late,
        }

    @classmethod
    def restored(cls, snap: dict[str, Any]) -> Versions:
        versions = cls(RulesVersion.from_plain(snap["current"]))
        versions.since, versions.late = snap["since"], snap["late"]
        versions.pending = [Switch.from_plain(p) for p in snap["pending"]]
        return versions


def split(batch: Batch, at: datetime) -> tuple[Batch, Batch] | None:
    """The batch before and from its first rise at or past `at`; None when no rise gets there."""
    j = next((i for i, wm in enumerate(batch.rise_wm) if wm >= at), None)
    if j is None:
        return None
    k = bisect_left(batch.positions, batch.rise_pos[j])  # own events before that rise: [:k]
    own = batch.own
    head = Batch(
        batch.rise_pos[:j],
        batch.rise_wm[:j],
        batch.positions[:k],
        own.part(0, k),
        None,
        batch.dead_letters,
        batch.lines,
    )
    tail = Batch(
        batch.rise_pos[j:],
        batch.rise_wm[j:],
        batch.positions[k:],
        own.part(k),
        batch.last_at,
        [],
        0,
    )
    return head, tail
