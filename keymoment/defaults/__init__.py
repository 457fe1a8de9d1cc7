"""Rules shipped inside the package, so `keymoment demo` runs on a fresh install.

`rules.yaml` is a copy of `examples/rules.yaml` (every trigger, campaign,
channel, cap and list); its list files sit next to it in `lists/`.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def rules_path() -> Path:
    """The default rules file on disk (the package is installed as files, not zipped)."""
    return Path(str(files(__name__) / "rules.yaml"))
