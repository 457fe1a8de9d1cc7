"""`keymoment demo`: the whole flow on a synthetic bank, with a live view, no server needed.

A seeded generator replays a synthetic bank's timeline (240 days by default)
at a fixed rate through the real dataflow on the event clock, so every
trigger type fires within seconds, including the timers (dormancy, salary
missed, abandoned loan applications). The contact policy runs on the
packaged default rules with an in-memory cap store. The view refreshes once
a second (plain lines when stdout is not a terminal); the run ends after
`--duration` seconds or on Ctrl-C, then prints a summary.

Beside the flow, in the same process, run the operator console
(`keymoment.console`, fed the flow's decisions directly) and the flow's
metrics endpoint (`flows/instrument.py`), which the console scrapes; the
console's URL, with a token made for this run, is printed first. On a
terminal the console stays up after the summary until Ctrl-C.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from typing import Any, TextIO

from keymoment.cli import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="run the whole flow on generated data with a live view")
    p.add_argument("--duration", type=float, default=20.0, help="seconds to run (default 20)")
    p.add_argument("--rate", type=float, default=5000.0, help="events per second (default 5000)")
    p.add_argument("--customers", type=int, default=5000, help="synthetic customers (default 5000)")
    p.add_argument("--seed", type=int, default=7, help="generator seed (same seed, same stream)")
    p.add_argument("--rules", help="rules file (default: the packaged demo rules)")
    p.add_argument(
        "--offers", metavar="URL", help="also write sent offers here (e.g. file:offers.jsonl)"
    )
    p.add_argument("--decisions", metavar="URL", help="also write the decision log here")
    p.add_argument(
        "--console",
        default="127.0.0.1:8080",
        metavar="[HOST:]PORT",
        help="serve the live console here (default %(default)s; a free port if it is taken)",
    )
    p.add_argument("--no-console", action="store_true", help="do not start the console")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from bytewax.testing import run_main

    from keymoment.connectors.customers import parse_profile
    from keymoment.connectors.synthetic import GeneratorSource
    from keymoment.defaults import rules_path
    from keymoment.flows.connect import ConnectError
    from keymoment.flows.dataflow import build_flow
    from keymoment.flows.observe import FlowStats, StoppableSource
    from keymoment.flows.settings import ALL_CHANNELS, FlowSettings

    if args.duration <= 0 or args.rate <= 0 or args.customers < 1:
        raise UserError("--duration, --rate and --customers must be positive")
    source = GeneratorSource(
        seed=args.seed,
        customers=args.customers,
        rate=args.rate,
        live=False,
        noise=0.002,
        batch_size=2000,
    )
    settings = FlowSettings(
        rules=args.rules or str(rules_path()),
        sources=["generator:"],
        clock="event",
        sinks={ALL_CHANNELS: args.offers} if args.offers else {},
        decisions=args.decisions,
    )
    stats, stop, exposures = FlowStats(), threading.Event(), Exposures()
    profiles = {p.customer_id: p for p in map(parse_profile, source.profiles())}
    try:
        beside = None if args.no_console else _console(args, settings.rules)
        flow = build_flow(
            settings,
            sources=[StoppableSource(source, stop)],
            observe=exposures.beside(beside.observer(stats) if beside else stats),
            profiles=profiles,
            observability=beside.observability if beside else None,
        )
    except ConnectError as exc:
        raise UserError(str(exc)) from None
    failure: list[BaseException] = []
    worker = threading.Thread(target=_run_flow, args=(run_main, flow, failure), daemon=True)
    print(
        f"keymoment demo: {args.customers:,} synthetic customers at {args.rate:,.0f} events/s "
        f"for {args.duration:g}s (Ctrl-C ends early); rules {settings.rules}",
        flush=True,
    )
    signal.signal(signal.SIGINT, lambda *_: stop.set())  # Ctrl-C ends the input, not the process
    worker.start()
    _watch(worker, stats, stop, args.duration, sys.stdout)
    if failure:
        raise UserError(f"the flow stopped: {failure[0]}")
    print(summary(stats.copy()), flush=True)
    print(simulated_uplift(exposures, args.seed), flush=True)
    if beside is not None:
        beside.linger(sys.stdin.isatty() and sys.stdout.isatty())
    return 0


def _console(args: argparse.Namespace, rules: str) -> Any:
    from keymoment.console.beside import Beside
    from keymoment.flows.health import parse_listen

    try:
        host, port = parse_listen(args.console)
        beside = Beside.start(host, port, rules)
    except (ValueError, OSError) as exc:
        raise UserError(f"--console: {exc}") from None
    print(f"keymoment demo: live console at {beside.console.login_url}", flush=True)
    return beside


def _run_flow(run_main: Any, flow: Any, failure: list[BaseException]) -> None:
    try:
        run_main(flow)
    except BaseException as exc:  # reported by the main thread
        failure.append(exc)


def _watch(
    worker: threading.Thread, stats: Any, stop: threading.Event, duration: float, out: TextIO
) -> None:
    """Refresh the view every second until the duration passes, Ctrl-C, or the input ends."""
    tty = out.isatty()
    ends_at = time.monotonic() + duration
    previous = (0.0, 0)
    while worker.is_alive() and time.monotonic() < ends_at and not stop.is_set():
        worker.join(timeout=1.0)
        snap = stats.copy()
        rate = (snap["lines"] - previous[1]) / max(snap["elapsed"] - previous[0], 1e-9)
        previous = (snap["elapsed"], snap["lines"])
        out.write(view(snap, rate) if tty else status_line(snap, rate) + "\n")
        out.flush()
    if stop.is_set():
        out.write("\nstopping...\n")
    stop.set()
    worker.join()


def status_line(snap: dict[str, Any], rate: float) -> str:
    sent = sum(snap["offers"].values())
    return (
        f"{snap['elapsed']:6.1f}s  events {snap['lines']:>9,} ({rate:>8,.0f}/s)  "
        f"candidates {sum(snap['candidates'].values()):>7,}  offers {sent:>7,}  "
        f"dead letters {sum(snap['dead'].values()):>5,}"
    )


def view(snap: dict[str, Any], rate: float) -> str:
    """The terminal view: cleared and redrawn each second."""
    return "\x1b[H\x1b[2J" + status_line(snap, rate) + "\n\n" + _tables(snap) + "\n"


def _tables(snap: dict[str, Any]) -> str:
    rules = sorted(snap["candidates"])
    channels = sorted({c for _, c in snap["offers"]})
    head = f"  {'rule':<18}{'candidates':>11}{'offers':>8}" + "".join(
        f"{c[:10]:>11}" for c in channels
    )
    rows = [head]
    for rule in rules:
        sent = [snap["offers"][(rule, c)] for c in channels]
        rows.append(
            f"  {rule:<18}{snap['candidates'][rule]:>11,}{sum(sent):>8,}"
            + "".join(f"{n:>11,}" for n in sent)
        )
    outcomes = "  outcomes: " + ", ".join(f"{o} {n:,}" for o, n in snap["outcomes"].most_common())
    dead = "  dead letters: " + (
        ", ".join(f"{r} {n:,}" for r, n in snap["dead"].most_common()) or "none"
    )
    return "\n".join([*rows, outcomes, dead])


def summary(snap: dict[str, Any]) -> str:
    rate = snap["lines"] / snap["elapsed"] if snap["elapsed"] else 0.0
    return (
        f"\nsummary: {snap['lines']:,} events in {snap['elapsed']:.1f}s ({rate:,.0f}/s), "
        f"{sum(snap['candidates'].values()):,} candidates, "
        f"{sum(snap['offers'].values()):,} offers sent\n" + _tables(snap)
    )


DEMO_UPLIFT, DEMO_BASE = 0.10, 0.05


class Exposures:
    """Each (campaign, customer)'s first candidate, kept for the simulated uplift report."""

    def __init__(self) -> None:
        self.first: dict[tuple[str, str], dict[str, str]] = {}
        self.lock = threading.Lock()

    def beside(self, observe: Any) -> Any:
        def both(output: Any) -> None:
            observe(output)
            with self.lock:
                for d in output.decisions:
                    record = d.log_record()
                    key = (record["campaign_id"], record["customer_id"])
                    if (
                        key not in self.first
                        or record["triggered_at"] < self.first[key]["triggered_at"]
                    ):
                        self.first[key] = {
                            k: record[k]
                            for k in (
                                "campaign_id",
                                "customer_id",
                                "rule_id",
                                "outcome",
                                "triggered_at",
                            )
                        }

        return both

    def records(self) -> list[dict[str, str]]:
        with self.lock:
            return list(self.first.values())


def simulated_uplift(exposures: Exposures, seed: int) -> str:
    """Seeded conversions (connectors/conversions.py), then `report`'s table on them."""
    from datetime import timedelta

    from keymoment.commands.report import render
    from keymoment.connectors.conversions import conversion_events
    from keymoment.desk import uplift

    records = exposures.records()
    campaigns = {r["campaign_id"] for r in records}
    made = list(
        conversion_events(records, dict.fromkeys(campaigns, DEMO_UPLIFT), base=DEMO_BASE, seed=seed)
    )
    if not made:
        return "simulated uplift: no sent or control candidates, nothing to convert"
    rows = uplift.tally(
        uplift.first_exposures(records), uplift.conversions(made, None), timedelta(days=7)
    )
    head = (
        f"simulated conversions (connectors/conversions.py): {DEMO_BASE:.0%} of control and "
        f"{DEMO_BASE + DEMO_UPLIFT:.0%} of sent customers convert within 7d, "
        f"so each campaign's uplift is +{DEMO_UPLIFT * 100:.0f}pp"
    )
    return head + "\n" + render(rows, "7d", None, len(made))
