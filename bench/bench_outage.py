"""Outcomes under a cap-store outage, candidate by candidate beside a fault-free run (issue 8).

    .venv/bin/python bench/bench_outage.py [--events 200000] [--customers 9000] [--days 240]
        [--runs 2] [--ephemeral]

The issue's scenario: `keymoment run --clock event --until <end> --batch-size 200
--state redis://...` over generated events, once fault-free and `--runs` times with
the Redis server SIGKILLed at 4 s, restarted at 9 s, SIGSTOPped from 14 to 18 s
(seconds after the flow wrote its first decision). The server keeps an append-only
file (`appendfsync everysec`), as production should, so a restart keeps the history;
`--ephemeral` runs it without persistence (the restart then comes back empty, and
the store fails closed from there on: docs/policy.md).

Printed per fault run: candidates missing from or extra in the decision log
(must be 0), how many candidates whose fault-free outcome needs no store
(control, suppressed, arbitration_lost, no_channel, expired by ttl/max_delay)
changed (must be 0), and every outcome transition with its count.
"""

from __future__ import annotations

import argparse
import collections
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import bench_flow  # noqa: E402
from keymoment.connectors.generator import Generator  # noqa: E402
from tests.support.servers import RedisServer  # noqa: E402

RULES = Path(__file__).resolve().parents[1] / "examples" / "rules.yaml"
NEEDS_NO_STORE = {"control", "suppressed", "arbitration_lost", "no_channel"}
FAULTS = [(4.0, "kill"), (9.0, "restart"), (14.0, "stop"), (18.0, "cont")]


def write_input(out: Path, events: int, customers: int, days: int) -> tuple[Path, Path, str]:
    """bench_flow's seeded input, and the generator's end as `--until`."""
    path, profiles = bench_flow.write_input(out, events, customers, days)
    return path, profiles, Generator(seed=3, customers=customers, days=days).until_at.isoformat()


def fault(server: RedisServer, action: str) -> None:
    proc = server.proc
    if action == "kill":
        server.kill()
    elif action == "restart":
        server.start()
    elif proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGSTOP if action == "stop" else signal.SIGCONT)


def run(data: tuple[Path, Path, str], out: Path, faults: list, persistent: bool) -> tuple:
    """One `keymoment run`; its decisions by offer_id and seconds from first decision to exit."""
    out.mkdir(parents=True)
    server = RedisServer(persistent=persistent).start()
    decisions = out / "decisions.jsonl"
    events, customers, until = data
    argv = [sys.executable, "-m", "keymoment", "run", "--rules", str(RULES)]
    argv += ["--source", f"file:{events}", "--customers", f"file:{customers}", "--clock"]
    argv += ["event", "--until", until, "--batch-size", "200", "--state", server.url]
    argv += ["--decisions", f"file:{decisions}", "--sink", f"file:{out / 'offers.jsonl'}"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        while proc.poll() is None and not (decisions.exists() and decisions.stat().st_size):
            time.sleep(0.02)
        started = time.monotonic()
        for at, action in faults:
            try:
                proc.wait(timeout=max(at - (time.monotonic() - started), 0))
            except subprocess.TimeoutExpired:
                fault(server, action)
        _, err = proc.communicate()
        took = time.monotonic() - started
    finally:
        fault(server, "cont")
        server.stop()
    if proc.returncode:
        sys.exit(f"keymoment run failed: {err[-500:]}")
    rows = [orjson.loads(line) for line in decisions.open("rb")]
    return {r["offer_id"]: r for r in rows}, took, len(rows)


def compare(ref: dict, got: dict) -> tuple[int, int, int, collections.Counter]:
    missing, extra = len(set(ref) - set(got)), len(set(got) - set(ref))
    moves: collections.Counter = collections.Counter()
    protected = 0
    for offer_id, want in ref.items():
        have = got.get(offer_id)
        if have is None:
            continue
        a, b = (want["outcome"], want["reason"]), (have["outcome"], have["reason"])
        if a[0] != b[0] or (a[0] == "expired" and a != b):
            moves[(f"{a[0]}/{a[1]}", f"{b[0]}/{b[1]}")] += 1
            stays = want["outcome"] in NEEDS_NO_STORE or want["outcome"] == "expired"
            protected += stays
    return missing, extra, protected, moves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--customers", type=int, default=9_000)
    parser.add_argument("--days", type=int, default=240)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--ephemeral", action="store_true", help="Redis without persistence")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="km-outage-") as tmp:
        data = write_input(Path(tmp), args.events, args.customers, args.days)
        ref, took, rows = run(data, Path(tmp) / "ref", [], not args.ephemeral)
        sent = sum(r["outcome"] == "sent" for r in ref.values())
        print(f"fault-free: {rows:,} candidates ({sent:,} sent) in {took:.1f} s after start")
        for n in range(args.runs):
            got, took, rows = run(data, Path(tmp) / f"fault-{n}", FAULTS, not args.ephemeral)
            missing, extra, protected, moves = compare(ref, got)
            print(
                f"fault run {n + 1}: {rows:,} decisions in {took:.1f} s; missing {missing}, "
                f"extra {extra}, duplicates {rows - len(got)}; "
                f"no-store outcomes changed {protected}"
            )
            for (a, b), count in moves.most_common():
                print(f"    {a:<34} -> {b:<34} {count:>6,}")


if __name__ == "__main__":
    main()
