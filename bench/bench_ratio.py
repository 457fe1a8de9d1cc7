"""Every program of issue 13's table beside the plain baseline, in one run, as ratios.

    python bench/bench_ratio.py                                   # 1M events / 100k customers
    python bench/bench_ratio.py --events 200000 --customers 20000 --repeat 3
    python bench/bench_ratio.py --rules examples/rules.yaml       # all eight rules, their baseline

One data set (the seeded generator's stream, written once to a JSONL file),
then rounds; each round runs every case once, in an order that alternates
between rounds, and each case keeps its best CPU time (the machine is
shared: CPU seconds move less with the load than wall seconds). Cases:

- `baseline`: the plain baseline in this process, for the rules run: bench/baseline_plain.py
  (the four rules of bench/four_rules.yaml, the default) or, with `--rules examples/rules.yaml`,
  bench/baseline_plain_all.py (its eight rules, reading the profiles of customers.jsonl
  as the commands do; its constants are checked against the file first). Both are
  checked to give the engine's candidates by tests/unit/test_baseline_plain.py;
- `decode+engine`: the project's decoder (`decode_many`, as the backtest calls it) and
  `Engine.feed` in this process;
- `backtest --policy off`, `backtest`, `run --clock event`: the real
  commands as subprocesses on the file, CPU of the child, start-up included;
  `startup` is the same command on a one-event file, and the `net` column
  takes it off; `--against DIR` adds the same commands run from an older
  checkout (`git archive REV | tar -x -C DIR`), interleaved with the new.
  Every command runs as an installed program does, with its modules' bytecode
  cached (pip compiles it at install): the children get `PYTHONPYCACHEPREFIX` in
  the run's temporary directory and never `PYTHONDONTWRITEBYTECODE`, which this
  machine's environment sets and which would make each command compile its
  modules at start (about 0.13 CPU s); each startup case runs once first, unmeasured,
  to fill that cache.

Both in-process cases run with automatic collections off: the baseline's definition
says "GC off", and the replay commands turn them off too (flows/collect.py). Until the
eighth session this script left them on for the baseline, which made it 21-22 % slower
on four rules (1M events, same run: 5.16-5.31 against 4.25-4.34 CPU s; 10 % on the eight
rules), so every four-rule ratio printed before then is about a fifth too kind
(docs/benchmarks.md).

After the table, each command's decision log of its last run (every command writes
its own: now, before, start-up) is checked against the baseline's candidates of its
last run, as (rule, customer, event, triggered_at) with their counts: one decision per
candidate. A difference prints NOT EQUAL and the script exits 1, so no ratio stands for
work that was not the same. (Not with another `--rules` file: no baseline does its rules.)

Each line prints events per CPU second and the ratio to the baseline of the
same run (issue 13's goals: backtest >= 0.6, run --clock event >= 0.45).
The header and the baseline's line say which baseline was used. With any
other `--rules` file the engine does other work than the baseline; the ratio
is then against the four-rule baseline, as labelled.
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import baseline_plain  # noqa: E402 - the sibling script, not a package
import baseline_plain_all  # noqa: E402 - the sibling script, not a package

REPO = Path(__file__).resolve().parent.parent
Case = Callable[[], float]  # returns CPU seconds


def in_process(run: Callable[[], Any]) -> Case:
    """A case in this process with automatic collections off (see the module docstring)."""

    def case() -> float:
        return baseline_plain.gc_off(run)[1]

    return case


def command(argv: list[str], code: str | None = None, cache: Path | None = None) -> Case:
    """A subprocess (run in `code`, and with it first on PYTHONPATH, when given); CPU s from wait4.

    In `code` as its working directory, because `python -m` puts the working
    directory first on sys.path: run from this checkout, an older checkout on
    PYTHONPATH alone would import this checkout's code.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if code:
        env["PYTHONPATH"] = code
    if cache is not None:  # one cache per checkout: the same module paths in both
        env["PYTHONPYCACHEPREFIX"] = str(cache / ("before" if code else "this"))

    def case() -> float:
        proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=code
        )
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err = proc.stderr.read().decode() if proc.stderr else ""
        if proc.returncode:
            raise SystemExit(f"{' '.join(argv[:4])} failed: {err.strip()[-300:]}")
        return usage.ru_utime + usage.ru_stime

    return case


def commands(rules: str, events: Path, profiles: Path, until: str, out: Path) -> dict[str, list]:
    km = [sys.executable, "-m", "keymoment"]
    rules = str(Path(rules).resolve())  # the `--against` commands run in another directory
    back = [*km, "backtest", "--rules", rules, "--events", str(events), "--customers",
            str(profiles), "--until", until, "--decisions", str(out / "d.jsonl")]  # fmt: skip
    run = [*km, "run", "--rules", rules, "--source", f"file:{events}", "--customers",
           f"file:{profiles}", "--clock", "event", "--until", until,
           "--decisions", f"file:{out / 'r.jsonl'}",
           "--sink", f"file:{out / 'o.jsonl'}"]  # fmt: skip
    return {"backtest --policy off": [*back, "--policy", "off"], "backtest": back,
            "run --clock event": run}  # fmt: skip


def eight_rules(rules: str) -> bool:
    """Whether `rules` is examples/rules.yaml, whose eight rules baseline_plain_all.py does."""
    return Path(rules).resolve() == baseline_plain_all.RULES.resolve()


def four_rules(rules: str) -> bool:
    """Whether `rules` is bench/four_rules.yaml, whose rules baseline_plain.py does."""
    return Path(rules).resolve() == baseline_plain.RULES.resolve()


def baseline_label(rules: str) -> str:
    return "baseline (eight rules)" if eight_rules(rules) else "baseline (four rules)"


def prepare(
    args: argparse.Namespace, tmp: Path
) -> tuple[list[bytes], list[bytes], Path, Path, str, str]:
    from keymoment.connectors.generator import Generator

    gen = Generator(seed=1, customers=args.customers, days=240, activity=0.3)
    payloads = list(gen.iter_bytes(limit=args.events))
    events, one, profiles = tmp / "events.jsonl", tmp / "one.jsonl", tmp / "customers.jsonl"
    events.write_bytes(b"\n".join(payloads) + b"\n")
    one.write_bytes(payloads[0] + b"\n")
    lines = [orjson.dumps(p) for p in gen.profiles()]
    profiles.write_bytes(b"".join(line + b"\n" for line in lines))
    until = gen.until_at.isoformat().replace("+00:00", "Z")
    return payloads, lines, events, profiles, until, str(one)


def cases(
    args: argparse.Namespace, tmp: Path, found: list
) -> tuple[dict[str, Case], dict[str, Case], int]:
    """The cases by name, their start-up cases, the event count; `found` gets the
    baseline's candidates of each of its runs (for `check`)."""
    payloads, lines, events, profiles, until, one = prepare(args, tmp)
    until_us = baseline_plain.to_us(until)
    from keymoment.config import load_rules

    rules = load_rules(args.rules)
    if eight_rules(args.rules):
        base: Case = in_process(
            lambda: found.append(baseline_plain_all.run(payloads, lines, until_us))
        )
    else:
        base = in_process(lambda: found.append(baseline_plain.run(payloads, until_us)))
    main = {
        "baseline": base,
        "decode+engine": in_process(lambda: decode_and_feed(rules, payloads, until)),
    }
    startup = {}
    cache = tmp / "pycache"
    for where in ("now", "before", "startup", "startup-before"):
        (tmp / where).mkdir()
    now = commands(args.rules, events, profiles, until, tmp / "now")
    before = commands(args.rules, events, profiles, until, tmp / "before")
    at_start = commands(args.rules, Path(one), profiles, until, tmp / "startup")
    before_start = commands(args.rules, Path(one), profiles, until, tmp / "startup-before")
    for name, argv in now.items():
        main[name] = command(argv, cache=cache)
        startup[name] = command(at_start[name], cache=cache)
        if args.against:
            main[f"{name} (before)"] = command(before[name], args.against, cache)
            startup[f"{name} (before)"] = command(before_start[name], args.against, cache)
    return main, startup, len(payloads)


def check(found: list, out: Path, names: list[str]) -> list[str]:
    """Lines saying whether each decision log of this run holds exactly the baseline's
    candidates (rule, customer, event, triggered_at; one decision per candidate)."""
    if not found:
        return []
    expected = Counter(c[:4] for c in found[-1])
    lines = []
    for where, label in (("now", ""), ("before", " (before)")):
        for name, log in (("backtest", "d.jsonl"), ("run --clock event", "r.jsonl")):
            path = out / where / log
            if f"{name}{label}" not in names or not path.exists():
                continue
            got = Counter()
            with path.open("rb") as f:
                for line in f:
                    d = orjson.loads(line)
                    at = baseline_plain.to_us(d["triggered_at"])
                    got[(d["rule_id"], d["customer_id"], d["event_id"], at)] += 1
            same = "equal" if got == expected else "NOT EQUAL"
            counts = f"{sum(got.values()):,} against {len(found[-1]):,}"
            lines.append(f"  {name}{label}: the decision log's candidates {same} ({counts})")
    return lines


def decode_and_feed(rules: object, payloads: list[bytes], until: str) -> None:
    """The decoder as the backtest calls it (`decode_many` per 1,000 lines, `balance_after`
    only when a rule reads it) and `Engine.feed`, with no stamp step, shard or policy."""
    from datetime import datetime

    from keymoment.connectors.wire import DeadLetter, decode_many
    from keymoment.flows.replay import reads_balances
    from keymoment.triggers.engine import Engine

    engine = Engine(rules)  # type: ignore[arg-type]
    feed, balances = engine.feed, reads_balances(rules)  # type: ignore[arg-type]
    for start in range(0, len(payloads), 1000):
        chunk = [("bench", raw) for raw in payloads[start : start + 1000]]
        for event in decode_many(chunk, balances=balances):
            if type(event) is not DeadLetter:
                feed(event)  # type: ignore[arg-type]
        if start % 65_536 < 1000:
            gc.collect(1)
            gc.freeze()
    engine.advance(datetime.fromisoformat(until))
    gc.unfreeze()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", default=str(baseline_plain.RULES))
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", action="append", help="run only these cases (and the baseline)")
    parser.add_argument(
        "--against",
        metavar="DIR",
        help="a checkout of an older revision: its commands run too, as `... (before)` cases",
    )
    args = parser.parse_args()
    if eight_rules(args.rules) and (problems := baseline_plain_all.check_constants()):
        raise SystemExit("baseline_plain_all.py is not examples/rules.yaml: " + "; ".join(problems))
    with tempfile.TemporaryDirectory() as tmp:
        found: list = []
        main_cases, startup, n = cases(args, Path(tmp), found)
        if args.only:
            keep = {"baseline", *args.only, *(f"{k} (before)" for k in args.only)}
            main_cases = {k: v for k, v in main_cases.items() if k in keep}
        for name in main_cases:  # fill the bytecode caches (see the module docstring)
            if name in startup:
                startup[name]()
        best = rounds(main_cases | {f"startup {k}": v for k, v in startup.items()
                                    if k in main_cases}, args.repeat)  # fmt: skip
        same_rules = eight_rules(args.rules) or four_rules(args.rules)
        checks = check(found, Path(tmp), list(main_cases)) if same_rules else []
    report(best, n, args)
    for line in checks:
        print(line)
    if any("NOT EQUAL" in line for line in checks):
        raise SystemExit(1)


def rounds(all_cases: dict[str, Case], repeat: int) -> dict[str, float]:
    best = dict.fromkeys(all_cases, float("inf"))
    names = list(all_cases)
    for r in range(repeat):
        for name in names if r % 2 == 0 else names[::-1]:
            best[name] = min(best[name], all_cases[name]())
    return best


def report(best: dict[str, float], n: int, args: argparse.Namespace) -> None:
    base = n / best["baseline"]
    if eight_rules(args.rules):
        label = "baseline: bench/baseline_plain_all.py, the same eight rules"
    elif four_rules(args.rules):
        label = "baseline: bench/baseline_plain.py, the same four rules"
    else:
        label = "baseline: bench/baseline_plain.py, four rules: NOT the same triggers"
    print(f"{n:,} events, {args.customers:,} customers, rules {Path(args.rules).name}, "
          f"best of {args.repeat} interleaved rounds, CPU seconds; {label}")  # fmt: skip
    print(f"  {'case':24s} {'CPU s':>7s} {'events/CPU-s':>13s} {'ratio':>6s}"
          f" {'net CPU s':>9s} {'net/s':>10s} {'net ratio':>9s}")  # fmt: skip
    for name, cpu in best.items():
        if name.startswith("startup "):
            continue
        shown = baseline_label(args.rules) if name == "baseline" else name
        line = f"  {shown:24s} {cpu:7.2f} {n / cpu:13,.0f} {n / cpu / base:6.2f}"
        start = best.get(f"startup {name}")
        if start is not None:
            net = cpu - start
            line += f" {net:9.2f} {n / net:10,.0f} {n / net / base:9.2f}"
        print(line)


if __name__ == "__main__":
    main()
