"""Open a report page in the real headless chromium and hold it to its JSON.

The page must load with no console error and no request other than its
own file, and every number it shows in a table (`data-path` cells, see
keymoment/desk/pages.py) must equal the value at that path in the JSON the
command wrote with `--json`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.browser import browser


def check_page(html: Path, expected: dict[str, Any]) -> int:
    """Load `html`; assert no errors, no external requests, numbers equal `expected`."""
    errors: list[str] = []
    requests: list[str] = []
    url = html.resolve().as_uri()
    with browser() as ctx:
        page = ctx.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(url)
        page.wait_for_load_state("load")
        cells = page.eval_on_selector_all(
            "[data-path]",
            "els => els.map(e => [e.dataset.path, e.dataset.unit, e.textContent])",
        )
        svgs = page.eval_on_selector_all("svg", "els => els.length")
    assert errors == [], errors
    assert [r for r in requests if r != url] == [], requests
    assert svgs > 0, "no chart drawn"
    for path, unit, text in cells:
        _same(_at(expected, path), unit, text, path)
    return len(cells)


def _at(data: Any, path: str) -> Any:
    for part in path.split("/"):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


def _same(value: Any, unit: str, text: str, path: str) -> None:
    if unit == "n":
        assert int(text.replace(",", "")) == value, (path, text, value)
    else:
        shown = float(text.rstrip("%").replace("pp", ""))
        assert abs(shown - value * 100) <= 0.05 + 1e-9, (path, text, value)
