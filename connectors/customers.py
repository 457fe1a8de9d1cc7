"""Customer reference data (section 1): JSONL files or Redis hashes, validated at the edge.

Redis layout: one hash per customer at `<prefix><customer_id>` (for example
`customer:C0000001`), loaded whole at start with SCAN + HGETALL. Fields are
strings: `customer_id` (optional, defaults to the key without the prefix),
`opened_at` (RFC 3339), `timezone`, `segment`, `tags` (a JSON list or a
comma-separated string) and consent either as one `consent` field holding a
JSON object (`{"sms": true}`) or as one field per channel,
`consent.<channel>` = `1`/`true`/`yes` (anything else means no). Empty
fields count as absent.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import Any
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


_YES = frozenset({"1", "true", "yes", "y", "on"})


def hash_to_record(key_id: str, fields: dict[bytes, bytes]) -> dict[str, Any]:
    """One Redis hash as the dict `parse_profile` validates (see the module docstring)."""
    text = {k.decode(): v.decode() for k, v in fields.items() if v.strip()}
    record: dict[str, Any] = {"customer_id": text.pop("customer_id", key_id)}
    for name in ("opened_at", "timezone", "segment"):
        if name in text:
            record[name] = text.pop(name)
    if "tags" in text:
        tags = text.pop("tags")
        record["tags"] = (
            orjson.loads(tags)
            if tags.lstrip().startswith("[")
            else [tag.strip() for tag in tags.split(",") if tag.strip()]
        )
    consent = orjson.loads(text.pop("consent")) if "consent" in text else {}
    for name, value in text.items():
        if name.startswith("consent."):
            consent[name.removeprefix("consent.")] = value.strip().lower() in _YES
    record["consent"] = consent
    return record


def read_redis_profiles(
    client: Any, prefix: str, count: int = 1000
) -> tuple[dict[str, CustomerProfile], list[str]]:
    """All profiles under `prefix` (SCAN, then HGETALL in pipelined pages), and the problems."""
    profiles: dict[str, CustomerProfile] = {}
    problems: list[str] = []
    keys = [k.decode() for k in client.scan_iter(match=_glob_escape(prefix) + "*", count=count)]
    for start in range(0, len(keys), count):
        page = keys[start : start + count]
        pipe = client.pipeline(transaction=False)
        for key in page:
            pipe.hgetall(key)
        for key, fields in zip(page, pipe.execute(), strict=True):
            _add_hash(key, prefix, fields, profiles, problems)
    return profiles, problems


def _add_hash(key: str, prefix: str, fields: dict, profiles: dict, problems: list[str]) -> None:
    try:
        profile = parse_profile(hash_to_record(key.removeprefix(prefix), fields))
    except (orjson.JSONDecodeError, ValidationError, ValueError, AttributeError) as exc:
        problems.append(f"redis {key}: {_reason(exc)}")
        return
    profiles[profile.customer_id] = profile


def _glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)
