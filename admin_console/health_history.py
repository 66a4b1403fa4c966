# SPDX-License-Identifier: AGPL-3.0-or-later
"""CPU, memory, disk and Synapse response time, sampled in the background for 24 h charts.

Samples live in the console's database, one row per minute. Each console worker runs its own
sampler thread; the minute is the primary key, so whichever worker samples a minute first
writes it and the others' inserts are ignored.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import requests

from admin_console import db

logger = logging.getLogger(__name__)
KEEP_SECONDS = 24 * 3600
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
    connection.execute(
        "DELETE FROM health_samples WHERE minute < ?", (sample.minute - KEEP_SECONDS // 60,)
    )


def last_day(connection, now: float | None = None) -> list[Sample]:
    now = time.time() if now is None else now
    rows = connection.execute(
        "SELECT * FROM health_samples WHERE minute > ? ORDER BY minute",
        (int(now // 60) - KEEP_SECONDS // 60,),
    ).fetchall()
    return [Sample(*row) for row in rows]


def start_sampler(
    database: str, synapse_url: str, state_dir: Path, every: float
) -> threading.Thread:
    def loop() -> None:
        while True:
            try:
                sample = take_sample(synapse_url, state_dir)
                with db.connect(database) as connection:
                    store(connection, sample)
            except Exception:  # the sampler must outlive any one bad sample
                logger.exception("health sample failed")
            time.sleep(every)

    thread = threading.Thread(target=loop, name="health-sampler", daemon=True)
    thread.start()
    return thread
