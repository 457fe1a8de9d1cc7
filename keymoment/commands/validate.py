"""`keymoment validate RULES`: check a rules file whole, name every problem by its path."""

from __future__ import annotations

import argparse

from keymoment.config import RulesError, load_rules


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("validate", help="check a rules file and list every problem")
    parser.add_argument("rules", help="rules file (YAML or JSON)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        rules = load_rules(args.rules)
    except RulesError as exc:
        print(f"{exc.source}: invalid, {len(exc.problems)} problem(s)")
        for problem in exc.readable():
            print(f"  {problem}")
        return 1
    by_trigger: dict[str, int] = {}
    for rule in rules.rules:
        by_trigger[rule.trigger] = by_trigger.get(rule.trigger, 0) + 1
    summary = ", ".join(f"{n} {t}" for t, n in by_trigger.items())
    print(
        f"{args.rules}: valid (version {rules.version}): {len(rules.rules)} rules ({summary}), "
        f"{len(rules.campaigns)} campaigns, {len(rules.caps)} caps, {len(rules.lists)} lists"
    )
    return 0
