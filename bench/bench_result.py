# SPDX-License-Identifier: AGPL-3.0-or-later
"""The one machine-readable line each benchmark prints last, which `bench/run_all.py` collects.

A benchmark keeps its own detailed report, then calls ``emit(name, rows)``: one line
``BENCH-RESULT {"benchmark": ..., "rows": [...]}``, each row one figure of its summary (what
was measured, the absolute figures, the ratio, the goal and whether this run met it).  A goal
not met is a result like any other.

A benchmark that cannot measure correctly (a baseline missing, or answering wrongly on a file
whose answer is known) calls ``cannot_run(message)`` instead, before any timing: it exits with
status 2 and a message naming what is missing, and prints no result line, so no misleading
ratio is ever reported.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable, Hashable
from dataclasses import asdict, dataclass
from typing import NoReturn, TypeVar

MARKER = "BENCH-RESULT "
CANNOT_RUN = 2  # exit status of a benchmark that stopped before measuring


@dataclass(frozen=True)
class Row:
    what: str  # the measure, e.g. "whole round, wall time"
    figure: str  # the absolute figures behind the ratio, e.g. "512 ms against 480 ms"
    ratio: float | None  # None when the figure is not a ratio (a latency, say)
    goal: str  # e.g. "<= 1.10"; "" when no goal is set for this figure
    met: bool | None  # None when there is no goal


def at_most(what: str, figure: str, ratio: float, limit: float, value: float | None = None) -> Row:
    """A row whose goal is value (the ratio unless given) <= limit."""
    checked = ratio if value is None else value
    return Row(what, figure, ratio, f"<= {limit:g}", checked <= limit)


def at_least(what: str, figure: str, ratio: float, limit: float) -> Row:
    return Row(what, figure, ratio, f">= {limit:g}", ratio >= limit)


def no_goal(what: str, figure: str, ratio: float | None) -> Row:
    return Row(what, figure, ratio, "", None)


def emit(benchmark: str, rows: list[Row]) -> None:
    """Print the result line (last, after the benchmark's own report)."""
    line = json.dumps({"benchmark": benchmark, "rows": [asdict(row) for row in rows]})
    print(MARKER + line, flush=True)


def parse(output: str) -> list[Row] | None:
    """The rows of the last result line in a benchmark's output, None if it printed none."""
    for line in reversed(output.splitlines()):
        if line.startswith(MARKER):
            return [Row(**row) for row in json.loads(line[len(MARKER) :])["rows"]]
    return None


K = TypeVar("K", bound=Hashable)


def medians_ms(calls: dict[K, Callable[[], object]], rounds: int) -> dict[K, float]:
    """Each call `rounds` times, taking turns, so that every figure sees the same machine load;
    the median of each, in milliseconds (a first call each warms the caches, not counted)."""
    for call in calls.values():
        call()
    samples: dict[K, list[float]] = {key: [] for key in calls}
    for _ in range(rounds):
        for key, call in calls.items():
            began = time.perf_counter()
            call()
            samples[key].append((time.perf_counter() - began) * 1000)
    return {key: statistics.median(values) for key, values in samples.items()}


def cannot_run(message: str) -> NoReturn:
    """Stop a benchmark whose baseline (or subject) cannot run correctly, before timing."""
    print(f"cannot run: {message}", file=sys.stderr, flush=True)
    raise SystemExit(CANNOT_RUN)
