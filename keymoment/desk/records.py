"""Reading decision logs and event files as dicts: gzip by suffix, wrong files named in one line."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

import orjson

DECISION_FIELDS = ("rule_id", "campaign_id", "customer_id", "outcome", "triggered_at")


class InputError(Exception):
    """A file that cannot be read or is not what the option expects: one line for the user."""


@dataclass
class Skipped:
    """Lines a reader passed over, by file, so a command can warn instead of guessing."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, path: str) -> None:
        self.counts[path] = self.counts.get(path, 0) + 1

    def total(self) -> int:
        return sum(self.counts.values())


def jsonl(path: str, skipped: Skipped | None = None) -> Iterator[dict]:
    """Each JSON object of a JSONL file (.gz ok); lines that are not objects are counted."""
    try:
        handle = gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")  # noqa: SIM115
        with handle:
            for line in handle:
                if not line.strip():
                    continue
                record = _object(line)
                if record is None:
                    if skipped is not None:
                        skipped.add(path)
                    continue
                yield record
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None


def _object(line: bytes) -> dict | None:
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None


def decisions(paths: list[str], skipped: Skipped | None = None) -> Iterator[dict]:
    """Decision-log records; a file whose first object is not one is named as the wrong file."""
    for path in paths:
        first = True
        for record in jsonl(path, skipped):
            if first and not all(k in record for k in DECISION_FIELDS):
                missing = [k for k in DECISION_FIELDS if k not in record]
                raise InputError(
                    f"{path} is not a decision log (its first record has no {', '.join(missing)})"
                )
            first = False
            if all(isinstance(record.get(k), str) for k in DECISION_FIELDS):
                yield record
            elif skipped is not None:
                skipped.add(path)


def when(text: str) -> datetime:
    """An RFC 3339 time as written in the decision log (`Z` or an offset)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
