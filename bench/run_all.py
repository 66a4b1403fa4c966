# SPDX-License-Identifier: AGPL-3.0-or-later
"""Run every benchmark in bench/ in turn (or the ones named), then print one summary table.

Each `bench/bench_<name>.py` runs in its own process with this Python; its own detailed
report goes through to the terminal as it comes and to `var/bench/<name>.log`, and its last
line, ``BENCH-RESULT {...}`` (bench_result.emit), gives its rows of the table: what was
measured, the figures, the ratio, the goal and whether this run met it.  The table is printed
in Markdown (for the README) with the date, the machine's cores and its load average at the
start and the end of each benchmark, and written to `var/bench/summary.md`.

Exit status: 0 when every benchmark ran, even if goals were not met (that is a result, shown
in the table); 1 when a benchmark could not run (it stopped with a message, crashed, or
printed no result line), named in the table with its last words.

    .venv/bin/python bench/run_all.py [--only rooms,allowlist]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench_result import Row, parse

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
OUTPUT = REPO / "var" / "bench"
PREFIX = "bench_"
LAST_WORDS = 3  # lines of output shown for a benchmark that could not run


@dataclass
class Outcome:
    name: str
    rows: list[Row] = field(default_factory=list)
    failure: str = ""  # why it could not run; empty when it ran
    load: tuple[float, float] = (0.0, 0.0)  # 1-minute load average at its start and end
    seconds: float = 0.0


def benchmarks(directory: Path) -> dict[str, Path]:
    """Every bench_<name>.py in the directory, by name (bench_result.py is the shared line)."""
    found = sorted(directory.glob(f"{PREFIX}*.py"))
    return {path.stem[len(PREFIX) :]: path for path in found if path.stem != "bench_result"}


def run(name: str, script: Path, log: Path) -> Outcome:
    """The benchmark in its own process, its output shown as it comes and kept in log."""
    print(f"\n=== {name}: {script}", flush=True)
    outcome = Outcome(name)
    load_before, began = os.getloadavg()[0], time.monotonic()
    lines = []
    with (
        log.open("w") as kept,
        subprocess.Popen(
            [sys.executable, "-u", str(script)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        ) as process,
    ):
        assert process.stdout is not None
        for line in process.stdout:
            print(line, end="", flush=True)
            kept.write(line)
            lines.append(line.rstrip("\n"))
    outcome.seconds = time.monotonic() - began
    outcome.load = (load_before, os.getloadavg()[0])
    rows = parse("\n".join(lines))
    if process.returncode != 0 or not rows:
        words = " / ".join(line for line in lines[-LAST_WORDS:] if line.strip())
        why = f"exit status {process.returncode}" if process.returncode else "no result line"
        outcome.failure = f"could not run ({why}): {words or 'no output'}"
    else:
        outcome.rows = rows
    return outcome


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    memory_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    return f"{os.cpu_count()} cores ({cpu}), {memory_kb / (1 << 20):.1f} GiB RAM"


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def table(outcomes: list[Outcome], started: str) -> str:
    """The summary in Markdown: one row per figure, the benchmark named on its first row."""
    lines = [
        f"`make bench`, {started}, {machine()}; load average (1 minute) at the start and the "
        "end of each benchmark, and its duration, in its first row.",
        "",
        "| benchmark | what | figure | ratio | goal | met | load, time |",
        "|---|---|---|---|---|---|---|",
    ]
    for outcome in outcomes:
        load = f"{outcome.load[0]:.1f}–{outcome.load[1]:.1f}, {outcome.seconds:.0f} s"
        if outcome.failure:
            lines.append(f"| {outcome.name} | {cell(outcome.failure)} | | | | | {load} |")
            continue
        for index, row in enumerate(outcome.rows):
            ratio = "" if row.ratio is None else f"{row.ratio:.2f}"
            met = {True: "yes", False: "**no**", None: ""}[row.met]
            first = index == 0
            lines.append(
                f"| {outcome.name if first else ''} | {cell(row.what)} | {cell(row.figure)} "
                f"| {ratio} | {cell(row.goal) or 'none set'} | {met} | {load if first else ''} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--only", default="", help="comma-separated names, e.g. rooms,allowlist")
    # Where the benchmarks are and where their logs go: the tests point them elsewhere.
    parser.add_argument("--directory", type=Path, default=BENCH, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, default=OUTPUT, help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    known = benchmarks(arguments.directory)
    wanted = [name for name in arguments.only.replace(",", " ").split() if name]
    unknown = [name for name in wanted if name not in known]
    if unknown:
        parser.error(f"no benchmark named {', '.join(unknown)}; known: {', '.join(known)}")
    output = arguments.output
    output.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    outcomes = [run(name, known[name], output / f"{name}.log") for name in (wanted or list(known))]
    summary = table(outcomes, started)
    (output / "summary.md").write_text(summary + "\n")
    print(f"\n{summary}\n\n(kept in {output}/: summary.md, one log each)")
    failed = [outcome.name for outcome in outcomes if outcome.failure]
    if failed:
        print(f"could not run: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
