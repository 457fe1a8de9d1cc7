"""Live event-to-offer latency of `keymoment run`, fed through a real Kafka broker at fixed rates.

    python bench/bench_live.py --rates 20000,40000,60000              # one process
    python bench/bench_live.py --rates 60000,80000,100000 --processes 2
    python bench/bench_live.py --drain 1500000 --processes 2 --repeat 2    # capacity

Issue 13's goal: p99 event-to-offer under 100 ms at 60,000 events/s in one
process, and at 100,000 events/s in two. Each rate is one fresh run of the
real command, `python -m keymoment run` on the wall clock (N processes as a
Bytewax cluster, `--process-id`/`--addresses` on loopback), reading the
topic `tx` of a Tansu broker (the Kafka-protocol broker the tests use,
tests/support/servers.py) and writing its sent offers to the topic `offers`.

Why Kafka and not a Redis Stream: it is what a bank's core systems would
publish to, the scale plan (docs/scaling.md) is in Kafka partitions, and
the client is librdkafka (C). The broker is not free on these two cores:
Tansu's in-memory log costs it about 2.5 us per message written and more
per message read as the log grows (`bench/bench_broker.py`: 0.3-0.6 of a
core at 60k/s), CPU the flow does not get. (Reading a Redis Stream costs
the flow redis-py's Python reply parsing per entry.)

The producer (this process) sends the generator's events, pre-split by the
shard hash (`crc32(customer_id) % P`, partition i read by process i), open
loop at the offered rate, and stamps `occurred_at` with the wall clock at
the moment it hands each chunk of events to the client: event time is send
time. The flow decides on the wall clock, so an event trigger's
`triggered_at` is that stamp. Latency = the offer message's Kafka timestamp
(CreateTime, set by librdkafka when the flow's sink produces it;
millisecond resolution) minus `triggered_at`; timer offers (dormancy, ...)
carry a deadline, not a creation time, and are left out. A warm-up at a low
rate runs until the first offers of every process come back (so start-up
is not a backlog), then the measured phase; its first `--warmup` seconds
are dropped. After the input ends the bench waits until no offer has come
for two seconds, then stops the flow with SIGTERM (it drains) and reads
the flow's own summary for the count of events it processed.

Printed per rate: offered and achieved send rate, p50/p99/p999/max, the
p99 of each half (a backlog that grows shows as a second half worse than
the first), how long after the input's end the last offer came, CPU
seconds of the flow process(es), the broker and the producer, and the load
average (`uptime`) before and after; with `--probe`, the input path alone:
a plain consumer of `tx` in a process of its own (`InputProbe`) sees each
event's lag from its CreateTime, so a lag of the producer or the broker is
not taken for the flow's (it adds a second reader of every event to the
broker on the same cores, so it is off by default). The machine has 2 cores shared with
other work, so every figure is printed with its load. The plain-Python
baseline's pace (bench/baseline_plain.py, four rules, CPU seconds) on the
same events is printed once, as in every benchmark here.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import orjson
import psutil
from confluent_kafka import OFFSET_END, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
import baseline_plain  # noqa: E402 - the sibling script, not a package
from bench_latency import prepare, quantiles, split_at_time  # noqa: E402

from keymoment.flows.stamp import shard_of  # noqa: E402
from tests.support.servers import KafkaBroker, free_port  # noqa: E402

RULES = ROOT / "examples" / "rules.yaml"
TIMERS = {"dormancy", "salary_missed", "absence"}
CHUNK = 500  # most events stamped with one send time (5 ms of input at 100k/s)


def load_items(path: Path, count: int, parts: int) -> list[tuple[int, bytes, bytes]]:
    """(partition, line before its occurred_at value, line after it), in stream order."""
    out = []
    with path.open("rb") as f:
        for _, line in zip(range(count), f, strict=False):
            line = line.rstrip(b"\n")
            head, tail = split_at_time(line)
            out.append((shard_of(orjson.loads(line)["customer_id"], parts), head, tail))
    return out


def topics(bootstrap: str, parts: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = [NewTopic("tx", parts, 1), NewTopic("offers", 1, 1), NewTopic("decisions", 1, 1)]
    for future in admin.create_topics(new).values():
        future.result(timeout=15)


def producer(bootstrap: str) -> Producer:
    """Batched like a production client: librdkafka's default 5 ms linger, large queues.

    (1 ms of linger made Tansu spend 0.6 of a core at 20k/s on small requests.)
    """
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 5,
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 4_000_000,
            "queue.buffering.max.kbytes": 2_000_000,
        }
    )


def now_stamp() -> bytes:
    return datetime.now(UTC).isoformat(timespec="microseconds").encode()


def send(prod: Producer, items: list[tuple[int, bytes, bytes]], first: int, last: int) -> None:
    """Events [first, last) with the send time as `occurred_at`, a chunk per stamp.

    One `produce_batch` per partition and chunk: 1.0 against 1.4 us of this
    process's CPU per message with a `produce` each (measured on Tansu), CPU
    the flow and the broker need on the same two cores.
    """
    for start in range(first, last, CHUNK):
        stamp = now_stamp()
        batches: dict[int, list[dict]] = {}
        for part, head, tail in items[start : min(start + CHUNK, last)]:
            batches.setdefault(part, []).append({"value": head + stamp + tail})
        for part, batch in batches.items():
            prod.produce_batch("tx", batch, partition=part)
    prod.poll(0)


class InputProbe:
    """A plain consumer of `tx` beside the flow, in a process of its own: the input path's lag.

    Event-to-offer latency adds the input path (producer, broker, fetch) to the
    flow's own time; this tells them apart. Per consume call it keeps the
    oldest message's lag: the wall time it arrived here minus its CreateTime
    (set by librdkafka when the producer took it). A steady lag seen here is
    the broker's or the producer's, not the flow's. Its cost: one Python step
    per consume call, not per message.
    """

    def __init__(self, bootstrap: str, parts: int, out: Path) -> None:
        code = f"import sys; sys.path[:0] = {[str(ROOT / 'bench')]!r}; import bench_live; "
        code += f"bench_live.probe_main({bootstrap!r}, {parts}, {str(out)!r})"
        self.out = out
        self.proc = subprocess.Popen([sys.executable, "-c", code])

    def samples(self) -> list[tuple[float, float]]:
        """Stops the probe; (CreateTime, lag s) per consume call."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)
        return [tuple(row) for row in orjson.loads(self.out.read_bytes())]  # type: ignore[misc]


def probe_main(bootstrap: str, parts: int, out: str) -> None:
    """The probe process: reads every partition of `tx` from its end until SIGTERM."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "bench-probe", "fetch.wait.max.ms": 10}
    )
    consumer.assign([TopicPartition("tx", p, OFFSET_END) for p in range(parts)])
    rows: list[tuple[float, float]] = []
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    while not stopping:
        msgs = consumer.consume(10000, 0)  # what has arrived, without waiting for more
        arrived = time.time()
        if not msgs:
            time.sleep(0.001)
        elif msgs[0].error() is None:
            created = msgs[0].timestamp()[1] / 1000
            rows.append((created, arrived - created))
    consumer.close()
    Path(out).write_bytes(orjson.dumps(rows))


class Offers:
    """The offers topic, read by this process: the warm-up's readiness and the final samples."""

    def __init__(self, bootstrap: str, parts: int) -> None:
        self.parts = parts
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "bench-live",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            }
        )
        self.consumer.assign([TopicPartition("offers", 0, 0)])
        self.seen_parts: set[int] = set()
        self.samples: list[tuple[float, float]] = []  # (triggered_at, latency s)
        self.count, self.last_at = 0, 0.0
        self.newest = 0.0  # the newest offer's CreateTime (s): when the flow produced it

    def poll(self, timeout: float = 0.0) -> int:
        """Reads what is there; returns how many offers came."""
        got = 0
        for msg in self.consumer.consume(10000, timeout):
            if msg.error() is not None:
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    raise RuntimeError(str(msg.error()))
                continue
            self._one(msg)
            got += 1
        if got:
            self.last_at = time.time()
        return got

    def _one(self, msg) -> None:  # noqa: ANN001
        record = orjson.loads(msg.value())
        self.count += 1
        self.newest = max(self.newest, msg.timestamp()[1] / 1000)
        self.seen_parts.add(shard_of(record["customer_id"], self.parts))
        if record["trigger"] not in TIMERS:
            at = datetime.fromisoformat(record["triggered_at"]).timestamp()
            self.samples.append((at, msg.timestamp()[1] / 1000 - at))

    def ready(self) -> bool:
        self.poll()
        return len(self.seen_parts) == self.parts

    def quiet_for(self, seconds: float, since: float, limit: float) -> float:
        """Polls until no offer came for `seconds` after `since` (at most `limit` s).

        Returns the time the last offer arrived.
        """
        deadline = time.time() + limit
        while time.time() < deadline and time.time() - max(self.last_at, since) < seconds:
            self.poll(0.2)
        return self.last_at


def pace(prod: Producer, items: list, first: int, last: int, rate: float) -> float:
    """Open loop: send [first, last) at `rate`/s from now; returns the seconds it took.

    A producer that falls behind sends the backlog at once, stamped late: the
    achieved rate printed beside the offered one says whether it kept up.
    """
    start, sent = time.monotonic(), first
    while sent < last:
        due = min(last, first + int((time.monotonic() - start) * rate) + 1)
        if due > sent:
            send(prod, items, sent, due)
            sent = due
        else:
            time.sleep(0.0005)
    return time.monotonic() - start


def warm_up(prod: Producer, items: list, offers: Offers, limit: float = 180.0) -> int:
    """Events at 200/s until an offer of every partition's customers came back, then 2 s at 2,000/s.

    Start-up (profiles, Bytewax, the cluster's connections) then is not a
    backlog in the measured phase. Returns how many events it sent.
    """
    start, sent, ready_at = time.monotonic(), 0, None
    while ready_at is None or time.monotonic() < ready_at + 2.0:
        if ready_at is None and offers.ready():
            ready_at = time.monotonic()
        elif ready_at is None and time.monotonic() - start > limit:
            raise SystemExit(f"no offers from every process within {limit:g}s")
        step = 2 if ready_at is None else 20  # per 10 ms
        send(prod, items, sent, sent + step)
        sent += step
        time.sleep(0.01)
    return sent


def flow_command(bootstrap: str, args: argparse.Namespace, customers: Path) -> list[str]:
    return [
        *(sys.executable, "-m", "keymoment", "run", "--rules", str(args.rules)),
        *("--source", f"kafka://{bootstrap}/tx?start=earliest&fetch_wait_ms={args.fetch_wait_ms}"),
        *("--sink", f"kafka://{bootstrap}/offers?key=customer_id"),
        *("--customers", f"file:{customers}"),
        *(("--shards", str(args.shards)) if args.shards else ()),
        *("--tick", str(args.tick), "--no-reload"),
        *(("--decisions", f"kafka://{bootstrap}/decisions") if args.decisions else ()),
    ]


def start_flows(bootstrap: str, args: argparse.Namespace, customers: Path, code: Path) -> list:
    """`keymoment run` of the checkout `code`, once or as a cluster of `--processes` on loopback."""
    cmd = flow_command(bootstrap, args, customers)
    env = dict(os.environ, PYTHONPATH=str(code))
    if args.processes == 1:
        return [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)]
    addresses = ";".join(f"127.0.0.1:{free_port()}" for _ in range(args.processes))
    return [
        subprocess.Popen(
            [*cmd, "--process-id", str(i), "--addresses", addresses],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for i in range(args.processes)
    ]


def cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def processed(outputs: list[str]) -> int:
    """Events the flow(s) processed, from `keymoment run`'s own summary (summed over processes)."""
    found = (re.search(r"([\d,]+) events from", text) for text in outputs)
    return sum(int(m.group(1).replace(",", "")) for m in found if m)


def stop(flows: list[subprocess.Popen]) -> list[str]:
    """SIGTERM (the flow drains and prints its summary), then its stdout."""
    for proc in flows:
        proc.send_signal(signal.SIGTERM)
    outs = []
    for proc in flows:
        out, err = proc.communicate(timeout=120)
        if proc.returncode not in (0, 143):
            raise SystemExit(f"keymoment run failed ({proc.returncode}): {err.decode()[-400:]}")
        outs.append(out.decode() + err.decode())  # the summary is on stderr
    return outs


class Cpu:
    """CPU seconds since construction of the flow process(es), the broker and this producer."""

    def __init__(self, flows: list[subprocess.Popen], broker: KafkaBroker) -> None:
        self.flows = [psutil.Process(p.pid) for p in flows]
        self.broker = psutil.Process(broker.proc.pid)  # type: ignore[union-attr]
        self.start = self.now()

    def now(self) -> tuple[float, float, float]:
        return sum(map(cpu, self.flows)), cpu(self.broker), time.process_time()

    def used(self) -> dict[str, float]:
        now = self.now()
        names = ("flow_cpu", "broker_cpu", "producer_cpu")
        return {name: b - a for name, a, b in zip(names, self.start, now, strict=True)}


@contextmanager
def live_flows(
    items: list, customers: Path, args: argparse.Namespace, code: Path
) -> Iterator[tuple[KafkaBroker, list[subprocess.Popen], Offers, Producer, int]]:
    """A fresh broker and fresh flow process(es) of the checkout `code`, warmed up: (broker,
    flows, offers, producer, events the warm-up sent); all of them stopped afterwards."""
    broker = KafkaBroker().start()
    flows: list[subprocess.Popen] = []
    try:
        topics(broker.bootstrap, args.processes)
        flows = start_flows(broker.bootstrap, args, customers, code)
        offers, prod = Offers(broker.bootstrap, args.processes), producer(broker.bootstrap)
        yield broker, flows, offers, prod, warm_up(prod, items, offers)
    finally:
        for proc in flows:
            if proc.poll() is None:
                proc.kill()
        broker.stop()


def run_rate(
    rate: float, items: list, customers: Path, args: argparse.Namespace, code: Path = ROOT
) -> dict:
    """One rate on a fresh broker and fresh flow process(es) of the checkout `code`."""
    with live_flows(items, customers, args, code) as (broker, flows, offers, prod, first):
        count = min(int(rate * args.seconds), len(items) - first)
        used = Cpu(flows, broker)
        result = {"rate": rate, "load_before": load(), "sent": count, "warm": first}
        result["started"] = time.time()
        spy = profile(flows[0].pid, args, rate)
        probe = (
            InputProbe(broker.bootstrap, args.processes, args.work / "probe.json")
            if args.probe
            else None
        )
        result["send_seconds"] = pace(prod, items, first, first + count, rate)
        result["ended"] = time.time()
        prod.flush(30)
        result["last_offer"] = offers.quiet_for(2.0, result["ended"], 120.0)
        result["input"] = probe.samples() if probe is not None else []
        result |= used.used()
        result["load_after"] = load()
        result["processed"] = processed(stop(flows)) - first
        result["samples"] = offers.samples
        if spy is not None:
            spy.wait(60)
            result["profile"] = top_functions(Path(spy.args[-1]))
        if args.decisions:
            result["split"] = decision_split(broker.bootstrap)
        return result


def run_drain(
    count: int, items: list, customers: Path, args: argparse.Namespace, code: Path
) -> dict:
    """`--drain`: the flow's capacity without the producer beside it on the same cores.

    After the warm-up the flow processes are stopped (SIGSTOP), `count` events
    are queued in the topic, and the flows continue (SIGCONT): the time from
    then to the newest offer's CreateTime is how long they took to read and
    decide it all, the producer idle. The broker still runs (it serves the
    reads and takes the offers).
    """
    with live_flows(items, customers, args, code) as (broker, flows, offers, prod, first):
        offers.quiet_for(2.0, time.time(), 60.0)
        for proc in flows:
            proc.send_signal(signal.SIGSTOP)
        count = min(count, len(items) - first)
        send(prod, items, first, first + count)
        prod.flush(300)
        result = {"sent": count, "warm": first, "load_before": load()}
        used = Cpu(flows, broker)
        resumed = time.time()
        for proc in flows:
            proc.send_signal(signal.SIGCONT)
        offers.quiet_for(3.0, resumed, 600.0)
        result |= used.used()
        result["seconds"] = offers.newest - resumed
        result["load_after"] = load()
        result["processed"] = processed(stop(flows)) - first
        return result


def drain_line(r: dict) -> str:
    secs, n = r["seconds"], r["processed"]
    return (
        f"drain: {r['sent']:,} events queued while the flow was stopped, processed {n:,} in "
        f"{secs:.2f} s wall: {n / secs:,.0f} events/s; CPU s: flow {r['flow_cpu']:.1f} "
        f"({r['flow_cpu'] / max(n, 1) * 1e6:.1f} us per event), broker {r['broker_cpu']:.1f}; "
        f"load {r['load_before']} before, {r['load_after']} after"
    )


def profile(pid: int, args: argparse.Namespace, rate: float) -> subprocess.Popen | None:
    """`py-spy record` of flow process 0 through the measured phase (`--profile`), or None."""
    if not args.profile:
        return None
    out = Path(args.profile) / f"live-{args.processes}p-{rate:.0f}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["py-spy", "record", "--nonblocking", "-r", "50", "-f", "raw", "-p", str(pid)]
    cmd += ["-d", str(int(args.seconds)), "-o", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def top_functions(raw: Path, count: int = 14) -> str:
    """Self time by function (innermost frame of each sampled stack, line numbers dropped),
    then by source file: where one process's time goes."""
    funcs: dict[str, int] = {}
    files: dict[str, int] = {}
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        leaf = re.sub(r":\d+\)$", ")", stack.rsplit(";", 1)[-1])
        funcs[leaf] = funcs.get(leaf, 0) + int(n)
        where = leaf.rpartition(" (")[2].rstrip(")")
        files[where] = files.get(where, 0) + int(n)
    total = sum(funcs.values()) or 1

    def ranked(counts: dict[str, int]) -> list[str]:
        top = sorted(counts.items(), key=lambda kv: -kv[1])[:count]
        return [f"{'':>12}{n / total:6.1%}  {name}" for name, n in top]

    return "\n".join([*ranked(funcs), f"{'':>10}by file:", *ranked(files)])


def decision_split(bootstrap: str) -> tuple[list, list]:
    """From the decision log: (triggered_at, decided_at - triggered_at, CreateTime - decided_at).

    Where an event trigger's time goes: before its decision (source, stamp,
    engine, policy) and after it (the sink's step).
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench-live-decisions",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    consumer.assign([TopicPartition("decisions", 0, 0)])
    out = []
    while msgs := consumer.consume(10000, 5.0):
        for msg in msgs:
            if msg.error() is not None:
                consumer.close()
                return out  # type: ignore[return-value]
            r = orjson.loads(msg.value())
            if r["trigger"] not in TIMERS:
                at = datetime.fromisoformat(r["triggered_at"]).timestamp()
                decided = datetime.fromisoformat(r["decided_at"]).timestamp()
                out.append((at, decided - at, msg.timestamp()[1] / 1000 - decided))
    consumer.close()
    return out  # type: ignore[return-value]


def p99(values: list[float]) -> float:
    values = sorted(values)
    return values[min(int(0.99 * len(values)), len(values) - 1)] * 1000 if values else 0.0


def timeline(kept: list[tuple[float, float]], start: float) -> str:
    """p99 of each second of the measured phase (ms): a stall shows where it happened."""
    seconds: dict[int, list[float]] = {}
    for at, v in kept:
        seconds.setdefault(int(at - start), []).append(v)
    return " ".join(f"{p99(seconds[s]):.0f}" for s in sorted(seconds))


def split_line(r: dict, cut: float) -> str:
    rows = [row for row in r.get("split", []) if cut <= row[0] <= r["ended"]]
    if not rows:
        return ""
    before = quantiles([row[1] for row in rows])
    after = quantiles([row[2] for row in rows])
    return f"\n{'':>10}to the decision: {before}\n{'':>10}decision to sink: {after}"


def summarise(r: dict, warmup: float) -> str:
    cut, mid = r["started"] + warmup, (r["started"] + warmup + r["ended"]) / 2
    kept = [(at, v) for at, v in r["samples"] if cut <= at <= r["ended"]]
    first = [v for at, v in kept if at < mid]
    second = [v for at, v in kept if at >= mid]
    lag = r["last_offer"] - r["ended"]
    us = r["flow_cpu"] / max(r["processed"], 1) * 1e6
    keeps_up = r["processed"] >= r["sent"] and lag < 1.0 and p99(second) < 2 * p99(first) + 50
    return (
        f"{r['rate']:>8,.0f}/s offered, {r['sent'] / r['send_seconds']:,.0f}/s sent; "
        f"{quantiles([v for _, v in kept])}\n"
        f"{'':>10}p99 first half {p99(first):.1f} ms, second half {p99(second):.1f} ms; "
        f"last offer {lag:+.1f} s after the input ended; processed {r['processed']:,} of "
        f"{r['sent']:,} (+{r['warm']:,} warm-up); keeps up: {'yes' if keeps_up else 'NO'}\n"
        f"{'':>10}p99 per second from the cut (ms): {timeline(kept, cut)}\n"
        f"{'':>10}CPU s: flow {r['flow_cpu']:.1f} ({us:.1f} us per event, its drain included), "
        f"broker {r['broker_cpu']:.1f}, producer {r['producer_cpu']:.1f}; "
        f"load {r['load_before']} before, {r['load_after']} after"
        + split_line(r, cut)
        + input_line(r, cut)
    )


def input_line(r: dict, cut: float) -> str:
    """The input path alone (`InputProbe`): the lag a plain consumer of `tx` saw."""
    rows = [(at, lag) for at, lag in r.get("input", []) if cut <= at <= r["ended"]]
    if not rows:
        return ""
    return (
        f"\n{'':>10}input path alone (a plain consumer of tx): "
        f"{quantiles([lag for _, lag in rows])}\n{'':>10}its p99 per second (ms): "
        f"{timeline(rows, cut)}"
    )


def baseline_pace(path: Path, count: int) -> str:
    """bench/baseline_plain.py over the same events (their own times), CPU seconds."""
    with path.open("rb") as f:
        payloads = [line.rstrip(b"\n") for _, line in zip(range(count), f, strict=False)]
    started = time.process_time()
    baseline_plain.run(payloads, None)
    seconds = time.process_time() - started
    return f"plain baseline (four rules, same events): {count / seconds:,.0f} events per CPU s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="20000,40000,60000")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--rules", default=str(RULES))
    parser.add_argument(
        "--shards", type=int, help="engine shards per run (default: the command's own default)"
    )
    parser.add_argument("--tick", type=float, default=1.0)
    parser.add_argument(
        "--against", help="another checkout (git worktree): each rate runs it too, interleaved"
    )
    parser.add_argument("--profile", help="a directory: py-spy the flow's process 0 per rate")
    parser.add_argument(
        "--drain",
        type=int,
        metavar="N",
        help="instead of rates: N events queued while the flow is stopped, then read at full "
        "speed (its capacity, without the producer on the same cores); --repeat times",
    )
    parser.add_argument("--repeat", type=int, default=1, help="--drain: rounds (interleaved)")
    parser.add_argument(
        "--decisions", action="store_true", help="also log decisions and split the latency"
    )
    parser.add_argument(
        "--probe",
        action="store_true",
        help="also read tx with a plain consumer (InputProbe): the input path's own lag; it "
        "adds a second reader of every event to the broker, on the same cores",
    )
    parser.add_argument(
        "--fetch-wait-ms", type=int, default=10, help="the flow's fetch.wait.max.ms (see docstring)"
    )
    args = parser.parse_args()
    args.work = Path(tempfile.mkdtemp(prefix="km-live-"))
    rates = [float(r) for r in args.rates.split(",")]
    data = Path("/tmp") / f"km-live-{args.customers}.jsonl"
    needed = args.drain or int(max(rates) * args.seconds)
    needed += 200_000  # and the warm-up's
    if not data.exists() or sum(1 for _ in data.open("rb")) < needed:
        print(f"generating {needed:,} events once into {data} ...", flush=True)
        prepare(data, needed, args.customers)
    items = load_items(data, needed, args.processes)
    print(
        f"live latency through Kafka (Tansu), `keymoment run` x{args.processes} process(es), "
        f"{args.customers:,} customers, {Path(args.rules).name}, "
        f"{args.shards or 'default'} shards, "
        f"{args.seconds:g} s per rate (first {args.warmup:g} s dropped)"
    )
    print(baseline_pace(data, 300_000), f"(load {load()})", flush=True)
    customers = data.with_suffix(".customers.jsonl")
    versions = [("", ROOT), *([("before: ", Path(args.against))] if args.against else [])]
    for round_ in range(args.repeat if args.drain else 0):
        for label, code in versions if round_ % 2 == 0 else versions[::-1]:
            print(label + drain_line(run_drain(args.drain, items, customers, args, code)))
    for rate in rates if not args.drain else []:
        for label, code in versions:
            result = run_rate(rate, items, customers, args, code)
            print(label + summarise(result, args.warmup), flush=True)
        if "profile" in result:
            print(f"{'':>10}py-spy self time, process 0:\n{result['profile']}", flush=True)


if __name__ == "__main__":
    main()
