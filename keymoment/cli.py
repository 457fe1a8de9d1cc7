"""`keymoment` command line: one sub-command per module in `keymoment.commands`.

Each module has `register(subparsers)` which adds its parser and sets
`handler`; a handler returns the exit code. Errors a user can fix (a bad
rules file, an unreachable server, a bad URL) are `UserError`s: printed as
one line, no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

COMMANDS = (
    "validate",
    "importer",
    "backtest",
    "run",
    "demo",
    "report",
    "redeliver",
    "console",
    "explain",
    "compare",
    "recovery",
)


class UserError(Exception):
    """A problem the user can fix; printed without a traceback."""


class DefaultsFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, `[30d]`, unless it says it already."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if "%(default)" in text or "[" in text or not action.option_strings:
            return text
        if default is None or default is False or default == [] or default == argparse.SUPPRESS:
            return text
        return f"{text} [%(default)s]"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose help shows defaults; sub-command parsers inherit it."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]  # argparse's own signature


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("keymoment")
    except PackageNotFoundError:
        return "unknown (not installed)"


class VersionAction(argparse.Action):
    """`--version`, read from the package metadata only when asked (not on every run)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(f"keymoment {version()}")
        parser.exit()


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with `argv` naming a command, only that command's module is imported.

    Each command module imports what it runs on (Bytewax, redis-py, the web
    stack...): importing all eleven cost every command about 0.1 CPU s of
    start-up. Without a known command (`keymoment --help`, a typo) all are
    registered, so the help and the error list every command.
    """
    parser = Parser(
        prog="keymoment",
        description="Real-time trigger engine for retail-bank event marketing.",
    )
    parser.add_argument("--version", action=VersionAction)
    subparsers = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=Parser
    )
    chosen = [argv[0]] if argv and argv[0] in COMMANDS else COMMANDS
    for name in chosen:
        importlib.import_module(f"keymoment.commands.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except UserError as exc:
        print(f"keymoment {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `keymoment explain ... | head`: the reader left, so stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports a process ended by a closed pipe


if __name__ == "__main__":
    sys.exit(main())
