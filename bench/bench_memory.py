"""Resident memory per customer held: the engine against the plain baseline, same stream.

    python bench/bench_memory.py --customers 200000 --events 600000

Each side runs in its own fresh subprocess (RSS is per process and CPython
rarely gives memory back), reads the generator's payloads from one file,
and reports RSS growth over the run divided by the customers it holds at
the end: what a process needs per customer, allocator overhead included
(issue 13's goal: under 1 KB at 1,000,000 customers). GC frozen/off alike.
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
    if kind == "baseline":
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
    parser.add_argument("--child", nargs=3)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    sys.path.insert(0, str(HERE))
    import baseline_plain

    payloads, until = baseline_plain.generated(args.events, args.customers)
    end = payloads and baseline_plain.orjson.loads(payloads[-1])["occurred_at"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        path.write_bytes(b"\n".join(payloads))
        for kind in ("baseline", "engine"):
            argv = [sys.executable, __file__, "--child", kind, str(path), end]
            out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.split()
            held, grown = int(out[1]), int(out[2])
            print(f"{kind:9s} {held:,} customers held, RSS +{grown / 2**20:,.1f} MiB, "
                  f"{grown / max(held, 1):,.0f} B per customer")  # fmt: skip
    del until


if __name__ == "__main__":
    main()
