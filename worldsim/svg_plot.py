"""One plain SVG line plot (no plotting library) for the benchmark reports."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from worldsim.checkpoint import atomic_write

W, H, LEFT, RIGHT, TOP, BOTTOM = 640, 400, 60, 170, 30, 45


def escape(s: object) -> str:
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def write_line_plot(path: Path, title: str, x_label: str, lines: Sequence[tuple[str, Sequence[tuple[float, float]]]],
                    legend: Sequence[tuple[str, str]], x_range: tuple[float, float],
                    y_range: tuple[float, float]) -> None:
    """Polylines `lines` [(colour, [(x, y), ...])] on axes spanning `x_range` and `y_range`, a legend
    [(colour, label)] on the right; written atomically to `path`."""
    (x0, x1), (y0, y1) = x_range, y_range
    xspan, yspan = (x1 - x0) or 1.0, (y1 - y0) or 1.0

    def xy(x: float, y: float) -> tuple[float, float]:
        return (LEFT + (W - LEFT - RIGHT) * (x - x0) / xspan, TOP + (H - TOP - BOTTOM) * (1 - (y - y0) / yspan))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
             f'<rect width="{W}" height="{H}" fill="white"/>',
             f'<text x="{LEFT}" y="18">{escape(title)}</text>',
             f'<line x1="{LEFT}" y1="{H - BOTTOM}" x2="{W - RIGHT}" y2="{H - BOTTOM}" stroke="black"/>',
             f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{H - BOTTOM}" stroke="black"/>',
             f'<text x="{LEFT}" y="{H - BOTTOM + 16}">{x0:g}</text>',
             f'<text x="{W - RIGHT}" y="{H - BOTTOM + 16}" text-anchor="end">{x1:g}</text>',
             f'<text x="{(LEFT + W - RIGHT) / 2}" y="{H - 8}" text-anchor="middle">{escape(x_label)}</text>',
             f'<text x="{LEFT - 6}" y="{H - BOTTOM}" text-anchor="end">{y0:.2f}</text>',
             f'<text x="{LEFT - 6}" y="{TOP + 10}" text-anchor="end">{y1:.2f}</text>']
    for colour, points in lines:
        if points:
            line = " ".join(f"{px:.1f},{py:.1f}" for px, py in (xy(x, y) for x, y in points))
            parts.append(f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
    for i, (colour, label) in enumerate(legend):
        y = TOP + 10 + 18 * i
        parts.append(f'<line x1="{W - RIGHT + 10}" y1="{y}" x2="{W - RIGHT + 30}" y2="{y}" stroke="{colour}" '
                     'stroke-width="2"/>')
        parts.append(f'<text x="{W - RIGHT + 35}" y="{y + 4}">{escape(label)}</text>')
    parts.append("</svg>")
    atomic_write(path, lambda tmp: Path(tmp).write_text("\n".join(parts) + "\n"))
