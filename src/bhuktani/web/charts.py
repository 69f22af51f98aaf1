"""Bar charts drawn on the server as SVG: no script, nothing loaded from anywhere, and
the same numbers in a table beside each chart for a screen reader."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

WIDTH, HEIGHT, PAD = 600, 160, 18
# A bar is never wider than this, however few there are.
MAX_BAR = 48


def bars(points: Sequence[tuple[str, int]], *, label: str) -> Markup:
    """One bar per (label, paisa), oldest first; the first, middle and last labelled."""
    top = max((value for _, value in points), default=0) or 1
    slot = WIDTH / max(len(points), 1)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT + PAD}" role="img"'
        f' aria-label="{escape(label)}">',
        f"<title>{escape(label)}</title>",
        f'<line x1="0" y1="{HEIGHT}" x2="{WIDTH}" y2="{HEIGHT}" class="axis"/>',
    ]
    named = {0, len(points) // 2, len(points) - 1}
    for i, (name, value) in enumerate(points):
        height = round(value / top * (HEIGHT - 4), 1)
        width = min(slot * 0.7, MAX_BAR)
        middle = i * slot + slot / 2
        parts.append(
            f'<rect x="{round(middle - width / 2, 1)}" y="{HEIGHT - height}"'
            f' width="{round(width, 1)}" height="{height}">'
            f"<title>{escape(name)}: {value / 100:,.2f}</title></rect>"
        )
        if i in named:
            # The first and last labels kept inside the picture.
            anchor = "middle"
            if len(points) > 1 and i == 0:
                anchor, middle = "start", i * slot
            elif len(points) > 1 and i == len(points) - 1:
                anchor, middle = "end", (i + 1) * slot
            parts.append(
                f'<text x="{round(middle, 1)}" y="{HEIGHT + PAD - 4}"'
                f' text-anchor="{anchor}">{escape(name)}</text>'
            )
    parts.append("</svg>")
    # Every text in it went through escape() above.
    return Markup("".join(parts))  # noqa: S704
