"""What the test broker itself costs on these two cores: Tansu's CPU as its topic grows.

    python bench/bench_broker.py                          # 60k/s, 6 x 3 s, fetch waits 10 and 25 ms
    python bench/bench_broker.py --fetch-wait-ms 10,50 --intervals 8

`bench/bench_live.py` runs the flow, the producer and a Tansu broker (the
Kafka-protocol broker of the tests, in-memory storage) on the same two
cores, so the broker's CPU is CPU the flow does not get. This bench runs
the broker alone with the live bench's producer at a fixed rate, first with
no reader (the same-run baseline: what writing costs), then with one
consumer per `--fetch-wait-ms` value fetching as the flow does
(`fetch.wait.max.ms`; Tansu holds every fetch that long, data or not), and
prints the broker's CPU per interval beside the topic's size then. A fetch
that costs in proportion to the log already written shows as CPU that
grows interval after interval with a reader, and stays flat without one.
Each variant gets a fresh broker. The events are the live bench's file
(generated once by `bench_live.py`).
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

import psutil
from confluent_kafka import Consumer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_live import cpu, load, load_items, pace, prepare, producer, topics  # noqa: E402

from tests.support.servers import KafkaBroker  # noqa: E402


class Reader:
    """One consumer of `tx` from its start, in a thread, as the flow's source reads it."""

    def __init__(self, bootstrap: str, fetch_wait_ms: int) -> None:
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "bench-broker",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": fetch_wait_ms,
            }
        )
        self.consumer.assign([TopicPartition("tx", 0, 0)])
        self.count = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while not self.done.is_set():
            self.count += len(self.consumer.consume(1000, 0.001))
        self.consumer.close()

    def stop(self) -> None:
        self.done.set()
        self.thread.join(30)


def variant(items: list, args: argparse.Namespace, fetch_wait_ms: int | None) -> None:
    broker = KafkaBroker().start()
    try:
        topics(broker.bootstrap, 1)
        prod = producer(broker.bootstrap)
        reader = Reader(broker.bootstrap, fetch_wait_ms) if fetch_wait_ms is not None else None
        proc = psutil.Process(broker.proc.pid)  # type: ignore[union-attr]
        step = int(args.rate * args.seconds)
        label = "no reader" if reader is None else f"a reader, fetch wait {fetch_wait_ms} ms"
        print(f"{label}:", flush=True)
        for k in range(args.intervals):
            before, read_before = cpu(proc), reader.count if reader else 0
            took = pace(prod, items, k * step, (k + 1) * step, args.rate)
            used = cpu(proc) - before
            read = (reader.count - read_before) if reader else 0
            print(
                f"{'':>4}topic {(k + 1) * step:>9,} messages: broker {used / took:4.2f} of a core "
                f"({used:.2f} CPU s in {took:.1f} s); read {read:,}",
                flush=True,
            )
        prod.flush()
        if reader is not None:
            reader.stop()
    finally:
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=60000)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one interval")
    parser.add_argument("--intervals", type=int, default=6)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument(
        "--fetch-wait-ms", default="10,25", help="comma-separated; one reader variant each"
    )
    args = parser.parse_args()
    waits = [int(w) for w in args.fetch_wait_ms.split(",") if w]
    needed = int(args.rate * args.seconds * args.intervals)
    data = Path(f"/tmp/km-live-{args.customers}.jsonl")
    if not data.exists() or sum(1 for _ in data.open("rb")) < needed:
        print(f"generating {needed:,} events once into {data} ...", flush=True)
        prepare(data, needed, args.customers)
    items = load_items(data, needed, 1)
    print(
        f"Tansu broker CPU at {args.rate:,.0f} messages/s, {args.intervals} x {args.seconds:g} s "
        f"(load {load()})",
        flush=True,
    )
    for wait in [None, *waits]:
        variant(items, args, wait)
    print(f"load {load()} after", flush=True)


if __name__ == "__main__":
    main()
