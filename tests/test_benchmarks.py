# SPDX-License-Identifier: AGPL-3.0-or-later
"""`make bench`: the runner's table and exit status, and a baseline that cannot run correctly.

The runner (bench/run_all.py) runs real benchmark processes: small scripts written here that
print what a benchmark prints (a result line, a goal not met, a refusal to run, nothing), and
the real bench_content_scanner.py with clamdscan missing or answering wrongly, as on the fresh
machine of issue 18 where the baseline called every file infected. Each must end in a verdict
that cannot mislead: a goal not met is a result (exit 0), a benchmark that could not run fails
the run (exit 1) and is named with its message, and never prints a ratio.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

from bench_content_scanner import CLAMDSCAN_WRONG, INSTALL_CLAMDSCAN  # noqa: E402
from bench_result import CANNOT_RUN, MARKER  # noqa: E402

PREAMBLE = f"import sys\nsys.path.insert(0, {str(BENCH)!r})\nfrom bench_result import *\n"
MET = 'emit("{name}", [at_most("round trip", "10 ms against 9 ms", 1.05, 1.10)])\n'
NOT_MET = 'emit("{name}", [at_least("throughput", "1 against 2 files/s", 0.5, 2.0)])\n'


def write_benchmarks(directory: Path, bodies: dict[str, str]) -> Path:
    for name, body in bodies.items():
        (directory / f"bench_{name}.py").write_text(PREAMBLE + body.format(name=name))
    return directory


def run_all(tmp_path: Path, directory: Path, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BENCH / "run_all.py"), "--directory", str(directory)]
        + ["--output", str(tmp_path / "out"), *options],
        capture_output=True,
        text=True,
        timeout=120,
    )


def table_rows(output: str) -> dict[str, list[str]]:
    """The summary table's rows by benchmark name (first cell), cells stripped."""
    rows = {}
    for line in output.splitlines():
        if line.startswith("| ") and not line.startswith("| benchmark"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            rows[cells[0] or f"{list(rows)[-1]}+"] = cells
    return rows


def test_a_goal_not_met_is_reported_in_the_table_and_the_run_still_succeeds(tmp_path):
    benchmarks = write_benchmarks(tmp_path, {"fast": MET, "slow": NOT_MET})
    result = run_all(tmp_path, benchmarks)
    assert result.returncode == 0, result.stderr
    rows = table_rows(result.stdout)
    assert rows["fast"][1:6] == ["round trip", "10 ms against 9 ms", "1.05", "<= 1.1", "yes"]
    assert rows["slow"][1:6] == ["throughput", "1 against 2 files/s", "0.50", ">= 2", "**no**"]
    assert (tmp_path / "out" / "summary.md").read_text().strip() in result.stdout
    assert MARKER in (tmp_path / "out" / "slow.log").read_text()  # each keeps its own output


def test_a_benchmark_that_cannot_run_fails_the_run_named_with_its_message(tmp_path):
    benchmarks = write_benchmarks(
        tmp_path,
        {
            "broken": 'cannot_run("install the baseline first")\n' + MET,
            "later": MET,
        },
    )
    result = run_all(tmp_path, benchmarks)
    assert result.returncode == 1
    rows = table_rows(result.stdout)
    assert rows["broken"][1] == (
        f"could not run (exit status {CANNOT_RUN}): cannot run: install the baseline first"
    )
    assert rows["broken"][2:6] == ["", "", "", ""]  # no figure, ratio, goal nor verdict
    assert rows["later"][5] == "yes"  # the others still ran
    assert "could not run: broken" in result.stderr


@pytest.mark.parametrize(
    "body, why",
    [
        ('print("all fine, 3.2x faster")\n', "no result line"),
        ("raise RuntimeError('boom')\n" + MET, "exit status 1"),
        (MET + "raise SystemExit(3)\n", "exit status 3"),
    ],
    ids=["no result line", "crash before it", "failure after it"],
)
def test_a_benchmark_without_a_clean_result_cannot_pass(tmp_path, body, why):
    result = run_all(tmp_path, write_benchmarks(tmp_path, {"odd": body}))
    assert result.returncode == 1
    assert table_rows(result.stdout)["odd"][1].startswith(f"could not run ({why})")


def test_only_runs_the_benchmarks_named_and_refuses_an_unknown_name(tmp_path):
    benchmarks = write_benchmarks(tmp_path, {"one": MET, "two": "raise SystemExit(1)\n"})
    result = run_all(tmp_path, benchmarks, "--only", "one")
    assert result.returncode == 0, result.stderr
    assert list(table_rows(result.stdout)) == ["one"]
    assert not (tmp_path / "out" / "two.log").exists()
    unknown = run_all(tmp_path, benchmarks, "--only", "one,three")
    assert unknown.returncode == 2
    assert "no benchmark named three; known: one, two" in unknown.stderr


def content_scanner_benchmark(path: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BENCH / "bench_content_scanner.py")],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PATH": path},
    )


def test_the_content_scanner_benchmark_stops_at_once_without_clamdscan(tmp_path):
    result = content_scanner_benchmark(str(tmp_path))  # a PATH where clamdscan is not
    assert result.returncode == CANNOT_RUN
    assert f"cannot run: clamdscan is not installed: {INSTALL_CLAMDSCAN}" in result.stderr
    assert MARKER not in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    "answer, expected, sample",
    [(1, 0, "clean"), (0, 1, "EICAR")],
    ids=["every file infected", "every file clean"],
)
def test_the_content_scanner_benchmark_stops_when_clamdscan_answers_wrongly(
    tmp_path, answer, expected, sample
):
    """A clamdscan that cannot reach clamd (1.0.8 then calls every file infected, the
    issue's fresh machine) or one that says clean to everything: no ratio, a clear message."""
    fake = tmp_path / "clamdscan"
    fake.write_text(f'#!/bin/sh\necho "$0: fake answer"\nexit {answer}\n')
    fake.chmod(0o755)
    result = content_scanner_benchmark(f"{tmp_path}:{os.environ['PATH']}")
    assert result.returncode == CANNOT_RUN, result.stderr[-2000:]
    wrong = CLAMDSCAN_WRONG.format(answer=answer, expected=expected, name=sample)
    assert f"cannot run: {wrong}: {fake}: fake answer" in result.stderr
    assert MARKER not in result.stdout
