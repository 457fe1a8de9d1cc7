"""`keymoment run`: the live dataflow on the operator's sources, sinks and rules.

Builds `keymoment.flows.dataflow` in this process and runs it with Bytewax's
own runner (`-w` threads, optionally one process of a cluster), with Bytewax
recovery when `--recovery DIR` is given (the directory is initialised on
first use). Everything that can be checked before starting (rules file,
URLs, files, servers) is, and fails as one line.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from keymoment.cli import UserError
from keymoment.commands.args import timestamp
from keymoment.config import RulesFile
from keymoment.connectors.errors import failure
from keymoment.flows.settings import ALL_CHANNELS
from keymoment.rollout.cli import add_rollout_arguments
from keymoment.rollout.watch import install_sighup

from .runview import RunView, Ticker, start_line

NETWORK_SCHEMES = {"redis": 6379, "rediss": 6379, "kafka": 9092}
# FlowSettings fields whose flag is not the field's name with dashes (for error lines)
_FLAGS = {"tick_seconds": "tick", "rules_lead_seconds": "reload-lead", "cap_store": "state"}
SPREAD_SHARDS = 8  # the default shard count wherever shards may be spread (shard_count)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run", help="run the live dataflow (sources -> engine -> policy -> sinks)"
    )
    p.add_argument(
        "--rules",
        required=True,
        help="rules file (YAML or JSON), or redis://host:port/0?key=NAME; on the wall clock "
        "a change is picked up while running (SIGHUP: check now)",
    )
    p.add_argument(
        "--source",
        required=True,
        action="append",
        metavar="URL",
        help="input URL (file:events.jsonl, kafka://host:port/topic, "
        "redis://host:port/0?stream=tx); repeat",
    )
    p.add_argument(
        "--sink",
        action="append",
        default=[],
        metavar="[CHANNEL=]URL",
        help="where sent offers go; CHANNEL= routes one channel, no prefix the others; repeat",
    )
    p.add_argument("--decisions", metavar="URL", help="decision log: one record per candidate")
    p.add_argument("--dead-letters", metavar="URL", help="rejected input and failed deliveries")
    p.add_argument("--customers", metavar="URL", help="customer reference data (JSONL file)")
    p.add_argument(
        "--state", metavar="URL", help="cap store (default in memory; redis://host:port/0 to share)"
    )
    p.add_argument(
        "--clock",
        choices=("wall", "event"),
        default="wall",
        help="wall: live (default); event: the backtest's clock, for recorded input",
    )
    p.add_argument(
        "--until", type=timestamp, help="event clock: ignore later events, fire timers due by then"
    )
    p.add_argument("--workers", type=int, default=1, help="worker threads in this process")
    p.add_argument(
        "--shards",
        type=int,
        help="engine shards; keep it fixed across restarts (default: 1 for one worker in one "
        f"process without --recovery, where more shards only cost; else {SPREAD_SHARDS}, "
        "so that workers, processes and a resumed recovery directory can share them out)",
    )
    p.add_argument(
        "--tick", type=float, default=1.0, help="wall clock: seconds between timer sweeps"
    )
    p.add_argument("--batch-size", type=int, default=1000, help="file source lines per batch")
    p.add_argument(
        "--idle-timeout",
        type=float,
        metavar="S",
        help="several input partitions: a partition silent for S seconds (wall time) stops "
        "holding the watermark back until it sends again (default: never)",
    )
    p.add_argument(
        "--end-wait",
        type=float,
        default=10.0,
        metavar="S",
        help="end of input: seconds this process keeps retrying a cap store that does not "
        "answer before the candidates still waiting for it end expired [10]",
    )
    p.add_argument("--recovery", metavar="DIR", help="enable Bytewax recovery with state in DIR")
    p.add_argument(
        "--snapshot-interval",
        type=int,
        default=30,
        metavar="S",
        help="seconds between recovery snapshots, also the epoch length (default 30; "
        "snapshots are incremental, in proportion to the customers changed, so 1-5 s works)",
    )
    p.add_argument(
        "--backup-interval",
        type=int,
        default=0,
        metavar="S",
        help="seconds to keep superseded snapshots",
    )
    p.add_argument(
        "--metrics",
        metavar="[HOST:]PORT",
        help="serve /metrics, /healthz and /readyz here (loopback unless HOST is given; "
        "process N of a cluster adds N to the port)",
    )
    p.add_argument(
        "--stay-up",
        action="store_true",
        help="with --metrics: keep serving after the input ends, until Ctrl-C or SIGTERM",
    )
    add_rollout_arguments(p)
    p.add_argument(
        "--audit", metavar="URL", help="one record per rules reload attempt (a sink URL)"
    )
    p.add_argument(
        "--no-reload", action="store_true", help="wall clock: do not watch the rules while running"
    )
    p.add_argument(
        "--reload-lead",
        type=float,
        default=2.0,
        metavar="S",
        help="a reloaded version takes effect at watermark now + S, in every shard [%(default)s]",
    )
    p.add_argument("--process-id", type=int, help="this process's index in a cluster")
    p.add_argument("--addresses", help="cluster addresses host:port;host:port (with --process-id)")
    p.set_defaults(handler=run)


def parse_sinks(specs: list[str]) -> dict[str, str]:
    """`sms=URL` routes a channel; a bare URL takes every channel without its own sink."""
    from keymoment.flows.settings import ALL_CHANNELS

    sinks: dict[str, str] = {}
    for spec in specs:
        head, sep, rest = spec.partition("=")
        channel, url = (head, rest) if sep and head.isidentifier() else (ALL_CHANNELS, spec)
        if channel in sinks:
            raise UserError(
                f"--sink given twice for {'all channels' if channel == ALL_CHANNELS else channel}"
            )
        sinks[channel] = url
    return sinks


def settings_from(args: argparse.Namespace):  # noqa: ANN201 - FlowSettings, imported lazily
    from pydantic import ValidationError

    from keymoment.flows.settings import FlowSettings

    try:
        return FlowSettings(
            rules=args.rules,
            sources=args.source,
            sinks=parse_sinks(args.sink),
            decisions=args.decisions,
            dead_letters=args.dead_letters,
            customers=args.customers,
            cap_store=args.state,
            clock=args.clock,
            until=args.until,
            shards=shard_count(args),
            tick_seconds=args.tick,
            recovery=args.recovery is not None,
            snapshot_dir=str(Path(args.recovery) / "segments") if args.recovery else None,
            snapshot_keep_seconds=args.backup_interval + 3 * args.snapshot_interval,
            batch_size=args.batch_size,
            rollouts=args.rollout,
            rollout_logs=args.rollout_log,
            audit=args.audit,
            watch_rules=args.clock == "wall" and not args.no_reload and unbounded(args.source),
            rules_lead_seconds=args.reload_lead,
            idle_timeout=args.idle_timeout,
            end_wait=args.end_wait,
        )
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = str(first["loc"][0])
        raise UserError(f"--{_FLAGS.get(field, field.replace('_', '-'))}: {first['msg']}") from None


def shard_count(args: argparse.Namespace) -> int:
    """`--shards N` as given; by default one shard when nothing can ever spread them (one
    worker, one process, no recovery), else `SPREAD_SHARDS`.

    Shards exist to be placed over workers and processes, and a recovery
    directory fixes their count for good (a later run with more workers must
    find the same shards). In one worker without recovery 8 shards buy nothing
    and cost about 9 % of an event-clock run's instructions (the stamp's
    routing, each shard's walk of the rises; docs/dataflow.md, round 8);
    decisions are the same for any count, and a `per: pool` capacity is then
    the backtest's exactly (one policy holds the pool).
    """
    if args.shards is not None:
        return args.shards
    alone = args.workers == 1 and args.addresses is None and args.recovery is None
    return 1 if alone else SPREAD_SHARDS


def unbounded(sources: list[str]) -> bool:
    """Live sources never end; a run over files (or a counted generator) ends with them.

    The rules watch is a source of its own that never ends, so it runs only
    when the input does not end either (docs/rollout.md).
    """
    return not any(s.startswith("file:") or "count=" in s for s in sources)


def check_reachable(urls: list[str], timeout: float = 3.0) -> None:
    """Fail in one line, before Bytewax starts, when a server in a URL does not answer."""
    for url in urls:
        parts = urlsplit(url.split(",")[0] if url.startswith("kafka://") else url)
        scheme = parts.scheme
        if scheme not in NETWORK_SCHEMES:
            continue
        host = parts.hostname or "localhost"
        try:
            port = parts.port or NETWORK_SCHEMES[scheme]
        except ValueError:
            raise UserError(f"bad port in URL {url}") from None
        try:
            with socket.create_connection((host, port), timeout=timeout):
                pass
        except OSError as exc:
            raise UserError(
                f"cannot reach {host}:{port} for {url}: {exc.strerror or exc}"
            ) from None


def recovery_config(args: argparse.Namespace, partitions: int):  # noqa: ANN201
    """Bytewax's recovery config; an empty or new directory gets `partitions` databases."""
    if args.recovery is None:
        return None
    from bytewax.recovery import RecoveryConfig, init_db_dir

    directory = Path(args.recovery)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if not any(directory.glob("part-*.sqlite3")):
            init_db_dir(directory, partitions)
    except OSError as exc:
        raise UserError(
            f"cannot use recovery directory {directory}: {exc.strerror or exc}"
        ) from None
    return RecoveryConfig(str(directory), timedelta(seconds=args.backup_interval))


def run(args: argparse.Namespace) -> int:
    from bytewax._bytewax import cli_main

    from keymoment.flows.collect import no_automatic_gc
    from keymoment.flows.connect import ConnectError, source_from_url, versions_from
    from keymoment.flows.dataflow import build_flow
    from keymoment.flows.stop import Stop, stoppable

    check_counts(args)
    if (args.process_id is None) != (args.addresses is None):
        raise UserError("--process-id and --addresses go together")
    settings = settings_from(args)
    urls = [
        *settings.sources,
        *settings.sinks.values(),
        settings.decisions,
        settings.dead_letters,
        settings.cap_store,
        settings.customers,
        settings.audit,
        settings.rules if settings.rules.startswith("redis") else None,
    ]
    check_reachable([u for u in urls if u])  # a plain TCP probe: quick, and quiet
    stop, view = Stop(), RunView(wall_clock=settings.clock == "wall")
    try:
        versions = versions_from(settings)  # a file or a Redis key (keymoment.rollout)
        rules = versions[0].rules
        check_sink_channels(settings.sinks, rules)
        observability = metrics_from(args, settings.rules)
        sources = [source_from_url(url, settings.batch_size) for url in settings.sources]
        flow = build_flow(
            settings, sources=sources, observe=view.observe, observability=observability,
            stoppable=lambda inputs: stoppable(inputs, stop), versions=versions,
        )  # fmt: skip
    except ConnectError as exc:
        raise UserError(str(exc)) from None
    addresses = args.addresses.split(";") if args.addresses else None
    processes = len(addresses) if addresses else 1
    warn_uneven(settings.shards, args.workers * processes)
    install_sighup()
    print(start_line(settings, rules.version, len(rules.rules), args.workers), file=sys.stderr)
    stop.install()
    ticker = Ticker(view).start()
    # The event clock is a replay: its shards freeze instead of collecting (flows.collect).
    replay = no_automatic_gc() if settings.clock == "event" else nullcontext()
    try:
        with replay, connector_failures():
            cli_main(
                flow,
                workers_per_process=args.workers,
                process_id=args.process_id,
                addresses=addresses,
                epoch_interval=timedelta(seconds=args.snapshot_interval),
                recovery_config=recovery_config(args, args.workers * processes),
            )
        ticker.stop()
        print(view.summary(stop.signal.name if stop.signal else None), file=sys.stderr)
        if observability is not None and args.stay_up and stop.signal is None:
            stay_up()
    finally:
        ticker.stop()
        if observability is not None:
            observability.close()
    return stop.exit_code


def check_counts(args: argparse.Namespace) -> None:
    """Options that would do nothing (`--workers 0`) are errors, not silent no-ops."""
    for name in ("workers", "shards", "batch_size", "snapshot_interval"):
        value = getattr(args, name)
        if value is not None and value < 1:  # `--shards` is None unless given
            raise UserError(f"--{name.replace('_', '-')} must be 1 or more, got {value}")
    if args.tick <= 0:
        raise UserError(f"--tick must be more than 0 seconds, got {args.tick}")
    if args.backup_interval < 0:
        raise UserError(f"--backup-interval must be 0 or more, got {args.backup_interval}")


def check_sink_channels(sinks: dict[str, str], rules: RulesFile) -> None:
    """`--sink CHANNEL=URL` for a channel no campaign (or variant) sends on would never get one."""
    used: set[str] = set()
    for campaign in rules.campaigns:
        used.update(campaign.channels)
        for variant in campaign.variants:
            used.update(variant.channels or ())
    for channel in sinks:
        if channel != ALL_CHANNELS and channel not in used:
            raise UserError(
                f"--sink {channel}=...: no campaign sends on {channel} "
                f"(the rules use {', '.join(sorted(used)) or 'no channel'})"
            )


def metrics_from(args: argparse.Namespace, rules_path: str):  # noqa: ANN201 - Observability
    """`--metrics`: this process's listener (port + process id), started before the flow."""
    if args.metrics is None:
        if args.stay_up:
            raise UserError("--stay-up keeps the metrics listener up: give --metrics too")
        return None
    from keymoment.flows.connect import rules_from
    from keymoment.flows.health import parse_listen
    from keymoment.flows.instrument import Observability

    try:
        host, port = parse_listen(args.metrics)
    except ValueError as exc:
        raise UserError(f"--metrics: {exc}") from None
    process = args.process_id or 0
    try:
        obs = Observability(process).start(host, port + process, rules_from(rules_path))
    except OSError as exc:
        where = f"{host}:{port + process}"
        raise UserError(f"--metrics: cannot listen on {where}: {exc.strerror or exc}") from None
    assert obs.listener is not None
    print(f"keymoment run: metrics at {obs.listener.url}/metrics", file=sys.stderr, flush=True)
    return obs


@contextmanager
def connector_failures() -> Iterator[None]:
    """A connector that stopped the flow (`ConnectorError`: a broker refusing offers for
    good, ...) is one line, not Bytewax's traceback of it."""
    try:
        yield
    except Exception as exc:
        stopped = failure(exc)
        if stopped is None:
            raise
        raise UserError(str(stopped)) from None


def stay_up() -> None:
    """After the input ended: serve the final figures until SIGTERM or Ctrl-C."""
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    print("keymoment run: input ended; metrics stay up (Ctrl-C or SIGTERM ends)", file=sys.stderr)
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass


def warn_uneven(shards: int, workers: int) -> None:
    """Shards are placed round-robin over workers (flows/placement.py): say when that is uneven."""
    if workers > 1 and shards % workers:
        print(
            f"keymoment run: {shards} shards over {workers} workers is uneven; "
            f"use a multiple of {workers} (docs/dataflow.md, Scaling out)",
            file=sys.stderr,
        )
