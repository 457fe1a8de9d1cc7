"""The human-readable stdout sink: one line per offer, decision-log record or dead letter.

The flow writes to it, as to every sink, through `keymoment.flows.outputs.output`.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from bytewax.outputs import DynamicSink, StatelessSinkPartition


def describe(record: dict[str, Any]) -> str:
    """One readable line for an offer, a decision-log record or a dead letter."""
    if "offer_id" in record:
        return _describe_offer(record)
    if "reason" in record and "source" in record:
        event = f" event {record['event_id']}" if record.get("event_id") else ""
        return f"dead letter  {record['reason']}  at {record['source']}{event}"
    return " ".join(f"{k}={v}" for k, v in record.items())


def _describe_offer(r: dict[str, Any]) -> str:
    head = f"{r.get('send_at') or r.get('triggered_at') or '-'}  {r.get('channel') or '-':<12}"
    what = f"{r.get('campaign_id')}/{r.get('offer_code')}  customer {r.get('customer_id')}"
    rule = f"rule {r.get('rule_id')} ({r.get('trigger')})"
    line = f"{head}  {what}  {rule}  offer {r['offer_id']}"
    if "outcome" in r:
        reason = f": {r['reason']}" if r.get("reason") else ""
        line = f"{line}  {r['outcome']}{reason}"
    return line


class _StdoutPartition(StatelessSinkPartition[dict]):
    def __init__(self, stream: TextIO):
        self._stream = stream

    def write_batch(self, items: list[dict]) -> None:
        self._stream.write("".join(describe(item) + "\n" for item in items))
        self._stream.flush()


class StdoutSink(DynamicSink[dict]):
    """Human-readable lines on stdout, one per record: for people watching a demo, not machines."""

    def __init__(self, stream: TextIO | None = None):
        self._stream = stream

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _StdoutPartition:
        return _StdoutPartition(self._stream or sys.stdout)
