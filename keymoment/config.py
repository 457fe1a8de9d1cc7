"""The operator's rules file: load, validate whole, report every problem by its path.

`load_rules(path)` returns a `RulesFile` or raises `RulesError` whose
`problems` read like `rules[3].window: expected a duration like 24h`, one
per problem, so `keymoment validate` can list them all at once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
import yaml
from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from keymoment.listpaths import allowed_roots, resolve_lists
from keymoment.policy.config import Campaign, Cap, ChannelPolicy, PolicyParams
from keymoment.triggers.ruleset import TRIGGERS, RuleSet, duplicate_rule_ids

DO_NOT_CONTACT = "do_not_contact"
VERSION = re.compile(r"^(?=.*\d)[0-9A-Za-z][0-9A-Za-z._-]{0,63}$")  # with a digit: not "seven"
NAMED = re.compile(r"^(rules|campaigns|caps)\[(\d+)\]")
ID_FIELD = {"rules": "rule_id", "campaigns": "campaign_id", "caps": "id"}


class RulesError(Exception):
    """A rules file that cannot be used; `problems` names each problem by its path."""

    def __init__(self, source: str, problems: list[str], data: Any = None) -> None:
        super().__init__(f"{source}: {len(problems)} problem(s)\n  " + "\n  ".join(problems))
        self.source = source
        self.problems = problems
        self.data = data if isinstance(data, dict) else {}

    def readable(self) -> list[str]:
        """The problems with each rule, campaign and cap named by id as well as index."""
        return [named(p, self.data) for p in self.problems]


class RulesFile(RuleSet):
    """The whole file: the engine's rule set plus campaigns, channels, caps and lists."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    timezone: str = "UTC"
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")
    campaigns: list[Campaign] = Field(default_factory=list)
    channels: dict[str, ChannelPolicy] = Field(default_factory=dict)
    caps: list[Cap] = Field(default_factory=list)
    lists: dict[str, Path] = Field(default_factory=dict)
    policy: PolicyParams = PolicyParams()

    @field_validator("version")
    @classmethod
    def _version(cls, value: int | str) -> int | str:
        """A number (`7`) or a version-like string with a digit (`7.1`, `v8`); not `seven`."""
        if isinstance(value, str) and not VERSION.match(value):
            raise ValueError(
                "expected a number like 7, or a version with a digit like 7.1, v8 or 2026-12-01"
            )
        if isinstance(value, int) and value < 0:
            raise ValueError("expected 0 or more")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA timezone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _unique_rule_ids(self) -> RulesFile:
        """Replaces RuleSet's check: duplicates are reported with the other cross-checks."""
        return self

    @model_validator(mode="after")
    def _cross_check(self) -> RulesFile:
        problems = list(self._reference_problems())
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _reference_problems(self) -> list[str]:
        campaign_ids = [c.campaign_id for c in self.campaigns]
        known = set(campaign_ids)
        problems = duplicate_rule_ids(self.rules)
        problems += [
            f"campaigns[{i}].campaign_id: {c!r} is already used"
            f" by campaigns[{campaign_ids.index(c)}]"
            for i, c in enumerate(campaign_ids)
            if campaign_ids.index(c) != i
        ]
        problems += [
            f"rules[{i}].campaign: no campaign {rule.campaign!r} in campaigns"
            for i, rule in enumerate(self.rules)
            if rule.campaign not in known
        ]
        for i, campaign in enumerate(self.campaigns):
            problems += [
                f"campaigns[{i}].lists: no list {name!r} in lists"
                for name in campaign.lists
                if name not in self.lists
            ]
        problems += [
            f"rules[{i}].after.campaign: no campaign {rule.after.campaign!r} in campaigns"
            for i, rule in enumerate(self.rules)
            if rule.trigger == "follow_up" and rule.after.campaign not in known
        ]
        rule_ids = {rule.rule_id for rule in self.rules}
        for i, cap in enumerate(self.caps):
            problems += _cap_problems(i, cap, known, rule_ids)
        return problems

    def paused_campaigns(self) -> frozenset[str]:
        return frozenset(c.campaign_id for c in self.campaigns if c.mode == "paused")

    def shadow_rules(self) -> frozenset[str]:
        """Rules whose candidates end `shadow`: their own mode, or their campaign's."""
        shadow = {c.campaign_id for c in self.campaigns if c.mode == "shadow"}
        return frozenset(
            r.rule_id for r in self.rules if r.mode == "shadow" or r.campaign in shadow
        )

    def campaign(self, campaign_id: str) -> Campaign:
        return next(c for c in self.campaigns if c.campaign_id == campaign_id)


def _cap_problems(i: int, cap: Cap, campaigns: set[str], rules: set[str]) -> list[str]:
    allowed = {
        "customer": None,
        "customer_channel": "channel",
        "customer_campaign": "campaign",
        "customer_rule": "rule",
    }[cap.scope]
    problems = [
        f"caps[{i}].{name}: only a {scope_of(name)} cap may name a {name}"
        for name in ("channel", "campaign", "rule")
        if getattr(cap, name) is not None and name != allowed
    ]
    if cap.campaign is not None and cap.campaign not in campaigns:
        problems.append(f"caps[{i}].campaign: no campaign {cap.campaign!r} in campaigns")
    if cap.rule is not None and cap.rule not in rules:
        problems.append(f"caps[{i}].rule: no rule {cap.rule!r} in rules")
    return problems


def scope_of(name: str) -> str:
    return f"customer_{name}"


def load_rules(path: str | Path, list_dirs: Sequence[str | Path] | None = None) -> RulesFile:
    """Read, parse and validate a YAML or JSON rules file; list files resolve next to it.

    List files must lie in the rules file's folder or in `list_dirs` (default: the
    folders in `KEYMOMENT_LIST_DIRS`).
    """
    path = Path(path)
    source = str(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise RulesError(source, [f"cannot read the file: {exc.strerror or exc}"]) from None
    return parse_rules(source, text, path, list_dirs)


def parse_rules(
    source: str, text: bytes, path: Path, list_dirs: Sequence[str | Path] | None = None
) -> RulesFile:
    """Validate rules already read (a file's bytes, a Redis key's value, a snapshot's copy).

    `path` gives the format (`.json` or YAML) and the folder list paths resolve in.
    """
    data = _parse(source, path, text)
    if not isinstance(data, dict):
        raise RulesError(source, ["the file must hold a mapping (rules:, campaigns:, ...)"])
    try:
        rules = RulesFile.model_validate(data)
    except ValidationError as exc:
        problems = [p for err in exc.errors() for p in _problems(err)]
        problems += [p for p in _raw_reference_problems(data) if p not in problems]
        raise RulesError(source, problems, data) from None
    return _resolve_lists(source, path.parent, rules, list_dirs)


def named(problem: str, data: dict[str, Any]) -> str:
    """`rules[0].min_amout: ...` -> `rules[0] (big-deposit).min_amout: ...`: index and id."""
    match = NAMED.match(problem)
    if not match:
        return problem
    section, index = match.group(1), int(match.group(2))
    items = _list(data.get(section))
    item = items[index] if index < len(items) else None
    ident = item.get(ID_FIELD[section]) if isinstance(item, dict) else None
    if not isinstance(ident, str | int) or isinstance(ident, bool):
        return problem
    return f"{match.group(0)} ({ident}){problem[match.end() :]}"


def _raw_reference_problems(data: dict[str, Any]) -> list[str]:
    """Campaign references checked on the raw file, so they are reported with field errors.

    The model's own cross-check only runs once every field is valid; an
    operator fixing a file should see all of its problems in one go.
    """
    campaigns = _list(data.get("campaigns"))
    known = {c.get("campaign_id") for c in campaigns if isinstance(c, dict)}
    rules = _list(data.get("rules"))
    return [
        f"rules[{i}].campaign: no campaign {rule['campaign']!r} in campaigns"
        for i, rule in enumerate(rules)
        if isinstance(rule, dict) and isinstance(rule.get("campaign"), str)
        and rule["campaign"] not in known
    ]  # fmt: skip


def _parse(source: str, path: Path, text: bytes) -> Any:
    try:
        if path.suffix.lower() == ".json":
            return orjson.loads(text)
        return yaml.safe_load(text)
    except orjson.JSONDecodeError as exc:
        raise RulesError(source, [f"not valid JSON: {exc}"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise RulesError(
            source, [f"not valid YAML: {where}{getattr(exc, 'problem', exc)}"]
        ) from None


def _resolve_lists(
    source: str, base: Path, rules: RulesFile, list_dirs: Sequence[str | Path] | None
) -> RulesFile:
    """List files, confined to the rules file's folder or the operator's (keymoment.listpaths)."""
    resolved, problems = resolve_lists(rules.lists, base, allowed_roots(base, list_dirs))
    if problems:
        raise RulesError(source, problems)
    channels, missing = _resolve_holidays(base, rules)
    if missing:
        raise RulesError(source, missing)
    return rules.model_copy(update={"lists": resolved, "channels": channels})


def _resolve_holidays(base: Path, rules: RulesFile) -> tuple[dict[str, Any], list[str]]:
    """Human channels' holiday files, relative to the rules file like the lists."""
    channels = {
        name: c.model_copy(update={"holidays": base / c.holidays})
        if c.holidays is not None and not c.holidays.is_absolute() else c
        for name, c in rules.channels.items()
    }  # fmt: skip
    missing = [
        f"channels.{name}.holidays: no such file {str(c.holidays)!r}"
        for name, c in channels.items()
        if c.holidays is not None and not c.holidays.is_file()
    ]
    return channels, missing


def _problems(error: Any) -> list[str]:
    """One pydantic error as `path: message` lines, dropping union tags from the path."""
    parts: list[str] = []
    for item in error["loc"]:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in TRIGGERS and parts and parts[-1].startswith("["):
            continue  # the discriminator's branch name, not a field
        elif item.startswith(("function-", "str-enum", "literal[")):
            continue
        else:
            parts.append(f".{item}" if parts else item)
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown field (check the spelling; see examples/rules.yaml)"
    elif error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        found = "unknown trigger" if error["type"] == "union_tag_invalid" else "missing"
        message = f"{found}; expected one of {', '.join(TRIGGERS)}"
        parts.append(".trigger")
    path = "".join(parts)
    if not path:  # cross-checks arrive as one model-level error
        return message.split("; ")
    return [f"{path}: {message}"]


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
