"""`keymoment` as an operator runs it: a subprocess, its output captured as text."""

from __future__ import annotations

import subprocess
import sys


def keymoment(*args: object, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "keymoment", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
