"""The screenshot in docs/: `keymoment demo` with its console, photographed by chromium.

    python bench/console_screenshot.py [--out docs/console.png] [--wait 20]

Starts the real `keymoment demo` (its console on a free loopback port),
opens the printed login URL in Debian's chromium through Playwright, waits
`--wait` seconds of demo traffic, searches the customer of the newest
decision, and saves the page as a PNG.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.browser import browser  # noqa: E402
from tests.support.servers import free_port  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "console.png"))
    parser.add_argument("--wait", type=float, default=20.0)
    args = parser.parse_args()
    port = free_port()
    demo = subprocess.Popen(
        [sys.executable, "-m", "keymoment", "demo", "--duration", str(args.wait + 30),
         "--rate", "3000", "--customers", "20000", "--console", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        first = demo.stdout.readline()  # type: ignore[union-attr]
        url = first.rsplit(" ", 1)[1].strip()
        with browser(viewport={"width": 1280, "height": 900}) as ctx:
            page = ctx.new_page()
            page.goto(url)
            time.sleep(args.wait)
            customer = page.locator("#recent tbody tr td:nth-child(2)").first.inner_text()
            page.fill("#q", customer)
            page.press("#q", "Enter")
            page.wait_for_selector("#customer table.customer")
            time.sleep(1.5)
            page.screenshot(path=args.out, full_page=True)
    finally:
        demo.terminate()
        demo.wait(30)
    print(f"{args.out}: {Path(args.out).stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
