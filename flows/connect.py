"""URLs -> Bytewax sources and sinks, rules and reference data, the contact policy.

The connectors package owns wire formats and URL forms
(`keymoment.connectors.urls`); this module only asks it and turns every
failure into a `ConnectError` with one line for the user.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from bytewax.inputs import Source
from bytewax.outputs import Sink

from keymoment.config import RulesError, RulesFile, load_rules
from keymoment.connectors import urls
from keymoment.connectors.urls import cap_store_from_url
from keymoment.policy import RulesContactPolicy, build_policy, wall_clock
from keymoment.policy.parking import EndWait
from keymoment.rollout.schedule import RolloutError, schedule
from keymoment.rollout.versions import RulesVersion, Switch
from keymoment.rollout.watch import initial_version
from keymoment.triggers.events import CustomerProfile

from .settings import FlowSettings


class ConnectError(Exception):
    """A URL, file or server the flow cannot use: one line for the user."""


def source_from_url(url: str, batch_size: int = 1000) -> Source:
    try:
        return urls.source_from_url(url, batch_size=batch_size)
    except (ValueError, OSError) as exc:
        raise ConnectError(str(exc)) from None


def sink_from_url(url: str) -> Sink:
    try:
        return urls.sink_from_url(url)
    except (ValueError, OSError) as exc:
        raise ConnectError(str(exc)) from None


def rules_from(path: str) -> RulesFile:
    try:
        return load_rules(path)
    except RulesError as exc:
        raise ConnectError(_invalid(exc)) from None


def versions_from(settings: FlowSettings) -> tuple[RulesVersion, list[Switch]]:
    """The version to start on (a file or a Redis key) and the scheduled `--rollout` switches."""
    try:
        return initial_version(settings.rules), schedule(settings.rollouts, settings.rollout_logs)
    except RulesError as exc:
        raise ConnectError(_invalid(exc)) from None
    except RolloutError as exc:
        raise ConnectError(str(exc)) from None


def _invalid(exc: RulesError) -> str:
    first = exc.readable()[0] if exc.problems else "invalid"
    more = (
        f" (and {len(exc.problems) - 1} more; run `keymoment validate`)"
        if len(exc.problems) > 1
        else ""
    )
    return f"invalid rules file {exc.source}: {first}{more}"


def profiles_from(url: str | None) -> Mapping[str, CustomerProfile]:
    """Customer reference data: a JSONL file, Redis hashes or the generator's customers."""
    if url is None:
        return {}
    try:
        return urls.profiles_from_url(url)
    except Exception as exc:  # any reference-data problem of any backend: one line
        raise ConnectError(f"cannot load customers from {url}: {exc}") from None


def policy_for(
    rules: RulesFile,
    cap_store_url: str | None,
    clock: Callable[[], datetime] = wall_clock,
    end_wait: EndWait | None = None,
) -> RulesContactPolicy:
    """The contact policy over the cap store at `cap_store_url` (in memory when None).

    `end_wait`: the end-of-input wait budget the shards of one process share.
    """
    try:
        store = cap_store_from_url(cap_store_url)
    except (ValueError, OSError) as exc:
        raise ConnectError(f"cap store {cap_store_url}: {exc}") from None
    return build_policy(rules, store=store, clock=clock, end_wait=end_wait or EndWait())
