"""Engine-only replay benchmark: decoding included, I/O excluded (issue 2, benchmark).

    .venv/bin/python bench/bench_engine.py                 # Berka + 1M synthetic events, best of 3
    .venv/bin/python bench/bench_engine.py --events 200000 --customers 20000 --repeat 1
    .venv/bin/python bench/bench_engine.py --profile       # plus a cProfile of decode+engine
    .venv/bin/python bench/bench_engine.py --against DIR   # A/B: DIR's engine vs this tree's
    .venv/bin/python bench/bench_engine.py --opcodes 20000 --events 120000 --customers 12000
                                                           # opcodes per event, by function

Payloads are prepared in memory first (Berka rows mapped with the
importer's own functions; the seeded generator for the synthetic stream),
so the timed loops touch no file. Three figures per data set, each the best
of `--repeat` runs (the machine may be shared):

- decode alone (the same-run baseline): bytes -> Event;
- engine alone: `Engine.feed` over already decoded events, plus the final
  `advance` to the end of input;
- decode + engine: what the backtest's inner loop does.

Then peak RSS of the process, bytes of engine state per customer held at
the end (a deep size of the state objects, plus its pickle size), and
candidates per rule. Goals: >= 150k events/s engine, >= 80k events/s
decode + engine, < 2 KB state per customer.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import os
import pickle
import pstats
import resource
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from keymoment.config import load_rules
from keymoment.connectors.generator import Generator
from keymoment.connectors.wire import DeadLetter, decode
from keymoment.triggers.engine import Engine
from keymoment.triggers.events import CustomerProfile

REPO = Path(__file__).resolve().parent.parent
BERKA = REPO.parent / "shared" / "data" / "berka"
GOALS = {"engine": 150_000, "decode+engine": 80_000}


def berka_payloads() -> tuple[list[bytes], dict[str, CustomerProfile], datetime | None]:
    """The Berka transactions in time order (up to 1994-10-30, as the README asks), as bytes."""
    from keymoment.commands.importer import berka_customers, berka_events

    events = [
        e for e in berka_events(BERKA / "trans_first100k.asc.gz") if e["occurred_at"] < "1994-10-31"
    ]
    events.sort(key=lambda e: e["occurred_at"])  # stable: file order within a day
    profiles = {p["customer_id"]: CustomerProfile.model_validate(p)
                for p in berka_customers(BERKA / "account.asc", ["app_push", "sms"])}  # fmt: skip
    return [orjson.dumps(e) for e in events], profiles, None


def synthetic_payloads(
    args: argparse.Namespace,
) -> tuple[list[bytes], dict[str, CustomerProfile], datetime]:
    gen = Generator(
        seed=args.seed, customers=args.customers, days=args.days, activity=args.activity
    )
    profiles = {p["customer_id"]: CustomerProfile.model_validate(p) for p in gen.profiles()}
    return list(gen.iter_bytes(limit=args.events)), profiles, gen.until_at


def best_of(repeat: int, run: Callable[[], Any]) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        result = None
        gc.unfreeze()
        gc.collect()
        started = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - started)
    return best, result


GC_EVERY = 65_536


def young_gc(n: int) -> None:
    """As flows/dataflow.py does live: collect the young generations, freeze the survivors.

    Without it CPython's full collections rescan the whole engine state (and,
    here, the million decoded events) every time the heap grows by a quarter.
    """
    if GC_MODE == "freeze" and n % GC_EVERY == 0:
        gc.collect(1)
        gc.freeze()


GC_MODE = "freeze"


def decode_all(payloads: list[bytes]) -> list[Any]:
    return [decode(raw, "bench") for raw in payloads]


def feed_all(
    rules: Any, events: list[Any], profiles: dict, until: datetime | None, make: Any = Engine
) -> Engine:
    engine = make(rules)
    feed, get = engine.feed, profiles.get
    for n, event in enumerate(events):
        if type(event) is not DeadLetter:
            feed(event, get(event.customer_id))
        young_gc(n)
    engine.advance(until or engine.watermark)
    return engine


def decode_and_feed(
    rules: Any,
    payloads: list[bytes],
    profiles: dict,
    until: datetime | None,
    make: Any = Engine,
    decoder: Any = decode,
) -> Engine:
    engine = make(rules)
    feed, get = engine.feed, profiles.get
    for n, raw in enumerate(payloads):
        event = decoder(raw, "bench")
        if type(event) is not DeadLetter:
            feed(event, get(event.customer_id))
        young_gc(n)
    engine.advance(until or engine.watermark)
    return engine


def count_candidates(
    rules: Any, events: list[Any], profiles: dict, until: datetime | None, make: Any = Engine
) -> Counter:
    engine, counts = make(rules), Counter()
    for event in events:
        if type(event) is not DeadLetter:
            counts.update(
                c.rule_id for c in engine.feed(event, profiles.get(event.customer_id)).candidates
            )
    counts.update(c.rule_id for c in engine.advance(until or engine.watermark))
    return counts


def deep_size(obj: Any, seen: set[int] | None = None) -> int:
    """Bytes of `obj` and everything it references (containers, slots), each object once."""
    seen = set() if seen is None else seen
    stack, total = [obj], 0
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        total += sys.getsizeof(item)
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)
        elif hasattr(type(item), "__slots__") and not isinstance(item, str | int | float):
            stack.extend(getattr(item, s) for s in type(item).__slots__ if hasattr(item, s))
    return total


def state_size(engine: Engine) -> tuple[int, float, float]:
    """Customers held, deep bytes per customer (heap and eviction hours included), pickle bytes."""
    held = len(engine.customers)
    if not held:
        return 0, 0.0, 0.0
    seen = {id(None), id(True), id(False)}  # one set: heap and state share their datetimes
    timers = deep_size(engine._heap, seen) + deep_size(engine._evictions.hours, seen)
    deep = deep_size(engine.customers, seen) + timers
    pickled = len(pickle.dumps(engine.snapshot(), protocol=pickle.HIGHEST_PROTOCOL))
    return held, deep / held, pickled / held


def bench(name: str, payloads: list[bytes], profiles: dict, until: datetime | None, args) -> None:
    rules = load_rules(args.rules)
    n = len(payloads)
    print(f"\n== {name}: {n:,} events, {len(profiles):,} customer profiles, best of {args.repeat}")
    t_decode, events = best_of(args.repeat, lambda: decode_all(payloads))
    dead = Counter(e.reason for e in events if type(e) is DeadLetter)
    t_engine, engine = best_of(args.repeat, lambda: feed_all(rules, events, profiles, until))
    t_both, _ = best_of(args.repeat, lambda: decode_and_feed(rules, payloads, profiles, until))
    rows = [
        ("decode alone (baseline)", t_decode),
        ("engine alone", t_engine),
        ("decode+engine", t_both),
    ]
    for label, seconds in rows:
        goal = GOALS.get(label.split(" ")[0] if label.startswith("engine") else label, 0)
        rate = n / seconds
        note = f"  (goal {goal:,}: {rate / goal:.0%})" if goal else ""
        print(f"  {label:26s} {seconds:7.2f} s  {rate:10,.0f} events/s{note}")
    held, deep, pickled = state_size(engine)
    print(f"  state at end: {held:,} customers held, {deep:,.0f} B/customer in memory "
          f"(goal < 2,048), {pickled:,.0f} B/customer pickled; "
          f"{engine.pending_timers():,} heap entries")  # fmt: skip
    print(f"  dead letters: {dict(dead) or 0}")
    counts = count_candidates(rules, events, profiles, until)
    print(
        "  candidates per rule: "
        + ", ".join(f"{rule.rule_id}={counts.get(rule.rule_id, 0):,}" for rule in rules.rules)
    )
    print(
        f"  peak RSS so far: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB"
    )
    if args.profile:
        profile(rules, payloads, profiles, until)


def profile(rules: Any, payloads: list[bytes], profiles: dict, until: datetime | None) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    decode_and_feed(rules, payloads, profiles, until)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(18)
    print("  profile (decode+engine, by own time):")
    print("\n".join("    " + line for line in out.getvalue().splitlines()[6:30] if line.strip()))


def opcodes(rules: Any, payloads: list[bytes], profiles: dict, counted: int) -> None:
    """Python opcodes per event by function over the last `counted` events (`sys.settrace`).

    Load-independent, unlike CPU time on a shared machine (docs/engine.md round 5):
    the events before them only warm the state up. Engine only, as the flow calls
    it: `advance` to each event's time, then `evaluate`.
    """
    events = [e for e in decode_all(payloads) if type(e) is not DeadLetter]
    engine = Engine(rules)
    engine.dirty = None  # a replay's engine: nothing takes incremental snapshots
    warm, timed = events[:-counted], events[-counted:]
    for event in warm:
        engine.advance(event.occurred_at)
        engine.evaluate(event, profiles.get(event.customer_id))
    counts: Counter = Counter()

    def trace(frame: Any, kind: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        if kind == "opcode":
            counts[frame.f_code.co_qualname] += 1
        return trace

    sys.settrace(trace)
    for event in timed:
        engine.advance(event.occurred_at)
        engine.evaluate(event, profiles.get(event.customer_id))
    sys.settrace(None)
    counts.pop("opcodes.<locals>.trace", None)
    print(f"  {sum(counts.values()) / len(timed):.1f} opcodes per event over {len(timed):,} events")
    for name, count in counts.most_common(16):
        print(f"  {count / len(timed):7.1f}  {name}")


def run_one(name: str, payloads: list[bytes], profiles: dict, until, args) -> None:
    if args.opcodes:
        print(f"\n== {name}: {len(payloads):,} events, {Path(args.rules).name}")
        opcodes(load_rules(args.rules), payloads, profiles, args.opcodes)
    elif args.against:
        against(args.against, name, payloads, args)
    else:
        bench(name, payloads, profiles, until, args)


def against(checkout: str, name: str, payloads: list[bytes], args) -> None:
    """Engine alone, `checkout` (a directory holding another version, as `bench_ratio.py
    --against` takes) against this tree, alternating in fresh processes over one file.

    Each process runs this script's `--time-engine FILE` with its own tree on
    `PYTHONPATH`, so the other side needs only what every round has kept
    (`load_rules`, `decode_many`, `Engine.advance` / `evaluate`). CPU time, best of
    `--repeat` per process, two processes per side; the candidates must be equal.
    """
    import tempfile  # only this mode writes a file

    sides = {"before": Path(checkout).resolve(), "now": REPO}
    best = dict.fromkeys(sides, float("inf"))
    found: dict[str, set[int]] = {side: set() for side in sides}
    with tempfile.TemporaryDirectory() as tmp:
        events = Path(tmp) / "events.jsonl"
        events.write_bytes(b"\n".join(payloads) + b"\n")
        for side in [*sides, *reversed(sides)]:
            argv = [sys.executable, __file__, "--time-engine", str(events), "--rules", args.rules]
            argv += ["--repeat", str(args.repeat)]
            env = {**os.environ, "PYTHONPATH": str(sides[side])}
            done = subprocess.run(argv, cwd=sides[side], env=env, capture_output=True, check=True)
            result = orjson.loads(done.stdout.splitlines()[-1])
            best[side] = min(best[side], result["cpu"])
            found[side].add(result["candidates"])
    assert found["before"] == found["now"] and len(found["now"]) == 1, f"candidates: {found}"
    count = found["now"].pop()
    print(f"\n== {name}: {len(payloads):,} events, {Path(args.rules).name}, engine alone, "
          f"CPU s, best of {2 * args.repeat} (candidates equal: {count:,})")  # fmt: skip
    before, now = best["before"], best["now"]
    print(f"  {checkout}: {before:.2f} s   now: {now:.2f} s   x{before / now:.2f}")


def time_engine(path: str, rules: str, repeat: int) -> None:
    """`--time-engine`: decode `path` as a replay does (`decode_many` per 1,000 lines,
    `balance_after` only when a rule reads it), then time `advance` + `evaluate` over the
    events with the GC frozen and off and `dirty` None, as in a replay; prints JSON."""
    from keymoment.connectors.wire import decode_many
    from keymoment.flows.replay import reads_balances

    ruleset = load_rules(rules)
    balances, raws = reads_balances(ruleset), Path(path).read_bytes().splitlines()
    events = [
        event
        for start in range(0, len(raws), 1000)
        for event in decode_many([("bench", raw) for raw in raws[start : start + 1000]],
                                 balances=balances)
        if not isinstance(event, DeadLetter)
    ]  # fmt: skip
    gc.collect()
    gc.freeze()
    gc.disable()
    cpu, count = float("inf"), 0
    for _ in range(repeat):
        engine = Engine(ruleset)
        engine.dirty = None
        advance, evaluate, count = engine.advance, engine.evaluate, 0
        started = time.process_time()
        for event in events:
            count += len(advance(event.occurred_at))
            count += len(evaluate(event) or ())
        cpu = min(cpu, time.process_time() - started)
    print(orjson.dumps({"cpu": cpu, "candidates": count}).decode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", default=str(REPO / "examples" / "rules.yaml"))
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=240)
    parser.add_argument("--activity", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-berka", action="store_true")
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--opcodes", type=int, metavar="N", help="instead: opcodes per event over the last N events"
    )
    parser.add_argument(
        "--against",
        metavar="DIR",
        help="instead of the figures: the engine alone, DIR's checkout against this one",
    )
    parser.add_argument("--time-engine", metavar="FILE", help=argparse.SUPPRESS)  # `against`'s
    parser.add_argument(
        "--gc",
        choices=["freeze", "default"],
        default="freeze",
        help="freeze: young collections + gc.freeze() as the live flow does; default: CPython's",
    )
    args = parser.parse_args()
    if args.time_engine:
        time_engine(args.time_engine, args.rules, args.repeat)
        return
    global GC_MODE
    GC_MODE = args.gc
    print(
        f"python {sys.version.split()[0]}, one process, one core; figures are best of "
        f"{args.repeat}; gc: {args.gc}"
    )
    if not args.skip_berka:
        if (BERKA / "trans_first100k.asc.gz").is_file():
            run_one("berka", *berka_payloads(), args)
        else:
            print(f"\n== berka: skipped, no data at {BERKA}")
    if not args.skip_synthetic:
        started = time.perf_counter()
        data = synthetic_payloads(args)
        print(
            f"\n(generated {len(data[0]):,} synthetic payloads"
            f" in {time.perf_counter() - started:.1f} s, untimed)"
        )
        run_one(f"synthetic seed={args.seed}", *data, args)


if __name__ == "__main__":
    main()
