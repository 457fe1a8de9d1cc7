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
from urllib.parse import parse_qs, quote, urlsplit

from keymoment.cli import UserError
from keymoment.commands.args import add_from_argument, checked_from, timestamp, warm_sent
from keymoment.config import RulesError, RulesFile, load_rules
from keymoment.connectors.customers import ReferenceDataError, read_profiles
from keymoment.connectors.lines import dumps_line
from keymoment.connectors.urls import cap_store_from_url
from keymoment.desk.tally import Tally
from keymoment.flows.replay import Replay
from keymoment.flows.shard import ShardOutput
from keymoment.policy import ContactPolicy, FirstChannelPolicy, build_policy
from keymoment.rollout.cli import add_rollout_arguments, shown_rules, versions_from
from keymoment.triggers.events import CustomerProfile

from . import history
from .files import open_output, write_json_and_html
from .summary import Progress, Summary, render, warm_up_json


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
    add_from_argument(parser)
    parser.add_argument("--decisions", required=True, help="decision log output (JSONL, .gz ok)")
    parser.add_argument("--dead-letters", help="dead-letter output (JSONL)")
    parser.add_argument(
        "--state",
        help="cap store URL [in memory]; a redis:// store needs --prefix (or ?prefix=), so a "
        "backtest never writes into the live contact history",
    )
    add_rollout_arguments(parser)
    parser.add_argument(
        "--prefix", help="key namespace in the --state Redis for this backtest's reservations"
    )
    parser.add_argument("--history", metavar="URL", help=history.HELP)
    parser.add_argument("--json", metavar="OUT", help="write the summary as JSON (docs/desk.md)")
    parser.add_argument("--html", metavar="OUT", help="write the summary as one HTML page")
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
        for problem in exc.readable():
            print(f"  {problem}", file=sys.stderr)
        return 1
    decide_from = checked_from(args.decide_from, args.until)
    versions = versions_from(args)
    every = [rules, *(s.version.rules for s in versions.pending)] if versions else [rules]
    sent = warm_sent(args.sent_log, every, decide_from)
    shown = shown_rules(rules, versions)  # before the replay uses up the schedule
    profiles = _profiles(args.customers)
    if args.history:
        if args.state or args.prefix or args.policy == "off":
            raise UserError(
                "--history replays on a copy of the live history in memory, under the "
                "contact policy: leave --state, --prefix and --policy off out"
            )
        build, copied = history.history_policies(args.history, every)
        policy = build(rules)
    else:
        policy = _policy(rules, scratch_state(args.state, args.prefix), args.policy == "on")
        copied = None
    replay = Replay(
        rules, profiles, policy, args.until, versions=versions, decide_from=decide_from,
        warm_sent=sent,
    )  # fmt: skip
    summary = Summary()
    tally = Tally() if args.json or args.html else None
    with _Outputs(args.decisions, args.dead_letters, tally) as out:
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
    fed_back = replay.fed_back if sent is not None else None
    summary.warm_up = warm_up_json(decide_from, replay.warmed_up, fed_back)
    summary.still_pending = policy.pending
    print(render(summary, shown, args.decisions))
    if tally is not None:
        data = summary_json(summary, shown, tally)
        if copied is not None:
            data["history"] = copied
        write_pages(args, data)
    return 0


def summary_json(summary: Summary, rules: RulesFile, tally: Tally) -> dict:
    """What `--json` writes: the run's counts and the decisions' tally (docs/desk.md)."""
    return {
        "rules_version": rules.version,
        "lines": summary.lines,
        "events": summary.events,
        "after_until": summary.after_until,
        "warm_up": summary.warm_up,
        "dead_letters": dict(summary.dead_letters.most_common()),
        "still_pending": summary.still_pending,
        "decisions": tally.as_json(r.rule_id for r in rules.rules),
    }


def write_pages(args: argparse.Namespace, data: dict) -> None:
    from keymoment.desk.pages import backtest_page

    write_json_and_html(args.json, args.html, data, backtest_page)


def scratch_state(url: str | None, prefix: str | None) -> str | None:
    """The cap store URL for a backtest: a Redis one only under an explicitly chosen prefix."""
    if prefix is not None and url is None:
        raise UserError("--prefix goes with --state redis://...")
    if url is None or not url.startswith(("redis://", "rediss://", "unix://")):
        return url
    query = parse_qs(urlsplit(url).query)
    if prefix is not None:
        if "prefix" in query:
            raise UserError("give the prefix once: --prefix or ?prefix= in --state")
        return f"{url}{'&' if urlsplit(url).query else '?'}prefix={quote(prefix, safe='')}"
    if "prefix" not in query:
        raise UserError(
            "--state: a backtest would reserve cap slots in the live contact history "
            "(prefix km); give --prefix NAME for a namespace of its own, or leave --state out"
        )
    return url


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
    _check_store(store)
    return build_policy(rules, store=store)


def _check_store(store: object) -> None:
    """A Redis cap store must answer now (one line if not) and should start empty."""
    client, prefix = getattr(store, "client", None), getattr(store, "prefix", None)
    if client is None:
        return  # the memory store
    try:
        client.ping()
        used = next(iter(client.scan_iter(match=f"{prefix}:*", count=100)), None)
    except Exception as exc:  # noqa: BLE001 - redis-py raises several kinds; all mean "cannot use it"
        raise UserError(f"--state: cannot reach the cap store: {exc}") from None
    if used is not None:
        print(
            f"warning: --state prefix {prefix} already holds reservations (an earlier backtest?): "
            "outcomes can differ from a run on an empty store",
            file=sys.stderr,
        )


class _Outputs:
    """The decision log and the optional dead-letter file, as JSONL."""

    def __init__(self, decisions: str, dead_letters: str | None, tally: Tally | None) -> None:
        self.decisions = open_output(decisions)
        self.dead_letters = open_output(dead_letters) if dead_letters else None
        self.tally = tally

    def __enter__(self) -> _Outputs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.decisions.close()
        if self.dead_letters:
            self.dead_letters.close()

    def write(self, output: ShardOutput) -> None:
        if output.decisions:
            if self.tally is None:  # the log alone: its lines, the records never built
                self.decisions.write(output.decision_lines())
            else:
                records = output.decision_records()
                self.decisions.write(b"".join(dumps_line(r) for r in records))
                for record in records:
                    self.tally.add(record)
        if self.dead_letters and output.dead_letters:
            self.dead_letters.write(b"".join(dumps_line(r) for r in output.dead_letters))


__all__ = ["Summary", "render", "run"]
