"""`keymoment backtest`: replay recorded events through the engine and the contact policy.

The replay is the live engine on the event clock (docs/semantics.md section
2): the watermark moves only with the events, several input files are
merged by occurred_at, and at the end the watermark moves to `--until` (or
the newest occurred_at seen) so every timer due by then fires. Every candidate lands in
the decision log with its outcome; the summary at the end is what an
operator reads before rolling a rules change out.
"""

from __future__ import annotations

import argparse
import gzip
import heapq
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import orjson

from keymoment.cli import UserError
from keymoment.commands.args import timestamp
from keymoment.config import RulesError, RulesFile, load_rules
from keymoment.connectors.customers import ReferenceDataError, read_profiles
from keymoment.connectors.wire import DeadLetter, decode
from keymoment.policy import ContactPolicy, FirstChannelPolicy, build_policy
from keymoment.policy.decision import Decision
from keymoment.state import cap_store_from_url
from keymoment.triggers.engine import Engine
from keymoment.triggers.events import CustomerProfile, Event

from .files import open_input, open_output
from .summary import Progress, Summary, render


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "backtest", help="replay events through the rules and write the decision log"
    )
    parser.add_argument("--rules", required=True, help="rules file (YAML or JSON)")
    parser.add_argument(
        "--events", required=True, action="append", help="JSONL events (.gz ok); repeat to merge"
    )
    parser.add_argument("--customers", help="customer reference data (JSONL)")
    parser.add_argument(
        "--until", type=timestamp, help="replay up to this RFC 3339 time; timers due by then fire"
    )
    parser.add_argument("--decisions", required=True, help="decision log output (JSONL, .gz ok)")
    parser.add_argument("--dead-letters", help="dead-letter output (JSONL)")
    parser.add_argument(
        "--state", help="cap store URL (default: in memory; redis://host:port/0 to share)"
    )
    parser.add_argument(
        "--policy",
        choices=("on", "off"),
        default="on",
        help="off: every candidate 'sent' on its first channel, for raw rule volumes [%(default)s]",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        rules = load_rules(args.rules)
    except RulesError as exc:
        print(f"{exc.source}: invalid, {len(exc.problems)} problem(s)", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    profiles = _profiles(args.customers)
    policy = _policy(rules, args.state, args.policy == "on")
    summary = Summary()
    with _Outputs(args.decisions, args.dead_letters) as out:
        Replay(rules, profiles, policy, out, summary, args.until).run(args.events)
    print(render(summary, rules, args.decisions))
    return 0


def _profiles(path: str | None) -> dict[str, CustomerProfile]:
    if path is None:
        return {}
    try:
        profiles, problems = read_profiles(path)
    except ReferenceDataError as exc:
        raise UserError(str(exc)) from None
    if problems:
        print(
            f"warning: {len(problems)} invalid customer record(s) skipped, first: {problems[0]}",
            file=sys.stderr,
        )
    return profiles


def _policy(rules: RulesFile, state_url: str | None, enabled: bool) -> ContactPolicy:
    if not enabled:
        return FirstChannelPolicy(rules)
    try:
        store = cap_store_from_url(state_url)
    except ValueError as exc:
        raise UserError(f"--state: {exc}") from None
    return build_policy(rules, store=store)


class _Outputs:
    """The decision log and the optional dead-letter file, as JSONL."""

    def __init__(self, decisions: str, dead_letters: str | None) -> None:
        self.decisions = open_output(decisions)
        self.dead_letters = open_output(dead_letters) if dead_letters else None

    def __enter__(self) -> _Outputs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.decisions.close()
        if self.dead_letters:
            self.dead_letters.close()

    def decision(self, decision: Decision) -> None:
        self.decisions.write(orjson.dumps(decision.log_record()) + b"\n")

    def dead_letter(self, letter: DeadLetter) -> None:
        if self.dead_letters:
            self.dead_letters.write(orjson.dumps(letter.record()) + b"\n")


class Replay:
    """One pass of merged input through engine and policy, in event time."""

    def __init__(
        self,
        rules: RulesFile,
        profiles: dict[str, CustomerProfile],
        policy: ContactPolicy,
        out: _Outputs,
        summary: Summary,
        until: datetime | None,
    ) -> None:
        self.engine = Engine(rules)
        self.profiles, self.policy, self.out = profiles, policy, out
        self.summary, self.until = summary, until
        self.progress = Progress() if sys.stderr.isatty() else None

    def run(self, paths: list[str]) -> None:
        inputs = [_Input(path, self) for path in paths]
        merged = heapq.merge(*(iter(i) for i in inputs), key=lambda item: item[0].occurred_at)
        last_at = None
        for event, position in merged:
            if self.until is not None and event.occurred_at > self.until:
                self.summary.after_until += 1
                continue
            if last_at is None or event.occurred_at > last_at:
                last_at = event.occurred_at  # the end of input is the newest event, late ones aside
            self._feed(event, position)
            if self.progress:
                self.progress.show(self.summary, sum(i.fraction() for i in inputs) / len(inputs))
        end = self.until or last_at
        if end is not None:
            self._decide(self.engine.advance(end))
            self._settle(end)
        if self.progress:
            self.progress.done()

    def _feed(self, event: Event, position: str) -> None:
        self.summary.events += 1
        fed = self.engine.feed(event, self.profiles.get(event.customer_id))
        if fed.duplicate:
            self.dead_letter(DeadLetter("duplicate", position, event.event_id))
        if fed.candidates:
            self._decide(fed.candidates)

    def _decide(self, candidates: list) -> None:
        if not candidates or self.engine.watermark is None:
            return
        for decision in self.policy.decide(candidates, self.profiles, self.engine.watermark):
            self.summary.count(decision)
            self.out.decision(decision)

    def _settle(self, end: datetime) -> None:
        """Candidates parked while a shared cap store was unreachable: decide them now or expire."""
        for decision in self.policy.retry_pending(end):
            self.summary.count(decision)
            self.out.decision(decision)
        self.summary.still_pending = self.policy.pending

    def dead_letter(self, letter: DeadLetter) -> None:
        self.summary.dead_letters[letter.reason] += 1
        self.out.dead_letter(letter)


class _Input:
    """One events file: decoded events in file order; rejects go straight to dead letters."""

    def __init__(self, path: str, replay: Replay) -> None:
        self.path, self.replay = path, replay
        self.raw = open_input(path)
        self.size = max(Path(path).stat().st_size, 1)
        self.lines = gzip.GzipFile(fileobj=self.raw) if path.endswith(".gz") else self.raw

    def __iter__(self) -> Iterator[tuple[Event, str]]:
        summary, path = self.replay.summary, self.path
        with self.raw:
            for line_no, line in enumerate(self.lines, 1):
                if not line.strip():
                    continue
                summary.lines += 1
                position = f"{path}:{line_no}"
                decoded = decode(line, position)
                if isinstance(decoded, DeadLetter):
                    self.replay.dead_letter(decoded)
                else:
                    yield decoded, position

    def fraction(self) -> float:
        return 1.0 if self.raw.closed else self.raw.tell() / self.size


__all__ = ["Replay", "Summary", "render", "run"]
