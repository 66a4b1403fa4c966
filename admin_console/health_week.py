# SPDX-License-Identifier: AGPL-3.0-or-later
"""The health history page's content: one week of hourly samples as charts, and as a table of
days (the text equivalent of the charts, for a screen reader or a report).

Weeks are counted back from now: week 0 is the last 7 days; the history keeps 30 days, so
weeks 0 to 4 (the oldest one partly empty).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import UTC, datetime

from flask_babel import gettext as _

from admin_console.charts import Chart, line_chart
from admin_console.health_history import KEEP_HOURLY_DAYS, Sample, hourly

WEEK_HOURS = 7 * 24
WEEKS = (KEEP_HOURLY_DAYS * 24 + WEEK_HOURS - 1) // WEEK_HOURS  # 5 for 30 days


@dataclass(frozen=True)
class Day:
    date: str  # YYYY-MM-DD, UTC
    hours: int  # hours with samples
    cpu_average: float
    memory_average: float
    disk_highest: float
    synapse_average_ms: float | None  # None: Synapse answered in none of them


@dataclass(frozen=True)
class Week:
    number: int
    start: datetime
    end: datetime
    charts: list[Chart]
    days: list[Day]


def week(connection, number: int, now: float) -> Week:
    last_hour = int(now // 3600) - number * WEEK_HOURS
    first_hour = last_hour - WEEK_HOURS + 1
    samples = hourly(connection, first_hour, last_hour)
    start = datetime.fromtimestamp(first_hour * 3600, tz=UTC)
    end = datetime.fromtimestamp((last_hour + 1) * 3600, tz=UTC)
    labels = (start.strftime("%Y-%m-%d %H:00"), end.strftime("%Y-%m-%d %H:00"))
    end_minute = (last_hour + 1) * 60

    def chart(title: str, unit: str, attribute: str, maximum: float | None) -> Chart:
        points = [(sample.minute, getattr(sample, attribute)) for sample in samples]
        return line_chart(
            title,
            unit,
            points,
            end_minute,
            maximum,
            span_minutes=WEEK_HOURS * 60,
            step_minutes=60,
            labels=labels,
        )

    charts = [
        chart(_("CPU"), "%", "cpu_percent", 100),
        chart(_("Memory"), "%", "memory_percent", 100),
        chart(_("Disk"), "%", "disk_percent", 100),
        chart(_("Synapse response time"), "ms", "synapse_ms", None),
    ]
    return Week(number, start, end, charts, days(samples))


def days(samples: list[Sample]) -> list[Day]:
    by_date: dict[str, list[Sample]] = {}
    for sample in samples:
        date = datetime.fromtimestamp(sample.minute * 60, tz=UTC).strftime("%Y-%m-%d")
        by_date.setdefault(date, []).append(sample)
    found = []
    for date, group in sorted(by_date.items()):
        answered = [s.synapse_ms for s in group if s.synapse_ms is not None]
        found.append(
            Day(
                date,
                len(group),
                statistics.fmean(s.cpu_percent for s in group),
                statistics.fmean(s.memory_percent for s in group),
                max(s.disk_percent for s in group),
                statistics.fmean(answered) if answered else None,
            )
        )
    return found
