"""A real headless browser for tests: Debian's chromium driven by Playwright, never a download.

`.ci/run` installs the `chromium` package when it is missing (README,
"Browser tests"); a test that needs the browser skips, with that reason,
only when the binary is still not there.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip(
            "no chromium binary: .ci/run installs Debian's chromium (apt-get install chromium)"
        )
    return found


@contextmanager
def browser(**context: Any) -> Iterator[Any]:
    """A fresh persistent context (its own user-data dir) on the system chromium."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            profile, executable_path=executable, args=ARGS, headless=True, **context
        )
        try:
            yield ctx
        finally:
            ctx.close()
