# SPDX-License-Identifier: AGPL-3.0-or-later
"""Line charts as server-rendered SVG: the CSP allows no script, so no charting library.

`line_chart` turns samples into coordinates; templates/macros.html draws them.
"""

from __future__ import annotations

from dataclasses import dataclass

WIDTH, HEIGHT = 600, 120
DAY_MINUTES = 24 * 60


@dataclass(frozen=True)
class Chart:
    title: str
    unit: str
    segments: list[str]  # SVG polyline "points", one per run of samples without a gap
    maximum: float
    latest: float | None
    # The text equivalent of the line (WCAG 1.1.1): the lowest and highest values drawn.
    lowest: float | None = None
    highest: float | None = None
    width: int = WIDTH
    height: int = HEIGHT
    # A chart of other than the last 24 hours says what it covers and what its ends are.
    period: str | None = None
    # The ends of the time axis; None: "24 h ago" and "now".
    start_label: str | None = None
    end_label: str | None = None

    @property
    def empty(self) -> bool:
        return not self.segments


def line_chart(
    title: str,
    unit: str,
    points: list[tuple[int, float | None]],  # (minute, value); None is a gap (e.g. down)
    end_minute: int,
    fixed_maximum: float | None = None,
    *,
    span_minutes: int = DAY_MINUTES,
    step_minutes: int = 1,  # the samples' spacing: hourly ones for a week (health_history)
    labels: tuple[str, str] | None = None,
) -> Chart:
    values = [value for _, value in points if value is not None]
    maximum = fixed_maximum or max(values, default=1.0) * 1.1 or 1.0
    start = end_minute - span_minutes
    segments, current, previous = [], [], None
    for minute, value in points:
        if minute <= start:
            continue
        # A missing sample (more than 2 steps apart) or a None value breaks the line.
        if value is None or (previous is not None and minute - previous > 2 * step_minutes):
            if current:
                segments.append(" ".join(current))
            current = []
        if value is not None:
            x = (minute - start) / span_minutes * WIDTH
            y = HEIGHT - min(value, maximum) / maximum * HEIGHT
            current.append(f"{x:.1f},{y:.1f}")
        previous = minute
    if current:
        segments.append(" ".join(current))
    drawn = [value for minute, value in points if value is not None and minute > start]
    start_label, end_label = labels or (None, None)
    return Chart(
        title,
        unit,
        segments,
        maximum,
        values[-1] if values else None,
        lowest=min(drawn, default=None),
        highest=max(drawn, default=None),
        start_label=start_label,
        end_label=end_label,
    )


def daily_chart(title: str, unit: str, values: list[int], first_day: str, last_day: str) -> Chart:
    """One value per day, oldest first, from first_day to last_day (ISO dates): a line across
    the whole width (one point in the middle for a single day)."""
    maximum = max(values, default=0) * 1.1 or 1.0
    steps = max(len(values) - 1, 1)
    points = [
        f"{(index / steps * WIDTH if len(values) > 1 else WIDTH / 2):.1f},"
        f"{HEIGHT - value / maximum * HEIGHT:.1f}"
        for index, value in enumerate(values)
    ]
    return Chart(
        title,
        unit,
        [" ".join(points)] if points else [],
        maximum,
        values[-1] if values else None,
        lowest=min(values, default=None),
        highest=max(values, default=None),
        period=f"{first_day} – {last_day}",
        start_label=first_day,
        end_label=last_day,
    )
