"""List files are confined to the rules file's folder or folders named at start (issue 8, 3).

`../outside.txt`, absolute paths and symlinks out of the folder are refused with
the same words whether the target exists or not, so `validate` reveals nothing
about the machine; a directory is called a directory.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from keymoment.cli import main
from keymoment.config import RulesError, load_rules

LIST_DIRS_ENV = "KEYMOMENT_LIST_DIRS"  # the variable keymoment.listpaths reads

RULES = """
campaigns:
  - {campaign_id: c, offer_code: X, channels: [sms]}
rules:
  - {rule_id: a, trigger: dormancy, campaign: c}
lists: {do_not_contact: %s}
"""


def write_rules(folder: Path, list_path: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "rules.yaml"
    path.write_text(RULES % f"'{list_path}'")
    return path


def problem(path: Path, list_dirs: list[Path] | None = None) -> str:
    with pytest.raises(RulesError) as info:
        load_rules(path, list_dirs=list_dirs or [])
    (only,) = info.value.problems
    return only


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """rules/ (with lists/dnc.txt and a folder), and outside.txt beside it."""
    (tmp_path / "rules" / "lists" / "folder").mkdir(parents=True)
    (tmp_path / "rules" / "lists" / "dnc.txt").write_text("C1\n")
    (tmp_path / "outside.txt").write_text("C2\n")
    return tmp_path


@pytest.mark.parametrize("written", ["../outside.txt", "../nope.txt", "/etc/passwd", "/etc/nope"])
def test_paths_out_of_the_folder_are_refused_alike(tree, written):
    """Existing or not, relative or absolute: the same 'outside' problem, nothing read."""
    found = problem(write_rules(tree / "rules", written))
    assert found == (
        f"lists.do_not_contact: {written!r} is outside the rules file's folder "
        f"(name other folders in {LIST_DIRS_ENV})"
    )


def test_a_symlink_out_of_the_folder_is_refused(tree):
    """A link inside the folder pointing outside counts as outside; one pointing inside is fine."""
    (tree / "rules" / "lists" / "out.txt").symlink_to(tree / "outside.txt")
    (tree / "rules" / "lists" / "in.txt").symlink_to(tree / "rules" / "lists" / "dnc.txt")
    assert "is outside" in problem(write_rules(tree / "rules", "lists/out.txt"))
    rules = load_rules(write_rules(tree / "rules", "lists/in.txt"), list_dirs=[])
    assert rules.lists["do_not_contact"] == (tree / "rules" / "lists" / "dnc.txt").resolve()


def test_a_directory_is_called_a_directory(tree):
    found = problem(write_rules(tree / "rules", "lists/folder"))
    assert found == (
        f"lists.do_not_contact: {str(tree / 'rules' / 'lists/folder')!r} "
        "is a directory, not a list file"
    )


def test_folders_named_by_the_operator_are_allowed(tree, monkeypatch):
    """KEYMOMENT_LIST_DIRS (or list_dirs) opens exactly the folders named, no more."""
    shared = tree / "shared"
    shared.mkdir()
    (shared / "dnc.txt").write_text("C3\n")
    path = write_rules(tree / "rules", str(shared / "dnc.txt"))
    assert "is outside" in problem(path)
    monkeypatch.setenv(LIST_DIRS_ENV, str(shared))
    assert load_rules(path).lists["do_not_contact"] == (shared / "dnc.txt").resolve()
    assert "is outside" in problem(write_rules(tree / "rules", "../outside.txt"), [])


def test_validate_says_the_same_for_a_file_that_exists_and_one_that_does_not(tree, capsys):
    """The CLI output differs only in the path the operator wrote."""
    outputs = []
    for written in ("/etc/passwd", "/etc/no-such-file"):
        assert main(["validate", str(write_rules(tree / "rules", written))]) == 1
        outputs.append(capsys.readouterr().out.replace(written, "PATH"))
    assert outputs[0] == outputs[1] and "is outside the rules file's folder" in outputs[0]
