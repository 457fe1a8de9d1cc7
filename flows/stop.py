"""Ending a live flow cleanly on Ctrl-C or SIGTERM: its sources stop, the dataflow drains.

A KeyboardInterrupt raised inside a Bytewax callback becomes a Rust panic and
a traceback. So `keymoment run` installs signal handlers that only set an
event, and wraps each source so that its partitions end (StopIteration) at
their next batch once the event is set: Bytewax then finishes the batches in
flight, flushes the sinks and returns from `cli_main` as at the end of input.
A second signal ends the process at once.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

from bytewax.inputs import FixedPartitionedSource, Source

from .observe import StoppableSource

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class Stop:
    """The stop request: which signal asked for it (None while running)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal: signal.Signals | None = None

    def install(self) -> None:
        for sig in EXIT_CODES:
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.event.is_set():  # asked twice: do not wait for the drain
            os._exit(EXIT_CODES.get(signal.Signals(signum), 1))
        self.signal = signal.Signals(signum)
        self.event.set()
        print(
            f"\nkeymoment run: {self.signal.name} received, stopping the sources "
            "(again to quit at once)",
            file=sys.stderr,
            flush=True,
        )

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.signal, 0) if self.signal is not None else 0


def stoppable(sources: list[Source], stop: Stop) -> list[Source]:
    """Each fixed-partition source wrapped so that its partitions end once `stop` is set."""
    return [
        StoppableSource(s, stop.event) if isinstance(s, FixedPartitionedSource) else s
        for s in sources
    ]
