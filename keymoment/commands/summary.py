"""The backtest's end-of-run summary and its progress line: counts only, never amounts or ids."""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter
from typing import Any

from keymoment.config import RulesFile
from keymoment.flows.shard import ShardOutput
from keymoment.policy.decision import OUTCOMES

from .tables import text_table

PROGRESS_EVERY = 20_000


Decided = tuple[str, str, str | None, str | None]  # rule, outcome, channel, reason
_DECIDED = attrgetter("candidate.rule_id", "outcome", "channel", "reason")


@dataclass
class Summary:
    """What the operator sees at the end: counts only, never amounts or ids.

    Decisions are counted by (rule, outcome, channel, reason) in C (`Counter.update`
    over an `attrgetter`: 0.3 us a decision against 1 us for four counters in
    Python); the tables' counts are sums of those, made when read.
    """

    lines: int = 0
    events: int = 0
    after_until: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    decided: Counter[Decided] = field(default_factory=Counter)
    started: float = field(default_factory=time.perf_counter)
    still_pending: int = 0
    warm_up: dict | None = None  # `--from`: `warm_up_json`

    def add(self, output: ShardOutput) -> None:
        """One driver call: its input records, dead letters and decisions."""
        self.lines += output.lines
        self.events += output.events
        for letter in output.dead_letters:
            self.dead_letters[letter["reason"]] += 1
        self.decided.update(map(_DECIDED, output.decisions))

    @property
    def candidates(self) -> Counter[str]:
        """Candidates by rule."""
        return _sums((rule, n) for (rule, _, _, _), n in self.decided.items())

    @property
    def outcomes(self) -> Counter[tuple[str, str]]:
        """Candidates by rule and outcome."""
        return _sums(((rule, outcome), n) for (rule, outcome, _, _), n in self.decided.items())

    @property
    def channels(self) -> Counter[tuple[str, str]]:
        """Sent offers by rule and channel."""
        return _sums(
            ((rule, channel), n)
            for (rule, outcome, channel, _), n in self.decided.items()
            if outcome == "sent" and channel
        )

    @property
    def reasons(self) -> Counter[tuple[str, str]]:
        """Candidates neither sent nor held out, by outcome and reason."""
        return _sums(
            ((outcome, reason), n)
            for (_, outcome, _, reason), n in self.decided.items()
            if outcome not in ("sent", "control") and reason
        )


def _sums(counts: Iterable[tuple[Any, int]]) -> Counter:
    total: Counter = Counter()
    for key, n in counts:
        total[key] += n
    return total


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
    """The end-of-run summary as plain text tables, and a warning when nothing could be sent."""
    elapsed = time.perf_counter() - summary.started
    rate = summary.events / elapsed if elapsed else 0.0
    dead = sum(summary.dead_letters.values())
    lines = [
        f"replayed {summary.events:,} events from {summary.lines:,} lines in {elapsed:.1f}s "
        f"({rate:,.0f} events/s), rules version {rules.version}",
    ]
    if summary.after_until:
        lines.append(f"skipped {summary.after_until:,} events after --until")
    if summary.warm_up is not None:
        warm = summary.warm_up
        fed = f"{warm['sent_fed_back']:,}" if "sent_fed_back" in warm else None
        lines.append(warm_up_line(warm["from"], f"{warm['candidates']:,}", fed))
    lines.append(f"dead letters: {dead:,}")
    if dead:
        lines.append(_counts(["reason", "events"], summary.dead_letters.most_common()))
    lines.append("candidates and outcomes by rule:")
    lines.append(_rule_table(summary, rules))
    if summary.channels:
        rows = [[r, c, f"{n:,}"] for (r, c), n in sorted(summary.channels.items())]
        lines += ["sent by channel:", text_table(["rule", "channel", "sent"], rows, left=2)]
    if summary.reasons:
        rows = [[o, r, f"{n:,}"] for (o, r), n in summary.reasons.most_common()]
        lines += [
            "not sent, by reason:",
            text_table(["outcome", "reason", "candidates"], rows, left=2),
        ]
    lines += warnings(summary)
    lines.append(f"decision log: {decisions_path} ({sum(summary.candidates.values()):,} decisions)")
    return "\n".join(lines)


def warm_up_json(
    decide_from: datetime | None, candidates: int, fed_back: int | None = None
) -> dict | None:
    """`--json`'s `warm_up` (docs/desk.md): until when, the candidates not decided, and with
    `--sent-log` how many of them the live log says were sent (fed back to the engine)."""
    if decide_from is None:
        return None
    out: dict = {"from": decide_from.isoformat().replace("+00:00", "Z"), "candidates": candidates}
    if fed_back is not None:
        out["sent_fed_back"] = fed_back
    return out


def warm_up_line(at: str, candidates: str, fed_back: str | None = None) -> str:
    """`--from`'s summary line; `candidates` is the count (`compare`: a count per side)."""
    line = (
        f"warm-up: the events before {at} (--from) built the rules' state; "
        f"{candidates} candidates they triggered were not decided"
    )
    if fed_back is not None:
        line += f", of which {fed_back} the live log sent (fed back: --sent-log)"
    return line


def warnings(summary: Summary) -> list[str]:
    """Runs that would send nothing, or wait: said plainly at the end."""
    out = []
    total = sum(summary.candidates.values())
    no_profile = summary.reasons[("no_channel", "no_profile")]
    if total and no_profile * 2 >= total:
        out.append(
            f"warning: {no_profile:,} of {total:,} candidates have no customer reference data "
            "(no_channel, no_profile), so no consent is known and nothing is sent to them: "
            "give --customers"
        )
    if summary.still_pending:
        out.append(
            f"warning: {summary.still_pending:,} candidates still wait for the cap store "
            "and are not in the decision log"
        )
    return out


def _counts(headers: list[str], items: list[tuple[str, int]]) -> str:
    return text_table(headers, [[k, f"{n:,}"] for k, n in items])


def _rule_table(summary: Summary, rules: RulesFile) -> str:
    counts, candidates = summary.outcomes, summary.candidates
    used = {o for _, o in counts}
    outcomes = [o for o in OUTCOMES if o != "shadow" or o in used]  # shadow only when used
    rows = [
        [
            rule.rule_id,
            rule.trigger,
            f"{candidates[rule.rule_id]:,}",
            *(f"{counts[(rule.rule_id, o)]:,}" for o in outcomes),
        ]
        for rule in rules.rules
    ]
    return text_table(["rule", "trigger", "candidates", *outcomes], rows, left=2)
