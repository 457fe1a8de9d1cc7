"""`--rollout T=FILE` and `--rollout-log AUDIT` for `backtest` and `run --clock event`."""

from __future__ import annotations

import argparse

from keymoment.cli import UserError
from keymoment.config import RulesFile
from keymoment.flows.versioning import Versions

from .schedule import RolloutError, schedule
from .versions import RulesVersion


def add_rollout_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rollout",
        action="append",
        default=[],
        metavar="TIME=FILE",
        help="switch to FILE's rules when the watermark reaches TIME (RFC 3339); repeatable",
    )
    parser.add_argument(
        "--rollout-log",
        action="append",
        default=[],
        metavar="AUDIT",
        help="replay every reload an audit log (JSONL) records as applied, at its watermark",
    )


def versions_from(args: argparse.Namespace) -> Versions | None:
    """The shard's `Versions` for these arguments (None without any rollout)."""
    if not args.rollout and not args.rollout_log:
        return None
    try:
        switches = schedule(args.rollout, args.rollout_log)
    except RolloutError as exc:
        raise UserError(str(exc)) from None
    return Versions(RulesVersion.read(args.rules), switches)


def shown_rules(rules: RulesFile, versions: Versions | None) -> RulesFile:
    """For the summary: every rule of every version, and the versions with their times."""
    if versions is None:
        return rules
    seen = {r.rule_id for r in rules.rules}
    union = list(rules.rules)
    label = str(rules.version)
    for switch in versions.pending:
        union += [r for r in switch.version.rules.rules if r.rule_id not in seen]
        seen |= {r.rule_id for r in switch.version.rules.rules}
        at = switch.effective_at.isoformat().replace("+00:00", "Z")
        label += f", then {switch.version.version} from {at}"
    return rules.model_copy(update={"rules": union, "version": label})
