"""The CLI never leaves an operator guessing: one line per mistake, names and defaults shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import keymoment

REPO = Path(__file__).resolve().parents[2]


def test_version_prints_the_installed_version() -> None:
    """`keymoment --version` answers with the package version and exits 0."""
    result = keymoment("--version")
    assert result.returncode == 0 and result.stdout.startswith("keymoment ")


def test_help_shows_every_default() -> None:
    """Options with a default say it in --help (`[30d]`, `[1]`)."""
    assert "[30d]" in keymoment("report", "--help").stdout
    run_help = keymoment("run", "--help").stdout
    assert "[1]" in run_help and "[wall]" in run_help
    assert "else 8" in " ".join(run_help.split())  # --shards: a default that depends (run.py)


def test_validate_names_rules_by_id_and_refuses_a_word_version(tmp_path: Path) -> None:
    """`rules[0] (big-deposit).min_amout` and `version: "seven"` refused, in one listing."""
    path = tmp_path / "rules.yaml"
    path.write_text(
        'version: "seven"\n'
        "rules:\n  - {rule_id: big-deposit, trigger: large_deposit, campaign: w, min_amout: 5}\n"
        "campaigns:\n  - {campaign_id: w, offer_code: X, channels: [sms]}\n"
        "channels:\n  sms: {send_hours: '08:00-21:00', quiet_hours: '21:00-08:00'}\n"
    )
    result = keymoment("validate", path)
    assert result.returncode == 1
    assert "  rules[0] (big-deposit).min_amout: unknown field" in result.stdout
    assert "  version: expected a number like 7" in result.stdout
    assert "  channels.sms: give send_hours or quiet_hours, not both" in result.stdout


@pytest.mark.parametrize("swap", ["trans_as_accounts", "accounts_as_trans", "client_as_accounts"])
def test_import_berka_checks_each_file_is_the_expected_table(
    berka_dir: Path, tmp_path: Path, swap: str
) -> None:
    """A file given for the wrong option is named in one line, before anything is written."""
    trans, accounts = berka_dir / "trans_first100k.asc.gz", berka_dir / "account.asc"
    given = {
        "trans_as_accounts": (trans, trans),
        "accounts_as_trans": (accounts, accounts),
        "client_as_accounts": (trans, berka_dir / "client.asc"),
    }[swap]
    out = tmp_path / "events.jsonl"
    result = keymoment(
        "import", "berka", "--trans", given[0], "--accounts", given[1],
        "--events", out, "--customers", tmp_path / "customers.jsonl",
    )  # fmt: skip
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert "not Berka's" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


def test_the_cli_reference_page_covers_every_command() -> None:
    """docs/cli.md has a section per command, generated from --help with its defaults.

    Not compared byte for byte: engineers change help texts in parallel, and a stale
    wording should not fail everyone's CI; regenerate it with the helpdoc module.
    """
    from keymoment.commands.helpdoc import page

    generated = {line for line in page().splitlines() if line.startswith("## ")}
    on_disk = {
        line
        for line in (REPO / "docs" / "cli.md").read_text().splitlines()
        if line.startswith("## ")
    }
    assert generated <= on_disk, f"missing in docs/cli.md: {sorted(generated - on_disk)}"
