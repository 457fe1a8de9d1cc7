"""Incremental engine snapshots: only the customers that changed since the previous one.

A full snapshot (`Engine.snapshot()`) holds every customer and the timer
heap, so its cost grows with the customers held, whatever changed. Here:

- `changes(engine)` returns the customers changed since the last call
  (created, evaluated an event, had a timer come due or fired, were
  evicted: `None`), plus the watermark, and forgets them. Its cost is in
  proportion to the customers changed; the engine pays one `set.add` per
  event and per heap entry coming due to know them (`Engine.dirty`).
- `restore(engine, base, parts)` loads a full snapshot, then the parts in
  order (a later part wins per customer; `None` deletes), and rebuilds the
  timers from each customer's `queued` map and newest event
  (`Engine.rebuild_timers`). The heap a snapshot would hold is exactly
  those entries plus stale ones, which are no-ops when they come due
  (docs/engine.md), so the heap is not stored at all.

A part is only valid on top of the base and parts taken before it from the
same engine, or from the engines a rule-set switch made of it: a part taken
after switches says so (`"switches"`: each old and new rule set, `carry` and
`reset_salary`, as `triggers.switch.switched` took them), and `restore`
replays them (`triggers.switch.replay`) on the states before it, then
applies its customers. That is exact because the part holds every customer
changed since the previous one, before the switch or after: every other
customer held, at the switch, the state the previous part left. The parts
are plain data: the driver encodes them at once (they hold the live state
objects).
tests/unit/test_snapshots.py replays a stream with parts taken at random
points, restores from base + parts at each, and checks the candidates and
the state are those of an engine that never stopped.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .engine import SNAPSHOT_VERSION, Engine
from .switch import replay


def changes(engine: Engine) -> dict[str, Any]:
    """The customers changed since the last call (None: gone), with the watermark."""
    customers, dirty = engine.customers, engine.dirty
    if dirty is None:
        raise ValueError("this engine does not track changes (Engine.dirty is None)")
    engine.settle(dirty)  # in the rules in force, as a restore replays the switches
    part = {cid: customers.get(cid) for cid in dirty}
    engine.dirty = set()
    return {"v": SNAPSHOT_VERSION, "part": True, "watermark": engine.watermark, "customers": part}


def restore(engine: Engine, base: dict[str, Any], parts: Iterable[dict[str, Any]]) -> None:
    """`base` (a full snapshot) and then `parts`, oldest first, with the switches they
    name (module docstring); the timers rebuilt. `engine` runs the last rule set."""
    engine.restore(base)
    customers = engine.customers
    for part in parts:
        if part.get("v") != SNAPSHOT_VERSION or not part.get("part"):
            raise ValueError("not an incremental snapshot of this engine version")
        for old, new, carry, reset_salary in part.get("switches", ()):
            replay(customers, old, new, carry, reset_salary)
        for cid, state in part["customers"].items():
            if state is None:
                customers.pop(cid, None)
            else:
                customers[cid] = state
        engine.watermark = part["watermark"]
    engine.rebuild_timers()
    engine.dirty = set()
