"""Durations as operators write them: `90d`, `24h`, `30m`, `45s`, or compounds like `1d12h`."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer

_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"^(?:\d+[dhms])+$")
_PART = re.compile(r"(\d+)([dhms])")


def parse_duration(text: str) -> timedelta:
    """Parse `90d`, `24h`, `30m`, `45s` or `1d12h`; raise ValueError for anything else."""
    text = text.strip()
    if not _DURATION.match(text):
        raise ValueError("expected a duration like 24h")
    seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(text))
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest operator form of `value` (`1d12h`, `0s`)."""
    seconds = int(value.total_seconds())
    parts = []
    for unit, size in _UNIT_SECONDS.items():
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def _coerce(value: object) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise ValueError("expected a duration like 24h")
    return parse_duration(value)


Duration = Annotated[
    timedelta, BeforeValidator(_coerce), PlainSerializer(format_duration, return_type=str)
]
