"""bench/baseline_plain.py does the same work as the engine: the same candidates, exactly.

Every benchmark prints its ratio to that baseline, so a baseline that
skipped work would flatter nothing but itself; these checks keep it honest
on the generator's stream and on the real Berka transactions (dates only:
many ties on occurred_at).
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import orjson
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "baseline_plain.py"


def _script(path: Path):  # noqa: ANN202 - a bench script as a module
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def baseline():  # noqa: ANN201 - the script as a module
    return _script(BENCH)


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


# The eight rules of examples/rules.yaml: bench/baseline_plain_all.py.

BENCH_ALL = BENCH.with_name("baseline_plain_all.py")
EIGHT = {"big-deposit", "payroll-found", "payroll-stopped", "gone-quiet", "welcome-back",
         "honeymoon", "wealth-curious", "loan-abandoned"}  # fmt: skip


@pytest.fixture(scope="module")
def baseline_all():  # noqa: ANN201 - the script as a module
    return _script(BENCH_ALL)


def test_eight_rule_baseline_constants_are_the_rules_files(baseline_all, tmp_path: Path) -> None:
    assert baseline_all.check_constants() == []
    assert set(baseline_all.RULE_IDS) == EIGHT
    shutil.copytree(baseline_all.RULES.parent / "lists", tmp_path / "lists")
    text = baseline_all.RULES.read_text()
    for old, new in [("tolerance: 0.2 ", "tolerance: 0.25 "), ("grace: 10d", "grace: 11d"),
                     ("tags_none: [staff]", "tags_none: [staff, young]")]:  # fmt: skip
        assert old in text
        changed = tmp_path / "rules.yaml"
        changed.write_text(text.replace(old, new))
        assert len(baseline_all.check_constants(changed)) == 1, new


def test_eight_rule_baseline_gives_the_engines_candidates_on_the_generator_stream(
    baseline_all,
) -> None:
    payloads, until = baseline_all.generated(40_000, 2_000)
    profiles = baseline_all.profile_lines(2_000)
    found = baseline_all.run(payloads, profiles, baseline_all.to_us(until.isoformat()))
    expected = baseline_all.engine_candidates(payloads, profiles, until)
    assert {c[0] for c in expected} == EIGHT  # every rule fires, the timers among them
    assert sorted(found) == sorted(expected)


@pytest.mark.parametrize("with_profiles", [False, True], ids=["first-seen", "opened_at"])
def test_eight_rule_baseline_gives_the_engines_candidates_on_berka(
    baseline_all, berka_dir: Path, with_profiles: bool
) -> None:
    """Without profiles the milestone's onboarding starts at the first event the state holds;
    with Berka's accounts, at each account's opening date."""
    from keymoment.commands.importer import berka_customers, berka_events

    rows = [e for e in berka_events(berka_dir / "trans_first100k.asc.gz")]
    rows.sort(key=lambda e: e["occurred_at"])
    payloads = [orjson.dumps(e) for e in rows[:60_000]]
    profiles = (
        [orjson.dumps(p) for p in berka_customers(berka_dir / "account.asc", [])]
        if with_profiles
        else []
    )
    found = baseline_all.run(payloads, profiles, None)
    expected = baseline_all.engine_candidates(payloads, profiles, None)
    fired = {c[0] for c in expected}
    assert {"honeymoon", "payroll-found", "gone-quiet", "welcome-back"} <= fired
    assert len(expected) > 100
    assert sorted(found) == sorted(expected)
