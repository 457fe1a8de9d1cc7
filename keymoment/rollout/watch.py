"""Where new rules come from while the engine runs: the rules file, or a Redis key.

`--rules rules.yaml` is polled (size and mtime first, so a poll costs a
`stat`); `--rules redis://host:6379/0?key=km:rules` reads one string key (GET
per poll). A Redis key rather than a Kafka topic: a rules file is one small
document of which only the newest version matters, which is exactly a key
(`redis-cli -x SET km:rules < rules.yaml`), while a topic would need
compaction and a read of its last record per poll; Redis is also already
the shared cap store. SIGHUP makes the next poll happen at once and read the
content even when the file looks unchanged.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

from keymoment.config import RulesError

from .versions import RulesVersion

FORCE = threading.Event()  # set by SIGHUP: check the rules source now


def install_sighup() -> None:
    """Route SIGHUP to a forced check (main thread only, as Python requires)."""
    signal.signal(signal.SIGHUP, lambda _sig, _frame: FORCE.set())


class Watch(Protocol):
    source: str
    path: str  # the format and the folder list paths resolve in

    def read(self, force: bool = False) -> bytes | None:
        """The content when it may have changed since the last read (or when forced)."""
        ...


class FileWatch:
    def __init__(self, path: str) -> None:
        self.source = self.path = path
        self._stamp: tuple[int, int] | None = None

    def read(self, force: bool = False) -> bytes | None:
        try:
            st = Path(self.path).stat()
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp == self._stamp and not force:
                return None
            text = Path(self.path).read_bytes()
        except OSError:
            return None  # mid-rename or removed: the version in force stays; try again later
        self._stamp = stamp
        return text


class RedisKeyWatch:
    """`redis://host:port/db?key=NAME[&format=json]`: list paths resolve in the working folder."""

    def __init__(self, url: str) -> None:
        import redis

        parts = urlsplit(url)
        query = parse_qs(parts.query)
        self.key = query.get("key", ["keymoment:rules"])[0]
        self.source = url
        self.path = "rules.json" if query.get("format", [""])[0] == "json" else "rules.yaml"
        self.client = redis.Redis.from_url(parts._replace(query="").geturl(), socket_timeout=2.0)

    def read(self, force: bool = False) -> bytes | None:
        import redis

        try:
            value = self.client.get(self.key)
        except redis.RedisError:
            return None
        return value if isinstance(value, bytes) else None


def initial_version(source: str) -> RulesVersion:
    """The version a run starts on, from a file or a Redis key (raises `RulesError`)."""
    watch = watch_for(source)
    text = watch.read(force=True)
    if text is None:
        raise RulesError(source, ["cannot read the rules (no such file or key, or no answer)"])
    return RulesVersion.parse(watch.source, text, watch.path)


def watch_for(source: str) -> Watch:
    if source.startswith(("redis://", "rediss://")):
        return RedisKeyWatch(source)
    return FileWatch(source.removeprefix("file:"))
