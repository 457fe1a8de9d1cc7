"""The live dataflow: the only module that knows Bytewax operators and callbacks.

    sources -> stamp (decode, watermark steps, split by shard; rejects ride along)
            -> stateful_batch keyed by shard: Engine + contact policy per shard
            -> decision log | sent offers routed by channel | dead letters

A few shard keys, each holding one `Engine` for many customers and fed one
message per input batch, instead of one Bytewax key per customer: Bytewax's
per-key stateful step costs about 10 us per item on its own
(docs/bytewax-notes.md), a message per shard per batch costs nothing per
event. Event-time timers run through the watermark inside each shard's
engine; the wall clock reaches quiet shards through one Bytewax timer per
shard key (`notify_at`), never one per customer. See docs/dataflow.md.

Run it with `keymoment run`, or `python -m bytewax.run
keymoment.flows.dataflow:get_flow` with the settings in `KEYMOMENT_FLOW`.
"""

from __future__ import annotations

import gc
import pickle
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import Sink

from keymoment.config import RulesFile
from keymoment.connectors.sinks import output
from keymoment.triggers.engine import Engine
from keymoment.triggers.events import CustomerProfile

from .connect import policy_for, profiles_from, rules_from, sink_from_url, source_from_url
from .settings import ALL_CHANNELS, FlowSettings, from_env
from .shard import Shard
from .stamp import Message, Stamper

Result = tuple[list[dict], list[dict], list[dict], int]


def _now() -> datetime:
    return datetime.now(UTC)


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


class ShardLogic(StatefulBatchLogic[Message, Result, Any]):
    """Adapts one `Shard` to Bytewax: batches, the wall-clock tick, end of input, snapshots."""

    def __init__(self, shard: Shard, settings: FlowSettings, resume: bytes | None) -> None:
        self.shard = shard
        self.until = settings.until
        self.recovery = settings.recovery
        self.tick = timedelta(seconds=settings.tick_seconds) if settings.clock == "wall" else None
        if resume is not None:
            shard.restore(pickle.loads(resume))
        self.next_tick_at = _now() + self.tick if self.tick else None

    def on_batch(self, values: list[Message]) -> tuple[list[Result], bool]:
        YOUNG_GC()
        now = _now()
        return [self.shard.process(msg, now).as_tuple() for msg in values], self.RETAIN

    def on_notify(self) -> tuple[list[Result], bool]:
        now = _now()
        self.next_tick_at = now + self.tick  # type: ignore[operator]
        return [self.shard.tick(now).as_tuple()], self.RETAIN

    def on_eof(self) -> tuple[list[Result], bool]:
        return [self.shard.finish(self.until, _now()).as_tuple()], self.RETAIN

    def notify_at(self) -> datetime | None:
        return self.next_tick_at

    def snapshot(self) -> bytes | None:
        """Pickled at once (the engine keeps mutating); nothing at all without recovery."""
        if not self.recovery:
            return None
        return pickle.dumps(self.shard.snapshot(), protocol=pickle.HIGHEST_PROTOCOL)


class ShardBuilder:
    """`stateful_batch` builder: a fresh shard, restored from its snapshot on resume."""

    def __init__(
        self, settings: FlowSettings, rules: RulesFile, profiles: Mapping[str, CustomerProfile]
    ) -> None:
        self.settings, self.rules, self.profiles = settings, rules, profiles

    def __call__(self, resume: bytes | None) -> ShardLogic:
        policy = policy_for(self.rules, self.settings.state)
        shard = Shard(Engine(self.rules), policy, self.profiles, self.settings.clock == "wall")
        return ShardLogic(shard, self.settings, resume)


def build_flow(
    settings: FlowSettings,
    sources: Sequence[Source] | None = None,
    observe: Callable[[Result], None] | None = None,
    profiles: Mapping[str, CustomerProfile] | None = None,
    offer_sink: Sink | None = None,
) -> Dataflow:
    """The whole dataflow; the optional arguments let `keymoment demo` and benchmarks plug in.

    `offer_sink`, when given, receives every sent offer (beside any URL sinks).
    """
    rules = rules_from(settings.rules)
    if profiles is None:
        profiles = profiles_from(settings.customers)
    flow = Dataflow("keymoment")
    srcs = sources or [source_from_url(url, settings.batch_size) for url in settings.sources]
    ins = [op.input(f"in-{i}", flow, src) for i, src in enumerate(srcs)]
    raw = ins[0] if len(ins) == 1 else op.merge("in", *ins)
    stamper = Stamper(settings, rules.engine.allowed_lateness, rules.engine.max_future)
    messages = op.flat_map_batch("stamp", raw, stamper)
    keyed = op.stateful_batch("engine", messages, ShardBuilder(settings, rules, profiles))
    results = op.map("results", keyed, itemgetter(1))
    if observe is not None:
        op.inspect("observe", results, lambda _step, item: observe(item))
    _outputs(settings, results, offer_sink)
    return flow


def _outputs(settings: FlowSettings, results: Stream[Result], offer_sink: Sink | None) -> None:
    dead = op.flat_map("dead-letters", results, itemgetter(2))
    offers = op.flat_map("offers", results, itemgetter(1))
    failures = _offers(settings, offers)
    if offer_sink is not None:
        op.output("offers-extra-out", offers, offer_sink)
    if settings.decisions:
        decisions = op.flat_map("decisions", results, itemgetter(0))
        output("decisions-out", decisions, sink_from_url(settings.decisions))
    if settings.dead_letters:
        if failures:
            dead = op.merge("all-dead-letters", dead, *failures)
        output("dead-letters-out", dead, sink_from_url(settings.dead_letters))


def _offers(settings: FlowSettings, offers: Stream[dict]) -> list[Stream[dict]]:
    """Route sent offers: a channel's own sink, else the catch-all sink, else none."""
    named = {c: url for c, url in settings.sinks.items() if c != ALL_CHANNELS}
    failures = []
    for channel, url in sorted(named.items()):
        mine = op.filter(f"offers-{channel}", offers, _is_channel(channel))
        failures.append(output(f"offers-{channel}-out", mine, sink_from_url(url)))
    if ALL_CHANNELS in settings.sinks:
        rest = op.filter("offers-other", offers, _not_channels(frozenset(named)))
        failures.append(
            output("offers-other-out", rest, sink_from_url(settings.sinks[ALL_CHANNELS]))
        )
    return [f for f in failures if f is not None]


def _is_channel(channel: str) -> Callable[[dict], bool]:
    return lambda offer: offer["channel"] == channel


def _not_channels(channels: frozenset[str]) -> Callable[[dict], bool]:
    return lambda offer: offer["channel"] not in channels


def get_flow() -> Dataflow:
    """Entry point for `python -m bytewax.run keymoment.flows.dataflow:get_flow`."""
    return build_flow(from_env())
