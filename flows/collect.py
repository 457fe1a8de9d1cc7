"""The garbage-collection policies of the drivers: the live flow's, and a replay's.

The live flow (`--clock wall`) protects its latency with `YOUNG_GC`. A
replay (the backtest, `run --clock event`) has only throughput to protect,
and uses `FrozenGc` with automatic collections off (`no_automatic_gc`).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager


class YoungGc:
    """Keeps Python's cyclic GC off the engine state: collect the young, freeze the survivors.

    The engine holds millions of long-lived objects (100k customers); left to
    itself the collector rescans all of them in full collections whenever
    the heap grows by a quarter, pausing the flow for 0.3-0.6 s each
    (measured: 6 s of a 15 s live run at 10k events/s, p99 680 ms; after
    this, p99 18 ms). Every `every` seconds this collects the two young
    generations (cycles that became garbage since the last pass) and
    `gc.freeze()`s what survived, so automatic collections only see objects
    younger than that. Frozen objects are still freed by reference counting;
    only a reference cycle that becomes garbage after it was frozen would
    stay, so every `full_every` seconds everything is unfrozen and collected
    once (one long pause, rare by design).
    """

    def __init__(self, every: float = 0.25, full_every: float = 900.0) -> None:
        self.every, self.full_every = every, full_every
        self.last = self.last_full = time.monotonic()

    def __call__(self) -> None:
        now = time.monotonic()
        if now - self.last < self.every:
            return
        self.last = now
        if now - self.last_full >= self.full_every:
            self.last_full = now
            gc.unfreeze()
            gc.collect()
        else:
            gc.collect(1)
        gc.freeze()


YOUNG_GC = YoungGc()


class FrozenGc:
    """A replay's policy: no collection at all, the survivors frozen after each batch.

    Nearly everything a replay allocates either dies by reference counting
    at once (events, batches, decisions) or lives on as engine state; the
    automatic collections only rescan the survivors. Measured on the 1M
    workload (`backtest --policy off`, 100k customers, same run): about
    3,600 automatic collections cost 1.8 s of 17 CPU s, `gc.freeze()` after
    each batch with automatic collections off cost 0.02 s, and the peak RSS
    was the same (213 MiB), so the driver leaves no garbage cycles to speak
    of. A safety net for a workload that does: every `full_every` seconds
    everything is unfrozen and collected once.
    """

    def __init__(self, full_every: float = 60.0) -> None:
        self.full_every = full_every
        self.last_full = time.monotonic()

    def __call__(self) -> None:
        now = time.monotonic()
        if now - self.last_full >= self.full_every:
            self.last_full = now
            gc.unfreeze()
            gc.collect()
        gc.freeze()


# One per process, shared by all its shards' logics (flows/dataflow.py) as YOUNG_GC is: with
# a FrozenGc each, a process of 8 shards made 8 full collections per `full_every`, not one.
FROZEN_GC = FrozenGc()


@contextmanager
def no_automatic_gc() -> Iterator[None]:
    """Automatic collections off for the block (a replay's, with `FrozenGc`), then as before."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
