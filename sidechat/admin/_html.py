"""The dashboard's HTML: a page layout, escaping, and plots drawn as SVG on the server.

Everything that comes from visitors or pages goes through `esc` (questions are untrusted). No
inline script or style anywhere: the pages' CSP allows only `admin.css`.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

__all__ = ["bar_chart", "esc", "line_chart", "page"]

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "x-frame-options": "DENY",
}
_NAV = (
    ("/admin", "Overview"),
    ("/admin/unanswered", "Unanswered"),
    ("/admin/feedback", "Feedback"),
    ("/admin/pages", "Pages"),
    ("/admin/export", "Export"),
)


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def page(title: str, body: str, *, current: str = "", nav: bool = True) -> str:
    links = "".join(
        f'<a href="{href}"{" aria-current=page" if href == current else ""}>{esc(name)}</a>'
        for href, name in _NAV
    )
    header = (
        f'<header><p class="brand">sidechat · owner</p><nav aria-label="Dashboard">{links}</nav>'
        '<form method="post" action="/admin/logout"><button type="submit">Log out</button>'
        "</form></header>"
        if nav
        else '<header><p class="brand">sidechat · owner</p></header>'
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="color-scheme" content="light dark">'
        f"<title>{esc(title)} · sidechat</title>"
        '<link rel="stylesheet" href="/static/admin.css"></head>'
        f"<body>{header}<main><h1>{esc(title)}</h1>{body}</main></body></html>"
    )


_W, _H, _PAD_L, _PAD_B, _PAD_T = 640, 220, 60, 28, 12


def _frame(title: str, top: float, unit: str, labels: Sequence[str]) -> list[str]:
    """The axes, three gridlines with values, and a few day labels."""
    inner_h = _H - _PAD_B - _PAD_T
    parts = [
        f'<svg class="chart" viewBox="0 0 {_W} {_H}" role="img" aria-label="{esc(title)}">',
        f"<title>{esc(title)}</title>",
    ]
    for i in range(3):
        value = top * i / 2
        y = _PAD_T + inner_h - inner_h * i / 2
        text = f"{value:g}{unit}"
        parts.append(f'<line class="grid" x1="{_PAD_L}" x2="{_W - 4}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="axis" x="{_PAD_L - 6}" y="{y + 4:.1f}">{esc(text)}</text>')
    n = len(labels)
    step = max(1, -(-n // 6))
    for i in range(0, n, step):
        x = _PAD_L + (_W - _PAD_L - 4) * (i + 0.5) / max(n, 1)
        parts.append(f'<text class="day" x="{x:.1f}" y="{_H - 8}">{esc(labels[i][5:])}</text>')
    return parts


def bar_chart(title: str, labels: Sequence[str], values: Sequence[float]) -> str:
    """One bar per day (e.g. questions per day)."""
    if not values:
        return '<p class="empty">No data yet.</p>'
    top = max(max(values), 1)
    top = float(-(-top // 2) * 2) if top > 2 else float(top)
    parts = _frame(title, top, "", labels)
    inner_w, inner_h = _W - _PAD_L - 4, _H - _PAD_B - _PAD_T
    slot = inner_w / len(values)
    width = min(slot * 0.7, 48.0)
    for i, value in enumerate(values):
        h = inner_h * value / top
        x = _PAD_L + (i + 0.5) * slot - width / 2
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{_PAD_T + inner_h - h:.1f}" '
            f'width="{width:.1f}" height="{h:.1f}"><title>{esc(labels[i])}: '
            f"{value:g}</title></rect>"
        )
    parts.append("</svg>")
    return "".join(parts)


def line_chart(title: str, labels: Sequence[str], values: Sequence[float | None]) -> str:
    """A share (0-1) per day as a line in percent; days without a value are skipped."""
    points = [(i, v) for i, v in enumerate(values) if v is not None]
    if not points:
        return '<p class="empty">No ratings yet.</p>'
    parts = _frame(title, 100.0, "%", labels)
    inner_w, inner_h = _W - _PAD_L - 4, _H - _PAD_B - _PAD_T
    coords = [
        (_PAD_L + inner_w * (i + 0.5) / len(values), _PAD_T + inner_h * (1 - v)) for i, v in points
    ]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    parts.append(f'<polyline class="line" points="{path}"/>')
    for (x, y), (i, v) in zip(coords, points, strict=True):
        parts.append(
            f'<circle class="dot" cx="{x:.1f}" cy="{y:.1f}" r="4"><title>{esc(labels[i])}: '
            f"{v * 100:.0f}% thumbs up</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)
