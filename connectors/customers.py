"""Customer reference data (section 1): JSONL files, validated at the edge."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from pydantic import ValidationError

from keymoment.triggers.events import CustomerProfile


class ReferenceDataError(Exception):
    """A reference-data file that cannot be used at all (missing, unreadable)."""


def parse_profile(data: object) -> CustomerProfile:
    """Validate one customer record, including that its timezone is a real IANA zone."""
    profile = CustomerProfile.model_validate(data)
    if profile.timezone is not None:
        try:
            ZoneInfo(profile.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {profile.timezone!r}") from None
    return profile


def read_profiles(path: str | Path) -> tuple[dict[str, CustomerProfile], list[str]]:
    """All valid profiles of a JSONL file by customer_id, and `file:line: problem` for the rest."""
    profiles: dict[str, CustomerProfile] = {}
    problems: list[str] = []
    for line_no, line in _lines(Path(path)):
        try:
            profile = parse_profile(orjson.loads(line))
        except (orjson.JSONDecodeError, ValidationError, ValueError) as exc:
            problems.append(f"{path}:{line_no}: {_reason(exc)}")
            continue
        profiles[profile.customer_id] = profile
    return profiles, problems


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            for line_no, line in enumerate(handle, 1):
                if line.strip():
                    yield line_no, line
    except OSError as exc:
        raise ReferenceDataError(f"cannot read {path}: {exc.strerror or exc}") from None


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors(include_url=False, include_input=False)[0]
        return f"schema:{'.'.join(str(p) for p in err['loc'])}"
    if isinstance(exc, orjson.JSONDecodeError):
        return "malformed_json"
    return str(exc)
