"""Small URL helpers shared by `keymoment.connectors.urls`: schemes, paths, query options.

Every problem is a one-line `ValueError`; messages show URLs without user
or password (`safe`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

Query = dict[str, list[str]]


def split(url: str) -> tuple[str, str]:
    scheme, sep, rest = url.partition(":")
    if not sep or "/" in scheme or "\\" in scheme or len(scheme) == 1:
        return "", url  # a plain path (a one-letter scheme would be a Windows drive)
    return scheme.lower(), rest


def file_path(rest: str) -> Path:
    path = rest.removeprefix("//")  # file:///abs/path and file://rel/path as well as file:path
    if not path:
        raise ValueError("file URL needs a path, like file:events.jsonl")
    return Path(path)


def query(url: str, allowed: set[str]) -> Query:
    query = parse_qs(urlsplit(url).query, keep_blank_values=True)
    unknown = sorted(set(query) - allowed)
    if unknown:
        raise ValueError(
            f"unknown parameter {unknown[0]!r} in {safe(url)}; "
            f"allowed: {', '.join(sorted(allowed)) or 'none'}"
        )
    return query


def one(query: Query, name: str, default: Any, cast: Callable[[str], Any] = str) -> Any:
    values = query.get(name)
    if not values:
        return default
    try:
        return cast(values[-1])
    except ValueError:
        raise ValueError(f"parameter {name}={values[-1]!r} is not valid") from None


def flag(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


def safe(url: str) -> str:
    """The URL without user or password, for messages."""
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


def server_url(url: str) -> str:
    """A redis URL without our own query parameters (the client must not see them)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(query=""))


def where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 6379}"
