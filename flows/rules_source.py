"""The rules source: one Bytewax input partition that watches the rules and emits each change.

One partition, so one worker in the whole cluster reads the rules and
decides each reload (validate whole, refuse a version that is not higher,
pick the watermark it takes effect at). Its `Switch` then travels through
the dataflow to every shard of every process, which all switch at that
watermark (`flows.shard`); no process reads the file at its own moment.
Each attempt also yields its audit record, and one log line on stderr.

The partition's snapshot is the version in force and the last content seen,
so after a crash the run resumes on the version of the snapshot and then
applies whatever changed since.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from keymoment.rollout.audit import log_line
from keymoment.rollout.reload import Reloader
from keymoment.rollout.versions import RulesVersion
from keymoment.rollout.watch import FORCE, Watch, watch_for

Item = tuple[str, Any]  # ("switch", Switch) or ("audit", record)


class _RulesPartition(StatefulSourcePartition[Item, dict]):
    def __init__(
        self, reloader: Reloader, watch: Watch, poll: float, now: Callable[[], datetime]
    ) -> None:
        self.reloader, self.watch, self.poll, self.now = reloader, watch, poll, now
        self._next = 0.0

    def next_batch(self) -> list[Item]:
        forced = FORCE.is_set()
        if not forced and time.monotonic() < self._next:
            return []
        FORCE.clear()
        self._next = time.monotonic() + self.poll
        text = self.watch.read(force=forced)
        if text is None:
            return []
        switch, rec = self.reloader.consider(text, self.now(), force=forced)
        items: list[Item] = []
        if rec is not None:
            print(log_line(rec), file=sys.stderr, flush=True)
            items.append(("audit", rec))
        if switch is not None:
            items.append(("switch", switch))
        return items

    def next_awake(self) -> datetime | None:
        return self.now() + timedelta(seconds=self.poll)

    def snapshot(self) -> dict:
        r = self.reloader
        return {"version": r.current.plain(), "seen": r.seen, "failures": r.failures}


class RulesSource(FixedPartitionedSource[Item, dict]):
    """Watches `source` (a file, or `redis://...?key=`) every `poll` seconds (SIGHUP: now)."""

    def __init__(
        self,
        source: str,
        current: RulesVersion,
        *,
        lead: timedelta,
        lateness: timedelta,
        process: dict[str, Any],
        poll: float = 1.0,
        now: Callable[[], datetime],
    ) -> None:
        self.source, self.current, self.lead, self.lateness = source, current, lead, lateness
        self.process, self.poll, self.now = process, poll, now

    def list_parts(self) -> list[str]:
        return ["rules"]

    def build_part(self, step_id: str, for_part: str, resume_state: dict | None) -> _RulesPartition:
        reloader = Reloader(self.current, self.lead, self.lateness, self.process)
        if resume_state is not None:
            reloader.current = RulesVersion.from_plain(resume_state["version"])
            reloader.seen = resume_state["seen"]
            reloader.failures = resume_state.get("failures", 0)
        return _RulesPartition(reloader, watch_for(self.source), self.poll, self.now)
