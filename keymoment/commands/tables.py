"""Plain text tables sized to their contents: a header is never cut (`arbitratio`, `call_cente`).

The first `left` columns (names) are left-aligned, the others right-aligned
(they hold counts); each column is as wide as its widest header or cell.
"""

from __future__ import annotations

from collections.abc import Sequence


def text_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1, indent: str = "  "
) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = [_row(headers, widths, left), *(_row(r, widths, left) for r in rows)]
    return "\n".join(indent + line.rstrip() for line in lines)


def _row(cells: Sequence[str], widths: list[int], left: int) -> str:
    return "  ".join(
        f"{c:<{w}}" if i < left else f"{c:>{w}}"
        for i, (c, w) in enumerate(zip(cells, widths, strict=True))
    )


def n(value: int) -> str:
    return f"{value:,}"


def change(old: int, new: int) -> str:
    """`new (+diff)`, or just `new` when nothing changed."""
    return f"{new:,}" if old == new else f"{new:,} ({new - old:+,})"
