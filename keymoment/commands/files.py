"""Opening the files the commands read and write: gzip by suffix, one-line errors."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import orjson

from keymoment.cli import UserError


def open_output(path: str | Path) -> IO[bytes]:
    """A binary file for writing (gzip when it ends in .gz), its folder created if missing."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".gz":
            return gzip.open(path, "wb")  # type: ignore[return-value]  # GzipFile is an IO[bytes]
        return open(path, "wb")  # noqa: SIM115
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None


def open_input(path: str | Path) -> IO[bytes]:
    """A binary file for reading, as stored (the caller decides about gzip)."""
    try:
        return open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None


def write_json_and_html(
    json_path: str | None, html_path: str | None, data: dict[str, Any], page: Callable[[dict], str]
) -> None:
    """A command's `--json` (the figures, indented) and `--html` (`page` of the same figures)."""
    if json_path:
        with open_output(json_path) as out:
            out.write(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
    if html_path:
        with open_output(html_path) as out:
            out.write(page(data).encode())
