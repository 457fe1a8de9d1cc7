"""Runtime settings of the live flow: one model, passed to `get_flow()` through the environment.

`python -m bytewax.run` passes only literal arguments to a flow factory, so
`keymoment run` (or a user running `bytewax.run` by hand) puts the settings
as JSON in the `KEYMOMENT_FLOW` environment variable and `get_flow()` reads
them back. Every worker process of a cluster reads the same variable.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

ENV = "KEYMOMENT_FLOW"
ALL_CHANNELS = "*"


class SettingsError(Exception):
    """Settings that cannot run: a one-line message for the user."""


class FlowSettings(BaseModel):
    """Where the flow reads and writes, and how its clock runs (docs/dataflow.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    rules: str
    sources: list[str] = Field(min_length=1)
    sinks: dict[str, str] = Field(default_factory=dict)  # channel (or "*") -> sink URL
    decisions: str | None = None
    dead_letters: str | None = None
    customers: str | None = None
    cap_store: str | None = None  # cap store URL for the contact policy (`--state`)
    clock: Literal["wall", "event"] = "wall"
    until: datetime | None = None  # event clock: skip later events, advance here at the end
    shards: int = Field(default=8, ge=1, le=4096)
    tick_seconds: float = Field(default=1.0, gt=0)  # wall clock: how often quiet shards advance
    recovery: bool = False  # snapshots are only built when Bytewax recovery is on
    # Incremental snapshots (flows/snapshots.py): segment files here, Bytewax keeps their names;
    # None: whole-shard snapshots. Segments stay while a chain of the last `snapshot_keep_seconds`
    # names them (the backup interval and a few epochs); a new base when the parts outgrow it.
    snapshot_dir: str | None = None
    snapshot_keep_seconds: float = Field(default=10.0, ge=0)
    snapshot_compact_ratio: float = Field(default=1.0, gt=0)
    batch_size: int = Field(default=1000, ge=1)
    # rollout (docs/rollout.md): scheduled switches, and on the wall clock the live reload
    rollouts: list[str] = Field(default_factory=list)  # TIME=FILE, as `--rollout`
    rollout_logs: list[str] = Field(default_factory=list)  # audit logs, as `--rollout-log`
    audit: str | None = None  # sink URL for one record per reload attempt
    watch_rules: bool = False  # wall clock: pick up changes of `rules` (keymoment run sets it)
    rules_poll_seconds: float = Field(default=1.0, gt=0)
    rules_lead_seconds: float = Field(default=2.0, ge=0)  # a switch's W: now + this
    # Several input partitions: seconds of wall time after which a silent partition stops
    # holding the watermark back (flows/partitions.py); None: never (exact replays).
    idle_timeout: float | None = Field(default=None, gt=0)
    # End of input with candidates still parked for a dead cap store: how long the process
    # (all its shards together: one `EndWait`) retries before they end `expired`.
    end_wait: float = Field(default=10.0, ge=0)
    # `python -m bytewax.run ...:get_flow` only: serve /metrics, /healthz and /readyz at
    # "[HOST:]PORT" (loopback unless HOST is given), process N on PORT + N, as `run --metrics`
    # does; `keymoment run` takes `--metrics` instead and leaves this out.
    metrics: str | None = None

    def to_env(self) -> dict[str, str]:
        return {ENV: self.model_dump_json()}


def from_env(environ: dict[str, str] | None = None) -> FlowSettings:
    """The settings `keymoment run` exported, or a one-line error naming the variable."""
    raw = (environ if environ is not None else os.environ).get(ENV)
    if not raw:
        raise SettingsError(f"{ENV} is not set: run the flow with `keymoment run` or export it")
    try:
        return FlowSettings.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SettingsError(f"{ENV}: {where}: {first['msg']}") from None
