# SPDX-License-Identifier: AGPL-3.0-or-later
"""Health history over 30 days: minutes older than a day are folded into hours, hours older
than 30 days go, and the history page draws each week and lists it day by day. Samples go in
through the sampler's own `store`, the latest one a real sample of the running appliance."""

from __future__ import annotations

import re
import time
from pathlib import Path

from admin_console import db, health_history
from admin_console.health_history import Sample


def point_counts(page: str) -> list[int]:
    return [len(points.split()) for points in re.findall(r'<polyline points="([^"]*)"', page)]


def test_thirty_days_are_kept_hourly_and_shown_week_by_week(app, console, appliance):
    real = health_history.take_sample(app.config["SYNAPSE_URL"], Path(app.config["STATE_DIR"]))
    now_minute = real.minute
    three_days_ago = (now_minute - 3 * 1440) // 60 * 60  # the first minute of an hour
    ten_days_ago = (now_minute - 10 * 1440) // 60 * 60
    old = [
        Sample(three_days_ago, 10.0, 40.0, 50.0, 20.0),
        Sample(three_days_ago + 30, 30.0, 60.0, 70.0, None),  # Synapse did not answer
        Sample(three_days_ago + 60, 5.0, 5.0, 5.0, 5.0),  # the next hour
        Sample(ten_days_ago, 1.0, 2.0, 3.0, 4.0),
        Sample(now_minute - 31 * 1440, 9.0, 9.0, 9.0, 9.0),  # past 30 days
    ]
    with app.app_context():
        connection = db.get_db()
        for sample in old:
            connection.execute(
                "INSERT INTO health_samples VALUES (?, ?, ?, ?, ?)",
                (
                    sample.minute,
                    sample.cpu_percent,
                    sample.memory_percent,
                    sample.disk_percent,
                    sample.synapse_ms,
                ),
            )
        health_history.store(connection, real)
        minutes = [row[0] for row in connection.execute("SELECT minute FROM health_samples")]
        hours = {
            row[0]: tuple(row[1:]) for row in connection.execute("SELECT * FROM health_hourly")
        }
    assert minutes == [now_minute]
    assert hours == {
        three_days_ago // 60: (20.0, 50.0, 70.0, 20.0),  # averages, the disk's highest
        three_days_ago // 60 + 1: (5.0, 5.0, 5.0, 5.0),
        ten_days_ago // 60: (1.0, 2.0, 3.0, 4.0),
    }
    this_week = console.get("/health/history")
    # Per chart (CPU, memory, disk, Synapse): two hours three days ago, a gap, then now.
    assert point_counts(this_week) == [2, 1] * 4
    three_days = time.strftime("%Y-%m-%d", time.gmtime(three_days_ago * 60))
    row = re.search(rf'<tr data-day="{three_days}">(.*?)</tr>', this_week, re.S).group(1)
    assert re.findall(r"<td>([^<]*)</td>", row) == [
        three_days,
        "2",
        "12 %",
        "28 %",
        "70 %",
        "12 ms",
    ]
    last_week = console.get("/health/history?week=1")
    assert point_counts(last_week) == [1, 1, 1, 1]
    assert "data-day" in last_week and three_days not in last_week
    assert point_counts(console.get("/health/history?week=4")) == []
    console.get("/health/history?week=5", status=404)
    assert "/health/history" in console.get("/health/")


def test_folding_is_done_once_per_hour(app):
    with app.app_context():
        connection = db.get_db()
        start = 30_000_000 // 60 * 60
        for minute in range(start, start + 60):
            health_history.store(connection, Sample(minute, 50.0, 50.0, 50.0, 1.0))
        later = start + 60 + 1440 + 5
        health_history.store(connection, Sample(later, 1.0, 1.0, 1.0, 1.0))
        health_history.store(connection, Sample(later + 1, 1.0, 1.0, 1.0, 1.0))
        hours = connection.execute("SELECT hour, cpu_percent FROM health_hourly").fetchall()
    assert [tuple(h) for h in hours] == [(start // 60, 50.0)]
