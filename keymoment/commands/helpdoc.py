"""docs/cli.md: every command's --help, defaults included (`python -m keymoment.commands.helpdoc`).

The README points here for the options of each command; a test fails when a
command has no section. Regenerate after changing options.
"""

from __future__ import annotations

import argparse
import os

from keymoment.cli import build_parser

WIDTH = "100"
HEAD = (
    "# Command line reference\n\n"
    "Generated from `--help` by `python -m keymoment.commands.helpdoc > docs/cli.md`\n"
    "after changing an option. Defaults are in brackets.\n"
)


def page() -> str:
    os.environ["COLUMNS"] = WIDTH  # argparse wraps to the terminal: fix it for a stable page
    parser = build_parser()
    parts = [HEAD, _block("keymoment", parser.format_help())]
    for name, sub in _commands(parser):
        parts.append(_block(f"keymoment {name}", sub.format_help()))
        for inner, deeper in _commands(sub):
            parts.append(_block(f"keymoment {name} {inner}", deeper.format_help()))
    return "\n".join(parts)


def _commands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return sorted(action.choices.items())
    return []


def _block(title: str, text: str) -> str:
    return f"## {title}\n\n```\n{text.rstrip()}\n```\n"


if __name__ == "__main__":
    print(page(), end="")
