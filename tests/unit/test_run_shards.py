"""`keymoment run`'s default shard count: 1 where nothing can spread shards, 8 elsewhere."""

from __future__ import annotations

import pytest

from keymoment.cli import build_parser
from keymoment.commands.run import settings_from
from keymoment.commands.runview import start_line

BASE = ["run", "--rules", "examples/rules.yaml", "--source", "file:events.jsonl"]


@pytest.mark.parametrize(
    "extra,shards",
    [
        ([], 1),  # one worker, one process, no recovery
        (["--clock", "event"], 1),
        (["--workers", "2"], 8),
        (["--recovery", "rec"], 8),  # the directory fixes the count for every later run
        (["--process-id", "0", "--addresses", "localhost:2101;localhost:2102"], 8),
        (["--shards", "3"], 3),  # an explicit count is always honoured
        (["--shards", "5", "--workers", "2"], 5),
        (["--shards", "1", "--recovery", "rec"], 1),
    ],
)
def test_default_shards(extra: list[str], shards: int) -> None:
    settings = settings_from(build_parser(BASE).parse_args([*BASE, *extra]))
    assert settings.shards == shards


def test_the_start_line_names_the_shard_count() -> None:
    settings = settings_from(build_parser(BASE).parse_args(BASE))
    assert start_line(settings, 7, 8, 1).endswith("clock wall; 1 shard on 1 worker(s)")
    settings = settings_from(build_parser(BASE).parse_args([*BASE, "--workers", "2"]))
    assert start_line(settings, 7, 8, 2).endswith("clock wall; 8 shards on 2 worker(s)")


@pytest.mark.parametrize(
    "extra,flag",
    [
        (["--end-wait", "-1"], "--end-wait"),
        (["--batch-size", "0"], "--batch-size"),
        (["--tick", "-2"], "--tick"),
        (["--idle-timeout", "0"], "--idle-timeout"),
    ],
)
def test_a_bad_setting_names_its_flag_in_one_line(extra: list[str], flag: str) -> None:
    """Settings refused by validation name the flag the operator typed, not the field."""
    from keymoment.cli import UserError

    with pytest.raises(UserError) as raised:
        settings_from(build_parser(BASE).parse_args([*BASE, *extra]))
    message = str(raised.value)
    assert message.startswith(f"{flag}: ") and "\n" not in message


def test_end_wait_reaches_the_settings() -> None:
    assert settings_from(build_parser(BASE).parse_args(BASE)).end_wait == 10
    args = build_parser(BASE).parse_args([*BASE, "--end-wait", "2.5"])
    assert settings_from(args).end_wait == 2.5
