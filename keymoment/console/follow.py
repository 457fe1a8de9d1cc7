"""Following a stream of JSON records: a JSONL file as it grows, a Kafka topic, a Redis Stream.

Kafka and Redis are read through the flow's own sources
(`keymoment.connectors.urls.source_from_url`, with `tail`), driven here by
hand instead of by Bytewax: the console reads what `keymoment run` wrote
with the same wire code. A file is tailed by this module (the flow's file
source ends at the end of the file): it may not exist yet when the console
starts (the flow creates it), a line being written is kept until its newline
arrives, and a file that shrinks (rewritten from the start) is read again.
`start="now"` skips what is already there.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, urlsplit

import orjson

from keymoment.connectors import urls
from keymoment.connectors.lines import payloads_in
from keymoment.connectors.urlparts import safe

log = logging.getLogger(__name__)
Deliver = Callable[[list[dict]], None]
STARTS = {"kafka": {"start": "earliest", "now": "latest"}, "redis": {"start": "0", "now": "$"}}


def records(payloads: list[bytes]) -> list[dict]:
    """JSON objects among the payloads; anything else is skipped (it is not a decision)."""
    out = []
    for raw in payloads:
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def file_path(url: str) -> Path | None:
    """The path of a `file:` URL or a bare path; None for a URL of another scheme."""
    scheme = urlsplit(url).scheme
    if scheme == "file":
        return Path(url.removeprefix("file://").removeprefix("file:"))
    return Path(url) if scheme in ("",) or len(scheme) == 1 else None  # C:\ on Windows


def with_start(url: str, start: str) -> str:
    """The URL with the start position `start` asks for, unless it names one itself."""
    scheme = urlsplit(url).scheme
    if scheme not in STARTS or "start" in parse_qs(urlsplit(url).query):
        return url
    return f"{url}{'&' if '?' in url else '?'}start={STARTS[scheme][start]}"


def check(url: str) -> None:
    """Raise ValueError (one line) for a URL the console cannot follow."""
    if file_path(url) is not None:
        return
    urls.source_from_url(with_start(url, "now"), check=True)


class FileTail:
    """A JSONL file read as it grows (see the module docstring)."""

    def __init__(self, path: Path, start: str) -> None:
        self.path, self.skip = path, start == "now"
        self.handle: IO[bytes] | None = None
        self.partial = b""

    def poll(self, limit: int = 5000) -> list[bytes]:
        if self.handle is None and not self._open():
            return []
        assert self.handle is not None
        if self.path.stat().st_size < self.handle.tell():  # rewritten: read it again
            self.handle.seek(0)
            self.partial = b""
        lines = self.handle.readlines(limit * 200)
        if lines and self.partial:
            lines[0] = self.partial + lines[0]
            self.partial = b""
        if lines and not lines[-1].endswith(b"\n"):
            self.partial = lines.pop()
        return [line for line in lines if not line.isspace()]

    def _open(self) -> bool:
        try:
            self.handle = open(self.path, "rb")  # noqa: SIM115 - closed in close()
        except FileNotFoundError:
            return False
        if self.skip:
            self.handle.seek(0, 2)
        return True

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


class SourceTail:
    """Every partition of a Kafka or Redis source URL, read in turn."""

    def __init__(self, url: str, start: str) -> None:
        source: Any = urls.source_from_url(with_start(url, start), check=True)
        self.parts = [source.build_part("console", p, None) for p in source.list_parts()]

    def poll(self, limit: int = 5000) -> list[bytes]:
        out: list[bytes] = []
        for part in list(self.parts):
            try:
                out += payloads_in(part.next_batch())
            except StopIteration:
                part.close()
                self.parts.remove(part)
        return out

    def close(self) -> None:
        for part in self.parts:
            part.close()


def open_tail(url: str, start: str) -> FileTail | SourceTail:
    """The reader for `url`; a Kafka or Redis start position is fixed here, before returning."""
    path = file_path(url)
    return FileTail(path, start) if path is not None else SourceTail(url, start)


def follow(
    tail: FileTail | SourceTail, deliver: Deliver, stop: threading.Event, idle: float = 0.1
) -> None:
    """Poll `tail` until `stop`, handing each poll's records to `deliver`; waits `idle` when dry."""
    try:
        while not stop.is_set():
            payloads = tail.poll()
            if payloads:
                deliver(records(payloads))
            else:
                stop.wait(idle)
    finally:
        tail.close()


def start_thread(url: str, start: str, deliver: Deliver, stop: threading.Event) -> threading.Thread:
    """Open `url` now (errors raise here), then follow it in a daemon thread that logs a failure."""
    tail = open_tail(url, start)

    def run() -> None:
        try:
            follow(tail, deliver, stop)
        except Exception as exc:
            log.error("console: stopped following %s: %s", safe(url), exc)

    thread = threading.Thread(target=run, name=f"follow {safe(url)}", daemon=True)
    thread.start()
    return thread


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    """For callers that need a follower to have caught up (tests, the benchmark)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()
