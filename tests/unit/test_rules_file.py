"""Rules files through `keymoment.config.load_rules`: the example is valid, and every problem
is named by its path (docs/semantics.md section 7)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from keymoment.config import RulesError, load_rules
from keymoment.triggers.engine import Engine

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "rules.yaml"
BASE = """
campaigns:
  - {campaign_id: c, offer_code: X, channels: [sms]}
rules:
"""


def problems(tmp_path: Path, text: str, name: str = "rules.yaml") -> list[str]:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(RulesError) as info:
        load_rules(path)
    return info.value.problems


def rule_problems(tmp_path: Path, *rules: str) -> list[str]:
    return problems(tmp_path, BASE + "".join(f"  - {r}\n" for r in rules))


def test_example_rules_file_is_valid_and_uses_every_trigger():
    """examples/rules.yaml loads, compiles, and covers every trigger type."""
    rules = load_rules(EXAMPLE)
    assert {r.trigger for r in rules.rules} == {
        "large_deposit", "salary_credit", "salary_missed", "dormancy", "reactivation",
        "balance_milestone", "window_threshold", "absence",
    }  # fmt: skip
    journeys = load_rules(EXAMPLE.parent / "journeys.yaml")  # the follow_up is live there
    assert "follow_up" in {r.trigger for r in journeys.rules}
    assert all(path.is_file() for path in rules.lists.values())
    assert len(Engine(rules).triggers) == len(rules.rules)


def test_defaults_follow_the_spec(tmp_path):
    """Omitted parameters take the bracketed defaults of section 3."""
    path = tmp_path / "r.yaml"
    path.write_text(BASE + "  - {rule_id: d, trigger: large_deposit, campaign: c}\n")
    rules = load_rules(path)
    deposit = rules.rules[0]
    assert (deposit.min_amount, deposit.multiple, deposit.min_history) == (50000, 5, 3)
    assert deposit.lookback == timedelta(days=90) and deposit.kinds == [
        "cash_deposit",
        "transfer_in",
    ]
    salary = rules.salary
    assert (salary.min_interval, salary.max_interval, salary.memory) == (
        timedelta(days=25), timedelta(days=35), timedelta(days=400))  # fmt: skip
    assert (str(salary.tolerance), salary.min_occurrences) == ("0.2", 3)
    assert rules.engine.allowed_lateness == timedelta(
        0
    ) and rules.engine.dedupe_window == timedelta(hours=24)


def test_json_rules_files_are_accepted(tmp_path):
    """The same shape in JSON loads too."""
    path = tmp_path / "r.json"
    path.write_text('{"campaigns": [{"campaign_id": "c", "offer_code": "X", "channels": ["sms"]}],'
                    ' "rules": [{"rule_id": "d", "trigger": "dormancy",'
                    ' "campaign": "c"}]}')  # fmt: skip
    assert load_rules(path).rules[0].trigger == "dormancy"


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("{rule_id: a, trigger: teleport, campaign: c}", "rules[0].trigger: unknown trigger"),
        ("{rule_id: a, campaign: c}", "rules[0].trigger: missing"),
        ("{rule_id: a, trigger: dormancy, campaign: c, inactiv: 90d}",
         "rules[0].inactiv: unknown field"),
        ("{rule_id: a, trigger: dormancy, campaign: c, inactive: 3 months}",
         "rules[0].inactive: expected a duration like 24h"),
        ("{rule_id: a, trigger: balance_milestone, campaign: c, thresholds: [10, 5]}",
         "rules[0].thresholds: thresholds must be strictly increasing"),
        ("{rule_id: a, trigger: window_threshold, campaign: c, filter: {type: app}, window: 1h,"
         " value: 1, aggregate: median}", "rules[0].aggregate: expected count, sum"),
        ("{rule_id: a, trigger: window_threshold, campaign: c, filter: {type: app}, window: 1h,"
         " value: 1, aggregate: sum}", "rules[0].aggregate: sum needs filter.type: transaction"),
        ("{rule_id: a, trigger: window_threshold, campaign: c, filter: {type: app, action: []},"
         " window: 1h, value: 1}", "rules[0].filter.action: an empty list matches nothing"),
        ("{rule_id: a, trigger: absence, campaign: c, within: 30m, start: {type: app}}",
         "rules[0].cancel: Field required"),
        ("{rule_id: a, trigger: reactivation, campaign: c, memory: 30d}",
         "rules[0].memory: must be at least inactive"),
        ("{rule_id: a, trigger: large_deposit, campaign: c, min_amount: -1}",
         "rules[0].min_amount:"),
        ("{rule_id: 'bad id!', trigger: dormancy, campaign: c}", "rules[0].rule_id:"),
        ("{rule_id: a, trigger: dormancy, campaign: nope}",
         "rules[0].campaign: no campaign 'nope'"),
        ("{rule_id: a, trigger: large_deposit, campaign: c, kinds: [gift]}", "rules[0].kinds[0]:"),
    ],
)  # fmt: skip
def test_each_rule_problem_is_named_by_its_path(tmp_path, rule, expected):
    """A bad rule is reported as `rules[i].field: message`."""
    found = rule_problems(tmp_path, rule)
    assert any(p.startswith(expected) for p in found), found


def test_every_problem_of_a_file_is_reported_at_once(tmp_path):
    """Field problems in several places come back together, each with its path."""
    found = problems(
        tmp_path,
        BASE
        + """  - {rule_id: a, trigger: teleport, campaign: c}
  - {rule_id: b, trigger: dormancy, campaign: c, inactive: soon}
timezone: Mars/Olympus
engine: {allowed_lateness: later}
salary: {tolerance: -1}
""",
    )
    prefixes = ["rules[0].trigger", "rules[1].inactive", "timezone", "engine.allowed_lateness",
                "salary.tolerance"]  # fmt: skip
    assert sorted(p.split(":")[0] for p in found) == sorted(prefixes)


def test_unknown_campaigns_are_reported_along_with_field_errors(tmp_path):
    """A bad field elsewhere does not hide a rule naming a campaign that does not exist."""
    found = rule_problems(
        tmp_path,
        "{rule_id: a, trigger: dormancy, campaign: c, inactive: soon}",
        "{rule_id: b, trigger: dormancy, campaign: nope}",
    )
    assert sorted(found) == [
        "rules[0].inactive: expected a duration like 24h",
        "rules[1].campaign: no campaign 'nope' in campaigns",
    ]


def test_cross_checks_are_named_by_path_and_reported_together(tmp_path):
    """Duplicate ids, unknown campaigns and lists, misplaced cap fields: all at once, by path."""
    found = problems(
        tmp_path,
        """
campaigns:
  - {campaign_id: c, offer_code: X, channels: [sms], lists: [blacklist]}
  - {campaign_id: c, offer_code: Y, channels: [sms]}
rules:
  - {rule_id: a, trigger: dormancy, campaign: c}
  - {rule_id: a, trigger: dormancy, campaign: nope}
caps:
  - {id: x, scope: customer, limit: 1, window: day, channel: sms}
  - {id: y, scope: customer_rule, rule: zzz, limit: 1, window: day}
""",
    )
    assert sorted(found) == sorted([
        "rules[1].rule_id: 'a' is already used by rules[0]",
        "campaigns[1].campaign_id: 'c' is already used by campaigns[0]",
        "rules[1].campaign: no campaign 'nope' in campaigns",
        "campaigns[0].lists: no list 'blacklist' in lists",
        "caps[0].channel: only a customer_channel cap may name a channel",
        "caps[1].rule: no rule 'zzz' in rules",
    ])  # fmt: skip


def test_missing_list_file_is_named(tmp_path):
    """A list whose file does not exist (relative to the rules file) is `lists.<name>`."""
    found = problems(tmp_path, BASE + "  - {rule_id: a, trigger: dormancy, campaign: c}\n"
                     "lists: {do_not_contact: lists/dnc.txt}\n")  # fmt: skip
    assert found == [f"lists.do_not_contact: no such file {str(tmp_path / 'lists/dnc.txt')!r}"]


def test_list_paths_resolve_next_to_the_rules_file(tmp_path):
    """Relative list paths are relative to the rules file, not the working directory."""
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "dnc.txt").write_text("c1\n")
    path = tmp_path / "r.yaml"
    path.write_text(BASE + "  - {rule_id: a, trigger: dormancy, campaign: c}\n"
                    "lists: {do_not_contact: lists/dnc.txt}\n")  # fmt: skip
    assert load_rules(path).lists["do_not_contact"] == tmp_path / "lists" / "dnc.txt"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("rules: [", "not valid YAML: line"), ("- a\n- b\n", "the file must hold a mapping")],
)
def test_unparseable_files_say_where(tmp_path, text, expected):
    """Syntax errors and wrong top-level shapes are one clear problem."""
    assert problems(tmp_path, text)[0].startswith(expected)


def test_unreadable_file_is_a_problem_not_a_crash(tmp_path):
    """A missing file is reported, not raised as OSError."""
    with pytest.raises(RulesError) as info:
        load_rules(tmp_path / "absent.yaml")
    assert info.value.problems[0].startswith("cannot read the file")


def test_problems_name_each_rule_campaign_and_cap_by_id_too(tmp_path):
    """`rules[0] (big-deposit).min_amout`: the index and the id, for the operator's eye."""
    path = tmp_path / "rules.yaml"
    path.write_text(
        "rules:\n  - {rule_id: big-deposit, trigger: large_deposit, campaign: w, min_amout: 5}\n"
        "campaigns:\n  - {campaign_id: w, offer_code: X, channels: [sms], priority: high}\n"
        "caps:\n  - {id: daily, scope: customer, limit: 1, window: fortnight}\n"
    )
    with pytest.raises(RulesError) as caught:
        load_rules(path)
    readable = caught.value.readable()
    assert any(p.startswith("rules[0] (big-deposit).min_amout: unknown field") for p in readable)
    assert any(p.startswith("campaigns[0] (w).priority:") for p in readable)
    assert any(p.startswith("caps[0] (daily).window:") for p in readable)


VERSIONS = [(7, True), ("7.1", True), ("2026-12-01", True), ("e2e-1", True),
            ("seven", False), (-1, False), ("", False)]  # fmt: skip


@pytest.mark.parametrize("version,ok", VERSIONS)
def test_version_is_a_number_or_version_like(tmp_path, version, ok):
    """`version: "seven"` is refused; 7, "7.1" and a date are stamped as given."""
    path = tmp_path / "rules.yaml"
    path.write_text(f"version: {version!r}\nrules: []\ncampaigns: []\n".replace("'", '"'))
    if ok:
        assert load_rules(path).version == version
    else:
        with pytest.raises(RulesError, match="version"):
            load_rules(path)
