# SPDX-License-Identifier: AGPL-3.0-or-later
"""CPU, memory, disk and Synapse response time, sampled in the background for 24 h charts,
kept 30 days hourly for the weekly charts.

Samples live in the console's database, one row per minute. Each console worker runs its own
sampler thread; the minute is the primary key, so whichever worker samples a minute first
writes it and the others' inserts are ignored. Whole hours older than 24 h are folded into
`health_hourly` (the average, the disk's highest, Synapse's average over the minutes it
answered) before their minutes are deleted; hours older than 30 days are deleted.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import requests

from admin_console import db
from admin_console.periodic import Periodic

logger = logging.getLogger(__name__)
KEEP_SECONDS = 24 * 3600
KEEP_HOURLY_DAYS = 30
PROBE_TIMEOUT = 5.0


@dataclass(frozen=True)
class Sample:
    minute: int  # Unix time / 60
    cpu_percent: float
    memory_percent: float
    disk_percent: float
    synapse_ms: float | None  # None: Synapse did not answer


def synapse_response_ms(synapse_url: str) -> float | None:
    began = time.perf_counter()
    try:
        response = requests.get(f"{synapse_url}/health", timeout=PROBE_TIMEOUT)
    except requests.RequestException:
        return None
    return (time.perf_counter() - began) * 1000 if response.ok else None


def take_sample(synapse_url: str, state_dir: Path, now: float | None = None) -> Sample:
    now = time.time() if now is None else now
    return Sample(
        minute=int(now // 60),
        cpu_percent=psutil.cpu_percent(interval=0.5),
        memory_percent=psutil.virtual_memory().percent,
        disk_percent=psutil.disk_usage(str(state_dir)).percent,
        synapse_ms=synapse_response_ms(synapse_url),
    )


def store(connection, sample: Sample) -> None:
    connection.execute(
        "INSERT OR IGNORE INTO health_samples VALUES (?, ?, ?, ?, ?)",
        (
            sample.minute,
            sample.cpu_percent,
            sample.memory_percent,
            sample.disk_percent,
            sample.synapse_ms,
        ),
    )
    fold_old_minutes(connection, sample.minute)


def fold_old_minutes(connection, now_minute: int) -> None:
    """Minutes of the whole hours before the last 24 h become one hourly row each."""
    # On an hour's boundary: an hour is folded whole, once (its row is then never rewritten).
    cutoff = (now_minute - KEEP_SECONDS // 60) // 60 * 60
    with db.transaction(connection):
        connection.execute(
            "INSERT OR IGNORE INTO health_hourly"
            " SELECT minute / 60, AVG(cpu_percent), AVG(memory_percent), MAX(disk_percent),"
            " AVG(synapse_ms) FROM health_samples WHERE minute < ? GROUP BY minute / 60",
            (cutoff,),
        )
        connection.execute("DELETE FROM health_samples WHERE minute < ?", (cutoff,))
        connection.execute(
            "DELETE FROM health_hourly WHERE hour < ?",
            (now_minute // 60 - KEEP_HOURLY_DAYS * 24,),
        )


def last_day(connection, now: float | None = None) -> list[Sample]:
    now = time.time() if now is None else now
    rows = connection.execute(
        "SELECT * FROM health_samples WHERE minute > ? ORDER BY minute",
        (int(now // 60) - KEEP_SECONDS // 60,),
    ).fetchall()
    return [Sample(*row) for row in rows]


def hourly(connection, first_hour: int, last_hour: int) -> list[Sample]:
    """One sample per hour from first_hour to last_hour (Unix time / 3600), both included: the
    folded hours, and the last day's minutes averaged the same way. `minute` is the hour's
    first minute."""
    rows = connection.execute(
        "SELECT hour * 60, cpu_percent, memory_percent, disk_percent, synapse_ms"
        " FROM health_hourly WHERE hour BETWEEN ? AND ?"
        " UNION ALL"
        " SELECT minute / 60 * 60, AVG(cpu_percent), AVG(memory_percent), MAX(disk_percent),"
        " AVG(synapse_ms) FROM health_samples WHERE minute / 60 BETWEEN ? AND ?"
        " AND minute / 60 NOT IN (SELECT hour FROM health_hourly)"
        " GROUP BY minute / 60 ORDER BY 1",
        (first_hour, last_hour, first_hour, last_hour),
    ).fetchall()
    return [Sample(*row) for row in rows]


def start_sampler(database: str, synapse_url: str, state_dir: Path, every: float) -> Periodic:
    def sample_once() -> None:
        sample = take_sample(synapse_url, state_dir)
        with db.connect(database) as connection:
            store(connection, sample)

    return Periodic("health-sampler", every, sample_once).start()
