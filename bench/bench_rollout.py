"""The cost of a rules reload on a large engine: the switch itself, and a live run's pause.

    python bench/bench_rollout.py --customers 100000 --events 1000000 --repeat 3
    python bench/bench_rollout.py --live --customers 100000 --rate 10000 --warm 30

Replay part (no Bytewax): a replay of generated events through the one driver
with a `--rollout` late in the stream, so the switch meets the engine at
(near) its largest. Prints the median input batch beside the batch that held
the switch (wall and CPU seconds): their difference is the pause a shard
sees. Then, on that engine, best of N: validating and diffing the new file
(`Reloader.consider`), `triggers.switch.switched` for a thresholds-only
change and for a removed rule, and the policy's `update_rules`.

Live part: a real `keymoment run` on the wall clock (generator source);
after `--warm` seconds the rules file is rewritten. Prints the time from
the file's mtime to the audit record, to the watermark W it names, and to
the first decision of the new version, and the longest gap between
decisions around the switch beside the longest gap before it.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from keymoment.connectors.generator import Generator
from keymoment.flows.replay import Replay
from keymoment.flows.versioning import Versions
from keymoment.policy import build_policy
from keymoment.rollout.diff import diff
from keymoment.rollout.reload import Reloader
from keymoment.rollout.versions import RulesVersion, Switch
from keymoment.triggers.events import CustomerProfile
from keymoment.triggers.switch import switched

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "rules.yaml"


def edited(version: int, *pairs: tuple[str, str]) -> bytes:
    text = EXAMPLE.read_text().replace("version: 7", f"version: {version}", 1)
    for old, new in pairs:
        text = text.replace(old, new, 1)
    return text.encode()


def versions(folder: Path) -> tuple[RulesVersion, RulesVersion, RulesVersion, RulesVersion]:
    shutil.copytree(EXAMPLE.parent / "lists", folder / "lists", dirs_exist_ok=True)
    out = []
    for name, text in [
        ("v7.yaml", EXAMPLE.read_bytes()),
        ("v8.yaml", edited(8, ("min_amount: 50000", "min_amount: 60000"))),
        (
            "v9.yaml",
            edited(9, ("  - rule_id: gone-quiet", "  - rule_id: gone-quiet\n    mode: paused")),
        ),
        ("v10.yaml", edited(10, ("inactive: 90d", "inactive: 60d"))),
    ]:
        (folder / name).write_bytes(text)
        out.append(RulesVersion.read(str(folder / name)))
    return out[0], out[1], out[2], out[3]


def replay_part(args: argparse.Namespace, folder: Path) -> None:
    gen = Generator(seed=7, customers=args.customers, days=args.days)
    events = folder / "events.jsonl"
    payloads = list(gen.iter_bytes(limit=args.events))
    events.write_bytes(b"\n".join(payloads) + b"\n")
    at = orjson.loads(payloads[int(len(payloads) * 0.9)])["occurred_at"]
    switch_at = datetime.fromisoformat(at)
    profiles = {p["customer_id"]: CustomerProfile.model_validate(p) for p in gen.profiles()}
    v7, v8, v9, v10 = versions(folder)
    policy = build_policy(v7.rules)
    replay = Replay(v7.rules, profiles, policy, versions=Versions(v7, [Switch(switch_at, v8)]))
    walls, cpus, switch = [], [], None
    outputs = replay.outputs([str(events)])
    while True:
        w, c = time.perf_counter(), time.process_time()
        try:
            next(outputs)
        except StopIteration:
            break
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
        if switch is None and replay.shard.versions and replay.shard.versions.current is v8:
            switch = len(walls) - 1
    engine = replay.shard.engine
    held, heap, at_event = len(engine.customers), engine.pending_timers(), int(len(payloads) * 0.9)
    print(f"replay: {len(payloads):,} events; switch at event {at_event:,}; at the end")
    print(f"  {held:,} customers held, {heap:,} heap entries")
    assert switch is not None
    report("median batch of 1000 events", statistics.median(walls), statistics.median(cpus))
    report("the batch with the switch", walls[switch], cpus[switch])
    parts(args, replay, v8, v9, v10)


def report(name: str, wall: float, cpu: float) -> None:
    print(f"  {name:<50} {wall * 1e3:8.1f} ms wall {cpu * 1e3:8.1f} ms CPU")


def parts(
    args: argparse.Namespace, replay: Replay, v8: RulesVersion, v9: RulesVersion, v10: RulesVersion
) -> None:
    """Best of N on the engine as the replay left it (it runs v8 now)."""
    shard = replay.shard
    lead, late = timedelta(seconds=2), timedelta(0)
    same, paused = diff(v8.rules, v8.rules).carry, diff(v8.rules, v9.rules).carry
    shorter = diff(v8.rules, v10.rules).carry
    steps = {
        "validate + diff the new file (Reloader.consider)": lambda: Reloader(
            v8, lead, late, {}
        ).consider(v9.text, datetime.now(UTC)),
        "switched(), thresholds-only change": lambda: switched(shard.engine, v8.rules, same),
        "switched(), one rule paused (v9)": lambda: switched(shard.engine, v9.rules, paused),
        "switched(), dormancy 90d -> 60d (v10, full pass)": lambda: switched(
            shard.engine, v10.rules, shorter
        ),
        "policy.update_rules": lambda: shard.policy.update_rules(v9.rules),
    }
    print(f"  best of {args.repeat}, on that engine:")
    for name, step in steps.items():
        best_wall = best_cpu = float("inf")
        for _ in range(args.repeat):
            gc.collect()
            w, c = time.perf_counter(), time.process_time()
            step()
            best_wall = min(best_wall, time.perf_counter() - w)
            best_cpu = min(best_cpu, time.process_time() - c)
        report(name, best_wall, best_cpu)


def live_part(args: argparse.Namespace, folder: Path) -> None:
    shutil.copytree(EXAMPLE.parent / "lists", folder / "lists", dirs_exist_ok=True)
    rules, decisions = folder / "rules.yaml", folder / "decisions.jsonl"
    audit = folder / "audit.jsonl"
    rules.write_bytes(EXAMPLE.read_bytes())
    gen = f"generator:?customers={args.customers}&rate={args.rate}&seed=7"
    cmd = [sys.executable, "-m", "keymoment", "run", "--rules", str(rules), "--source", gen,
           "--customers", f"generator:?customers={args.customers}&seed=7",
           "--decisions", f"file:{decisions}", "--audit", f"file:{audit}"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=folder, stderr=subprocess.DEVNULL)
    try:
        time.sleep(args.warm)
        tmp = folder / "rules.tmp"
        tmp.write_bytes(edited(8, ("min_amount: 50000", "min_amount: 60000")))
        tmp.replace(rules)
        changed = datetime.fromtimestamp(rules.stat().st_mtime, UTC)
        time.sleep(args.after)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    (rec,) = [orjson.loads(x) for x in audit.read_bytes().splitlines()]
    made = [orjson.loads(x) for x in decisions.read_bytes().splitlines() if x.endswith(b"}")]
    first_new = min(datetime.fromisoformat(d["decided_at"]) for d in made if d["rule_version"] == 8)
    seen = datetime.fromisoformat(rec["at"])
    w = datetime.fromisoformat(rec["effective_at"])
    print(f"live: {len(made):,} decisions; rules file changed at {changed.time()}")
    for label, at in [
        ("audit record (poll, validate, diff)", seen),
        ("W, the switch's watermark (+ lead)", w),
        ("first version-8 decision", first_new),
    ]:
        print(f"  file change -> {label:<36} {(at - changed).total_seconds():6.2f} s")
    times = sorted(datetime.fromisoformat(d["decided_at"]) for d in made)
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
    near = [g for t, g in zip(times, gaps, strict=False) if abs((t - w).total_seconds()) < 1.0]
    before = [g for t, g in zip(times, gaps, strict=False) if (w - t).total_seconds() > 1.0]
    print(f"  longest gap between decisions within 1 s of W: {max(near) * 1e3:7.1f} ms")
    print(f"  longest gap earlier in the run (steady state): {max(before) * 1e3:7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=240)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--live", action="store_true", help="measure a real keymoment run instead")
    parser.add_argument("--rate", type=int, default=10_000)
    parser.add_argument("--warm", type=float, default=30.0)
    parser.add_argument("--after", type=float, default=8.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        (live_part if args.live else replay_part)(args, Path(tmp))


if __name__ == "__main__":
    main()
