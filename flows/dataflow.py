"""The live dataflow: the only module that knows Bytewax operators and callbacks.

    sources -> stamp (decode, watermark rises, split by shard; rejects ride along)
            -> stateful_batch keyed by shard: Engine + contact policy per shard
            -> decision log | sent offers routed by channel | dead letters

A few shard keys, each holding one `Engine` for many customers and fed one
message per input batch, instead of one Bytewax key per customer: Bytewax's
per-key stateful step costs about 10 us per item on its own
(docs/bytewax-notes.md), a message per shard per batch costs nothing per
event. Event-time timers run through the watermark inside each shard's
engine; the wall clock reaches quiet shards through one Bytewax timer per
shard key (`notify_at`), never one per customer. See docs/dataflow.md.

The wall clock is a parameter (`build_flow(..., clock=...)`, as Bytewax's own
operators take `now_getter`): tests drive it. Bytewax still schedules the
tick by the system clock (`notify_at` is compared with it), so the tick's
timing is real time while what the tick sees as "now" is the injected clock.

Run it with `keymoment run`, or `python -m bytewax.run
keymoment.flows.dataflow:get_flow` with the settings in `KEYMOMENT_FLOW`.
"""

from __future__ import annotations

import os
import pickle
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import FixedPartitionedSource, Source
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import Sink

from keymoment.connectors.files import JsonlFileSink
from keymoment.policy.parking import EndWait
from keymoment.rollout.audit import process_info
from keymoment.rollout.versions import RulesVersion, Switch
from keymoment.triggers.engine import Engine
from keymoment.triggers.events import CustomerProfile
from keymoment.triggers.ruleset import RuleSet

from .collect import FROZEN_GC, YOUNG_GC
from .connect import (
    ConnectError,
    policy_for,
    profiles_from,
    rules_from,
    sink_from_url,
    source_from_url,
    versions_from,
)
from .outputs import output, output_each, output_keyed
from .owners import placement_for
from .placement import shard_keys
from .replay import reads_balances
from .settings import ALL_CHANNELS, FlowSettings, SettingsError, from_env
from .shard import Shard, ShardOutput
from .stamp import Batch, Clock, Stamper
from .versioning import Versions

if TYPE_CHECKING:  # imported where used: a run without recovery, metrics or a rules watch
    # (every event-clock run from files) does without them, about 45 ms of start-up
    from .instrument import Observability
    from .metrics import FlowMetrics
    from .snapshots import Chain


def wall_clock() -> datetime:
    return datetime.now(UTC)


class ShardLogic(StatefulBatchLogic[Batch | Switch, ShardOutput, Any]):
    """Adapts one `Shard` to Bytewax: batches, the wall-clock tick, end of input, snapshots."""

    def __init__(
        self,
        shard: Shard,
        settings: FlowSettings,
        resume: bytes | None,
        metrics: FlowMetrics | None = None,
    ) -> None:
        self.shard, self.metrics = shard, metrics
        self.until = settings.until
        self.recovery = settings.recovery
        self.tick = timedelta(seconds=settings.tick_seconds) if shard.clock is not None else None
        self.chain = chain_for(settings)
        # The event clock has no latency to protect: freeze, never collect (flows.collect).
        self.collect = YOUNG_GC if shard.clock is not None else FROZEN_GC
        if resume is not None:
            from .snapshots import resume as resume_shard

            resume_shard(shard, resume, self.chain)
        if self.chain is None:  # only an incremental chain reads the changed customers: without
            shard.engine.dirty = None  # one the set would hold every customer ever seen, for good
        self.next_tick_at = wall_clock() + self.tick if self.tick else None

    def on_batch(self, values: list[Batch | Switch]) -> tuple[list[ShardOutput], bool]:
        self.collect()
        outs, batches = [], []
        for value in values:
            if isinstance(value, Switch):  # from the rules source, to every shard
                self.shard.schedule(value)
            else:
                batches.append(value)
                outs.append(self.shard.process(value))
        if self.metrics is not None:
            self.metrics.batch(batches)
            self._count(outs)
        return outs, self.RETAIN

    def on_notify(self) -> tuple[list[ShardOutput], bool]:
        if self.tick is not None:  # Bytewax compares notify_at with the system clock
            self.next_tick_at = wall_clock() + self.tick
        return self._count([self.shard.tick()]), self.RETAIN

    def on_eof(self) -> tuple[list[ShardOutput], bool]:
        return self._count([self.shard.finish(self.until)]), self.RETAIN

    def _count(self, outs: list[ShardOutput]) -> list[ShardOutput]:
        """Metrics once per shard call (flows/metrics.py): per batch, never per event."""
        metrics = self.metrics
        if metrics is not None:
            now = self.shard.clock() if self.shard.clock is not None else None
            for out in outs:
                metrics.output(out, now)
            metrics.watermark(self.shard.engine.watermark)
        return outs

    def notify_at(self) -> datetime | None:
        return self.next_tick_at

    def snapshot(self) -> bytes | None:
        """Nothing without recovery; with a snapshot directory the record of an incremental
        chain (flows/snapshots.py), else the whole shard pickled at once (it keeps mutating)."""
        if not self.recovery:
            return None
        started = time.perf_counter()
        if self.chain is not None:
            snap, size = self.chain.snapshot(self.shard)
        else:
            snap = pickle.dumps(self.shard.snapshot(), protocol=pickle.HIGHEST_PROTOCOL)
            size = len(snap)
        if self.metrics is not None:
            self.metrics.snapshot(time.perf_counter() - started, size)
        return snap


def chain_for(settings: FlowSettings) -> Chain | None:
    """The shard's incremental snapshot chain, when recovery is on with a snapshot directory."""
    if not settings.recovery or settings.snapshot_dir is None:
        return None
    from keymoment.state.segments import SegmentStore

    from .snapshots import Chain

    return Chain(
        SegmentStore(settings.snapshot_dir),
        keep_seconds=settings.snapshot_keep_seconds,
        compact_ratio=settings.snapshot_compact_ratio,
        background=True,
    )


class ShardBuilder:
    """`stateful_batch` builder: a fresh shard, restored from its snapshot on resume."""

    def __init__(
        self,
        settings: FlowSettings,
        versions: tuple[RulesVersion, list[Switch]],
        profiles: Mapping[str, CustomerProfile],
        clock: Clock | None,
        metrics: FlowMetrics | None = None,
        partitions: int = 1,
    ) -> None:
        self.settings, self.profiles, self.clock = settings, profiles, clock
        self.initial, self.switches = versions
        self.metrics, self.partitions = metrics, partitions
        self.end_wait = EndWait(settings.end_wait)  # one end-of-input wait for all shards

    def __call__(self, resume: bytes | None) -> ShardLogic:
        clock = self.clock or wall_clock
        rules = self.initial.rules
        policy = policy_for(rules, self.settings.cap_store, clock, self.end_wait)
        if self.metrics is not None:
            self.metrics.time_store(policy.store)
            self.metrics.watch_policy(policy)
        versions = Versions(self.initial, list(self.switches))
        parts = self.partitions if self.partitions > 1 else None
        shard = Shard(Engine(rules), policy, self.profiles, self.clock, versions, partitions=parts)
        if self.metrics is not None:
            self.metrics.watch_shard(shard)
        return ShardLogic(shard, self.settings, resume, self.metrics)


def build_flow(
    settings: FlowSettings,
    sources: Sequence[Source] | None = None,
    observe: Callable[[ShardOutput], None] | None = None,
    profiles: Mapping[str, CustomerProfile] | None = None,
    offer_sink: Sink | None = None,
    clock: Clock = wall_clock,
    observability: Observability | None = None,
    stoppable: Callable[[list[Source]], list[Source]] | None = None,
    versions: tuple[RulesVersion, list[Switch]] | None = None,
) -> Dataflow:
    """The whole dataflow; the optional arguments let demo, tests and benchmarks plug in.

    `stoppable` wraps every input (the event sources and the rules source) so that
    `keymoment run` can end them all on Ctrl-C or SIGTERM (flows/stop.py).

    `offer_sink`, when given, receives every sent offer (beside any URL sinks).
    `clock` is the wall clock of `--clock wall` (unused on the event clock).
    `observability` counts the flow into its metrics (`run --metrics`, flows/instrument.py).
    `versions`: the rules to start on and the `--rollout` switches, when the caller has
    read them already (`keymoment run` checks them first): a Redis key is then read once,
    so the flow runs the version that was checked, and a rules file is parsed once.
    """
    metrics = observability.metrics if observability is not None else None
    live = clock if settings.clock == "wall" else None
    initial, switches = versions or versions_from(settings)
    rules = initial.rules
    if profiles is None:
        profiles = profiles_from(settings.customers)
    flow = Dataflow("keymoment")
    srcs = sources or [source_from_url(url, settings.batch_size) for url in settings.sources]
    partitions = partition_count(srcs)
    if partitions > 1:
        for src in srcs:  # sources that can say "this partition ended" (files, Kafka tail=0)
            if hasattr(src, "end_markers"):
                src.end_markers = True
    if stoppable is not None:
        srcs = stoppable(list(srcs))
    if observability is not None:
        from .instrument import probed

        srcs = probed(list(srcs), observability)
    ins = [op.input(f"in-{i}", flow, src) for i, src in enumerate(srcs)]
    raw = ins[0] if len(ins) == 1 else op.merge("in", *ins)
    engine = rules.engine
    stamper = Stamper(
        settings.shards,
        engine.allowed_lateness,
        engine.max_future,
        settings.until,
        live,
        placement_for(rules, profiles),
        balances=keeps_balances(settings, rules, switches),
        partitioned=partitions > 1,
        idle_timeout=settings.idle_timeout,
    )
    batches: Stream[tuple[str, Batch | Switch]] = op.flat_map_batch("stamp", raw, stamper)
    if live is not None and settings.watch_rules:
        batches = _with_reloads(flow, settings, initial, batches, live, stoppable, metrics)
    builder = ShardBuilder(settings, (initial, switches), profiles, live, metrics, partitions)
    keyed = op.stateful_batch("engine", batches, builder)
    if observe is not None:
        op.inspect("observe", keyed, lambda _step, item: observe(item[1]))
    _outputs(settings, keyed, offer_sink, metrics)
    return flow


def keeps_balances(settings: FlowSettings, rules: RuleSet, switches: Sequence[Switch]) -> bool:
    """Whether events keep `balance_after` (only balance milestones read it; parsing it costs).

    A watched rules file (the wall clock, `watch_rules`) may add a milestone
    at any time, and a rollout or a resumed snapshot may bring rules that
    have one: those keep them. Any other run (the event clock, or the wall
    clock with `--no-reload`) keeps them only when its rules read them.
    """
    if (settings.clock == "wall" and settings.watch_rules) or switches or settings.recovery:
        return True
    return reads_balances(rules)


def _with_reloads(
    flow: Dataflow,
    settings: FlowSettings,
    initial: RulesVersion,
    batches: Stream[tuple[str, Batch | Switch]],
    clock: Clock,
    stoppable: Callable[[list[Source]], list[Source]] | None = None,
    metrics: FlowMetrics | None = None,
) -> Stream[tuple[str, Batch | Switch]]:
    """The rules source's switches go to every shard key; its audit records to `--audit`.

    With metrics, each audit record also moves `keymoment_rules_info` (applied) or
    `keymoment_rules_reload_failures_total` (rejected).
    """
    from .rules_source import RulesSource

    source = RulesSource(
        settings.rules,
        initial,
        lead=timedelta(seconds=settings.rules_lead_seconds),
        lateness=initial.rules.engine.allowed_lateness,
        process=process_info(),
        poll=settings.rules_poll_seconds,
        now=clock,
    )
    items = op.input("rules", flow, stoppable([source])[0] if stoppable else source)
    keys = shard_keys(settings.shards)
    switches = op.flat_map("switches", items, lambda item: _to_every_shard(item, keys))
    if settings.audit or metrics is not None:
        audit = op.filter_map("audit", items, _audit_record)
        if metrics is not None:
            op.inspect("audit-metrics", audit, lambda _step, rec: metrics.rules_reload(rec))
        if settings.audit:
            output("audit-out", audit, sink_from_url(settings.audit))
    return op.merge("batches-and-switches", batches, switches)


def _to_every_shard(item: tuple[str, Any], keys: list[str]) -> list[tuple[str, Switch]]:
    return [(key, item[1]) for key in keys] if item[0] == "switch" else []


def _audit_record(item: tuple[str, Any]) -> dict | None:
    return item[1] if item[0] == "audit" else None


def partition_count(sources: Sequence[Source]) -> int:
    """Input partitions of the whole flow (every process lists the same), 1 when unknown.

    A dynamic source has no fixed partitions: the flow then keeps one watermark for the
    stream it sees (the single-stream rule, flows/stamp.py).
    """
    fixed = [s for s in sources if isinstance(s, FixedPartitionedSource)]
    if len(fixed) != len(sources):
        return 1
    return sum(len(s.list_parts()) for s in fixed)


def _outputs(
    settings: FlowSettings,
    keyed: Stream[tuple[str, ShardOutput]],
    offer_sink: Sink | None,
    metrics: FlowMetrics | None,
) -> None:
    """Every output reads the shard calls keyed as they come (each step costs per call), and
    a stream exists only for an attached sink."""
    expiry = settings.clock == "wall"  # an event-clock replay's offers are history: no expiry
    offers: list[Stream[tuple[str, dict]]] = []  # one offer per item: made when one is needed

    def each_offer() -> Stream[tuple[str, dict]]:
        if not offers:
            offers.append(op.flat_map("offers", keyed, _keyed_offers))  # keyed for delivery
        return offers[0]

    failures = _offers(settings, each_offer, keyed, metrics, expiry)
    if offer_sink is not None:
        op.output("offers-extra-out", op.map("offers-extra", each_offer(), _offer), offer_sink)
    if settings.decisions:  # records are built only when a decision log is attached
        decisions = sink_from_url(settings.decisions)
        records = _records_after_offers if settings.sinks or offer_sink else _decision_records
        output_each("decisions-out", keyed, records, decisions, expiry, lines=_decision_lines)
    if settings.dead_letters:
        dead = op.flat_map("dead-letters", keyed, _dead_letters)
        if failures:
            dead = op.merge("all-dead-letters", dead, *failures)
        output("dead-letters-out", dead, sink_from_url(settings.dead_letters), expiry)


def _offers(
    settings: FlowSettings,
    offers: Callable[[], Stream[tuple[str, dict]]],
    keyed: Stream[tuple[str, ShardOutput]],
    metrics: FlowMetrics | None,
    expiry: bool,
) -> list[Stream[dict]]:
    """Route sent offers: a channel's own sink, else the catch-all sink, else none.

    Metrics name a channel's sink by its channel and the catch-all sink `default`.
    Offers stay keyed by shard: a webhook delivers them keyed so (flows/delivery.py).
    A JSONL file takes each shard call's offers as one chunk (`output_each`), all of
    them without a test per offer when it is the only sink.
    """
    named = {c: url for c, url in settings.sinks.items() if c != ALL_CHANNELS}
    every = not named  # the catch-all sink, if any, takes every offer
    routes = [(c, c, sink_from_url(url), _is_channel(c)) for c, url in sorted(named.items())]
    if ALL_CHANNELS in settings.sinks:
        catch_all = sink_from_url(settings.sinks[ALL_CHANNELS])
        routes.append(("other", "default", catch_all, _not_channels(frozenset(named))))
    failures = []
    for step, _name, sink, wanted in routes:
        if isinstance(sink, JsonlFileSink):
            picked = _every_offer if every else _offers_of(wanted)
            lines = _offer_lines if every else None  # every offer: its lines without the dicts
            failures.append(
                output_each(f"offers-{step}-out", keyed, picked, sink, expiry, lines=lines)
            )
        else:
            mine = op.filter(f"offers-{step}", offers(), _keyed(wanted))
            failures.append(output_keyed(f"offers-{step}-out", mine, sink, expiry))
    if metrics is not None:
        sinks = {name: sink for _, name, sink, _ in routes}
        metrics.route(sinks, "default" if "default" in sinks else None)
    return [f for f in failures if f is not None]


def _offers_of(wanted: Callable[[dict], bool]) -> Callable[[tuple[str, ShardOutput]], list[dict]]:
    return lambda item: [offer for offer in item[1].offers if wanted(offer)]


def _every_offer(item: tuple[str, ShardOutput]) -> list[dict]:
    return item[1].offers


def _offer_lines(item: tuple[str, ShardOutput]) -> bytes:
    return item[1].offer_lines()


def _decision_records(item: tuple[str, ShardOutput]) -> list[dict]:
    return item[1].decision_records()


def _decision_lines(item: tuple[str, ShardOutput]) -> bytes:
    return item[1].decision_lines()


def _records_after_offers(item: tuple[str, ShardOutput]) -> list[dict]:
    """The log records once the offers exist: a sent decision's record then copies its offer's
    fields instead of building them a second time, whichever output step Bytewax runs first
    (the offers' extra cost on the 200k workload: 0.10 CPU s after the records, 0.03 s before)."""
    item[1].offers  # noqa: B018 - built (and kept) for the offer sinks anyway
    return item[1].decision_records()


def _keyed(wanted: Callable[[dict], bool]) -> Callable[[tuple[str, dict]], bool]:
    return lambda item: wanted(item[1])


def _dead_letters(item: tuple[str, ShardOutput]) -> list[dict]:
    return item[1].dead_letters


def _keyed_offers(item: tuple[str, ShardOutput]) -> list[tuple[str, dict]]:
    key, out = item
    return [(key, offer) for offer in out.offers]


def _offer(item: tuple[str, dict]) -> dict:
    return item[1]


def _is_channel(channel: str) -> Callable[[dict], bool]:
    return lambda offer: offer["channel"] == channel


def _not_channels(channels: frozenset[str]) -> Callable[[dict], bool]:
    return lambda offer: offer["channel"] not in channels


def get_flow() -> Dataflow:
    """Entry point for `python -m bytewax.run keymoment.flows.dataflow:get_flow`.

    Bad settings, or a metrics port that is taken, end the process with one line on
    stderr and exit code 2 (bytewax.run imports the flow before it starts anything).
    """
    try:
        settings = from_env()
        return build_flow(settings, observability=_listening(settings))
    except (SettingsError, ConnectError) as exc:
        print(f"keymoment: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _listening(settings: FlowSettings) -> Observability | None:
    """`"metrics"` of the settings: this process's listener, as `keymoment run --metrics`
    starts it (port + the process id bytewax.run was given)."""
    if settings.metrics is None:
        return None
    from .health import parse_listen
    from .instrument import Observability

    try:
        host, port = parse_listen(settings.metrics)
    except ValueError as exc:
        raise SettingsError(f"metrics: {exc}") from None
    process = bytewax_process_id(sys.argv[1:], os.environ)
    try:
        return Observability(process).start(host, port + process, rules_from(settings.rules))
    except OSError as exc:
        where = f"{host}:{port + process}"
        raise SettingsError(f"metrics: cannot listen on {where}: {exc.strerror or exc}") from None


def bytewax_process_id(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """The process id `python -m bytewax.run` runs as, found as it finds it: `-i N` /
    `--process-id N`, else `BYTEWAX_PROCESS_ID`, else a Kubernetes StatefulSet pod's ordinal
    (`BYTEWAX_POD_NAME` after `BYTEWAX_STATEFULSET_NAME-`), else 0 (a single process)."""
    import argparse

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("-i", "--process-id", type=int)
    given = parser.parse_known_args(list(argv))[0].process_id
    if given is not None:
        return int(given)
    if environ.get("BYTEWAX_PROCESS_ID"):
        return int(environ["BYTEWAX_PROCESS_ID"])
    pod, statefulset = environ.get("BYTEWAX_POD_NAME"), environ.get("BYTEWAX_STATEFULSET_NAME")
    if pod and statefulset:
        return int(pod.replace(f"{statefulset}-", ""))
    return 0
