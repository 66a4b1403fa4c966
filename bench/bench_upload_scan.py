# SPDX-License-Identifier: AGPL-3.0-or-later
"""Upload throughput with upload-time scanning against without, same run, at 1, 10 and 50 MB.

Two Synapses from the same rendered homeserver.yaml run side by side: one with the appliance
module (every upload streamed to clamd, EICAR signatures), one with `modules: []`. Each round
uploads the same fresh random bytes to both, in alternating order, so neither the verdict
cache nor a warmer disk favours one. Throughput is size / median upload time.
Goal: scanned / unscanned >= 0.8.

For scale, the same run also times clamd alone on other fresh bytes of the same size (the
scan every upload waits for), and prints the best ratio any in-line scan could reach:
unscanned time / (unscanned time + clamd time).

    .venv/bin/python bench/bench_upload_scan.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from bench_result import Row, at_least, cannot_run, emit  # noqa: E402
from matrix_media_helpers import EICAR, User, upload  # noqa: E402
from media_bench_support import Services, median  # noqa: E402

from appliance.antivirus.clamd import ClamdClient  # noqa: E402

ROUNDS = {1: 12, 10: 6, 50: 4}  # size in MB -> uploads to each Synapse
GOAL = 0.8


def timed_upload(url: str, user: User, data: bytes) -> float:
    began = time.perf_counter()
    response = upload(url, user, data)
    elapsed = time.perf_counter() - began
    if response.status_code != 200:
        raise SystemExit(f"upload to {url} failed: {response.status_code} {response.text}")
    return elapsed


def without_module(config: dict) -> None:
    config["modules"] = []


def check_only_one_scans(targets: dict[str, tuple[str, User]]) -> None:
    """Before timing: the scanned Synapse refuses the EICAR test file and the plain one stores
    it, otherwise the ratio would compare two servers that do the same thing."""
    refused = upload(*targets["scanned"], EICAR)
    if refused.status_code == 200:
        cannot_run("the Synapse with the module stored the EICAR test file: it does not scan")
    stored = upload(*targets["plain"], EICAR)
    if stored.status_code != 200:
        cannot_run(f"the Synapse without the module refused an upload: {stored.status_code}")


def timed_scan(clamd: ClamdClient, size: int) -> float:
    data = os.urandom(size)  # never seen before: clamd's own cache of clean files is no help
    began = time.perf_counter()
    clamd.scan_bytes(data)
    return time.perf_counter() - began


def main() -> None:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as first, tempfile.TemporaryDirectory() as second:
        with (
            Services(Path(first), ["clamd", "synapse"]) as scanned,
            Services(Path(second), ["synapse"], edit_synapse_config=without_module) as plain,
        ):
            targets = {
                "scanned": (scanned.synapse_url, scanned.new_user()),
                "plain": (plain.synapse_url, plain.new_user()),
            }
            check_only_one_scans(targets)
            listen = scanned.appliance.settings.clamav.listen
            clamd = ClamdClient(listen.connect_host, listen.port, timeout=120)
            print(
                f"{'size':>6} {'unscanned MB/s':>15} {'scanned MB/s':>13} {'ratio':>6} "
                f"{'clamd alone MB/s':>17} {'best possible':>14}"
            )
            for size_mb, rounds in ROUNDS.items():
                times: dict[str, list[float]] = {"scanned": [], "plain": [], "clamd": []}
                for round_number in range(rounds):
                    data = os.urandom(size_mb << 20)
                    order = ["scanned", "plain"] if round_number % 2 else ["plain", "scanned"]
                    for name in order:
                        times[name].append(timed_upload(*targets[name], data))
                    times["clamd"].append(timed_scan(clamd, size_mb << 20))
                plain_s, scanned_s = median(times["plain"]), median(times["scanned"])
                clamd_s = median(times["clamd"])
                print(
                    f"{size_mb:>3} MB {size_mb / plain_s:>15.1f} {size_mb / scanned_s:>13.1f} "
                    f"{plain_s / scanned_s:>6.2f} {size_mb / clamd_s:>17.1f} "
                    f"{plain_s / (plain_s + clamd_s):>14.2f}"
                )
                figure = (
                    f"{size_mb / scanned_s:.0f} against {size_mb / plain_s:.0f} MB/s "
                    f"(in-line scan bound {plain_s / (plain_s + clamd_s):.2f})"
                )
                rows.append(
                    at_least(
                        f"upload {size_mb} MB, scanned / unscanned",
                        figure,
                        plain_s / scanned_s,
                        GOAL,
                    )
                )
    emit("upload_scan", rows)


if __name__ == "__main__":
    main()
