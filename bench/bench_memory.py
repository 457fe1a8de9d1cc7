"""Resident memory per customer held: the engine against the plain baseline, same stream.

    python bench/bench_memory.py --customers 200000 --events 600000 [--against DIR]
    python bench/bench_memory.py --profiles 1000000 [--against DIR]   # loaded profiles only

Each side runs in its own fresh subprocess (RSS is per process and CPython
rarely gives memory back), reads the generator's payloads from one file,
and reports RSS growth over the run divided by the customers it holds at
the end: what a process needs per customer, allocator overhead included
(issue 13's goal: under 1 KB at 1,000,000 customers). GC frozen/off alike.

`--profiles N` measures the customer reference data instead: RSS growth of
`read_profiles` over the generator's N profiles (a JSONL file, as `--customers`
reads it), per profile held (goal: profiles do not double the engine's
figure). `--against DIR` runs the engine's (or the profiles') child from an
older checkout too, on the same file, for a before/after in one run.
"""

from __future__ import annotations

import argparse
import gc
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096


def child(kind: str, path: str, until: str) -> None:
    sys.path.insert(0, str(HERE))
    payloads = Path(path).read_bytes().splitlines()
    gc.collect()
    gc.freeze()
    before = rss()
    if kind == "profiles":
        from keymoment.connectors.customers import read_profiles

        profiles, _ = read_profiles(path)
        held = len(profiles)
    elif kind == "baseline":
        import baseline_plain

        held = baseline_plain.held_after(payloads, baseline_plain.to_us(until))
    else:
        held = engine_held(payloads, until)
    print(f"{kind} {held} {rss() - before}")


def engine_held(payloads: list[bytes], until: str) -> int:
    from datetime import datetime

    from keymoment.config import load_rules
    from keymoment.connectors.wire import DeadLetter, decode
    from keymoment.triggers.engine import Engine

    sys.path.insert(0, str(HERE))
    import baseline_plain

    engine = Engine(load_rules(baseline_plain.RULES))
    for n, raw in enumerate(payloads):
        event = decode(raw, "m")
        if type(event) is not DeadLetter:
            engine.feed(event)  # type: ignore[arg-type]
        if n % 65_536 == 0:
            gc.collect(1)
            gc.freeze()
    engine.advance(datetime.fromisoformat(until))
    return len(engine.customers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=200_000)
    parser.add_argument("--events", type=int, default=600_000)
    parser.add_argument("--profiles", type=int, help="measure N loaded profiles instead")
    parser.add_argument("--against", metavar="DIR", help="an older checkout too, same input")
    parser.add_argument("--child", nargs=3)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    if args.profiles:
        profiles_case(args.profiles, args.against)
        return
    sys.path.insert(0, str(HERE))
    import baseline_plain

    payloads, until = baseline_plain.generated(args.events, args.customers)
    end = payloads and baseline_plain.orjson.loads(payloads[-1])["occurred_at"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        path.write_bytes(b"\n".join(payloads))
        cases = [("baseline", "baseline", None), ("engine", "engine", None)]
        if args.against:
            cases.append(("before", "engine", args.against))
        for label, kind, code in cases:
            argv = [sys.executable, __file__, "--child", kind, str(path), end]
            held, grown = child_run(argv, code)
            print(f"{label:9s} {held:,} customers held, RSS +{grown / 2**20:,.1f} MiB, "
                  f"{grown / max(held, 1):,.0f} B per customer")  # fmt: skip
    del until


def child_run(argv: list[str], code: str | None) -> tuple[int, int]:
    """(held, RSS growth) printed by a child, run on `code`'s checkout when given."""
    import os

    env = {**os.environ, "PYTHONPATH": code} if code else None
    out = subprocess.run(argv, capture_output=True, text=True, check=True, env=env).stdout.split()
    return int(out[1]), int(out[2])


def profiles_case(count: int, against: str | None) -> None:
    """RSS per loaded profile, this checkout (and `against`), each in a fresh process."""
    import orjson

    from keymoment.connectors.generator import Generator

    gen = Generator(seed=1, customers=count, days=240, activity=0.3)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "customers.jsonl"
        path.write_bytes(b"".join(orjson.dumps(p) + b"\n" for p in gen.profiles()))
        for label, code in (("profiles", None), ("before", against)):
            if label == "before" and code is None:
                continue
            argv = [sys.executable, __file__, "--child", "profiles", str(path), "-"]
            held, grown = child_run(argv, code)
            print(f"{label:9s} {held:,} profiles held, RSS +{grown / 2**20:,.1f} MiB, "
                  f"{grown / max(held, 1):,.0f} B per profile")  # fmt: skip


if __name__ == "__main__":
    main()
