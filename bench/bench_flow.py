"""End-to-end replay throughput of the live flow, beside the engine alone, in the same run.

    .venv/bin/python bench/bench_flow.py [--events 300000] [--customers 100000] [--shards 8]

Writes a seeded synthetic JSONL file, then measures on the same decoded input:

1. decode only: `wire.decode` over every line (orjson + pydantic);
2. engine only: a plain loop of `decode` + `Engine.feed` (the backtest's core,
   no policy, no output): the ceiling for any dataflow;
3. engine + policy: the backtest's loop with the contact policy;
4. the flow: `python -m bytewax.run keymoment.flows.dataflow:get_flow`, one
   process, one worker, file source -> decision log + offers as JSONL files,
   event clock; its startup (same flow on a one-line file) is measured and
   subtracted, and reported;
5. the same input split into `--partitions` files by `crc32(customer_id)`
   (the shard hash), read as one glob source, by each of `--processes`
   (default 1 and 2; `-i/-a` on loopback): wall time minus startup, and the
   CPU seconds of all processes together, also net of the start-up's (less
   sensitive to other load; docs/scaling.md uses `--partitions 4
   --processes 1,2,4 --only-partitions`);
6. the recovery snapshot: pickling every shard's state once the whole input
   went through (what each epoch costs when every shard was touched);
7. the cost of metrics: `keymoment run` on the same input without and with
   `--metrics` (a scrape every second meanwhile, as Prometheus would),
   interleaved `--metrics-repeat` times, best wall time and CPU seconds of each;
   and the same question without Bytewax's noise: the driver (one `Shard`)
   over the stamped batches, without and with the per-batch metrics calls
   `ShardLogic` makes, interleaved, best CPU seconds of each.

Flow runs are repeated `--repeat` times, best of N reported. Figures are
wall-clock on a shared machine: compare within one run.
"""

from __future__ import annotations

import argparse
import os
import pickle
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from keymoment.connectors.generator import Generator
from keymoment.connectors.wire import DeadLetter, decode
from keymoment.flows.connect import policy_for, rules_from
from keymoment.flows.replay import Replay
from keymoment.flows.settings import FlowSettings
from keymoment.flows.shard import Shard
from keymoment.flows.stamp import shard_of
from keymoment.triggers.engine import Engine

RULES = Path(__file__).resolve().parents[1] / "examples" / "rules.yaml"


def write_input(out: Path, events: int, customers: int, days: int) -> tuple[Path, Path]:
    gen = Generator(seed=3, customers=customers, days=days, noise=0.001)
    path, profiles = out / "events.jsonl", out / "customers.jsonl"
    with path.open("wb") as f:
        for line in gen.iter_bytes(limit=events):
            f.write(line + b"\n")
    profiles.write_bytes(b"".join(orjson.dumps(p) + b"\n" for p in gen.profiles()))
    return path, profiles


def timed(label: str, n: int, fn) -> float:  # noqa: ANN001
    started = time.perf_counter()
    fn()
    seconds = time.perf_counter() - started
    print(
        f"{label:<46}{seconds:8.2f} s {n / seconds:>12,.0f} events/s "
        f"{seconds / n * 1e6:8.1f} us/event"
    )
    return seconds


FLOW = [sys.executable, "-m", "bytewax.run", "keymoment.flows.dataflow:get_flow"]


def run_flow(settings: FlowSettings, processes: int = 1) -> tuple[float, float]:
    """Wall seconds and CPU seconds (all processes) of one `bytewax.run` of the flow."""
    env = dict(os.environ, **settings.to_env())
    cpu_before = _children_cpu()
    started = time.perf_counter()
    if processes == 1:
        subprocess.run(FLOW, env=env, check=True)
    else:
        addresses = ";".join(f"127.0.0.1:{_free_port()}" for _ in range(processes))
        procs = [
            subprocess.Popen([*FLOW, "-i", str(i), "-a", addresses], env=env)
            for i in range(processes)
        ]
        if any(proc.wait() != 0 for proc in procs):
            raise SystemExit("a flow process failed")
    return time.perf_counter() - started, _children_cpu() - cpu_before


def best_run(settings: FlowSettings, repeat: int, processes: int = 1) -> tuple[float, float]:
    """Best of `repeat` by wall time: the run least disturbed by the machine's other work."""
    return min(run_flow(settings, processes) for _ in range(repeat))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def split_input(lines: list[bytes], out: Path, parts: int) -> str:
    """`parts` files by `crc32(customer_id) % parts`, as a producer keyed by the shard hash."""
    files = [(out / f"part-{i}.jsonl").open("wb") for i in range(parts)]
    for n, line in enumerate(lines):
        try:
            customer = orjson.loads(line)["customer_id"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            customer = str(n)  # the generator's noise lines: anywhere
        files[shard_of(customer, parts)].write(line + b"\n")
    for f in files:
        f.close()
    return f"file:{out}/part-*.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=240)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--partitions", type=int, default=2, help="0 or 1: skip that part")
    parser.add_argument(
        "--processes", default="1,2", help="process counts over the partitions, e.g. 1,2,4"
    )
    parser.add_argument(
        "--only-partitions", action="store_true", help="measure part 5 only (docs/scaling.md)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="flow runs, best of N")
    parser.add_argument(
        "--metrics-repeat", type=int, default=3, help="metrics off/on pairs (0 skips them)"
    )
    parser.add_argument("--only-metrics", action="store_true", help="measure part 7 only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="km-bench-") as tmp:
        out = Path(tmp)
        events_path, profiles_path = write_input(out, args.events, args.customers, args.days)
        lines = events_path.read_bytes().splitlines()
        n = len(lines)
        rules = rules_from(str(RULES))
        print(
            f"{n:,} events, {args.customers:,} customers, rules {RULES.name}, "
            f"python {sys.version.split()[0]}"
        )
        decoded: list = []
        timed("decode only", n, lambda: decoded.extend(decode(raw, "b") for raw in lines))
        events = [e for e in decoded if not isinstance(e, DeadLetter)]

        def engine_only() -> None:
            engine = Engine(rules)
            for raw in lines:
                event = decode(raw, "b")
                if not isinstance(event, DeadLetter):
                    engine.feed(event)

        timed("engine only (decode + Engine.feed)", n, engine_only)
        if args.only_metrics:
            return metrics_cost(_settings(events_path, profiles_path, out, args), n, args)
        if args.only_partitions:
            settings = _settings(events_path, profiles_path, out, args)
            return partitioned(settings, lines, out, args)
        profiles = {}
        from keymoment.connectors.customers import read_profiles

        profiles, _ = read_profiles(profiles_path)

        def driver() -> None:
            replay = Replay(rules, profiles, policy_for(rules, None))
            for _ in replay.outputs([str(events_path)]):
                pass

        timed("decode + driver (engine + policy), no Bytewax", n, driver)
        settings = _settings(events_path, profiles_path, out, args)
        one = out / "one.jsonl"
        one.write_bytes(lines[0] + b"\n")
        startup, _ = best_run(settings.model_copy(update={"sources": [f"file:{one}"]}), 1)
        total, cpu = best_run(settings, args.repeat)
        flow = total - startup
        print(f"{'flow startup (one-line input)':<46}{startup:8.2f} s")
        print(
            f"{'flow, bytewax.run -w 1, file -> JSONL sinks':<46}{flow:8.2f} s "
            f"{n / flow:>12,.0f} events/s "
            f"{flow / n * 1e6:8.1f} us/event (startup excluded; {cpu:.1f} CPU s)"
        )
        decisions = sum(1 for _ in (out / "decisions.jsonl").open("rb"))
        print(f"decisions written: {decisions:,}")
        if args.partitions > 1:
            partitioned(settings, lines, out, args)
        snapshot_cost(rules, profiles, events, args.shards)
        if args.metrics_repeat:
            metrics_cost(settings, n, args)


def _settings(events_path: Path, profiles_path: Path, out: Path, args) -> FlowSettings:  # noqa: ANN001
    return FlowSettings(
        rules=str(RULES),
        sources=[f"file:{events_path}"],
        clock="event",
        customers=f"file:{profiles_path}",
        decisions=f"file:{out / 'decisions.jsonl'}",
        sinks={"*": f"file:{out / 'offers.jsonl'}"},
        shards=args.shards,
        batch_size=1000,
    )


def _run_command(settings: FlowSettings, metrics_port: int | None) -> tuple[float, float]:
    """Wall and CPU seconds of one `keymoment run`; with a port, scraped once a second."""
    cmd = [sys.executable, "-m", "keymoment", "run", "--rules", settings.rules, "--clock", "event"]
    cmd += ["--source", settings.sources[0], "--customers", str(settings.customers)]
    cmd += ["--decisions", str(settings.decisions), "--sink", settings.sinks["*"]]
    cmd += ["--shards", str(settings.shards), "--batch-size", str(settings.batch_size)]
    if metrics_port is not None:
        cmd += ["--metrics", str(metrics_port)]
    cpu_before, started = _children_cpu(), time.perf_counter()
    proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    scrapes = 0
    while proc.poll() is None:
        time.sleep(1.0)
        if metrics_port is not None:
            scrapes += _scrape(metrics_port)
    if proc.returncode != 0:
        raise SystemExit("keymoment run failed")
    return time.perf_counter() - started, _children_cpu() - cpu_before


def _scrape(port: int) -> int:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            resp.read()
        return 1
    except OSError:
        return 0


def driver_metrics_cost(settings: FlowSettings, n: int, repeat: int) -> None:
    """CPU seconds of the driver over the same batches, without and with the metrics calls."""
    from keymoment.connectors.customers import read_profiles
    from keymoment.flows.metrics import FlowMetrics

    rules = rules_from(settings.rules)
    profiles, _ = read_profiles(str(settings.customers).removeprefix("file:"))
    batches = list(
        Replay(rules, profiles, policy_for(rules, None)).batches([settings.sources[0][5:]])
    )

    scraped: list[FlowMetrics] = []

    def one(metered: bool) -> tuple[float, float]:
        """(CPU seconds of the whole pass, of which in the metrics calls)."""
        shard = Shard(Engine(rules), policy_for(rules, None), profiles)
        metrics, in_metrics = (FlowMetrics() if metered else None), 0.0
        if metrics is not None:
            scraped[:] = [metrics]  # the last one, scraped below
        clock = time.process_time
        started = clock()
        for batch in batches:
            out = shard.process(batch)
            if metrics is not None:
                before = clock()
                metrics.batch([batch])
                metrics.output(out, None)
                metrics.watermark(shard.engine.watermark)
                in_metrics += clock() - before
        return clock() - started, in_metrics

    off, on = [], []
    for _ in range(repeat):
        off.append(one(False)[0])
        on.append(one(True))
    best_on = min(on)
    label = f"driver alone, metrics off / on (best of {repeat})"
    print(
        f"{label:<46}{min(off):8.2f} / {best_on[0]:.2f} CPU s: {n / min(off):,.0f} / "
        f"{n / best_on[0]:,.0f} events/s ({(best_on[0] / min(off) - 1) * 100:+.1f}%)"
    )
    share = min(m / total for total, m in on)
    print(
        f"  in the metrics calls: {best_on[1]:.3f} CPU s, {best_on[1] / n * 1e6:.2f} us/event, "
        f"{share * 100:.1f}% of the driver's CPU (lowest of {repeat}; the flow adds Bytewax's "
        "cost, so the share there is smaller)"
    )
    from prometheus_client import generate_latest

    started = time.process_time()
    for _ in range(100):
        text = generate_latest(scraped[0].registry)
    each = (time.process_time() - started) / 100
    print(
        f"  one scrape of that registry: {each * 1e3:.2f} CPU ms ({len(text):,} bytes); "
        f"at one scrape per 15 s, {each / 15 * 100:.3f}% of a core"
    )


def metrics_cost(settings: FlowSettings, n: int, args) -> None:  # noqa: ANN001
    """`keymoment run` without and with `--metrics`, interleaved; best of each, and CPU."""
    driver_metrics_cost(settings, n, args.metrics_repeat)
    runs: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
    one = Path(settings.sources[0][5:]).with_name("one.jsonl")
    one.write_bytes(Path(settings.sources[0][5:]).read_bytes().split(b"\n", 1)[0] + b"\n")
    tiny = settings.model_copy(update={"sources": [f"file:{one}"]})
    starts: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
    for _ in range(args.metrics_repeat):
        runs["off"].append(_run_command(settings, None))
        runs["on"].append(_run_command(settings, _free_port()))
        starts["off"].append(_run_command(tiny, None))
        starts["on"].append(_run_command(tiny, _free_port()))
    off, on = min(w for w, _ in runs["off"]), min(w for w, _ in runs["on"])
    off_cpu, on_cpu = min(c for _, c in runs["off"]), min(c for _, c in runs["on"])
    label = f"keymoment run, metrics off / on (best of {args.metrics_repeat})"
    print(
        f"{label:<46}{off:8.2f} s / {on:.2f} s: {n / off:,.0f} / {n / on:,.0f} events/s "
        f"({(on / off - 1) * 100:+.1f}% wall); CPU {off_cpu:.2f} / {on_cpu:.2f} s "
        f"({(on_cpu / off_cpu - 1) * 100:+.1f}%), startup included"
    )
    pairs = ", ".join(
        f"{(b[0] / a[0] - 1) * 100:+.1f}%" for a, b in zip(runs["off"], runs["on"], strict=True)
    )
    print(f"  each pair, on against off (wall): {pairs}")
    s_off = min(c for _, c in starts["off"])
    s_on = min(c for _, c in starts["on"])
    work_off, work_on = off_cpu - s_off, on_cpu - s_on
    print(
        f"  startup alone (one-line input), CPU: {s_off:.2f} / {s_on:.2f} s; without it, "
        f"{work_off:.2f} / {work_on:.2f} CPU s ({(work_on / work_off - 1) * 100:+.1f}%)"
    )


def partitioned(settings: FlowSettings, lines: list[bytes], out: Path, args) -> None:  # noqa: ANN001
    """1 process against 2 on the same input split into `--partitions` files by customer."""
    split = out / "split"
    split.mkdir()
    glob = split_input(lines, split, args.partitions)
    tiny = out / "tiny"
    tiny.mkdir()
    tiny_glob = split_input(lines[: 2 * args.partitions], tiny, args.partitions)
    source = settings.model_copy(update={"sources": [glob]})
    for processes in (int(p) for p in args.processes.split(",")):
        startup, cpu0 = best_run(source.model_copy(update={"sources": [tiny_glob]}), 1, processes)
        total, cpu = best_run(source, args.repeat, processes)
        flow, net = total - startup, cpu - cpu0
        print(
            f"{f'{args.partitions} partitions, {processes} process(es)':<46}{flow:8.2f} s "
            f"{len(lines) / flow:>12,.0f} events/s  startup {startup:.1f} s, "
            f"{cpu:.1f} CPU s in all, {net:.1f} net of start-up "
            f"({len(lines) / max(net, 1e-9):,.0f} events per CPU s; load {_load()})",
            flush=True,
        )


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def snapshot_cost(rules, profiles, events, shards: int) -> None:  # noqa: ANN001
    """Feed everything into `shards` shards, then pickle each as `ShardLogic.snapshot` does."""
    parts = [Shard(Engine(rules), policy_for(rules, None), profiles) for _ in range(shards)]
    for event in events:
        parts[shard_of(event.customer_id, shards)].engine.feed(event)
    customers = sum(len(p.engine.customers) for p in parts)
    sizes, seconds = [], []
    for part in parts:
        started = time.perf_counter()
        sizes.append(len(pickle.dumps(part.snapshot(), protocol=pickle.HIGHEST_PROTOCOL)))
        seconds.append(time.perf_counter() - started)
    print(
        f"snapshot of all {shards} shards: {customers:,} customers in state, "
        f"{sum(sizes) / 1e6:.1f} MB, {sum(seconds):.2f} s "
        f"({sum(seconds) / max(customers, 1) * 1e6:.1f} us/customer)"
    )
    # with two processes each pickles only the shards placed on it (flows/placement.py)
    mine = [i for i in range(shards) if i % 2 == 0]
    print(
        f"  of which on process 0 of 2: {len(mine)} shards, "
        f"{sum(sizes[i] for i in mine) / 1e6:.1f} MB, {sum(seconds[i] for i in mine):.2f} s"
    )


if __name__ == "__main__":
    main()
