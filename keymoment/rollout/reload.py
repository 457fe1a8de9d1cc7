"""Deciding one reload attempt: validate whole, refuse what may not replace the version in force.

`Reloader.consider` is pure apart from its own memory (the version in force
and the last content seen), so the live source, the tests and the cost
measurement all drive the same decisions with their own clocks.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from keymoment.config import RulesError, RulesFile, parse_rules

from .audit import record
from .diff import refusals
from .versions import RulesVersion, Switch, digest_of


class Reloader:
    """Turns new content of the rules source into a `Switch` and an audit record."""

    def __init__(
        self, current: RulesVersion, lead: timedelta, lateness: timedelta, process: dict[str, Any]
    ) -> None:
        self.current, self.lead, self.lateness, self.process = current, lead, lateness, process
        self.seen = current.digest
        self.failures = 0

    def consider(
        self, text: bytes, now: datetime, force: bool = False
    ) -> tuple[Switch | None, dict[str, Any] | None]:
        """(the switch to schedule or None, the audit record or None when nothing was new).

        A valid new version takes effect at watermark `now - lateness + lead`: far
        enough ahead that every shard of every process has it before its watermark
        gets there, so all of them switch at the same watermark rise.
        """
        digest = digest_of(text)
        if digest == self.seen and not force:
            return None, None
        self.seen = digest
        current = self.current
        try:
            new = parse_rules(current.source, text, Path(current.path))
        except RulesError as exc:
            return None, self._record(now, text, None, exc.problems, None)
        if new == current.rules:
            return None, self._record(now, text, new, [], None)
        problems = refusals(current.rules, new)
        at = now - self.lateness + self.lead
        rec = self._record(now, text, new, problems, at)
        if problems:
            return None, rec
        self.current = RulesVersion(new, text, current.source, current.path)
        return Switch(at, self.current), rec

    def _record(
        self,
        now: datetime,
        text: bytes,
        new: RulesFile | None,
        problems: list[str],
        at: datetime | None,
    ) -> dict[str, Any]:
        if problems:
            self.failures += 1
        return record(
            at=now,
            source=self.current.source,
            text=text,
            current=self.current,
            new=new,
            problems=problems,
            effective_at=at,
            process=self.process,
        )
