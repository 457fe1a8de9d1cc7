"""One audit record per reload attempt (issue 10): what changed, what happened, where.

Records are plain JSON objects written through the ordinary sink URLs
(`--audit file:audit.jsonl`, `kafka://...`, `redis://...?stream=...`). An
applied record carries the file's exact content, so `--rollout-log AUDIT`
can replay what the live engine decided, decision for decision.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime
from typing import Any

from keymoment.config import RulesFile

from .diff import RulesDiff, diff
from .versions import RulesVersion, digest_of

APPLIED, REJECTED, UNCHANGED = "applied", "rejected", "unchanged"


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def process_info() -> dict[str, Any]:
    """The process that read and decided the reload (the rules source's, in a cluster)."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def record(
    *,
    at: datetime,
    source: str,
    text: bytes,
    current: RulesVersion,
    new: RulesFile | None,
    problems: list[str],
    effective_at: datetime | None,
    process: dict[str, Any],
) -> dict[str, Any]:
    """The audit record of one attempt; `new` is None when the file could not be validated."""
    change = diff(current.rules, new) if new is not None else None
    result = REJECTED if problems else UNCHANGED if new == current.rules else APPLIED
    out: dict[str, Any] = {
        "event": "rules_reload",
        "at": iso(at),
        "source": source,
        "digest": digest_of(text),
        "from_version": current.version,
        "to_version": new.version if new is not None else None,
        "result": result,
        "effective_at": iso(effective_at) if effective_at and result == APPLIED else None,
        "problems": problems,
        "process": process,
    }
    if change is not None:
        out.update(changes(change))
    if result == APPLIED:
        out["content"] = text.decode("utf-8", "replace")
    return out


def changes(change: RulesDiff) -> dict[str, Any]:
    """added / removed / changed rules (each changed parameter with old and new) and sections."""
    return {
        "added": change.by_kind("added"),
        "removed": change.by_kind("removed"),
        "changed": [
            {
                "rule_id": r.rule_id,
                "kind": r.kind,
                "params": {k: {"old": a, "new": b} for k, (a, b) in r.changes.items()},
            }
            for r in change.rules
            if r.kind not in ("added", "removed", "unchanged")
        ],
        "sections": {k: {"old": a, "new": b} for k, (a, b) in change.sections.items()},
    }


def log_line(rec: dict[str, Any]) -> str:
    """The one line an operator reads in the log (no customer data is ever in a rules file)."""
    to = rec["to_version"] if rec["to_version"] is not None else "(invalid)"
    head = f"rules {rec['source']}: version {rec['from_version']} -> {to}"
    if rec["result"] == REJECTED:
        return f"{head} REJECTED, still on {rec['from_version']}: " + "; ".join(rec["problems"])
    if rec["result"] == UNCHANGED:
        return f"{head}: same content, nothing to do"
    kinds = [f"{c['rule_id']} ({c['kind']})" for c in rec["changed"]]
    parts = [f"+{a}" for a in rec["added"]] + [f"-{r}" for r in rec["removed"]] + kinds
    parts += [f"{name} changed" for name in rec["sections"]]
    return f"{head} applied at watermark {rec['effective_at']}: " + (", ".join(parts) or "-")
