"""Charts drawn on the server as inline SVG: no JavaScript, nothing to build or download.

Each function returns :class:`markupsafe.Markup` for a template; every text that comes from
the orchestrator (workflow and step names, targets, status names) is escaped here. Colours are
SVG presentation attributes, which the console's Content-Security-Policy allows (it forbids
inline ``style``). Every chart carries ``<title>`` tooltips with its numbers and an
``aria-label``; the pages also print the figures as text.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from html import escape

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from markupsafe import Markup

from failhook.cli.output import format_duration, status_name
from failhook.v1 import run_pb2

from .stats import Series

__all__ = ["PALETTE", "attempt_timeline", "bar_list", "stacked_bars", "swatch"]

PALETTE = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#999999")
"""Okabe and Ito's colour-blind-safe colours; grey (the last) is ``other``."""

_WIDTH, _HEIGHT = 720, 220
_LEFT, _BOTTOM, _TOP = 40, 28, 10


def _colour(index: int, name: str) -> str:
    return PALETTE[-1] if name == "other" else PALETTE[index % (len(PALETTE) - 1)]


def swatch(index: int, name: str) -> Markup:
    """Return a small coloured square for a legend entry.

    Args:
        index: The group's position in its series.
        name: The group's name (``other`` is grey).

    Returns:
        The SVG.
    """
    return Markup(  # noqa: S704 - no text from the server
        f'<svg class="swatch" width="12" height="12" aria-hidden="true">'
        f'<rect width="12" height="12" fill="{_colour(index, name)}"/></svg>'
    )


def _label(series: Series, index: int) -> str:
    start = series.starts[index]
    return start.strftime("%H:00") if series.width < timedelta(days=1) else start.strftime("%a %d")


def stacked_bars(series: Series, title: str) -> Markup:
    """Draw a series as stacked bars, one bar per bucket, one colour per group.

    Args:
        series: The counts.
        title: What the chart shows, for screen readers.

    Returns:
        The SVG.
    """
    count = len(series.starts)
    totals = [sum(counts[i] for _, counts in series.groups) for i in range(count)]
    peak = max([*totals, 1])
    plot_w, plot_h = _WIDTH - _LEFT - 8, _HEIGHT - _BOTTOM - _TOP
    slot = plot_w / max(count, 1)
    bar = max(slot * 0.8, 1.0)
    parts = [
        f'<svg class="chart" viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" aria-label="{escape(title)}">',
        f'<line x1="{_LEFT}" y1="{_TOP + plot_h}" x2="{_WIDTH - 8}" y2="{_TOP + plot_h}" stroke="#888"/>',
        f'<text x="{_LEFT - 6}" y="{_TOP + 8}" text-anchor="end" class="axis">{peak}</text>',
        f'<text x="{_LEFT - 6}" y="{_TOP + plot_h}" text-anchor="end" class="axis">0</text>',
    ]
    every = max(1, count // 12)
    for i in range(count):
        x = _LEFT + i * slot + (slot - bar) / 2
        y = float(_TOP + plot_h)
        for index, (name, counts) in enumerate(series.groups):
            value = counts[i]
            if not value:
                continue
            height = value / peak * plot_h
            y -= height
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{height:.1f}" '
                f'fill="{_colour(index, name)}"><title>{escape(name)}: {value} '
                f"({escape(_label(series, i))})</title></rect>"
            )
        if i % every == 0:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{_HEIGHT - 10}" text-anchor="middle" class="axis">'
                f"{escape(_label(series, i))}</text>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text from the server is escaped above


def bar_list(items: Sequence[tuple[str, int]], title: str) -> Markup:
    """Draw labelled horizontal bars, e.g. the top failing targets.

    Args:
        items: ``(label, value)``, largest first.
        title: What the chart shows, for screen readers.

    Returns:
        The SVG.
    """
    row, label_w = 24, 260
    height = max(row * len(items), row)
    peak = max([value for _, value in items] + [1])
    parts = [f'<svg class="chart" viewBox="0 0 {_WIDTH} {height}" role="img" aria-label="{escape(title)}">']
    for i, (label, value) in enumerate(items):
        y = i * row
        width = value / peak * (_WIDTH - label_w - 60)
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 16}" text-anchor="end" class="label">'
            f"{escape(label[:40])}</text>"
            f'<rect x="{label_w}" y="{y + 4}" width="{max(width, 1):.1f}" height="{row - 8}" '
            f'fill="{PALETTE[5]}"><title>{escape(label)}: {value}</title></rect>'
            f'<text x="{label_w + width + 6:.1f}" y="{y + 16}" class="axis">{value}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text from the server is escaped above


def _micros(stamp: Timestamp) -> int:
    return stamp.seconds * 1_000_000 + stamp.nanos // 1000


def attempt_timeline(attempts: Sequence[run_pb2.StepAttempt]) -> Markup:
    """Draw a step's attempts on a time axis: each call as a bar, the waits between them as gaps.

    A bar is red when the attempt's status was not retryable, orange otherwise; its tooltip
    gives the attempt number, status, duration and the delay before the next one.

    Args:
        attempts: The attempts, first first, with their start times and durations.

    Returns:
        The SVG, or nothing when there are no attempts.
    """
    if not attempts:
        return Markup("")
    starts = [_micros(a.start_time) for a in attempts]
    ends = [s + _micros_duration(a) for s, a in zip(starts, attempts, strict=True)]
    origin, span = starts[0], max(max(ends) - starts[0], 1)
    width, height, left = _WIDTH, 26 * len(attempts) + 24, 10
    scale = (width - left - 150) / span
    parts = [
        f'<svg class="chart timeline" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="Attempts on a time axis">'
    ]
    for i, attempt in enumerate(attempts):
        x = left + (starts[i] - origin) * scale
        bar = max((ends[i] - starts[i]) * scale, 3)
        y = 4 + i * 26
        colour = "#d55e00" if not attempt.retryable else "#e69f00"
        delay = (
            f", then waited {format_duration(attempt.retry_delay)}" if attempt.HasField("retry_delay") else ""
        )
        tip = (
            f"attempt {attempt.attempt}: {status_name(attempt.status_code)} after "
            f"{format_duration(attempt.duration)}{delay}"
        )
        parts.append(
            f'<rect x="{x:.1f}" y="{y}" width="{bar:.1f}" height="18" fill="{colour}">'
            f"<title>{escape(tip)}</title></rect>"
            f'<text x="{x + bar + 6:.1f}" y="{y + 14}" class="label">#{attempt.attempt} '
            f"{escape(status_name(attempt.status_code))}</text>"
        )
    total = format_duration(_duration(span))
    parts.append(
        f'<text x="{left}" y="{height - 4}" class="axis">0</text>'
        f'<text x="{width - 150}" y="{height - 4}" text-anchor="end" class="axis">+{escape(total)}</text>'
        "</svg>"
    )
    return Markup("".join(parts))  # noqa: S704 - every text from the server is escaped above


def _micros_duration(attempt: run_pb2.StepAttempt) -> int:
    return attempt.duration.seconds * 1_000_000 + attempt.duration.nanos // 1000


def _duration(micros: int) -> Duration:
    value = Duration()
    value.FromMicroseconds(micros)
    return value
