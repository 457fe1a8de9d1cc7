"""`--rules redis://...?key=NAME`: the version to start on and each new one, from a real Redis."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis

from keymoment.flows.rules_source import RulesSource
from keymoment.rollout.watch import initial_version

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "rules.yaml"
NOW = datetime(2026, 12, 1, 9, tzinfo=UTC)


def test_a_redis_key_starts_the_run_and_a_set_reloads_it(redis_server, tmp_path, monkeypatch):
    """SET v7, start on it; SET v8: the rules source emits its audit record and its switch."""
    shutil.copytree(EXAMPLE.parent / "lists", tmp_path / "lists")
    monkeypatch.chdir(tmp_path)  # list paths in a key resolve in the working folder
    client = redis.Redis.from_url(redis_server.url)
    client.set("km:rules", EXAMPLE.read_bytes())
    url = f"{redis_server.url}?key=km:rules"
    initial = initial_version(url)
    assert initial.version == 7 and initial.source == url
    source = RulesSource(
        url, initial, lead=timedelta(seconds=2), lateness=timedelta(0), process={}, poll=0.01,
        now=lambda: NOW,
    )  # fmt: skip
    part = source.build_part("rules", "rules", None)
    assert part.next_batch() == []  # the same content as the version in force
    client.set("km:rules", EXAMPLE.read_text().replace("version: 7", "version: 8", 1))
    part._next = 0.0  # the next poll is due now
    (audit, rec), (kind, switch) = part.next_batch()
    assert (audit, rec["result"], kind) == ("audit", "applied", "switch")
    assert switch.version.version == 8 and switch.effective_at == NOW + timedelta(seconds=2)
    assert part.snapshot()["version"]["text"] == switch.version.text
