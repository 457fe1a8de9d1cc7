"""Live event-to-offer latency of `keymoment run`, fed through a real broker at fixed rates.

    python bench/bench_live.py --rates 20000,40000,60000              # one process
    python bench/bench_live.py --rates 60000,80000,100000 --processes 2
    python bench/bench_live.py --drain 1500000 --processes 2 --repeat 2    # capacity
    python bench/bench_live.py --feed redis --rates 60000 [--decisions]    # Redis Streams

Issue 13's goal: p99 event-to-offer under 100 ms at 60,000 events/s in one
process, and at 100,000 events/s in two. Each rate is one fresh run of the
real command, `python -m keymoment run` on the wall clock (N processes as a
Bytewax cluster, `--process-id`/`--addresses` on loopback), on a fresh
private server of the feed (`--feed`), started as the tests start theirs
(tests/support/servers.py):

- `kafka` (the default): a Tansu broker (the Kafka-protocol broker of the
  tests, in-memory log), the input in topic `tx` of P partitions, the sent
  offers to topic `offers`. Kafka is what a bank's core systems would
  publish to and the scale plan (docs/scaling.md) is in Kafka partitions,
  but the test broker is not free on these two cores: Tansu's in-memory log
  costs it about 2.5 us per message written and more per message read as
  the log grows (`bench/bench_broker.py`: 0.3-0.6 of a core at 60k/s), CPU
  the flow does not get.
- `redis`: a private redis-server, the input in P streams `tx0`, `tx1`, ...
  (one per process, read as one source partition each), the offers to the
  stream `offers` through the Redis Stream sink (its `dedupe` as `--dedupe`
  says: by default the sink's own, on), the decision log to `decisions`.
  Redis is a production server whose cost per message does not grow with
  the stream (about 3.1 us per XADD of an event and 0.7 us per entry read,
  docs/connectors.md), where Tansu's reads do; reading a stream costs the
  flow about 1-1.5 us per entry of client parsing.

The producer (this process) sends the generator's events, pre-split by the
shard hash (`crc32(customer_id) % P`, partition or stream i read by process
i), open loop at the offered rate, and stamps `occurred_at` with the wall
clock at the moment it hands each chunk of events to the client: event time
is send time. (Kafka: `produce_batch` per partition and chunk; Redis: the
chunk's XADDs as one pipelined write of RESP built here, its replies read
as they come, so the producer costs about what librdkafka's does.) The
flow decides on the wall clock, so an event trigger's `triggered_at` is
that stamp. Latency = when the offer reached the feed minus `triggered_at`:
on Kafka the message's timestamp (CreateTime, set by librdkafka when the
flow's sink produces it), on Redis the offer entry's stream ID, which is
the Redis server's millisecond clock at its XADD; both are this machine's
clock, at millisecond resolution. Timer offers (dormancy, ...) carry a
deadline, not a creation time, and are left out. A warm-up at a low rate
runs until the first offers of every process come back (so start-up is not
a backlog), then the measured phase; its first `--warmup` seconds are
dropped. After the input ends the bench waits until no offer has come for
two seconds, then stops the flow with SIGTERM (it drains) and reads the
flow's own summary for the count of events it processed.

Printed per rate: offered and achieved send rate, p50/p99/p999/max, the
p99 of each half (a backlog that grows shows as a second half worse than
the first), how long after the input's end the last offer came, CPU
seconds of the flow process(es), the server (broker or redis-server) and
the producer, and the load average (`uptime`) before and after; with
`--probe`, the input path alone: a plain reader of the input (a librdkafka
consumer of `tx`, or XREADs of the `tx` streams) in a process of its own
(`InputProbe`) sees each event's lag from when it reached the feed, so a
lag of the producer or the server is not taken for the flow's (it adds a
second reader of every event on the same cores, so it is off by default).
The machine has 2 cores shared with other work, so every figure is printed
with its load. The plain-Python baseline's pace (bench/baseline_plain.py,
four rules, CPU seconds) on the same events is printed once, as in every
benchmark here.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import hiredis
import orjson
import psutil
import redis
from confluent_kafka import OFFSET_END, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
import baseline_plain  # noqa: E402 - the sibling script, not a package
from bench_latency import prepare, quantiles, split_at_time  # noqa: E402

from keymoment.flows.stamp import shard_of  # noqa: E402
from tests.support.servers import KafkaBroker, RedisServer, free_port  # noqa: E402

RULES = ROOT / "examples" / "rules.yaml"
TIMERS = {"dormancy", "salary_missed", "absence"}
CHUNK = 500  # most events stamped with one send time (5 ms of input at 100k/s)
Message = tuple[bytes, float]  # (value, when it reached the feed: Unix seconds)


def load_items(path: Path, count: int, parts: int) -> list[tuple[int, bytes, bytes]]:
    """(partition, line before its occurred_at value, line after it), in stream order."""
    out = []
    with path.open("rb") as f:
        for _, line in zip(range(count), f, strict=False):
            line = line.rstrip(b"\n")
            head, tail = split_at_time(line)
            out.append((shard_of(orjson.loads(line)["customer_id"], parts), head, tail))
    return out


class Sender(Protocol):
    def put(self, batches: dict[int, list[bytes]]) -> None: ...
    def flush(self, timeout: float = 30.0) -> None: ...


class Reader(Protocol):
    def read(self, timeout: float) -> list[Message]: ...


def topics(bootstrap: str, parts: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = [NewTopic("tx", parts, 1), NewTopic("offers", 1, 1), NewTopic("decisions", 1, 1)]
    for future in admin.create_topics(new).values():
        future.result(timeout=15)


class KafkaSender:
    """Batched like a production client: librdkafka's default 5 ms linger, large queues.

    (1 ms of linger made Tansu spend 0.6 of a core at 20k/s on small requests.)
    One `produce_batch` per partition and chunk: 1.0 against 1.4 us of this
    process's CPU per message with a `produce` each (measured on Tansu), CPU
    the flow and the broker need on the same two cores.
    """

    def __init__(self, bootstrap: str) -> None:
        self.prod = Producer(
            {
                "bootstrap.servers": bootstrap,
                "linger.ms": 5,
                "batch.num.messages": 10000,
                "queue.buffering.max.messages": 4_000_000,
                "queue.buffering.max.kbytes": 2_000_000,
            }
        )

    def put(self, batches: dict[int, list[bytes]]) -> None:
        for part, values in batches.items():
            self.prod.produce_batch("tx", [{"value": v} for v in values], partition=part)
        self.prod.poll(0)

    def flush(self, timeout: float = 30.0) -> None:
        self.prod.flush(timeout)


producer = KafkaSender  # bench_broker.py's name for it


class KafkaReader:
    """One partition of a topic from its start: (value, CreateTime) per message."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-live-{topic}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            }
        )
        self.consumer.assign([TopicPartition(topic, 0, 0)])

    def read(self, timeout: float) -> list[Message]:
        out = []
        for msg in self.consumer.consume(10000, timeout):
            if msg.error() is None:
                out.append((msg.value(), msg.timestamp()[1] / 1000))
            elif msg.error().code() != KafkaError._PARTITION_EOF:
                raise RuntimeError(str(msg.error()))
        return out


class KafkaFeed:
    """A fresh Tansu broker: `tx` in P partitions, `offers` and `decisions` in one each."""

    name, server_name = "Kafka (Tansu)", "broker"

    def __init__(self, parts: int) -> None:
        self.server = KafkaBroker().start()
        self.address = self.server.bootstrap
        self.pid = self.server.proc.pid  # type: ignore[union-attr]
        topics(self.address, parts)

    def source_url(self, args: argparse.Namespace) -> str:
        return f"kafka://{self.address}/tx?start=earliest&fetch_wait_ms={args.fetch_wait_ms}"

    def sink_url(self, stream: str, args: argparse.Namespace) -> str:
        key = "?key=customer_id" if stream == "offers" else ""
        return f"kafka://{self.address}/{stream}{key}"

    def sender(self) -> Sender:
        return KafkaSender(self.address)

    def reader(self, stream: str) -> Reader:
        return KafkaReader(self.address, stream)

    def stop(self) -> None:
        self.server.stop()


class RedisSender:
    """XADD `data` <event> to stream `tx<partition>`, a chunk's entries as one pipelined write.

    The RESP is built here (redis-py's command packing costs several us per
    entry in Python, more than the flow's own work on an event) and the
    replies are read as they arrive, without waiting for them per chunk;
    any error reply stops the bench.
    """

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.replies = hiredis.Reader()
        self.pending = 0

    def put(self, batches: dict[int, list[bytes]]) -> None:
        out = []
        for part, values in batches.items():
            head = b"*5\r\n$4\r\nXADD\r\n$%d\r\ntx%d\r\n$1\r\n*\r\n$4\r\ndata\r\n" % (
                len(str(part)) + 2,
                part,
            )
            out += [b"%s$%d\r\n%s\r\n" % (head, len(v), v) for v in values]
            self.pending += len(values)
        self.sock.sendall(b"".join(out))
        self._replies(block=False)

    def _replies(self, block: bool) -> None:
        while self.pending:
            try:
                data = self.sock.recv(1 << 20, 0 if block else socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            if not data:
                raise SystemExit("redis-server closed the producer's connection")
            self.replies.feed(data)
            while (reply := self.replies.gets()) is not False:
                if isinstance(reply, hiredis.ReplyError):
                    raise SystemExit(f"redis-server refused an XADD: {reply}")
                self.pending -= 1

    def flush(self, timeout: float = 30.0) -> None:
        self.sock.settimeout(timeout)
        self._replies(block=True)
        self.sock.settimeout(None)


class RedisReader:
    """One stream from its start: (value of `data`, the entry ID's milliseconds) per entry."""

    def __init__(self, url: str, stream: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.stream, self.last = stream, "0-0"

    def read(self, timeout: float) -> list[Message]:
        block = int(timeout * 1000) or None
        reply = self.client.xread({self.stream: self.last}, count=10000, block=block)
        if not reply:
            return []
        entries = reply[0][1]
        self.last = entries[-1][0]
        return [(fields[b"data"], int(eid.split(b"-")[0]) / 1000) for eid, fields in entries]


class RedisFeed:
    """A fresh private redis-server: streams `tx0`..`tx<P-1>`, `offers` and `decisions`."""

    name, server_name = "Redis Streams", "redis-server"

    def __init__(self, parts: int) -> None:
        self.server = RedisServer().start()
        self.parts, self.address = parts, self.server.url
        self.pid = self.server.proc.pid  # type: ignore[union-attr]

    def source_url(self, args: argparse.Namespace) -> str:
        streams = "&".join(f"stream=tx{i}" for i in range(self.parts))
        return f"{self.address}?{streams}&start=0"

    def sink_url(self, stream: str, args: argparse.Namespace) -> str:
        dedupe = "" if args.dedupe is None else f"&dedupe={args.dedupe}"
        return f"{self.address}?stream={stream}{dedupe}"

    def sender(self) -> Sender:
        return RedisSender(self.server.port)

    def reader(self, stream: str) -> Reader:
        return RedisReader(self.address, stream)

    def stop(self) -> None:
        self.server.stop()


FEEDS = {"kafka": KafkaFeed, "redis": RedisFeed}
Feed = KafkaFeed | RedisFeed


def now_stamp() -> bytes:
    return datetime.now(UTC).isoformat(timespec="microseconds").encode()


def send(prod: Sender, items: list[tuple[int, bytes, bytes]], first: int, last: int) -> None:
    """Events [first, last) with the send time as `occurred_at`, a chunk per stamp."""
    for start in range(first, last, CHUNK):
        stamp = now_stamp()
        batches: dict[int, list[bytes]] = {}
        for part, head, tail in items[start : min(start + CHUNK, last)]:
            batches.setdefault(part, []).append(head + stamp + tail)
        prod.put(batches)


class InputProbe:
    """A plain reader of the input beside the flow, in a process of its own: the input path's lag.

    Event-to-offer latency adds the input path (producer, server, fetch) to the
    flow's own time; this tells them apart. Per read call it keeps the
    oldest message's lag: the wall time it arrived here minus the time it
    reached the feed (Kafka: its CreateTime, set by librdkafka when the
    producer took it; Redis: its entry ID, the server's clock at the XADD).
    A steady lag seen here is the server's or the producer's, not the
    flow's. Its cost: one Python step per read call, not per message.
    """

    def __init__(self, feed: Feed, parts: int, out: Path) -> None:
        code = f"import sys; sys.path[:0] = {[str(ROOT / 'bench')]!r}; import bench_live; "
        kind = "kafka" if isinstance(feed, KafkaFeed) else "redis"
        code += f"bench_live.probe_main({kind!r}, {feed.address!r}, {parts}, {str(out)!r})"
        self.out = out
        self.proc = subprocess.Popen([sys.executable, "-c", code])

    def samples(self) -> list[tuple[float, float]]:
        """Stops the probe; (when it reached the feed, lag s) per read call."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)
        return [tuple(row) for row in orjson.loads(self.out.read_bytes())]  # type: ignore[misc]


def probe_main(kind: str, address: str, parts: int, out: str) -> None:
    """The probe process: reads every input partition from its end until SIGTERM."""
    rows: list[tuple[float, float]] = []
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    oldest = _kafka_probe(address, parts) if kind == "kafka" else _redis_probe(address, parts)
    while not stopping:
        created = oldest()
        arrived = time.time()
        if created is None:
            time.sleep(0.001)
        else:
            rows.append((created, arrived - created))
    Path(out).write_bytes(orjson.dumps(rows))


def _kafka_probe(bootstrap: str, parts: int):  # noqa: ANN202
    """What has arrived on `tx`, without waiting: its oldest message's CreateTime, or None."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "bench-probe", "fetch.wait.max.ms": 10}
    )
    consumer.assign([TopicPartition("tx", p, OFFSET_END) for p in range(parts)])

    def oldest() -> float | None:
        msgs = consumer.consume(10000, 0)
        if not msgs or msgs[0].error() is not None:
            return None
        return msgs[0].timestamp()[1] / 1000

    return oldest


def _redis_probe(url: str, parts: int):  # noqa: ANN202
    """What has been added to the `tx` streams since the last call: the oldest entry ID's time.

    XREAD's reply is left as hiredis parses it (no redis-py callback per entry): a map
    under RESP3, which redis-py 8 speaks to a Redis 6 or later, a list under RESP2.
    """
    client = redis.Redis.from_url(url)
    last = {}
    for i in range(parts):
        newest = client.xrevrange(f"tx{i}", count=1)
        last[f"tx{i}"] = newest[0][0] if newest else "0-0"
    client.set_response_callback("XREAD", lambda reply, **_: reply)

    def oldest() -> float | None:
        reply = client.xread(last, count=10000)
        if not reply:
            return None
        streams = reply.items() if isinstance(reply, dict) else reply  # RESP3 or RESP2
        for stream, entries in streams:
            last[stream.decode()] = entries[-1][0]
        return min(int(entries[0][0].split(b"-")[0]) for _, entries in streams) / 1000

    return oldest


class Offers:
    """The offers stream, read by this process: the warm-up's readiness and the final samples."""

    def __init__(self, reader: Reader, parts: int) -> None:
        self.reader, self.parts = reader, parts
        self.seen_parts: set[int] = set()
        self.samples: list[tuple[float, float]] = []  # (triggered_at, latency s)
        self.count, self.last_at = 0, 0.0
        self.newest = 0.0  # when the newest offer reached the feed (s): the flow wrote it

    def poll(self, timeout: float = 0.0) -> int:
        """Reads what is there; returns how many offers came."""
        got = self.reader.read(timeout)
        for value, created in got:
            self._one(value, created)
        if got:
            self.last_at = time.time()
        return len(got)

    def _one(self, value: bytes, created: float) -> None:
        record = orjson.loads(value)
        self.count += 1
        self.newest = max(self.newest, created)
        self.seen_parts.add(shard_of(record["customer_id"], self.parts))
        if record["trigger"] not in TIMERS:
            at = datetime.fromisoformat(record["triggered_at"]).timestamp()
            self.samples.append((at, created - at))

    def ready(self) -> bool:
        self.poll()
        return len(self.seen_parts) == self.parts

    def first_after(self, since: float, limit: float) -> None:
        """Polls until an offer comes after `since` (at most `limit` s).

        On the loaded machine a flow resumed after SIGSTOP sometimes sent its
        first offer more than 3 s later (seen on the Redis feed, with the
        source of before and after the seventh session; not traced), and
        `quiet_for` alone then took the drain for over: "processed 0".
        """
        deadline = time.time() + limit
        while self.last_at <= since and time.time() < deadline:
            self.poll(0.2)

    def quiet_for(self, seconds: float, since: float, limit: float) -> float:
        """Polls until no offer came for `seconds` after `since` (at most `limit` s).

        Returns the time the last offer arrived.
        """
        deadline = time.time() + limit
        while time.time() < deadline and time.time() - max(self.last_at, since) < seconds:
            self.poll(0.2)
        return self.last_at


def pace(prod: Sender, items: list, first: int, last: int, rate: float) -> float:
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


def warm_up(prod: Sender, items: list, offers: Offers, limit: float = 180.0) -> int:
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


def flow_command(feed: Feed, args: argparse.Namespace, customers: Path) -> list[str]:
    return [
        *(sys.executable, "-m", "keymoment", "run", "--rules", str(args.rules)),
        *("--source", feed.source_url(args), "--sink", feed.sink_url("offers", args)),
        *("--customers", f"file:{customers}"),
        *(("--shards", str(args.shards)) if args.shards else ()),
        *("--tick", str(args.tick), "--no-reload"),
        *(("--decisions", feed.sink_url("decisions", args)) if args.decisions else ()),
    ]


def start_flows(feed: Feed, args: argparse.Namespace, customers: Path, code: Path) -> list:
    """`keymoment run` of the checkout `code`, once or as a cluster of `--processes` on loopback."""
    cmd = flow_command(feed, args, customers)
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
    """CPU seconds since construction: the flow process(es), the feed's server, this producer."""

    def __init__(self, flows: list[subprocess.Popen], feed: Feed) -> None:
        self.flows = [psutil.Process(p.pid) for p in flows]
        self.server = psutil.Process(feed.pid)
        self.start = self.now()

    def now(self) -> tuple[float, float, float]:
        return sum(map(cpu, self.flows)), cpu(self.server), time.process_time()

    def used(self) -> dict[str, float]:
        now = self.now()
        names = ("flow_cpu", "server_cpu", "producer_cpu")
        return {name: b - a for name, a, b in zip(names, self.start, now, strict=True)}


@contextmanager
def live_flows(
    items: list, customers: Path, args: argparse.Namespace, code: Path
) -> Iterator[tuple[Feed, list[subprocess.Popen], Offers, Sender, int]]:
    """A fresh server of the feed and fresh flow process(es) of the checkout `code`, warmed
    up: (feed, flows, offers, producer, events the warm-up sent); all stopped afterwards."""
    feed = FEEDS[args.feed](args.processes)
    flows: list[subprocess.Popen] = []
    try:
        flows = start_flows(feed, args, customers, code)
        offers, prod = Offers(feed.reader("offers"), args.processes), feed.sender()
        yield feed, flows, offers, prod, warm_up(prod, items, offers)
    finally:
        for proc in flows:
            if proc.poll() is None:
                proc.kill()
        feed.stop()


def run_rate(
    rate: float, items: list, customers: Path, args: argparse.Namespace, code: Path = ROOT
) -> dict:
    """One rate on a fresh server and fresh flow process(es) of the checkout `code`."""
    with live_flows(items, customers, args, code) as (feed, flows, offers, prod, first):
        count = min(int(rate * args.seconds), len(items) - first)
        used = Cpu(flows, feed)
        result = {"rate": rate, "load_before": load(), "sent": count, "warm": first}
        result["started"], result["server"] = time.time(), feed.server_name
        spy = profile(flows[0].pid, args, rate)
        probe = InputProbe(feed, args.processes, args.work / "probe.json") if args.probe else None
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
            result["split"] = decision_split(feed.reader("decisions"))
        return result


def run_drain(
    count: int, items: list, customers: Path, args: argparse.Namespace, code: Path
) -> dict:
    """`--drain`: the flow's capacity without the producer beside it on the same cores.

    After the warm-up the flow processes are stopped (SIGSTOP), `count` events
    are queued in the input, and the flows continue (SIGCONT): the time from
    then to when the newest offer reached the feed is how long they took to
    read and decide it all, the producer idle. The server still runs (it
    serves the reads and takes the offers).
    """
    with live_flows(items, customers, args, code) as (feed, flows, offers, prod, first):
        offers.quiet_for(2.0, time.time(), 60.0)
        for proc in flows:
            proc.send_signal(signal.SIGSTOP)
        count = min(count, len(items) - first)
        send(prod, items, first, first + count)
        prod.flush(300)
        result = {"sent": count, "warm": first, "load_before": load(), "server": feed.server_name}
        used = Cpu(flows, feed)
        resumed = time.time()
        for proc in flows:
            proc.send_signal(signal.SIGCONT)
        offers.first_after(resumed, 120.0)
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
        f"({r['flow_cpu'] / max(n, 1) * 1e6:.1f} us per event), {r['server']} "
        f"{r['server_cpu']:.1f}; load {r['load_before']} before, {r['load_after']} after"
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


def decision_split(reader: Reader) -> list[tuple[float, float, float]]:
    """From the decision log: (triggered_at, decided - triggered, reached the feed - decided).

    Where an event trigger's time goes: before its decision (source, stamp,
    engine, policy) and after it (the sink's step).
    """
    out = []
    while msgs := reader.read(1.0):
        for value, created in msgs:
            r = orjson.loads(value)
            if r["trigger"] not in TIMERS:
                at = datetime.fromisoformat(r["triggered_at"]).timestamp()
                decided = datetime.fromisoformat(r["decided_at"]).timestamp()
                out.append((at, decided - at, created - decided))
    return out


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
        f"{r['server']} {r['server_cpu']:.1f}, producer {r['producer_cpu']:.1f}; "
        f"load {r['load_before']} before, {r['load_after']} after"
        + split_line(r, cut)
        + input_line(r, cut)
    )


def input_line(r: dict, cut: float) -> str:
    """The input path alone (`InputProbe`): the lag a plain reader of the input saw."""
    rows = [(at, lag) for at, lag in r.get("input", []) if cut <= at <= r["ended"]]
    if not rows:
        return ""
    return (
        f"\n{'':>10}input path alone (a plain reader of the input): "
        f"{quantiles([lag for _, lag in rows])}\n{'':>10}its p99 per second (ms): "
        f"{timeline(rows, cut)}"
    )


def baseline_pace(path: Path, count: int) -> str:
    """bench/baseline_plain.py over the same events (their own times), CPU seconds."""
    with path.open("rb") as f:
        payloads = [line.rstrip(b"\n") for _, line in zip(range(count), f, strict=False)]
    _, seconds, _ = baseline_plain.timed(payloads, None)  # GC off, as its definition says
    return f"plain baseline (four rules, same events): {count / seconds:,.0f} events per CPU s"


def sink_dedupe(args: argparse.Namespace) -> str:
    if args.feed != "redis":
        return ""
    return f" (sink dedupe {'off' if args.dedupe == 0 else args.dedupe or 'on, the default'})"


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
        help="also read the input with a plain reader (InputProbe): the input path's own lag; "
        "it adds a second reader of every event to the server, on the same cores",
    )
    parser.add_argument("--feed", choices=sorted(FEEDS), default="kafka", help="see docstring")
    parser.add_argument(
        "--dedupe",
        type=int,
        metavar="SECONDS",
        help="--feed redis: the offer and decision sinks' dedupe (0: off; default: the sink's "
        "own, on)",
    )
    parser.add_argument(
        "--fetch-wait-ms",
        type=int,
        default=10,
        help="--feed kafka: the flow's fetch.wait.max.ms (see docstring)",
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
        f"live latency through {FEEDS[args.feed].name}{sink_dedupe(args)}, "
        f"`keymoment run` x{args.processes} process(es), "
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
