"""Suppression lists (semantics section 4.1): files re-read when they change, and Redis sets.

A customer is suppressed for a campaign when any of `do_not_contact` or the
campaign's own `lists` holds them, in any source. Files are checked for a
change (mtime, size, inode) at most every `check_every` seconds and re-read
whole, so an operator's edit takes effect without a restart. A file that
cannot be read keeps its last good contents (deleting a list by accident
must not release everyone on it) and the failure is counted; a list that was
never read holds everyone (fail closed: nobody is contacted for the campaigns
that name it until it can be read).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

DO_NOT_CONTACT = "do_not_contact"


class ListSource(Protocol):
    """Named sets of customer ids; raises `CapStoreUnavailable` when it cannot answer."""

    def members(self, names: Sequence[str], customer_ids: Sequence[str]) -> dict[str, set[str]]: ...


def parse_list(text: str) -> frozenset[str]:
    """One customer_id per line; `#` starts a comment (anywhere); blank lines are ignored."""
    ids = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return frozenset(i for i in ids if i)


class FileLists:
    """The rules file's `lists:` as files, reloaded when they change."""

    def __init__(
        self,
        paths: Mapping[str, Path],
        *,
        check_every: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.paths = dict(paths)
        self.check_every = check_every
        self.monotonic = monotonic
        self.counters = {"list_reloads": 0, "list_read_errors": 0}
        self._stamps: dict[str, tuple[int, int, int] | None] = {name: None for name in paths}
        self._sets: dict[str, frozenset[str] | None] = {name: None for name in paths}
        self._checked_at = float("-inf")
        self.refresh(force=True)

    @property
    def names(self) -> list[str]:
        """The lists this source holds (a file not read yet holds everyone)."""
        return list(self._sets)

    def members(self, names: Sequence[str], customer_ids: Sequence[str]) -> dict[str, set[str]]:
        found = self.holding(names, customer_ids)
        return {n: set(found.get(n, ())) for n in names}

    def holding(
        self, names: Sequence[str], customer_ids: Sequence[str]
    ) -> dict[str, set[str] | frozenset[str]]:
        """`members` without the empty sets: what `Suppression.lookup` reads per decide."""
        self.refresh()
        found = {}
        for name in names:
            if name not in self._sets:
                continue
            held = self._sets[name]
            members = set(customer_ids) if held is None else held.intersection(customer_ids)
            if members:
                found[name] = members
        return found

    def holds(self, name: str, customer_id: str) -> bool:
        """Whether the list `name` holds the customer (a list never read holds everyone)."""
        if name not in self._sets:
            return False
        held = self._sets[name]
        return held is None or customer_id in held

    def refresh(self, force: bool = False) -> None:
        """Re-read the lists whose file changed, at most every `check_every` seconds."""
        now = self.monotonic()
        if not force and now - self._checked_at < self.check_every:
            return
        self._checked_at = now
        for name, path in self.paths.items():
            self._reload_if_changed(name, path)

    def _reload_if_changed(self, name: str, path: Path) -> None:
        try:
            stat = os.stat(path)
            stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            if stamp == self._stamps[name]:
                return
            self._sets[name] = parse_list(path.read_text(encoding="utf-8"))
            self._stamps[name] = stamp
            self.counters["list_reloads"] += 1
        except (OSError, UnicodeDecodeError):
            self.counters["list_read_errors"] += 1


class FixedLists(FileLists):
    """Named sets fixed at start and asked like the files: a backtest's copy of the
    Redis-held lists (`backtest --history`, state/history_copy.py)."""

    def __init__(self, sets: Mapping[str, frozenset[str]]) -> None:
        super().__init__({})
        self._sets.update(sets)


class Suppression:
    """Which list, if any, suppresses each candidate, over every source."""

    def __init__(self, sources: Sequence[ListSource], campaign_lists: Mapping[str, Sequence[str]]):
        self.sources = list(sources)
        self.campaign_lists = {c: [DO_NOT_CONTACT, *names] for c, names in campaign_lists.items()}
        self.names = sorted({n for names in self.campaign_lists.values() for n in names})

        # whether a source other than files is consulted (Redis sets: it can be unavailable)
        self.remote = any(not isinstance(s, FileLists) for s in self.sources)
        # files that hold no list at all (a rules file without `lists:`) are not asked
        self._asked = [s for s in self.sources if not isinstance(s, FileLists) or s.names]
        self.asks = bool(self._asked)  # False: `lookup` always answers {}
        self._files = [s for s in self._asked if isinstance(s, FileLists)]

    def lookup(self, customer_ids: Sequence[str]) -> dict[str, set[str]]:
        """customer_id -> the list names that hold them (only listed customers appear)."""
        unique = sorted(set(customer_ids)) if len(customer_ids) > 1 else customer_ids
        found: dict[str, set[str]] = {}
        for source in self._asked:
            lists = source.holding if isinstance(source, FileLists) else source.members
            for name, members in lists(self.names, unique).items():
                for customer_id in members:
                    found.setdefault(customer_id, set()).add(name)
        return found

    def first_in_files(self, campaign_id: str, customer_id: str) -> str | None:
        """`first_list` of `lookup([customer_id])` when every source is a file (not `remote`).

        The policy's one-candidate path (`RulesContactPolicy._one`): the same refresh per
        source, then a membership test per list name instead of sets per name and id.
        """
        for source in self._files:
            source.refresh()
        for name in self.campaign_lists[campaign_id]:
            for source in self._files:
                if source.holds(name, customer_id):
                    return name
        return None

    def first_list(self, campaign_id: str, listed: set[str]) -> str | None:
        """The first of do_not_contact and the campaign's lists that holds the customer."""
        return next((n for n in self.campaign_lists[campaign_id] if n in listed), None)
