"""JSONL file and stdout sinks inside real Bytewax runs."""

from __future__ import annotations

from pathlib import Path

import bytewax.operators as op
import orjson
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, run_main

from keymoment.connectors.files import JsonlFileSink
from keymoment.connectors.sinks import StdoutSink, describe
from keymoment.flows.outputs import output

OFFER = {
    "offer_id": "a" * 32,
    "customer_id": "c1",
    "channel": "sms",
    "campaign_id": "win-back",
    "offer_code": "WB-1",
    "rule_id": "gone-quiet",
    "trigger": "dormancy",
    "triggered_at": "2024-03-01T00:00:00Z",
    "send_at": "2024-03-01T08:00:00Z",
    "expires_at": "2024-03-02T00:00:00Z",
    "rule_version": 7,
    "attributes": {"inactive_days": 90},
}


def _write(records: list[dict], sink) -> None:
    flow = Dataflow("sink")
    output("out", op.input("in", flow, TestingSource(records, batch_size=3)), sink)
    run_main(flow)


def test_file_sink_writes_one_json_line_per_record_and_fresh_runs_truncate(tmp_path: Path) -> None:
    """A fresh run replaces an old file; each record becomes one JSON line, unicode intact."""
    path = tmp_path / "sub" / "offers.jsonl"
    path.parent.mkdir()
    path.write_text("stale line\n")
    records = [dict(OFFER, offer_id=f"{i:032x}", attributes={"name": "Zoë"}) for i in range(10)]
    _write(records, JsonlFileSink(path))
    assert [orjson.loads(line) for line in path.read_bytes().splitlines()] == records


def test_stdout_sink_prints_one_readable_line_per_record(capsys: pytest.CaptureFixture) -> None:
    """Offers, decision-log records and dead letters each print as one human-readable line."""
    decision = dict(OFFER, outcome="capped", reason="daily-any", event_id="e1")
    dead = {"reason": "schema:amount", "source": "tx.jsonl:4", "event_id": "e9"}
    _write([OFFER, decision, dead], StdoutSink())
    lines = capsys.readouterr().out.splitlines()
    assert lines == [describe(OFFER), describe(decision), describe(dead)]
    assert "sms" in lines[0] and "win-back/WB-1" in lines[0] and "a" * 32 in lines[0]
    assert lines[1].endswith("capped: daily-any")
    assert lines[2] == "dead letter  schema:amount  at tx.jsonl:4 event e9"
