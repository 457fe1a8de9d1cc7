"""bench/baseline_plain.py does the same work as the engine: the same candidates, exactly.

Every benchmark prints its ratio to that baseline, so a baseline that
skipped work would flatter nothing but itself; these checks keep it honest
on the generator's stream and on the real Berka transactions (dates only:
many ties on occurred_at).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import orjson
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "baseline_plain.py"


@pytest.fixture(scope="module")
def baseline():  # noqa: ANN201 - the script as a module
    spec = importlib.util.spec_from_file_location("baseline_plain", BENCH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["baseline_plain"] = module
    spec.loader.exec_module(module)
    return module


def test_baseline_gives_the_engines_candidates_on_the_generator_stream(baseline) -> None:
    payloads, until = baseline.generated(40_000, 2_000)
    found = baseline.run(payloads, baseline.to_us(until.isoformat()))
    expected = baseline.engine_candidates(payloads, until)
    rules = {"big-deposit", "gone-quiet", "welcome-back", "wealth-curious"}
    assert {c[0] for c in expected} == rules
    assert sorted(found) == sorted(expected)


def test_baseline_gives_the_engines_candidates_on_berka(baseline, berka_dir: Path) -> None:
    from keymoment.commands.importer import berka_events

    rows = [e for e in berka_events(berka_dir / "trans_first100k.asc.gz")]
    rows.sort(key=lambda e: e["occurred_at"])
    payloads = [orjson.dumps(e) for e in rows[:60_000]]
    found = baseline.run(payloads, None)
    expected = baseline.engine_candidates(payloads, None)
    assert len(expected) > 100
    assert sorted(found) == sorted(expected)
