"""`keymoment backtest`: replay recorded events through the engine and the contact policy.

The replay is the live flow's own driver on the event clock
(`keymoment.flows.replay`, docs/semantics.md section 2): the watermark moves
only with the events, several input files are merged by occurred_at, and at
the end the watermark moves to `--until` (or the newest occurred_at seen) so
every timer due by then fires. Every candidate lands in the decision log
with its outcome; the summary at the end is what an operator reads before
rolling a rules change out.
"""

from __future__ import annotations

import argparse
import sys

from keymoment.cli import UserError
from keymoment.commands.args import timestamp
from keymoment.config import RulesError, RulesFile, load_rules
from keymoment.connectors.customers import ReferenceDataError, read_profiles
from keymoment.connectors.files import dumps_line
from keymoment.connectors.urls import cap_store_from_url
from keymoment.flows.replay import Replay
from keymoment.flows.shard import ShardOutput
from keymoment.policy import ContactPolicy, FirstChannelPolicy, build_policy
from keymoment.triggers.events import CustomerProfile

from .files import open_output
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
    replay = Replay(rules, profiles, policy, until=args.until)
    summary = Summary()
    with _Outputs(args.decisions, args.dead_letters) as out:
        progress = Progress() if sys.stderr.isatty() else None
        try:
            for output in replay.outputs(args.events):
                summary.add(output)
                out.write(output)
                if progress:
                    progress.show(summary, replay.fraction())
        except OSError as exc:
            raise UserError(f"cannot read {exc.filename}: {exc.strerror or exc}") from None
        if progress:
            progress.done()
    summary.after_until = replay.after_until
    summary.still_pending = policy.pending
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

    def write(self, output: ShardOutput) -> None:
        if output.decisions:
            self.decisions.write(b"".join(dumps_line(r) for r in output.decision_records()))
        if self.dead_letters and output.dead_letters:
            self.dead_letters.write(b"".join(dumps_line(r) for r in output.dead_letters))


__all__ = ["Summary", "render", "run"]
