# SPDX-License-Identifier: AGPL-3.0-or-later
"""Time from `appliance up` (installed) to healthy, against Synapse's own start time, same run.

Synapse alone: the same rendered homeserver.yaml started by itself until /health says OK.
The appliance: every service (mail sink, clamd, Synapse with the module, console, service token).
Prints the ratio appliance / Synapse alone; each is the median of ROUNDS cold starts.

    .venv/bin/python bench/bench_startup.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from bench_result import emit, no_goal  # noqa: E402
from harness import evaluation_settings  # noqa: E402  (free ports, temp state)

from appliance.config.layout import Layout  # noqa: E402
from appliance.config.render import render_all, write_all  # noqa: E402
from appliance.config.secrets_store import ensure_secrets  # noqa: E402
from appliance.evaluation import services  # noqa: E402
from appliance.evaluation.lifecycle import EvaluationAppliance  # noqa: E402
from appliance.evaluation.supervisor import start, stop, wait_until_ready  # noqa: E402

ROUNDS = 3


def fresh_appliance(directory: Path) -> EvaluationAppliance:
    settings = evaluation_settings(directory)
    return EvaluationAppliance(settings, Layout.from_settings(settings, directory))


def time_synapse_alone(directory: Path) -> float:
    appliance = fresh_appliance(directory)
    ensure_secrets(appliance.layout)
    write_all(render_all(appliance.settings, appliance.layout))
    spec = services.synapse(appliance.settings, appliance.layout)
    began = time.monotonic()
    process = start(spec)
    reason = wait_until_ready(spec, process)
    elapsed = time.monotonic() - began
    stop(spec)
    if reason:
        raise SystemExit(f"synapse did not start: {reason}")
    return elapsed


def time_appliance_up(directory: Path) -> float:
    appliance = fresh_appliance(directory)
    began = time.monotonic()
    appliance.up()
    elapsed = time.monotonic() - began
    appliance.down()
    return elapsed


def main() -> None:
    alone, whole = [], []
    for _ in range(ROUNDS):
        with tempfile.TemporaryDirectory() as first, tempfile.TemporaryDirectory() as second:
            alone.append(time_synapse_alone(Path(first)))
            whole.append(time_appliance_up(Path(second)))
    synapse_s, appliance_s = statistics.median(alone), statistics.median(whole)
    print(f"synapse alone, start to /health OK : {synapse_s:.2f} s (median of {ROUNDS})")
    print(f"appliance up, start to all healthy : {appliance_s:.2f} s (median of {ROUNDS})")
    print(f"ratio appliance / synapse alone    : {appliance_s / synapse_s:.2f}")
    figure = f"{appliance_s:.1f} s against {synapse_s:.1f} s"
    emit(
        "startup",
        [no_goal("`appliance up` / Synapse alone, to healthy", figure, appliance_s / synapse_s)],
    )


if __name__ == "__main__":
    main()
