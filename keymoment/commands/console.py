"""`keymoment console`: the operator's live page over the decision stream (keymoment.console).

Follows the decision log (a JSONL file as it grows, a Kafka topic or a Redis
Stream, from the start or from now), optionally the dead letters, the
rollout audit, conversion events and each process's `--metrics` endpoint,
and serves one page on loopback. The credential is `KEYMOMENT_CONSOLE_TOKEN`
(never a flag: a flag shows in `ps`); see keymoment/console/serve.py.
"""

from __future__ import annotations

import argparse
import signal
import sys

from keymoment.cli import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("console", help="serve the live operator console in a browser")
    p.add_argument("--decisions", required=True, metavar="URL", help="decision log to follow")
    p.add_argument("--dead-letters", metavar="URL", help="dead letters to follow")
    p.add_argument("--audit", metavar="URL", help="rules rollout audit stream to follow")
    p.add_argument("--conversions", metavar="URL", help="conversion events, for the uplift panel")
    p.add_argument(
        "--metrics",
        action="append",
        default=[],
        metavar="URL",
        help="a process's metrics endpoint (host:port of `run --metrics`); repeat",
    )
    p.add_argument("--rules", metavar="FILE", help="the rules file, for the version in force")
    p.add_argument("--listen", default="127.0.0.1:8080", help="address to serve on [%(default)s]")
    p.add_argument(
        "--from",
        dest="start",
        choices=("start", "now"),
        default="start",
        help="read the streams from their start (default) or only what comes from now on",
    )
    p.add_argument("--window", default="30d", help="uplift attribution window [%(default)s]")
    p.set_defaults(handler=run)


def options_from(args: argparse.Namespace):  # noqa: ANN201 - Options, imported lazily
    from keymoment.console.serve import Options
    from keymoment.flows.health import parse_listen
    from keymoment.triggers.durations import parse_duration

    try:
        host, port = parse_listen(args.listen)
        window = parse_duration(args.window)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    return Options(
        decisions=args.decisions,
        dead_letters=args.dead_letters,
        audit=args.audit,
        conversions=args.conversions,
        metrics=args.metrics,
        rules=load(args.rules),
        host=host,
        port=port,
        start=args.start,
        window=window,
    )


def load(path: str | None):  # noqa: ANN201 - RulesFile | None, imported lazily
    """The rules file (its version in force, its caps and holdouts for the explanations)."""
    if path is None:
        return None
    from keymoment.flows.connect import ConnectError, rules_from

    try:
        return rules_from(path)
    except ConnectError as exc:
        raise UserError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    from keymoment.console.serve import ConsoleServer, credential

    options = options_from(args)
    try:
        token, made_here = credential(options.host)
        server = ConsoleServer(options, token, made_here).start()
    except (ValueError, OSError) as exc:
        raise UserError(str(exc)) from None
    how = "open" if made_here else "open (log in with the token in KEYMOMENT_CONSOLE_TOKEN)"
    print(f"keymoment console: {how} {server.login_url}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: server.close())
    try:
        server.wait()
    except KeyboardInterrupt:
        server.close()
    print("keymoment console: stopped", file=sys.stderr)
    return 0
