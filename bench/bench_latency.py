"""Live latency from an event's creation to its offer, at fixed open-loop input rates.

    .venv/bin/python bench/bench_latency.py [--rates 5000,10000,20000,40000] [--seconds 20]

Each rate runs in a fresh process. Synthetic events are generated once
(generation costs more than processing, so it must not share the flow's
core) and replayed by an open-loop paced source that sets `occurred_at` to
the wall clock at emission: event time is creation time. The whole flow
runs on the wall clock with the customers' reference data; a sink in this
script stamps each sent offer on arrival, and an observer stamps every
decision as the shard emits it (more samples: caps stop most offers).
Latency = arrival - `triggered_at`, for event triggers only (timer
candidates carry a deadline, not a creation time). The first `--warmup`
seconds are dropped. "keeps up" means the flow finished within a second of
the input's end and the median latency did not grow from the first half of
the run to the second.

`--processes 2` runs the flow as a two-process cluster on loopback
(`bytewax.testing.cluster_main`): the events are split by customer
(`crc32(customer_id) % 2`, the shard hash) into two paced partitions at half
the rate each, so each process reads one and holds the shards of its
customers (`flows.placement`); latencies of both processes are merged.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition

RULES = Path(__file__).resolve().parents[1] / "examples" / "rules.yaml"
STAMP_EVERY = 100  # events sharing one scheduled creation time (2.5 ms apart at 40k/s)
BATCH = 1000  # most events one source batch carries, as the Kafka source's default
TIMERS = {"dormancy", "salary_missed", "absence"}


class _Stamp(StatelessSinkPartition):
    def __init__(self, seen: list) -> None:
        self.seen = seen

    def write_batch(self, items: list[dict]) -> None:
        stamp(self.seen, items)


def stamp(seen: list, records: list[dict]) -> None:
    now = time.time()
    for record in records:
        if record["trigger"] not in TIMERS:
            at = datetime.fromisoformat(record["triggered_at"]).timestamp()
            seen.append((at, now - at))


class StampSink(DynamicSink):
    """Records (created_at, latency seconds) of each event-triggered offer on arrival."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, float]] = []

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Stamp:
        return _Stamp(self.seen)


class _Paced(StatefulSourcePartition):
    """Pre-generated events at `rate`/s from the start, `occurred_at` = their scheduled time.

    Stamping the schedule, not the moment of emission, keeps the backlog of a
    flow that falls behind inside the measured latency (open loop).
    """

    def __init__(self, parts: list[tuple[bytes, bytes]], rate: float) -> None:
        self.parts, self.rate, self.next = parts, rate, 0
        self.start: float | None = None  # set by the first poll (see `_begin`)

    def _begin(self) -> None:
        """The schedule starts at the first poll, not at build time.

        In a cluster a partition is built before the other process has
        connected (Bytewax retries the connection once a second): a schedule
        started at build time would begin with that second as a backlog.
        """
        self.start, self.start_at = time.monotonic(), datetime.now(UTC)
        self.started = time.time()

    def next_batch(self) -> list:
        if self.start is None:
            self._begin()
        if self.next >= len(self.parts):
            raise StopIteration
        due = min(int((time.monotonic() - self.start) * self.rate), len(self.parts))
        first, self.next = self.next, max(self.next, min(due, self.next + BATCH))
        out = []
        for chunk in range(first, self.next, STAMP_EVERY):
            at = self.start_at + timedelta(seconds=chunk / self.rate)  # scheduled, not emitted
            stamp = at.isoformat(timespec="microseconds").encode()
            out += [
                (f"paced:{i}", head + stamp + tail)
                for i, (head, tail) in enumerate(
                    self.parts[chunk : min(chunk + STAMP_EVERY, self.next)], chunk
                )
            ]
        return out

    def next_awake(self) -> datetime:
        return datetime.now(UTC) + timedelta(milliseconds=1)

    def snapshot(self) -> int:
        return self.next


class PacedSource(FixedPartitionedSource):
    """Open loop: a slow flow does not slow the schedule down, it falls behind.

    One partition per element of `splits` (`paced-0`, ...), each at its share of `rate`.
    """

    def __init__(self, splits: list[list[tuple[bytes, bytes]]], rate: float) -> None:
        self.splits, self.rate = splits, rate
        self.built: list[_Paced] = []  # this process's partitions

    def list_parts(self) -> list[str]:
        return [f"paced-{i}" for i in range(len(self.splits))]

    def build_part(self, step_id: str, for_part: str, resume_state: object) -> _Paced:
        part = _Paced(self.splits[int(for_part.split("-")[1])], self.rate / len(self.splits))
        self.built.append(part)
        return part


def split_by_customer(lines: list[bytes], parts: int) -> list[list[bytes]]:
    """Lines by the shard hash of their customer: partition i feeds the shards of worker i."""
    import orjson

    from keymoment.flows.stamp import shard_of

    out: list[list[bytes]] = [[] for _ in range(parts)]
    for line in lines:
        out[shard_of(orjson.loads(line)["customer_id"], parts)].append(line)
    return out


def split_at_time(line: bytes) -> tuple[bytes, bytes]:
    """The line around its occurred_at value, so restamping is two byte concatenations."""
    key = b'"occurred_at":"'
    start = line.index(key) + len(key)
    return line[:start], line[line.index(b'"', start) :]


def prepare(path: Path, events: int, customers: int) -> None:
    """Events and profiles once for all rates (generating costs more than processing)."""
    import orjson

    from keymoment.connectors.generator import Generator

    gen = Generator(seed=9, customers=customers, days=240)
    with path.open("wb") as f:
        for line in gen.iter_bytes(limit=events):
            f.write(line + b"\n")
    profiles = path.with_suffix(".customers.jsonl")
    profiles.write_bytes(b"".join(orjson.dumps(p) + b"\n" for p in gen.profiles()))


def child(path: Path, rate: float, args: argparse.Namespace) -> dict:
    """One measured run (or one process of a cluster run) in this process; prints a JSON line."""
    from bytewax.testing import cluster_main, run_main

    from keymoment.connectors.customers import read_profiles
    from keymoment.flows.dataflow import build_flow
    from keymoment.flows.observe import FlowStats
    from keymoment.flows.settings import FlowSettings

    count = int(rate * args.seconds)
    lines = path.read_bytes().splitlines()[:count]
    profiles, _ = read_profiles(path.with_suffix(".customers.jsonl"))
    settings = FlowSettings(rules=str(RULES), sources=["paced:"], clock="wall", shards=4)
    sink, stats, decided = StampSink(), FlowStats(), []

    def observe(result: tuple) -> None:
        stats(result)
        stamp(decided, result[0])

    splits = split_by_customer(lines, args.processes) if args.processes > 1 else [lines]
    source = PacedSource([[split_at_time(line) for line in part] for part in splits], rate)
    flow = build_flow(
        settings, sources=[source], observe=observe, profiles=profiles, offer_sink=sink
    )
    if not args.no_gc_tuning:
        gc.collect()
        gc.freeze()
    started = time.time()
    if args.processes > 1:
        cluster_main(flow, args.addresses.split(";"), args.proc_id)
    else:
        run_main(flow)
    if source.built:  # measure from the schedule's start, not from before the cluster connected
        started = min(part.started for part in source.built)
    return {
        "rate": rate,
        "emitted": len(lines),
        "processed": stats.lines,
        "elapsed": time.time() - started,
        "offers": sink.seen,
        "decisions": decided,
        "started": started,
    }


def run_rate(rate: float, args: argparse.Namespace) -> dict:
    """Fresh child process(es) for one rate; a cluster's results merged into one."""
    cmd = [sys.executable, __file__, "--child", str(rate)]
    cmd += ["--seconds", str(args.seconds), "--customers", str(args.customers)]
    cmd += ["--processes", str(args.processes)]
    cmd += ["--no-gc-tuning"] if args.no_gc_tuning else []
    if args.processes > 1:
        ports = [_free_port() for _ in range(args.processes)]
        cmd += ["--addresses", ";".join(f"127.0.0.1:{port}" for port in ports)]
    procs = [
        subprocess.Popen([*cmd, "--proc-id", str(i)], stdout=subprocess.PIPE, text=True)
        for i in range(args.processes)
    ]
    results = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"child failed with exit code {proc.returncode}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return merge(results)


def merge(results: list[dict]) -> dict:
    """One process's view of the whole run: counts summed, samples pooled, the slowest end."""
    return {
        "rate": results[0]["rate"],
        "emitted": sum(r["emitted"] for r in results) // len(results),  # each loads them all
        "processed": sum(r["processed"] for r in results),
        "elapsed": max(r["started"] + r["elapsed"] for r in results)
        - min(r["started"] for r in results),
        "offers": [x for r in results for x in r["offers"]],
        "decisions": [x for r in results for x in r["decisions"]],
        "started": min(r["started"] for r in results),
    }


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def quantiles(values: list[float]) -> str:
    if not values:
        return "no samples"
    values = sorted(values)

    def q(p: float) -> float:
        return values[min(int(p * len(values)), len(values) - 1)] * 1000

    return (
        f"n {len(values):>7,}  p50 {q(0.5):7.1f}  p99 {q(0.99):7.1f}  p999 {q(0.999):7.1f}  "
        f"max {values[-1] * 1000:7.1f} ms"
    )


def summarise(result: dict, warmup: float, seconds: float) -> str:
    cut = result["started"] + warmup
    offers = [v for at, v in result["offers"] if at >= cut]
    decisions = [v for at, v in result["decisions"] if at >= cut]
    mid = cut + (seconds - warmup) / 2
    first = sorted(v for at, v in result["decisions"] if cut <= at < mid)
    second = sorted(v for at, v in result["decisions"] if at >= mid)
    grows = bool(first and second) and second[len(second) // 2] > 2 * first[len(first) // 2] + 0.05
    lag = result["elapsed"] - seconds
    keeps_up = result["processed"] >= result["emitted"] and lag < 1.0 and not grows
    return (
        f"{result['rate']:>8,.0f}/s  offers: {quantiles(offers)}\n"
        f"{'':>10}  decisions: {quantiles(decisions)}\n"
        f"{'':>10}  finished {lag:+.1f}s after the input ended; "
        f"keeps up: {'yes' if keeps_up else 'NO'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="5000,10000,20000,40000")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument(
        "--no-gc-tuning", action="store_true", help="skip gc.freeze() after startup"
    )
    parser.add_argument("--processes", type=int, default=1, help="1, or a loopback cluster")
    parser.add_argument("--child", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--proc-id", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--addresses", help=argparse.SUPPRESS)
    args = parser.parse_args()
    data = Path(tempfile.gettempdir()) / f"km-latency-{args.customers}.jsonl"
    if args.child:
        print(json.dumps(child(data, args.child, args)))
        return
    rates = [float(r) for r in args.rates.split(",")]
    needed = int(max(rates) * args.seconds)
    if not data.exists() or sum(1 for _ in data.open("rb")) < needed:
        print(f"generating {needed:,} events once into {data} ...", flush=True)
        prepare(data, needed, args.customers)
    print(
        f"live latency, event creation -> offer at the sink, {args.customers:,} customers, "
        f"{args.seconds:g}s per rate (first {args.warmup:g}s dropped), "
        f"{args.processes} process(es), one worker each"
    )
    for rate in rates:
        print(summarise(run_rate(rate, args), args.warmup, args.seconds), flush=True)


if __name__ == "__main__":
    main()
