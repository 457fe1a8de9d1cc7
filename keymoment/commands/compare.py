"""`keymoment compare`: two rule versions on the same history, side by side.

Both sides replay the same input through the same driver (`flows.replay`)
with their own engine, policy and in-memory cap store (with `--history`, each
its own copy of the live contact history: keymoment/commands/history.py). When both rule files
have the same engine settings (lateness, max_future) the input is decoded
and stamped once and each batch goes to both shards; otherwise each side
replays the input on its own. The figures are `keymoment.desk.compare`'s.
Exit 0 whatever the difference.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial
from typing import Any, NamedTuple

from keymoment.cli import UserError
from keymoment.config import RulesError, RulesFile, load_rules
from keymoment.desk.compare import compare
from keymoment.flows.feedback import Logged
from keymoment.flows.replay import Replay
from keymoment.flows.shard import Shard, ShardOutput
from keymoment.policy import ContactPolicy, build_policy
from keymoment.triggers.engine import Engine
from keymoment.triggers.events import CustomerProfile

from . import history
from .args import add_from_argument, checked_from, timestamp, warm_sent
from .backtest import _profiles
from .files import write_json_and_html
from .summary import warm_up_json, warm_up_line
from .tables import change, n, text_table


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare", help="what changes between two rules files on the same history"
    )
    parser.add_argument(
        "--rules", required=True, action="append", metavar="FILE",
        help="the OLD rules file, then the NEW one (give --rules twice)",
    )  # fmt: skip
    parser.add_argument(
        "--events", required=True, action="append", help="JSONL events (.gz ok); repeat to merge"
    )
    parser.add_argument("--customers", help="customer reference data (JSONL) [none]")
    parser.add_argument("--until", type=timestamp, help="replay up to this RFC 3339 time [end]")
    add_from_argument(parser)
    parser.add_argument("--json", metavar="OUT", help="write the comparison as JSON (docs/desk.md)")
    parser.add_argument("--html", metavar="OUT", help="write the comparison as one HTML page")
    parser.add_argument(
        "--sample", type=int, default=10, help="customer ids to list per side [%(default)s]"
    )
    parser.add_argument("--history", metavar="URL", help=history.HELP)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if len(args.rules) != 2:
        raise UserError(f"give --rules twice (OLD, then NEW), got {len(args.rules)}")
    if args.sample < 0:
        raise UserError("--sample must be 0 or more")
    decide_from = checked_from(args.decide_from, args.until)
    old_rules, new_rules = (_load(path) for path in args.rules)
    sent = warm_sent(args.sent_log, [old_rules, new_rules], decide_from)
    profiles = _profiles(args.customers)
    policy, copied = (
        history.history_policies(args.history, [old_rules, new_rules])
        if args.history
        else (build_policy, None)
    )
    started = time.perf_counter(), time.process_time()
    try:
        both = replay_both(
            old_rules, new_rules, profiles, args.events, args.until, policy, decide_from, sent
        )
    except OSError as exc:
        raise UserError(f"cannot read {exc.filename}: {exc.strerror or exc}") from None
    rule_ids = ([r.rule_id for r in old_rules.rules], [r.rule_id for r in new_rules.rules])
    result = compare(both.old, both.new, rule_ids, args.sample)
    fed = both.fed_back if sent is not None else (None, None)
    old_warm, new_warm = map(partial(warm_up_json, decide_from), both.warmed_up, fed)
    result["input"] = {
        "events": both.events, "old_rules": args.rules[0], "new_rules": args.rules[1],
        "warm_up": {"old": old_warm, "new": new_warm} if decide_from is not None else None,
    }  # fmt: skip
    result["versions"] = {"old": old_rules.version, "new": new_rules.version}
    if copied is not None:
        result["history"] = copied
    wall, cpu = time.perf_counter() - started[0], time.process_time() - started[1]
    print(render(result, wall, cpu))
    _write(args, result)
    return 0


def _load(path: str) -> RulesFile:
    try:
        return load_rules(path)
    except RulesError as exc:
        problems = "; ".join(exc.readable()[:3]) + ("; ..." if len(exc.problems) > 3 else "")
        raise UserError(
            f"{exc.source}: invalid, {len(exc.problems)} problem(s): {problems}"
        ) from None


class Replayed(NamedTuple):
    """Both sides' decision records, the events replayed, each side's warm-up candidates and
    of those the ones `--sent-log` fed back."""

    old: list[dict]
    new: list[dict]
    events: int
    warmed_up: tuple[int, int]
    fed_back: tuple[int, int] = (0, 0)


def replay_both(
    old_rules: RulesFile,
    new_rules: RulesFile,
    profiles: dict[str, CustomerProfile],
    paths: Sequence[str],
    until: Any,
    policy: Callable[[RulesFile], ContactPolicy] = build_policy,
    decide_from: datetime | None = None,
    warm_sent: Logged | None = None,
) -> Replayed:
    """Both sides replayed; `policy` builds each side's contact policy (on a store of its
    own), `decide_from` is the warm-up's end and `warm_sent` its live offers (`Replay`)."""

    def side(rules: RulesFile) -> Replay:
        return Replay(
            rules, profiles, policy(rules), until, decide_from=decide_from, warm_sent=warm_sent
        )

    old = side(old_rules)
    if old_rules.engine != new_rules.engine:  # other watermark settings: stamp each side alone
        new = side(new_rules)
        (first, events), (second, _) = _records(old.outputs(paths)), _records(new.outputs(paths))
        return Replayed(
            first, second, events, (old.warmed_up, new.warmed_up), (old.fed_back, new.fed_back)
        )
    other = Shard(Engine(new_rules), policy(new_rules), profiles)
    other.decide_from, other.warm_sent = decide_from, warm_sent
    a: list[dict] = []
    b: list[dict] = []
    events = 0
    for batch in old.batches(paths):
        a += old.shard.process(batch).decision_records()
        b += other.process(batch).decision_records()
        events += len(batch.positions)
    a += old.shard.finish(until).decision_records()
    b += other.finish(until).decision_records()
    return Replayed(a, b, events, (old.warmed_up, other.warmed_up), (old.fed_back, other.fed_back))


def _records(outputs: Any) -> tuple[list[dict], int]:
    records: list[dict] = []
    events = 0
    for output in outputs:
        assert isinstance(output, ShardOutput)
        records += output.decision_records()
        events += output.events
    return records, events


def _write(args: argparse.Namespace, result: dict) -> None:
    from keymoment.desk.pages import compare_page

    write_json_and_html(args.json, args.html, result, compare_page)


def render(result: dict, wall: float, cpu: float) -> str:
    """What the operator reads: NEW with its change from OLD, per rule, campaign, cap, winner."""
    old, new = result["sides"]["old"], result["sides"]["new"]
    v = result["versions"]
    lines = [
        f"compared rules version {v['old']} (old) with {v['new']} (new) on "
        f"{result['input']['events']:,} events in {wall:.1f}s ({cpu:.1f}s CPU)",
        "candidates and outcomes by rule, new (change from old):",
        _by_rule(old["by_rule"], new["by_rule"]),
        "sent by campaign and channel, new (change from old):",
        _pairs(old["sent_by_campaign"], new["sent_by_campaign"], ("campaign", "channel")),
        "cap refusals, new (change from old):",
        _flat(old["cap_refusals"], new["cap_refusals"], "cap"),
        "arbitration losses by winner, new (change from old):",
        _flat(old["arbitration_losses"], new["arbitration_losses"], "winner"),
    ]
    warm = result["input"].get("warm_up")
    if warm is not None:
        counts = f"{warm['old']['candidates']:,} (old) and {warm['new']['candidates']:,} (new)"
        fed = None
        if "sent_fed_back" in warm["old"]:
            fed = (
                f"{warm['old']['sent_fed_back']:,} (old) and {warm['new']['sent_fed_back']:,} (new)"
            )
        lines.insert(1, warm_up_line(warm["old"]["from"], counts, fed))
    lines += _customers(result["customers"])
    lines.append("candidates whose outcome changed (old->new):")
    changed = result["changed"]
    lines.append(text_table(["change", "candidates"], [[k, n(c)] for k, c in changed.items()]))
    if not changed:
        lines.append("  none: every candidate has the same outcome on both sides")
    return "\n".join(lines)


def _by_rule(old: dict, new: dict) -> str:
    outcomes = list(dict.fromkeys(o for side in (old, new) for r in side.values() for o in r))
    used = [o for o in outcomes if any(side.get(r, {}).get(o) for side in (old, new) for r in side)]
    rows = []
    for rule in dict.fromkeys([*old, *new]):
        a, b = old.get(rule, {}), new.get(rule, {})
        row = [rule, change(sum(a.values()), sum(b.values()))]
        rows.append(row + [change(a.get(o, 0), b.get(o, 0)) for o in used])
    return text_table(["rule", "candidates", *used], rows)


def _pairs(old: dict, new: dict, names: tuple[str, str]) -> str:
    rows = []
    for outer in sorted({*old, *new}):
        a, b = old.get(outer, {}), new.get(outer, {})
        rows += [
            [outer, inner, change(a.get(inner, 0), b.get(inner, 0))] for inner in sorted({*a, *b})
        ]
    return text_table([*names, "sent"], rows, left=2)


def _flat(old: dict, new: dict, name: str) -> str:
    keys = sorted({*old, *new}, key=lambda k: -new.get(k, 0))
    if not keys:
        return "  none on either side"
    return text_table([name, "count"], [[k, change(old.get(k, 0), new.get(k, 0))] for k in keys])


def _customers(c: dict) -> list[str]:
    lines = [
        f"customers contacted: only by old {c['only_old']:,}, only by new {c['only_new']:,}, "
        f"by both {c['both']:,}",
        f"customers sent an offer old did not send: {c['gained_offer']:,}; "
        f"customers not sent an offer old sent: {c['lost_offer']:,}",
    ]
    for side in ("old", "new"):
        sample = c[f"sample_only_{side}"]
        if sample:
            lines.append(f"  only by {side}, e.g.: {', '.join(sample)}")
    return lines
