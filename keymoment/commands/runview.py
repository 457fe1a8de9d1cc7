"""What `keymoment run` tells the operator: a start line, a progress line, a summary.

Counts come from the flow's own outputs (`build_flow(observe=...)`), so dead
letters are counted whether or not `--dead-letters` is given. Only counts,
never amounts or ids; URLs are shown without credentials.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from datetime import datetime
from operator import attrgetter
from typing import Any

from keymoment.connectors.urlparts import safe
from keymoment.flows.shard import ShardOutput

_OUTCOME_REASON = attrgetter("outcome", "reason")
EXPIRED_ALERT = 20  # this many expired by ttl and nothing sent: the input is too old
BEFORE_CHANNELS = ("control", "suppressed", "arbitration_lost", "shadow")  # no ttl check


class RunView:
    """Counts the flow's outputs; prints progress on a terminal and the summary at the end."""

    def __init__(self, wall_clock: bool, out: Any = sys.stderr) -> None:
        self.out, self.wall_clock = out, wall_clock
        self.lock = threading.Lock()
        self.started = time.perf_counter()
        self.lines = self.events = 0
        self.outcomes: Counter[str] = Counter()
        self.expired_ttl = 0
        self.no_profile = 0
        self.dead: Counter[str] = Counter()
        self.warned = False
        self.watermark: datetime | None = None  # the newest of the shards' watermarks

    def observe(self, output: ShardOutput) -> None:
        """Once per shard call: its decisions counted by outcome and reason in C, then the
        few distinct pairs added up (a Python loop per decision cost more)."""
        pairs = Counter(map(_OUTCOME_REASON, output.decisions))
        mark = output.watermark
        with self.lock:
            if mark is not None and (self.watermark is None or mark > self.watermark):
                self.watermark = mark
            self.lines += output.lines
            self.events += output.events
            for letter in output.dead_letters:
                self.dead[letter.get("reason", "?")] += 1
            for (outcome, reason), n in pairs.items():
                self.outcomes[outcome] += n
                self.expired_ttl += n if (outcome, reason) == ("expired", "ttl") else 0
                self.no_profile += n if (outcome, reason) == ("no_channel", "no_profile") else 0
        self._warn_old_input()

    def _warn_old_input(self) -> None:
        """Every candidate that got as far as channel choice expired: recorded input, wall clock."""
        if self.warned or not self.wall_clock or self.outcomes["sent"]:
            return
        if self.expired_ttl >= EXPIRED_ALERT and self.expired_ttl == self._reached_channels():
            self.warned = True
            print(f"\n{old_input_warning(self.expired_ttl)}", file=self.out, flush=True)

    def _reached_channels(self) -> int:
        return sum(n for o, n in self.outcomes.items() if o not in BEFORE_CHANNELS)

    def progress_line(self) -> str:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        with self.lock:
            dead = sum(self.dead.values())
            decided, sent = sum(self.outcomes.values()), self.outcomes["sent"]
            events, mark = self.events, self.watermark
        at = f"  watermark {mark:%Y-%m-%d %H:%M:%S}" if mark is not None else ""
        return (
            f"  {events / elapsed:,.0f} events/s{at}  {decided:,} candidates  "
            f"{sent:,} offers  {dead:,} dead letters"
        )

    def summary(self, stopped_by: str | None) -> str:
        elapsed = time.perf_counter() - self.started
        how = f"stopped by {stopped_by}" if stopped_by else "input ended"
        outcomes = ", ".join(f"{n:,} {o}" for o, n in self.outcomes.most_common()) or "none"
        dead = ", ".join(f"{n:,} {r}" for r, n in self.dead.most_common()) or "none"
        lines = [
            f"keymoment run: {how} after {elapsed:.1f}s: {self.events:,} events from "
            f"{self.lines:,} input records",
            f"  candidates: {sum(self.outcomes.values()):,} ({outcomes})",
            f"  dead letters: {sum(self.dead.values()):,} ({dead})",
        ]
        if self.watermark is not None:
            lines.append(f"  watermark: {self.watermark:%Y-%m-%d %H:%M:%S} UTC")
        if self.warned:
            lines.append(f"  {old_input_warning(self.expired_ttl)}")
        decided = sum(self.outcomes.values())
        if decided and self.no_profile * 2 >= decided:
            lines.append(
                f"  warning: {self.no_profile:,} of {decided:,} candidates have no customer "
                "reference data (no_channel, no_profile): give --customers"
            )
        return "\n".join(lines)


def old_input_warning(expired: int) -> str:
    return (
        f"warning: all {expired:,} candidates that could be sent expired (ttl) on the wall clock: "
        "the input is older than the campaigns' ttl; replay recorded history with --clock event"
    )


class Ticker:
    """Rewrites the progress line on a terminal every `every` seconds until stopped."""

    def __init__(self, view: RunView, every: float = 1.0) -> None:
        self.view, self.every = view, every
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="km-progress", daemon=True)

    def start(self) -> Ticker:
        if self.view.out.isatty():
            self.thread.start()
        return self

    def _loop(self) -> None:
        while not self.done.wait(self.every):
            print(f"\r{self.view.progress_line()}\033[K", end="", file=self.view.out, flush=True)

    def stop(self) -> None:
        self.done.set()
        if self.thread.is_alive():
            self.thread.join()
            print("\r\033[K", end="", file=self.view.out, flush=True)


def start_line(settings: Any, version: int | str, rules: int, workers: int) -> str:
    """Sources, sinks, rules version, cap store and clock: what this run is about to do."""
    sinks = ", ".join(
        f"{'(other channels)' if ch == '*' else ch}={safe(url)}"
        for ch, url in settings.sinks.items()
    )
    return (
        f"keymoment run: rules version {version} ({rules} rules) from {settings.rules}; "
        f"sources {', '.join(safe(s) for s in settings.sources)}; "
        f"sinks {sinks or 'none (decisions only)'}; "
        f"decisions {safe(settings.decisions) if settings.decisions else 'not logged'}; "
        f"cap store {safe(settings.cap_store) if settings.cap_store else 'memory (this process)'}; "
        f"clock {settings.clock}; {settings.shards} shard{'s' * (settings.shards != 1)} "
        f"on {workers} worker(s)"
    )
