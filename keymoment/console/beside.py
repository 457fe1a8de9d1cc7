"""A console beside a flow in the same process (`keymoment demo`): fed directly, no stream.

The flow's results go to the console's tally through the flow's `observe`
hook, and the flow's own metrics listener (on a free loopback port) is the
one endpoint the console scrapes, so the page shows the pace, lag and
readiness panels too.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable
from typing import Any

from keymoment.flows.connect import rules_from
from keymoment.flows.instrument import Observability

from .serve import ConsoleServer, Options, credential, free_or_any


class Beside:
    """The console and the metrics listener that a demo runs next to its flow."""

    def __init__(self, console: ConsoleServer, observability: Observability) -> None:
        self.console, self.observability = console, observability

    @classmethod
    def start(cls, host: str, port: int, rules_path: str) -> Beside:
        rules = rules_from(rules_path)
        obs = Observability(0).start("127.0.0.1", 0, rules)
        assert obs.listener is not None
        token, made_here = credential(host)
        options = Options(
            decisions=None,
            metrics=[obs.listener.url],
            rules=rules,
            host=host,
            port=free_or_any(host, port),
        )
        return cls(ConsoleServer(options, token, made_here).start(), obs)

    def observer(self, also: Callable[[Any], None]) -> Callable[[Any], None]:
        """The flow's `observe` hook: `also` (the terminal view), then the console."""
        feed = self.console.feed

        def observe(out: Any) -> None:
            also(out)
            feed(out)

        return observe

    def linger(self, interactive: bool) -> None:
        """On a terminal, keep the page up after the run until Ctrl-C; then stop both."""
        if interactive:
            print(f"\nthe console stays up at {self.console.url} (Ctrl-C ends)", flush=True)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            with contextlib.suppress(KeyboardInterrupt):
                self.console.wait()
        self.console.close()
        self.observability.close()
