"""Where suppression-list files may live: the rules file's folder, or folders the operator names.

A rules file is often edited by more people than the machine it runs on is
trusted to, so its `lists:` must not reach any file the process can read
(`../outside.txt`, `/etc/passwd`, a symlink out of the folder). A list path
is resolved (symlinks followed) and must stay inside the rules file's folder
or a folder named at start in `KEYMOMENT_LIST_DIRS` (os.pathsep-separated).
The confinement is checked before anything else, so `validate` says the
same about an outside path whether or not it exists.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

LIST_DIRS_ENV = "KEYMOMENT_LIST_DIRS"


def allowed_roots(rules_dir: Path, extra: Sequence[str | Path] | None = None) -> list[Path]:
    """The rules file's folder and the operator's folders (`extra`, else the environment)."""
    named = extra if extra is not None else os.environ.get(LIST_DIRS_ENV, "").split(os.pathsep)
    return [Path(os.path.realpath(d)) for d in [rules_dir, *named] if str(d)]


def resolve_lists(
    lists: Mapping[str, Path], rules_dir: Path, roots: Sequence[Path]
) -> tuple[dict[str, Path], list[str]]:
    """Each list's real path, and one problem per list that is outside, a folder or missing."""
    resolved: dict[str, Path] = {}
    problems: list[str] = []
    for name, written in lists.items():
        full = written if written.is_absolute() else rules_dir / written
        real = Path(os.path.realpath(full))
        if not any(real.is_relative_to(root) for root in roots):
            problems.append(
                f"lists.{name}: {str(written)!r} is outside the rules file's folder "
                f"(name other folders in {LIST_DIRS_ENV})"
            )
        elif real.is_dir():
            problems.append(f"lists.{name}: {str(full)!r} is a directory, not a list file")
        elif not real.is_file():
            problems.append(f"lists.{name}: no such file {str(full)!r}")
        else:
            resolved[name] = real
    return resolved, problems
