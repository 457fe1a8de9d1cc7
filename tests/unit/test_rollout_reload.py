"""Reload attempts, their audit records, and replay schedules (issue 10)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from keymoment.rollout.audit import log_line
from keymoment.rollout.reload import Reloader
from keymoment.rollout.schedule import RolloutError, from_audit, schedule
from keymoment.rollout.versions import RulesVersion
from keymoment.rollout.watch import FileWatch

EXAMPLE = Path(__file__).parents[2] / "examples"
NOW = datetime(2026, 12, 1, 9, tzinfo=UTC)
LEAD = timedelta(seconds=2)


@pytest.fixture
def rules_path(tmp_path: Path) -> Path:
    shutil.copytree(EXAMPLE / "lists", tmp_path / "lists")
    path = tmp_path / "rules.yaml"
    path.write_bytes((EXAMPLE / "rules.yaml").read_bytes())
    return path


def edited(path: Path, *pairs: tuple[str, str]) -> bytes:
    text = path.read_text()
    for old, new in pairs:
        assert old in text
        text = text.replace(old, new, 1)
    return text.encode()


def reloader(path: Path) -> Reloader:
    return Reloader(RulesVersion.read(str(path)), LEAD, timedelta(0), {"pid": 1})


def test_a_valid_change_switches_at_now_plus_the_lead_and_is_audited(rules_path):
    """Version 8 with a new min_amount: a switch at NOW + lead; the record names old and new."""
    r = reloader(rules_path)
    text = edited(
        rules_path, ("version: 7", "version: 8"), ("min_amount: 50000", "min_amount: 60000")
    )
    switch, rec = r.consider(text, NOW)
    assert switch is not None and switch.effective_at == NOW + LEAD and switch.version.version == 8
    assert (
        rec is not None
        and rec["result"] == "applied"
        and rec["effective_at"] == "2026-12-01T09:00:02Z"
    )
    (big,) = [c for c in rec["changed"] if c["rule_id"] == "big-deposit"]
    assert big["kind"] == "thresholds" and big["params"]["min_amount"] == {
        "old": "50000",
        "new": "60000",
    }
    assert rec["content"] == text.decode() and rec["digest"].startswith("sha256:")
    assert "applied at watermark 2026-12-01T09:00:02Z: big-deposit (thresholds)" in log_line(rec)
    assert r.consider(text, NOW) == (None, None)  # the same content again: nothing new


def test_an_invalid_file_keeps_the_version_in_force_and_lists_every_problem(rules_path):
    """Two mistakes: one record, rejected, both named; the failure is counted; 7 stays."""
    r = reloader(rules_path)
    text = edited(
        rules_path,
        ("version: 7", "version: 8"),
        ("window: 24h", "window: 24x"),
        ("campaign: win-back", "campaign: nowhere"),
    )
    switch, rec = r.consider(text, NOW)
    assert switch is None and rec is not None and rec["result"] == "rejected"
    assert len(rec["problems"]) == 2 and r.failures == 1 and r.current.version == 7
    assert log_line(rec).count(";") == 1 and "REJECTED, still on 7" in log_line(rec)


def test_a_version_that_is_not_higher_is_refused_and_identical_content_is_a_no_op(rules_path):
    """Same version with a change: refused. Same rules with other whitespace: unchanged."""
    r = reloader(rules_path)
    _, rec = r.consider(edited(rules_path, ("min_amount: 50000", "min_amount: 1")), NOW)
    assert rec is not None and rec["result"] == "rejected"
    assert rec["problems"] == ["version: 7 is not higher than the version in force (7)"]
    switch, rec = r.consider(rules_path.read_bytes() + b"\n# a comment\n", NOW)
    assert switch is None and rec is not None and rec["result"] == "unchanged"


def test_the_audit_log_replays_as_a_schedule(rules_path, tmp_path):
    """Applied records become switches at their watermark; rejected ones are skipped."""
    r = reloader(rules_path)
    recs = [
        r.consider(edited(rules_path, ("version: 7", "version: 8")) + b"\n#8", NOW)[1],
        r.consider(b"version: [", NOW + timedelta(seconds=5))[1],
        r.consider(
            edited(rules_path, ("version: 7", "version: 9"), ("holdout: 0.1", "holdout: 0.2")),
            NOW + timedelta(seconds=9),
        )[1],
    ]
    log = tmp_path / "audit.jsonl"
    log.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in recs))
    switches = from_audit(str(log))
    assert [(s.effective_at, s.version.version) for s in switches] == [
        (NOW + LEAD, 8), (NOW + timedelta(seconds=9) + LEAD, 9)
    ]  # fmt: skip
    assert switches[1].version.rules == r.current.rules


def test_rollout_arguments_name_their_mistake_in_one_line(rules_path, tmp_path):
    """A time without an offset, a missing file, a bad audit line: one RolloutError each."""
    with pytest.raises(RolloutError, match="needs an offset"):
        schedule([f"2026-03-01T00:00:00={rules_path}"], [])
    with pytest.raises(RolloutError, match="cannot read the file"):
        schedule(["2026-03-01T00:00:00Z=/nonexistent.yaml"], [])
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(RolloutError, match="bad.jsonl:1"):
        schedule([], [str(tmp_path / "bad.jsonl")])
    (s,) = schedule([f"2026-03-01T00:00:00Z={rules_path}"], [])
    assert s.effective_at == datetime(2026, 3, 1, tzinfo=UTC)


def test_the_file_watch_reads_only_after_a_change_or_when_forced(rules_path):
    """The first read returns the content; an untouched file returns None unless forced."""
    watch = FileWatch(str(rules_path))
    assert watch.read() == rules_path.read_bytes()
    assert watch.read() is None
    assert watch.read(force=True) == rules_path.read_bytes()
    rules_path.write_bytes(rules_path.read_bytes() + b"\n# edited\n")
    assert watch.read() is not None


def test_a_version_pickles_as_its_bytes_and_validates_again(rules_path):
    """What crosses processes and snapshots is plain data; the model is rebuilt equal."""
    import pickle

    version = RulesVersion.read(str(rules_path))
    again = pickle.loads(pickle.dumps(version))
    assert again.rules == version.rules and again.digest == version.digest
