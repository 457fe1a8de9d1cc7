"""Two processes, events crossing between them: CPU seconds beside an older checkout's.

    python bench/bench_crossing.py --against /tmp/old            # old = git archive REV
    python bench/bench_crossing.py --events 1000000 --repeat 3 --against /tmp/old

A two-process `keymoment run` (event clock, `--process-id`/`--addresses` on
loopback, 8 shards, file sources to a decision log and an offers file) on the
generator's stream split into two files, one read by each process, in two
layouts:

- `aligned`: split by the shard hash (`crc32(customer_id) % 2`), as
  docs/dataflow.md recommends and as bench_live.py feeds its processes: an
  event's shard mostly lives in the process that reads it;
- `crossing`: split by another hash (`adler32`), as a Kafka producer keyed by
  its own hash (murmur2) would: each customer still in one file, but about
  half of the events have their shard in the other process and cross to it
  through Bytewax (`flows/handover.py`).

Rounds alternate the order of the cases; each case keeps its best CPU time
(both processes, start-up included; the same command on a one-line input is
the `startup` column, taken off in `net`). The plain-Python baseline of the
four rules (bench/baseline_plain.py) runs in each round too, so each line
prints its ratio. After the table, every run's decision log is checked to
hold the same decisions as the first one's (outcome per candidate), so no
figure stands for other work.

The whole flow's CPU moves by about half a second between runs of the same
code, as much as the hand-over costs; so the hand-over is also measured
alone (`handover`): a child process per checkout stamps each layout's files
as the flow's workers do (8 shards, partitioned watermarks) and pickles and
unpickles the batches of the shards that live on the other worker (shard
`s` on worker `s % 2`, file `i` read by worker `i`), which is what Bytewax
does with them; best CPU of `--repeat` interleaved rounds.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import zlib
from collections import Counter
from pathlib import Path

import orjson

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import baseline_plain  # noqa: E402 - the sibling script, not a package

from keymoment.connectors.generator import Generator  # noqa: E402
from tests.support.servers import free_port  # noqa: E402

HASHES = {"aligned": zlib.crc32, "crossing": zlib.adler32}


def write_input(tmp: Path, events: int, customers: int) -> tuple[list[bytes], Path, str]:
    """The stream, both layouts' two files, a one-line pair for start-up, the profiles."""
    gen = Generator(seed=1, customers=customers, days=240, activity=0.3)
    payloads = list(gen.iter_bytes(limit=events))
    profiles = tmp / "customers.jsonl"
    profiles.write_bytes(b"".join(orjson.dumps(p) + b"\n" for p in gen.profiles()))
    for layout, hashed in [*HASHES.items(), ("startup", zlib.crc32)]:
        (tmp / layout).mkdir()
        files = [(tmp / layout / f"part-{i}.jsonl").open("wb") for i in range(2)]
        for payload in payloads if layout != "startup" else payloads[:2]:
            customer = orjson.loads(payload)["customer_id"]
            files[hashed(customer.encode()) % 2].write(payload + b"\n")
        for f in files:
            f.close()
    return payloads, profiles, gen.until_at.isoformat().replace("+00:00", "Z")


def run_pair(code: str | None, inputs: Path, profiles: Path, until: str, out: Path) -> float:
    """CPU seconds of both processes of one two-process run (`code`: an older checkout)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if code:
        env["PYTHONPATH"] = code
    addresses = f"127.0.0.1:{free_port()};127.0.0.1:{free_port()}"
    out.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "keymoment", "run", "--rules", str(baseline_plain.RULES),
            "--source", f"file:{inputs}/part-*.jsonl", "--customers", f"file:{profiles}",
            "--clock", "event", "--until", until, "--shards", "8",
            "--decisions", f"file:{out / 'decisions.jsonl'}",
            "--sink", f"file:{out / 'offers.jsonl'}", "--addresses", addresses]  # fmt: skip
    procs = [
        subprocess.Popen(
            [*argv, "--process-id", str(i)],
            env=env,
            cwd=code,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for i in range(2)
    ]
    cpu = 0.0
    for proc in procs:
        _, status, usage = os.wait4(proc.pid, 0)
        err = proc.stderr.read().decode() if proc.stderr else ""
        if os.waitstatus_to_exitcode(status):
            raise SystemExit(f"a flow process failed: {err.strip()[-300:]}")
        cpu += usage.ru_utime + usage.ru_stime
    return cpu


HANDOVER = """
import pickle, sys, time
from datetime import timedelta
from pathlib import Path
from keymoment.connectors.lines import JsonlReader
from keymoment.flows.stamp import Stamper

batches, crossing = [], 0
for worker in (0, 1):
    stamper = Stamper(8, timedelta(0), timedelta(minutes=5), partitioned=True)
    path = Path(sys.argv[1]) / f"part-{worker}.jsonl"
    reader = JsonlReader(path, str(path))
    while (lines := reader.read(1000)) is not None:
        for shard, (_, batch) in enumerate(stamper([lines])):
            if shard % 2 != worker:  # lives on the other worker: pickled by Bytewax
                batches.append(batch)
                crossing += len(batch.positions)
started = time.process_time()
for batch in batches:
    pickle.loads(pickle.dumps(batch))
print(time.process_time() - started, crossing, len(batches))
"""


def handover(code: str | None, inputs: Path) -> tuple[float, int, int]:
    """CPU seconds of the cross-process batches' pickling round trips, the events in them,
    and the number of batches (`code`: an older checkout)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if code:
        env["PYTHONPATH"] = code
    out = subprocess.run(
        [sys.executable, "-c", HANDOVER, str(inputs)],
        env=env, cwd=code, capture_output=True, text=True, check=True,
    )  # fmt: skip
    cpu, events, batches = out.stdout.split()
    return float(cpu), int(events), int(batches)


def decided(out: Path) -> Counter:
    """The decision log as (rule, customer, event, triggered_at, outcome) with counts."""
    got: Counter = Counter()
    with (out / "decisions.jsonl").open("rb") as f:
        for line in f:
            d = orjson.loads(line)
            got[
                (d["rule_id"], d["customer_id"], d["event_id"], d["triggered_at"], d["outcome"])
            ] += 1
    return got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=2, help="rounds, best of N per case")
    parser.add_argument("--against", help="an older checkout (git archive REV | tar -x -C DIR)")
    parser.add_argument("--handover-only", action="store_true", help="the hand-over alone")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="km-crossing-") as name:
        tmp = Path(name)
        payloads, profiles, until = write_input(tmp, args.events, args.customers)
        until_us = baseline_plain.to_us(until)
        codes = {"": None, " (before)": args.against} if args.against else {"": None}
        # case -> (checkout, input files, its start-up case)
        runs = {
            f"{layout}{label}": (code, tmp / layout, f"startup{label}")
            for layout in HASHES
            for label, code in codes.items()
        }
        starts = {f"startup{label}": (code, tmp / "startup", "") for label, code in codes.items()}
        best: dict[str, float] = {}
        for round_ in range(0 if args.handover_only else args.repeat):
            order = ["baseline", *runs, *starts]
            for case in order if round_ % 2 == 0 else order[::-1]:
                if case == "baseline":
                    cpu = baseline_plain.gc_off(baseline_plain.run, payloads, until_us)[1]
                else:
                    code, inputs, _ = {**runs, **starts}[case]
                    cpu = run_pair(code, inputs, profiles, until, tmp / "out" / case)
                best[case] = min(cpu, best.get(case, cpu))
        if not args.handover_only:
            table(best, runs, len(payloads), args.customers, args.repeat)
        crossed: dict[str, tuple[float, int, int]] = {}
        for round_ in range(args.repeat):
            for case in runs if round_ % 2 == 0 else list(runs)[::-1]:
                code, inputs, _ = runs[case]
                got = handover(code, inputs)
                crossed[case] = min(got, crossed.get(case, got))
        print(
            "  the hand-over alone (pickle round trips of the batches to the other worker's "
            "shards; per crossing event: net of the same checkout's aligned trips, the rises):"
        )
        for case, (cpu, events, batches) in crossed.items():
            rises = crossed[case.replace("crossing", "aligned")][0]
            each = f": {(cpu - rises) / events * 1e6:.2f} us per crossing event" if events else ""
            print(f"  {case:<22}{cpu:8.3f} CPU s, {events:,} events in {batches:,} batches{each}")
        if args.handover_only:
            return
        first = decided(tmp / "out" / next(iter(runs)))
        for case in runs:
            same = decided(tmp / "out" / case) == first
            verdict = "equal" if same else "NOT EQUAL"
            print(f"  {case}: decisions {verdict} to the first case's ({sum(first.values()):,})")
            if not same:
                raise SystemExit(1)


def table(best: dict[str, float], runs: dict, n: int, customers: int, repeat: int) -> None:
    """The flow runs' CPU seconds, net of start-up, per event, and their ratio to the baseline."""
    print(
        f"{n:,} events, {customers:,} customers, bench/four_rules.yaml, two processes, "
        f"8 shards, best of {repeat} interleaved rounds, CPU seconds of both processes"
    )
    print(f"  {'case':<22}{'CPU s':>8}{'startup':>9}{'net':>8}{'us/event':>10}{'ratio':>7}")
    base = best["baseline"]
    print(f"  {'baseline (one process)':<22}{base:8.2f}{'':>9}{'':>8}{base / n * 1e6:10.2f}")
    for case, (_, _, startup) in runs.items():
        net = best[case] - best[startup]
        print(
            f"  {case:<22}{best[case]:8.2f}{best[startup]:9.2f}{net:8.2f}{net / n * 1e6:10.2f}"
            f"{base / best[case]:7.2f}"
        )


if __name__ == "__main__":
    main()
