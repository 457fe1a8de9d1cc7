"""The backtest's end-of-run summary and its progress line: counts only, never amounts or ids."""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from keymoment.config import RulesFile
from keymoment.flows.shard import ShardOutput
from keymoment.policy.decision import OUTCOMES, Decision

PROGRESS_EVERY = 20_000


@dataclass
class Summary:
    """What the operator sees at the end: counts only, never amounts or ids."""

    lines: int = 0
    events: int = 0
    after_until: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    candidates: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    channels: Counter[tuple[str, str]] = field(default_factory=Counter)
    reasons: Counter[tuple[str, str]] = field(default_factory=Counter)
    started: float = field(default_factory=time.perf_counter)
    still_pending: int = 0

    def add(self, output: ShardOutput) -> None:
        """One driver call: its input records, dead letters and decisions."""
        self.lines += output.lines
        self.events += output.events
        for letter in output.dead_letters:
            self.dead_letters[letter["reason"]] += 1
        for decision in output.decisions:
            self.count(decision)

    def count(self, decision: Decision) -> None:
        rule = decision.candidate.rule_id
        self.candidates[rule] += 1
        self.outcomes[(rule, decision.outcome)] += 1
        if decision.outcome == "sent" and decision.channel:
            self.channels[(rule, decision.channel)] += 1
        elif decision.outcome not in ("sent", "control") and decision.reason:
            self.reasons[(decision.outcome, decision.reason)] += 1


class Progress:
    """A one-line progress report on a terminal, refreshed every PROGRESS_EVERY events."""

    def __init__(self) -> None:
        self.next_at = PROGRESS_EVERY

    def show(self, summary: Summary, fraction: float) -> None:
        if summary.events < self.next_at:
            return
        self.next_at += PROGRESS_EVERY
        elapsed = time.perf_counter() - summary.started
        print(
            f"\r  {fraction:5.1%}  {summary.events:,} events  {summary.events / elapsed:,.0f}/s  "
            f"{sum(summary.candidates.values()):,} candidates",
            end="",
            file=sys.stderr,
            flush=True,
        )

    def done(self) -> None:
        print("\r" + " " * 72 + "\r", end="", file=sys.stderr, flush=True)


def render(summary: Summary, rules: RulesFile, decisions_path: str) -> str:
    """The end-of-run summary as plain text tables."""
    elapsed = time.perf_counter() - summary.started
    rate = summary.events / elapsed if elapsed else 0.0
    dead = sum(summary.dead_letters.values())
    lines = [
        f"replayed {summary.events:,} events from {summary.lines:,} lines in {elapsed:.1f}s "
        f"({rate:,.0f} events/s), rules version {rules.version}",
    ]
    if summary.after_until:
        lines.append(f"skipped {summary.after_until:,} events after --until")
    lines.append(
        f"dead letters: {dead:,}"
        + "".join(f"\n  {reason:<24}{n:>10,}" for reason, n in summary.dead_letters.most_common())
    )
    lines.append(_rule_table(summary, rules))
    if summary.channels:
        lines.append(
            "sent by channel:"
            + "".join(
                f"\n  {rule:<20}{channel:<14}{n:>10,}"
                for (rule, channel), n in sorted(summary.channels.items())
            )
        )
    if summary.reasons:
        lines.append(
            "not sent, by reason:"
            + "".join(
                f"\n  {outcome:<18}{reason:<24}{n:>8,}"
                for (outcome, reason), n in summary.reasons.most_common()
            )
        )
    if summary.still_pending:
        lines.append(
            f"warning: {summary.still_pending:,} candidates still wait for the cap store "
            "and are not in the decision log"
        )
    lines.append(f"decision log: {decisions_path} ({sum(summary.candidates.values()):,} decisions)")
    return "\n".join(lines)


def _rule_table(summary: Summary, rules: RulesFile) -> str:
    shadow = any(o == "shadow" for _, o in summary.outcomes)
    outcomes = [o for o in OUTCOMES if o != "shadow" or shadow]  # a column only when used
    header = f"{'rule':<20}{'trigger':<19}{'candidates':>11}" + "".join(
        f"{o[:10]:>11}" for o in outcomes
    )
    rows = [header]
    for rule in rules.rules:
        row = f"{rule.rule_id:<20}{rule.trigger:<19}{summary.candidates[rule.rule_id]:>11,}"
        row += "".join(f"{summary.outcomes[(rule.rule_id, o)]:>11,}" for o in outcomes)
        rows.append(row)
    return "candidates and outcomes by rule:\n  " + "\n  ".join(rows)
