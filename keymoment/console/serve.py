"""Starting a console: followers, scraper, and uvicorn in a thread (for `console` and `demo`).

The credential is read from `KEYMOMENT_CONSOLE_TOKEN`. Without it the
console listens only on loopback, with a random token made for this run
and printed once as a login link (as Jupyter does), so nobody else on the
machine's network can read the page; a non-loopback address without the
variable is refused.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import uvicorn

from keymoment.config import RulesFile

from . import follow
from .app import build_app
from .scrape import Scraper
from .tally import Tally
from .view import Console

TOKEN_ENV = "KEYMOMENT_CONSOLE_TOKEN"


@dataclass
class Options:
    """What to follow and where to listen (the `console` command's flags)."""

    decisions: str | None  # None: fed in-process (`keymoment demo`, through `feed`)
    dead_letters: str | None = None
    audit: str | None = None
    conversions: str | None = None
    metrics: list[str] = field(default_factory=list)
    rules: RulesFile | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    start: str = "start"
    window: timedelta = timedelta(days=30)


def free_or_any(host: str, port: int) -> int:
    """`port` when nothing listens there yet, else 0 (the system picks a free one)."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return 0
    return port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def credential(host: str, environ: Mapping[str, str] | None = None) -> tuple[str, bool]:
    """(token, made_here): the variable's value, or a random one on loopback only."""
    token = (environ if environ is not None else os.environ).get(TOKEN_ENV, "")
    if token:
        return token, False
    if not is_loopback(host):
        raise ValueError(
            f"refusing to listen on {host} without a credential: set {TOKEN_ENV} "
            "(the page shows customer tokens)"
        )
    return secrets.token_urlsafe(18), True


class ConsoleServer:
    """A running console; `url` is where it listens, `login_url` carries a made-up token."""

    def __init__(self, options: Options, token: str, made_here: bool = False) -> None:
        for url in filter(
            None, (options.decisions, options.dead_letters, options.audit, options.conversions)
        ):
            follow.check(url)
        self.options, self.token, self.made_here = options, token, made_here
        self.tally = Tally()
        self.console = Console(
            self.tally,
            Scraper(options.metrics),
            options.rules,
            options.window,
            bool(options.conversions),
        )
        config = uvicorn.Config(
            build_app(self.console, token),
            host=options.host,
            port=options.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, name="keymoment-console", daemon=True
        )

    def start(self, timeout: float = 15.0) -> ConsoleServer:
        stop, o, t = self.console.stop, self.options, self.tally
        if o.decisions:
            follow.start_thread(o.decisions, o.start, t.decisions, stop)
        for url, deliver in (
            (o.dead_letters, t.dead_letters),
            (o.audit, t.audits),
            (o.conversions, t.add_conversions),
        ):
            if url:
                follow.start_thread(url, o.start, deliver, stop)
        self.console.scraper.start(stop)
        self.console.uplift_rows()  # imports the statistics libraries now, not on the first page
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise OSError(f"the console could not listen on {o.host}:{o.port}")
            time.sleep(0.02)
        return self

    @property
    def port(self) -> int:
        servers: Any = self.server.servers
        return servers[0].sockets[0].getsockname()[1] if servers else self.options.port

    @property
    def url(self) -> str:
        host = self.options.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}/"

    @property
    def login_url(self) -> str:
        return f"{self.url}?token={self.token}" if self.made_here else self.url

    def feed(self, out: Any) -> None:
        """The flow's own results (a `ShardOutput`), for a console beside the flow in-process."""
        if out.decisions:
            self.tally.decisions(out.decision_records())
        if out.dead_letters:
            self.tally.dead_letters(out.dead_letters)

    def wait(self) -> None:
        while self.thread.is_alive():
            self.thread.join(0.5)

    def close(self) -> None:
        self.console.stop.set()
        self.server.should_exit = True
        self.thread.join(10)
