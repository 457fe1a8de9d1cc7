"""The engine's pace, lag and readiness, read from each process's `/metrics` and `/readyz`.

Every few seconds each endpoint is scraped and parsed with prometheus_client's
own text parser; the pace is the change of the counters between two scrapes.
An endpoint that does not answer is shown as down with the reason, never
raised.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

WANTED = {
    "keymoment_input_records_total": "records",
    "keymoment_decisions_total": "decisions",
    "keymoment_dead_letters_total": "dead",
    "keymoment_watermark_lag_seconds": "lag",
    "keymoment_candidates_parked": "parked",
}


@dataclass
class Process:
    """What one endpoint said last, and the pace since the scrape before."""

    url: str
    up: bool = False
    ready: bool = False
    reasons: list[str] = field(default_factory=list)
    values: dict[str, float] = field(default_factory=dict)
    rates: dict[str, float] = field(default_factory=dict)
    processes: list[str] = field(default_factory=list)
    version: str | None = None
    at: float | None = None


def base_url(url: str) -> str:
    """`host:port`, `http://host:port` or `.../metrics` -> `http://host:port`."""
    url = url if "://" in url else f"http://{url}"
    return url.rstrip("/").removesuffix("/metrics")


def parse(text: str) -> tuple[dict[str, float], list[str], str | None]:
    """Sums of the wanted series (lag: the largest), the process labels, the rules version."""
    values: dict[str, float] = {}
    processes: set[str] = set()
    version = None
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if "process" in s.labels:
                processes.add(s.labels["process"])
            if s.name == "keymoment_rules_info":
                version = s.labels.get("version")
            name = WANTED.get(s.name)
            if name == "lag":
                values[name] = max(values.get(name, s.value), s.value)
            elif name is not None:
                values[name] = values.get(name, 0.0) + s.value
    return values, sorted(processes), version


def _get(url: str, timeout: float) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - http(s) only
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def scrape(
    proc: Process, clock: Callable[[], float] = time.monotonic, timeout: float = 2.0
) -> None:
    """One scrape of `/metrics` and `/readyz` into `proc`."""
    try:
        _status, text = _get(proc.url + "/metrics", timeout)
        code, ready = _get(proc.url + "/readyz", timeout)
    except (OSError, ValueError) as exc:
        proc.up, proc.ready, proc.reasons = False, False, [f"unreachable: {exc}"]
        return
    now = clock()
    values, proc.processes, proc.version = parse(text)
    if proc.at is not None and now > proc.at:
        dt = now - proc.at
        proc.rates = {k: max(v - proc.values.get(k, 0.0), 0.0) / dt for k, v in values.items()}
    proc.values, proc.at, proc.up = values, now, True
    proc.ready = code == 200
    proc.reasons = [] if proc.ready else ready.splitlines()[1:] or [f"HTTP {code}"]


class Scraper:
    """Scrapes every endpoint every `every` seconds in a daemon thread."""

    def __init__(self, urls: list[str], every: float = 2.0) -> None:
        self.processes = [Process(base_url(u)) for u in urls]
        self.every = every

    def start(self, stop: threading.Event) -> None:
        if self.processes:
            threading.Thread(target=self._loop, args=(stop,), daemon=True).start()

    def _loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            for proc in self.processes:
                scrape(proc)
            stop.wait(self.every)
