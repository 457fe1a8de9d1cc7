"""URLs -> Bytewax sources and sinks, rules and reference data, the contact policy.

The connectors package owns wire formats and URL forms
(`keymoment.connectors.urls`); this module only asks it, with a fallback for
the two forms the flow needs on its own (`file:` JSONL and `stdout:`) while
that module is absent. Every failure here is a `ConnectError` with one line
for the user.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bytewax.inputs import Source
from bytewax.outputs import Sink

from keymoment.config import RulesError, RulesFile, load_rules
from keymoment.triggers.events import CustomerProfile


class ConnectError(Exception):
    """A URL, file or server the flow cannot use: one line for the user."""


def _urls() -> Any:
    try:
        return importlib.import_module("keymoment.connectors.urls")
    except ModuleNotFoundError as exc:
        if exc.name != "keymoment.connectors.urls":
            raise
        return None


def _file_path(url: str) -> Path | None:
    if url.startswith("file://"):
        return Path(url[len("file://"):])
    if url.startswith("file:"):
        return Path(url[len("file:"):])
    if "://" not in url and ":" not in url.split("/")[0]:
        return Path(url)
    return None


def source_from_url(url: str, batch_size: int = 1000) -> Source:
    urls = _urls()
    try:
        if urls is not None:
            return urls.source_from_url(url)
        path = _file_path(url)
        if path is None:
            raise ValueError(f"unsupported source URL {url!r} (expected file:PATH)")
        from keymoment.connectors.files import JsonlFileSource

        return JsonlFileSource([path], batch_size=batch_size)
    except (ValueError, OSError) as exc:
        raise ConnectError(str(exc)) from None


def sink_from_url(url: str) -> Sink:
    urls = _urls()
    try:
        if urls is not None:
            return urls.sink_from_url(url)
        if url in ("stdout:", "-", "stdout"):
            from keymoment.connectors.sinks import StdoutSink

            return StdoutSink()
        path = _file_path(url)
        if path is None:
            raise ValueError(f"unsupported sink URL {url!r} (expected file:PATH or stdout:)")
        from keymoment.connectors.files import JsonlFileSink

        return JsonlFileSink(path)
    except (ValueError, OSError) as exc:
        raise ConnectError(str(exc)) from None


def rules_from(path: str) -> RulesFile:
    try:
        return load_rules(path)
    except RulesError as exc:
        first = exc.problems[0] if exc.problems else "invalid"
        more = f" (and {len(exc.problems) - 1} more; run `keymoment validate`)" if len(exc.problems) > 1 else ""
        raise ConnectError(f"invalid rules file {exc.source}: {first}{more}") from None


def profiles_from(url: str | None) -> Mapping[str, CustomerProfile]:
    """Customer reference data: a JSONL file (or whatever `connectors.urls` can load)."""
    if url is None:
        return {}
    urls = _urls()
    loader = getattr(urls, "profiles_from_url", None) if urls is not None else None
    try:
        if loader is not None:
            return loader(url)
        path = _file_path(url)
        if path is None:
            raise ValueError(f"unsupported customers URL {url!r} (expected file:PATH)")
        from keymoment.connectors.customers import read_profiles

        profiles, _problems = read_profiles(path)
        return profiles
    except Exception as exc:  # reference data errors of any connector: one line
        raise ConnectError(f"cannot load customers from {url}: {exc}") from None


def policy_for(rules: RulesFile, state_url: str | None) -> Any:
    """The contact policy: the full one when it exists, else the placeholder."""
    from keymoment import policy as policies

    build = getattr(policies, "build_policy", None)
    if build is None:
        return policies.FirstChannelPolicy(rules)
    store = None
    if state_url is not None:
        from keymoment.state import cap_store_from_url

        try:
            store = cap_store_from_url(state_url)
        except Exception as exc:
            raise ConnectError(f"cap store {state_url}: {exc}") from None
    return build(rules, store=store) if store is not None else build(rules)
